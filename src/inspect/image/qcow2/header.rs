//! The qcow2 header (first cluster of the file): fixed fields, v3 feature bits and header
//! extensions, validated once so the mapping code can trust every field it uses.
//!
//! Feature-bit policy (we only ever read):
//! - dirty (incompatible bit 0): accepted. It only means refcounts may be stale, and we never
//!   look at refcounts.
//! - corrupt (bit 1): accepted with a warning. The spec forbids *writing* such an image, not
//!   reading it, and every structure we follow is bounds-checked anyway, so the worst case is a
//!   typed error or wrong guest bytes that the report flags.
//! - external data file (bit 2): refused as unsupported (guest data lives in another file we
//!   would have to resolve and confine like a backing file).
//! - compression type (bit 3): zlib (raw deflate) and zstd are read.
//! - extended L2 entries (bit 4): read (subclusters).
//! - any other bit: refused, naming the feature when the image's feature-name table does.
//! - encryption (crypt_method != 0): refused as unsupported.

use crate::inspect::bytes::{be32, be64};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const MAGIC: &[u8; 4] = b"QFI\xfb";
const V2_HEADER_LEN: u32 = 72;
const V3_MIN_HEADER_LEN: u32 = 104;
/// Smallest and largest cluster sizes qemu accepts (512 B and 2 MiB).
pub const MIN_CLUSTER_BITS: u32 = 9;
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Extended L2 entries need clusters of at least 16 KiB (32 subclusters of 512 bytes).
const MIN_EXTENDED_L2_CLUSTER_BITS: u32 = 14;
/// The spec's limit on the backing file name.
const MAX_BACKING_NAME: u32 = 1023;

pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_DATA_FILE: u32 = 0x4441_5441;
/// One feature-name table entry: type (1), bit (1), name (46).
const FEATURE_NAME_ENTRY: usize = 48;

/// How compressed clusters are compressed (one method per image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// qcow2 calls it zlib, but clusters are raw deflate streams without the zlib wrapper.
    Deflate,
    Zstd,
}

/// The validated header. Fields the reader does not need (refcounts, snapshots, bitmaps)
/// are not kept.
#[derive(Debug, Clone)]
pub struct Qcow2Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub incompatible_features: u64,
    pub compression: Compression,
    pub extended_l2: bool,
    /// The raw backing file name (not NUL terminated on disk), if any.
    pub backing_file: Option<Vec<u8>>,
    /// The backing file format asserted by the backing-format header extension.
    pub backing_format: Option<String>,
}

/// Builds the error for a malformed header field at `offset` in the file.
pub fn corrupt(offset: u64, message: impl Into<String>) -> ReadError {
    ReadError::Corrupt {
        format: "qcow2",
        offset,
        message: message.into(),
    }
}

fn unsupported(message: impl Into<String>) -> ReadError {
    ReadError::Unsupported {
        format: "qcow2",
        message: message.into(),
    }
}

impl Qcow2Header {
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    pub fn is_corrupt(&self) -> bool {
        self.incompatible_features & INCOMPAT_CORRUPT != 0
    }

    /// Reads and validates the header of the qcow2 file `src`.
    pub fn parse(src: &dyn ReadAt) -> Result<Qcow2Header, ReadError> {
        let file_size = src.size();
        if file_size < u64::from(V2_HEADER_LEN) {
            return Err(corrupt(
                0,
                format!("file of {file_size} bytes is too small for a header"),
            ));
        }
        let mut fixed = [0u8; V2_HEADER_LEN as usize];
        src.read_exact_at(0, &mut fixed)?;
        let (version, cluster_bits) = check_fixed(&fixed)?;
        let cluster_size = 1u64 << cluster_bits;

        // Everything else (v3 fields, extensions, the backing name) lives in the first
        // cluster, which is small (<= 2 MiB): read it once.
        let head_len = cluster_size.min(file_size) as usize;
        let mut head = vec![0u8; head_len];
        src.read_exact_at(0, &mut head)?;

        let (header_length, incompatible, compression_type) = if version == 2 {
            (V2_HEADER_LEN, 0, 0)
        } else {
            v3_fields(&head, cluster_size)?
        };
        let backing_file_offset = be64(&fixed, 8);
        let backing_file_size = be32(&fixed, 16);
        // Extensions end where the backing name starts, else at the end of the cluster.
        let ext_end = if backing_file_offset != 0 && backing_file_offset < head.len() as u64 {
            backing_file_offset as usize
        } else {
            head.len()
        };
        let ext = Extensions::parse(&head, header_length as usize, ext_end)?;
        let compression = check_features(incompatible, compression_type, cluster_bits, &ext)?;
        let backing_file =
            backing_name(&head, backing_file_offset, backing_file_size, cluster_size)?;

        let l1_table_offset = be64(&fixed, 40);
        if !l1_table_offset.is_multiple_of(cluster_size) {
            return Err(corrupt(
                40,
                format!("L1 table offset {l1_table_offset:#x} is not cluster aligned"),
            ));
        }

        Ok(Qcow2Header {
            version,
            cluster_bits,
            size: be64(&fixed, 24),
            l1_size: be32(&fixed, 36),
            l1_table_offset,
            incompatible_features: incompatible,
            compression,
            extended_l2: incompatible & INCOMPAT_EXTL2 != 0,
            backing_file,
            backing_format: ext.backing_format,
        })
    }
}

/// The v2 part every header has: magic, version, cluster size, no encryption.
fn check_fixed(fixed: &[u8]) -> Result<(u32, u32), ReadError> {
    if &fixed[0..4] != MAGIC {
        return Err(corrupt(0, "bad magic (not QFI\\xfb)"));
    }
    let version = be32(fixed, 4);
    if version != 2 && version != 3 {
        return Err(unsupported(format!(
            "version {version} (only 2 and 3 are readable)"
        )));
    }
    let cluster_bits = be32(fixed, 20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(corrupt(
            20,
            format!("cluster_bits {cluster_bits} outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"),
        ));
    }
    let crypt_method = be32(fixed, 32);
    if crypt_method != 0 {
        let name = match crypt_method {
            1 => "AES",
            2 => "LUKS",
            _ => "unknown",
        };
        return Err(unsupported(format!(
            "encrypted image (crypt_method {crypt_method}, {name})"
        )));
    }
    Ok((version, cluster_bits))
}

/// Version 3's header length, incompatible feature bits and compression type, from the
/// first cluster `head`.
fn v3_fields(head: &[u8], cluster_size: u64) -> Result<(u32, u64, u8), ReadError> {
    if head.len() < V3_MIN_HEADER_LEN as usize {
        return Err(corrupt(72, "file too small for a version 3 header"));
    }
    let len = be32(head, 100);
    if len < V3_MIN_HEADER_LEN || !len.is_multiple_of(8) || u64::from(len) > cluster_size {
        return Err(corrupt(100, format!("invalid header_length {len}")));
    }
    if len as usize > head.len() {
        return Err(corrupt(
            100,
            format!("header_length {len} runs past end of file"),
        ));
    }
    let refcount_order = be32(head, 96);
    if refcount_order > 6 {
        return Err(corrupt(96, format!("refcount_order {refcount_order} > 6")));
    }
    let compression_type = if len > 104 { head[104] } else { 0 };
    Ok((len, be64(head, 72), compression_type))
}

/// Refuses feature bits we cannot honour (checked after the extensions so unknown ones
/// can be named) and returns the compression method.
fn check_features(
    incompatible: u64,
    compression_type: u8,
    cluster_bits: u32,
    ext: &Extensions,
) -> Result<Compression, ReadError> {
    let unknown = incompatible & !INCOMPAT_KNOWN;
    if unknown != 0 {
        return Err(unsupported(format!(
            "unknown incompatible feature bits {:#x}{}",
            unknown,
            ext.describe_incompatible(unknown)
        )));
    }
    if incompatible & INCOMPAT_DATA_FILE != 0 {
        let name = ext
            .data_file
            .as_deref()
            .map(|n| format!(" {:?}", String::from_utf8_lossy(n)))
            .unwrap_or_default();
        return Err(unsupported(format!("external data file{name}")));
    }
    let compression = match (incompatible & INCOMPAT_COMPRESSION != 0, compression_type) {
        (false, 0) => Compression::Deflate,
        (false, t) => {
            return Err(corrupt(
                104,
                format!("compression_type {t} without the compression-type feature bit"),
            ))
        }
        (true, 0) => {
            return Err(corrupt(
                104,
                "compression-type feature bit with compression_type 0",
            ))
        }
        (true, 1) => Compression::Zstd,
        (true, t) => return Err(unsupported(format!("compression_type {t}"))),
    };
    if incompatible & INCOMPAT_EXTL2 != 0 && cluster_bits < MIN_EXTENDED_L2_CLUSTER_BITS {
        return Err(corrupt(
            20,
            format!("extended L2 entries need cluster_bits >= 14, got {cluster_bits}"),
        ));
    }
    Ok(compression)
}

/// The backing file name stored at `offset` (`size` bytes) inside the first cluster
/// `head`, if any: bounded, inside the cluster, without NUL bytes.
fn backing_name(
    head: &[u8],
    offset: u64,
    size: u32,
    cluster_size: u64,
) -> Result<Option<Vec<u8>>, ReadError> {
    if offset == 0 || size == 0 {
        return Ok(None);
    }
    let end = offset.checked_add(u64::from(size));
    if size > MAX_BACKING_NAME || end.is_none_or(|e| e > cluster_size) {
        return Err(corrupt(
            8,
            format!(
                "backing file name of {size} bytes at {offset} \
                 is longer than {MAX_BACKING_NAME} bytes or leaves the header cluster"
            ),
        ));
    }
    let name = head
        .get(offset as usize..(offset + u64::from(size)) as usize)
        .ok_or_else(|| corrupt(offset, "backing file name runs past end of file"))?;
    if name.contains(&0) {
        return Err(corrupt(offset, "backing file name contains a NUL byte"));
    }
    Ok(Some(name.to_vec()))
}

/// The header extensions we use, collected in one bounded pass over the header cluster.
#[derive(Default)]
struct Extensions {
    backing_format: Option<String>,
    data_file: Option<Vec<u8>>,
    /// (bit, name) of incompatible features, from the feature-name table.
    incompatible_names: Vec<(u8, String)>,
}

impl Extensions {
    /// Walks the extensions in `head[start..end]`. Each step advances by at least 8 bytes,
    /// so the loop is bounded by the header cluster size.
    fn parse(head: &[u8], start: usize, end: usize) -> Result<Extensions, ReadError> {
        let mut ext = Extensions::default();
        let mut pos = start;
        while pos + 8 <= end {
            let kind = be32(head, pos);
            let len = be32(head, pos + 4) as usize;
            if kind == EXT_END {
                break;
            }
            let data_start = pos + 8;
            let data = data_start
                .checked_add(len)
                .filter(|&e| e <= end)
                .map(|e| &head[data_start..e])
                .ok_or_else(|| {
                    corrupt(
                        pos as u64,
                        format!(
                            "header extension {kind:#x} of {len} bytes overruns the header area"
                        ),
                    )
                })?;
            match kind {
                EXT_BACKING_FORMAT => {
                    let name = std::str::from_utf8(data).map_err(|_| {
                        corrupt(data_start as u64, "backing format name is not UTF-8")
                    })?;
                    ext.backing_format = Some(name.to_string());
                }
                EXT_DATA_FILE => ext.data_file = Some(data.to_vec()),
                EXT_FEATURE_NAMES => {
                    for entry in data.chunks_exact(FEATURE_NAME_ENTRY) {
                        if entry[0] == 0 {
                            let name = &entry[2..];
                            let name =
                                &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                            ext.incompatible_names
                                .push((entry[1], String::from_utf8_lossy(name).into_owned()));
                        }
                    }
                }
                _ => {} // unknown extensions may be ignored, per spec
            }
            // Padding up to the next multiple of 8.
            pos = data_start + len.div_ceil(8) * 8;
        }
        Ok(ext)
    }

    /// " (name, name)" for the set bits of `bits` that the feature-name table names.
    fn describe_incompatible(&self, bits: u64) -> String {
        let names: Vec<&str> = self
            .incompatible_names
            .iter()
            .filter(|(bit, _)| *bit < 64 && bits & (1u64 << bit) != 0)
            .map(|(_, n)| n.as_str())
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// A minimal valid v3 header in a buffer of `len` bytes (cluster_bits 16, 1 MiB disk,
    /// one L1 entry at 0x10000).
    pub(crate) fn v3_header(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&3u32.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        b[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        b[36..40].copy_from_slice(&1u32.to_be_bytes());
        b[40..48].copy_from_slice(&0x10000u64.to_be_bytes());
        b[96..100].copy_from_slice(&4u32.to_be_bytes());
        b[100..104].copy_from_slice(&112u32.to_be_bytes());
        b
    }

    fn parse(b: Vec<u8>) -> Result<Qcow2Header, ReadError> {
        Qcow2Header::parse(&MemSource(b))
    }

    fn set32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn set64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    fn msg(e: ReadError) -> String {
        e.to_string()
    }

    #[test]
    fn valid_v3() {
        let h = parse(v3_header(0x20000)).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.cluster_size(), 65536);
        assert_eq!(h.compression, Compression::Deflate);
        assert!(!h.extended_l2 && h.backing_file.is_none());
    }

    #[test]
    fn bad_magic_and_tiny_files() {
        let mut b = v3_header(0x20000);
        b[3] = 0;
        assert!(msg(parse(b).unwrap_err()).contains("bad magic"));
        assert!(matches!(
            parse(b"QFI\xfb".to_vec()),
            Err(ReadError::Corrupt { offset: 0, .. })
        ));
        // v3 header cut short inside its fields.
        let b = v3_header(0x20000)[..90].to_vec();
        assert!(matches!(
            parse(b),
            Err(ReadError::Corrupt { offset: 72, .. })
        ));
    }

    #[test]
    fn versions() {
        let mut b = v3_header(0x20000);
        set32(&mut b, 4, 1);
        assert!(matches!(parse(b), Err(ReadError::Unsupported { .. })));
        let mut b = v3_header(0x20000);
        set32(&mut b, 4, 2);
        // v2 ignores the v3 fields entirely (72.. is the extension area, here empty).
        set32(&mut b, 100, 3);
        assert_eq!(parse(b).unwrap().version, 2);
    }

    #[test]
    fn cluster_bits_range() {
        for bits in [0, 8, 22, 63, u32::MAX] {
            let mut b = v3_header(0x20000);
            set32(&mut b, 20, bits);
            let e = parse(b).unwrap_err();
            assert!(
                matches!(e, ReadError::Corrupt { offset: 20, .. }),
                "{bits}: {e}"
            );
        }
    }

    #[test]
    fn feature_bits() {
        let with = |bits: u64| {
            let mut b = v3_header(0x20000);
            set64(&mut b, 72, bits);
            parse(b)
        };
        assert_ne!(
            with(INCOMPAT_DIRTY).unwrap().incompatible_features & INCOMPAT_DIRTY,
            0
        );
        assert!(with(INCOMPAT_CORRUPT).unwrap().is_corrupt());
        assert!(msg(with(INCOMPAT_DATA_FILE).unwrap_err()).contains("external data file"));
        assert!(msg(with(1 << 40).unwrap_err())
            .contains("unknown incompatible feature bits 0x10000000000"));
        assert!(with(INCOMPAT_EXTL2).unwrap().extended_l2);
        // Compression bit with compression_type 0 is corrupt; type 1 is zstd; 2 unknown.
        assert!(matches!(
            with(INCOMPAT_COMPRESSION),
            Err(ReadError::Corrupt { offset: 104, .. })
        ));
        let mut b = v3_header(0x20000);
        set64(&mut b, 72, INCOMPAT_COMPRESSION);
        b[104] = 1;
        assert_eq!(parse(b).unwrap().compression, Compression::Zstd);
        let mut b = v3_header(0x20000);
        b[104] = 1;
        assert!(matches!(
            parse(b),
            Err(ReadError::Corrupt { offset: 104, .. })
        ));
        // Extended L2 with small clusters.
        let mut b = v3_header(0x20000);
        set64(&mut b, 72, INCOMPAT_EXTL2);
        set32(&mut b, 20, 12);
        assert!(matches!(
            parse(b),
            Err(ReadError::Corrupt { offset: 20, .. })
        ));
    }

    #[test]
    fn unknown_feature_named_by_table() {
        let mut b = v3_header(0x20000);
        set64(&mut b, 72, 1 << 9);
        set32(&mut b, 112, EXT_FEATURE_NAMES);
        set32(&mut b, 116, 48);
        b[120] = 0;
        b[121] = 9;
        b[122..126].copy_from_slice(b"warp");
        assert!(msg(parse(b).unwrap_err()).contains("(warp)"));
    }

    #[test]
    fn encryption_refused() {
        let mut b = v3_header(0x20000);
        set32(&mut b, 32, 2);
        assert!(msg(parse(b).unwrap_err()).contains("LUKS"));
    }

    #[test]
    fn header_length_checks() {
        for len in [0, 103, 105, 0x10008, u32::MAX] {
            let mut b = v3_header(0x20000);
            set32(&mut b, 100, len);
            assert!(
                matches!(parse(b), Err(ReadError::Corrupt { offset: 100, .. })),
                "{len}"
            );
        }
    }

    #[test]
    fn extension_overrun_and_backing_format() {
        let mut b = v3_header(0x20000);
        set32(&mut b, 112, EXT_BACKING_FORMAT);
        set32(&mut b, 116, u32::MAX);
        assert!(matches!(
            parse(b),
            Err(ReadError::Corrupt { offset: 112, .. })
        ));
        let mut b = v3_header(0x20000);
        set32(&mut b, 112, EXT_BACKING_FORMAT);
        set32(&mut b, 116, 5);
        b[120..125].copy_from_slice(b"qcow2");
        set32(&mut b, 128, 0x1234_5678); // unknown extension after the padding: ignored
        set32(&mut b, 132, 0);
        assert_eq!(parse(b).unwrap().backing_format.as_deref(), Some("qcow2"));
    }

    #[test]
    fn backing_name_bounds() {
        let mut b = v3_header(0x20000);
        set64(&mut b, 8, 0x200);
        set32(&mut b, 16, 8);
        b[0x200..0x208].copy_from_slice(b"base.img");
        assert_eq!(
            parse(b).unwrap().backing_file.as_deref(),
            Some(&b"base.img"[..])
        );
        let mut b = v3_header(0x20000);
        set64(&mut b, 8, 0x200);
        set32(&mut b, 16, 1024);
        assert!(matches!(
            parse(b),
            Err(ReadError::Corrupt { offset: 8, .. })
        ));
        let mut b = v3_header(0x20000);
        set64(&mut b, 8, u64::MAX - 2);
        set32(&mut b, 16, 8);
        assert!(matches!(
            parse(b),
            Err(ReadError::Corrupt { offset: 8, .. })
        ));
        // Inside the cluster but past the end of a short file.
        let mut b = v3_header(0x400);
        set64(&mut b, 8, 0x800);
        set32(&mut b, 16, 8);
        assert!(msg(parse(b).unwrap_err()).contains("past end of file"));
    }

    #[test]
    fn l1_alignment() {
        let mut b = v3_header(0x20000);
        set64(&mut b, 40, 0x10200);
        assert!(matches!(
            parse(b),
            Err(ReadError::Corrupt { offset: 40, .. })
        ));
    }
}
