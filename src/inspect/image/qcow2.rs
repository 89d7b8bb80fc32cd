//! qcow2 v2/v3, read-only: guest offsets resolved through the L1 table and cached L2 tables
//! to data, zero, unallocated (backing file) or compressed clusters.
//!
//! The header, L2 entries and compressed descriptors each have their own file
//! (`qcow2/header.rs`, `qcow2/l2.rs`, `qcow2/compressed.rs`); this file is the mapping and the
//! read path that ties them together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

// `compressed` is the initramfs reader's too (zstd window check).
pub(crate) mod compressed;
mod header;
mod l2;

use super::read_map::{self, BlockMap, Parent, Run};
use crate::inspect::source::ReadError;
use crate::inspect::source::{read_vec, ReadAt};
use compressed::{decompress_cluster, CompressedExtent};
use header::corrupt;
use l2::{decode, L2Cache, L2Table, OFFSET_MASK};

pub use header::{Compression, Qcow2Header};

/// qemu's own limit on the L1 table (32 MiB, i.e. 4 Mi entries).
const MAX_L1_BYTES: u64 = 32 << 20;

/// A recently decompressed cluster, keyed by its L2 entry: small reads of a compressed
/// image (a directory walk alternates between inode and directory blocks in different
/// clusters) would otherwise inflate the same clusters again and again.
struct LastCluster {
    entry: u64,
    data: Vec<u8>,
}

/// Memory for decompressed clusters per image; bounds the cache whatever the cluster size.
const DECOMPRESSED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// An opened qcow2 image, presenting the guest's virtual disk as a [`ReadAt`].
pub struct Qcow2 {
    file: Arc<dyn ReadAt>,
    header: Qcow2Header,
    /// Raw L1 entries covering the virtual size (entries past it are never used).
    l1: Vec<u64>,
    l2: L2Cache,
    /// What unallocated clusters read: zeros without a backing file; an error while the
    /// header names one that the caller has not attached (parsing from memory, say).
    backing: Parent,
    /// Most recently used first; at most `recent_slots` entries.
    recent: Mutex<std::collections::VecDeque<LastCluster>>,
    recent_slots: usize,
    /// Bytes decompressed so far (see [`ReadAt::inflated`]).
    inflated: AtomicU64,
}

impl Qcow2 {
    /// Parses the header and loads the L1 table of the qcow2 file `file`. A backing file
    /// named by the header is not opened here (that needs path policy, see `image::open`):
    /// attach it with [`Qcow2::attach_backing`].
    pub fn from_source(file: Arc<dyn ReadAt>) -> Result<Qcow2, ReadError> {
        let header = Qcow2Header::parse(file.as_ref())?;
        let l1 = load_l1(file.as_ref(), &header)?;
        let backing = match &header.backing_file {
            Some(name) => Parent::NotAttached(Some(String::from_utf8_lossy(name).into_owned())),
            None => Parent::None,
        };
        let recent_slots =
            (DECOMPRESSED_CACHE_BYTES / header.cluster_size()).clamp(1, 256) as usize;
        Ok(Qcow2 {
            l2: L2Cache::new(header.cluster_size()),
            file,
            header,
            l1,
            backing,
            recent: Mutex::new(std::collections::VecDeque::new()),
            recent_slots,
            inflated: AtomicU64::new(0),
        })
    }

    pub fn header(&self) -> &Qcow2Header {
        &self.header
    }

    /// The backing file name as stored (relative names are relative to this image's directory).
    pub fn backing_file(&self) -> Option<&[u8]> {
        self.header.backing_file.as_deref()
    }

    /// The backing format declared by the header extension, if any.
    pub fn backing_format(&self) -> Option<&str> {
        self.header.backing_format.as_deref()
    }

    /// Sets the source of unallocated clusters. Parts of the guest past the backing
    /// file's size read as zeros.
    pub fn attach_backing(&mut self, backing: Arc<dyn ReadAt>) {
        self.backing = Parent::Attached(backing);
    }

    fn cluster_bits(&self) -> u32 {
        self.header.cluster_bits
    }

    /// log2 of the guest bytes one L2 table covers.
    fn l2_span_bits(&self) -> u32 {
        let entry_bits = if self.header.extended_l2 { 4 } else { 3 };
        2 * self.cluster_bits() - entry_bits
    }

    /// The L2 table for L1 index `idx`, or `None` when it is unallocated.
    fn l2_table(&self, idx: usize) -> Result<Option<L2Table>, ReadError> {
        let entry = self.l1.get(idx).copied().unwrap_or(0);
        let entry_offset = self.header.l1_table_offset + idx as u64 * 8;
        let offset = entry & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        let cluster_size = self.header.cluster_size();
        if !offset.is_multiple_of(cluster_size) {
            return Err(corrupt(
                entry_offset,
                format!("L1 entry {idx} points to unaligned L2 table {offset:#x}"),
            ));
        }
        let file_size = self.file.size();
        if offset.saturating_add(cluster_size) > file_size {
            return Err(corrupt(
                entry_offset,
                format!("L1 entry {idx} points to an L2 table at {offset:#x} past the end of the file ({file_size} bytes)"),
            ));
        }
        let table = self.l2.get(offset, || {
            let bytes = read_vec(self.file.as_ref(), offset, cluster_size, cluster_size)?;
            Ok(bytes
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
                .collect())
        })?;
        Ok(Some(table))
    }

    /// Reads `out` from the compressed cluster described by `entry`, starting at byte
    /// `in_cluster` of the cluster, through the cache of recently inflated clusters.
    fn read_recent(
        &self,
        entry: u64,
        guest: u64,
        in_cluster: u64,
        out: &mut [u8],
    ) -> Result<(), ReadError> {
        let cluster_size = self.header.cluster_size() as usize;
        let start = in_cluster as usize;
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = recent.iter().position(|c| c.entry == entry) {
            let hit = recent.remove(pos).expect("position is in range");
            out.copy_from_slice(&hit.data[start..start + out.len()]);
            recent.push_front(hit);
            return Ok(());
        }
        // Reuse the least recently used buffer once the cache is full; it is invalid
        // until the decompression succeeds.
        let mut data = if recent.len() >= self.recent_slots {
            recent.pop_back().map(|c| c.data).unwrap_or_default()
        } else {
            Vec::new()
        };
        data.resize(cluster_size, 0);
        self.decompress(entry, guest, &mut data)?;
        out.copy_from_slice(&data[start..start + out.len()]);
        recent.push_front(LastCluster { entry, data });
        Ok(())
    }

    fn decompress(&self, entry: u64, guest: u64, out: &mut [u8]) -> Result<(), ReadError> {
        let ext = CompressedExtent::from_entry(entry, self.cluster_bits());
        let file_size = self.file.size();
        if ext.host >= file_size {
            return Err(corrupt(
                ext.host,
                format!("compressed cluster for guest offset {guest:#x} starts past the end of the file ({file_size} bytes)"),
            ));
        }
        // The last sector of the last compressed cluster may be cut short by the file's end.
        let len = ext.len.min(file_size - ext.host);
        let input = read_vec(
            self.file.as_ref(),
            ext.host,
            len,
            2 * self.header.cluster_size(),
        )?;
        self.inflated.fetch_add(out.len() as u64, Ordering::Relaxed);
        decompress_cluster(self.header.compression, &input, out).map_err(|e| {
            corrupt(
                ext.host,
                format!("compressed cluster for guest offset {guest:#x}: {e}"),
            )
        })
    }
}

/// Loads the L1 entries that cover the virtual size, bounding the table before allocating it.
fn load_l1(file: &dyn ReadAt, h: &Qcow2Header) -> Result<Vec<u64>, ReadError> {
    let entry_bits = if h.extended_l2 { 4 } else { 3 };
    let span_bits = 2 * h.cluster_bits - entry_bits;
    let needed = h.size.div_ceil(1u64 << span_bits);
    if needed > u64::from(h.l1_size) {
        return Err(corrupt(
            36,
            format!("L1 table of {} entries is too small for a virtual size of {} bytes (needs {needed})", h.l1_size, h.size),
        ));
    }
    let bytes = needed * 8;
    if bytes > MAX_L1_BYTES {
        return Err(ReadError::TooLarge {
            what: "qcow2 L1 table",
            size: bytes,
            limit: MAX_L1_BYTES,
        });
    }
    if h.l1_table_offset
        .checked_add(bytes)
        .is_none_or(|end| end > file.size())
    {
        return Err(corrupt(
            40,
            format!(
                "L1 table at {:#x} ({bytes} bytes) runs past the end of the file ({} bytes)",
                h.l1_table_offset,
                file.size()
            ),
        ));
    }
    let raw = read_vec(file, h.l1_table_offset, bytes, MAX_L1_BYTES)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

/// The L1 index and L2 table (`None`: unallocated) the previous `map` of a read used.
type L2Cursor = Option<(usize, Option<L2Table>)>;

impl BlockMap for Qcow2 {
    type Cursor = L2Cursor;
    const FORMAT: &'static str = "qcow2";

    /// Maps the guest byte `guest` to its run and how many bytes from it on share it (to
    /// the end of the cluster, subcluster run, or unallocated L2 range). `cur` keeps the
    /// current L2 table between calls so a run costs one cache lookup per table.
    fn map(&self, guest: u64, cur: &mut L2Cursor) -> Result<(Run, u64), ReadError> {
        let span_bits = self.l2_span_bits();
        let l1_idx = (guest >> span_bits) as usize;
        let in_span = guest & ((1u64 << span_bits) - 1);
        let table = match cur {
            Some((i, t)) if *i == l1_idx => t.clone(),
            _ => {
                let t = self.l2_table(l1_idx)?;
                *cur = Some((l1_idx, t.clone()));
                t
            }
        };
        let Some(table) = table else {
            return Ok((Run::Parent, (1u64 << span_bits) - in_span));
        };
        let bits = self.cluster_bits();
        let l2_idx = (in_span >> bits) as usize;
        let in_cluster = in_span & ((1u64 << bits) - 1);
        let table_offset = self.l1.get(l1_idx).copied().unwrap_or(0) & OFFSET_MASK;
        decode(
            &table,
            l2_idx,
            in_cluster,
            bits,
            self.header.extended_l2,
            table_offset,
        )
    }

    /// A run reaching a host cluster that starts past the end of the file is corruption; a
    /// run that only overhangs the end within the file's last cluster reads zeros there, as
    /// qemu does.
    fn read_host(
        &self,
        file: &dyn ReadAt,
        host: u64,
        guest: u64,
        out: &mut [u8],
    ) -> Result<(), ReadError> {
        let file_size = file.size();
        // host < 2^56 and out is one in-memory buffer: no overflow.
        let last_cluster = (host + out.len() as u64 - 1) & !(self.header.cluster_size() - 1);
        if last_cluster >= file_size {
            return Err(corrupt(
                host,
                format!(
                    "guest offset {guest:#x} maps to host cluster {last_cluster:#x}, past the end of the file ({file_size} bytes)"
                ),
            ));
        }
        let avail = file_size.saturating_sub(host).min(out.len() as u64) as usize;
        let (head, tail) = out.split_at_mut(avail);
        file.read_exact_at(host, head)?;
        tail.fill(0);
        Ok(())
    }

    fn read_compressed(&self, entry: u64, guest: u64, out: &mut [u8]) -> Result<(), ReadError> {
        let cluster_mask = self.header.cluster_size() - 1;
        let in_cluster = guest & cluster_mask;
        if in_cluster == 0 && out.len() as u64 == cluster_mask + 1 {
            // A whole cluster: inflate straight into the caller's buffer.
            self.decompress(entry, guest, out)
        } else {
            self.read_recent(entry, guest, in_cluster, out)
        }
    }
}

impl ReadAt for Qcow2 {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn inflated(&self) -> u64 {
        self.inflated
            .load(Ordering::Relaxed)
            .saturating_add(self.backing.inflated())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        read_map::read(self, self.file.as_ref(), &self.backing, offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::header::tests::v3_header;
    use super::*;
    use crate::inspect::source::MemSource;

    const C: usize = 65536;

    fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    /// Header cluster, L1 at cluster 1 (one entry), L2 at cluster 2, data from cluster 3.
    fn image() -> Vec<u8> {
        let mut b = v3_header(4 * C);
        put64(&mut b, C, 2 * C as u64);
        b[3 * C..4 * C].fill(0x5a);
        b
    }

    fn open(b: Vec<u8>) -> Result<Qcow2, ReadError> {
        Qcow2::from_source(Arc::new(MemSource(b)))
    }

    #[test]
    fn data_zero_unallocated_and_spanning_reads() {
        let mut b = image();
        put64(&mut b, 2 * C, 3 * C as u64); // guest cluster 0 -> data
        put64(&mut b, 2 * C + 8, 1); // guest cluster 1 -> zero flag
                                     // guest cluster 2 unallocated; guest cluster 3 -> same data cluster again
        put64(&mut b, 2 * C + 24, (3 * C as u64) | (1 << 63));
        let q = open(b).unwrap();
        assert_eq!(q.size(), 1 << 20);
        let mut buf = vec![1u8; 4 * C];
        q.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..C].iter().all(|&x| x == 0x5a));
        assert!(buf[C..3 * C].iter().all(|&x| x == 0));
        assert!(buf[3 * C..].iter().all(|&x| x == 0x5a));
        // A read crossing the end of the virtual disk is refused.
        let mut buf = [0u8; 2];
        assert!(matches!(
            q.read_exact_at((1 << 20) - 1, &mut buf),
            Err(ReadError::OutOfRange { .. })
        ));
    }

    #[test]
    fn l2_and_data_past_eof_are_typed_errors() {
        let mut b = image();
        put64(&mut b, 2 * C, 100 * C as u64);
        let q = open(b).unwrap();
        let e = q.read_exact_at(0, &mut [0u8; 16]).unwrap_err();
        assert!(e.to_string().contains("past the end of the file"), "{e}");

        let mut b = image();
        put64(&mut b, C, 100 * C as u64); // L1 -> L2 beyond EOF
        let q = open(b).unwrap();
        let e = q.read_exact_at(0, &mut [0u8; 16]).unwrap_err();
        assert!(
            matches!(e, ReadError::Corrupt { offset, .. } if offset == C as u64),
            "{e}"
        );

        let mut b = image();
        put64(&mut b, C, 2 * C as u64 + 512); // unaligned L2
        let q = open(b).unwrap();
        assert!(q.read_exact_at(0, &mut [0u8; 16]).is_err());
    }

    #[test]
    fn huge_l1_is_bounded() {
        let mut b = image();
        put64(&mut b, 24, 1 << 52); // needs 2^23 L1 entries: 64 MiB
        b[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = open(b).err().unwrap();
        assert!(matches!(e, ReadError::TooLarge { .. }), "{e}");
        // l1_size too small for the virtual size.
        let mut b = image();
        put64(&mut b, 24, 1 << 40);
        assert!(matches!(
            open(b),
            Err(ReadError::Corrupt { offset: 36, .. })
        ));
        // L1 past EOF.
        let mut b = image();
        put64(&mut b, 40, 64 * C as u64);
        assert!(matches!(
            open(b),
            Err(ReadError::Corrupt { offset: 40, .. })
        ));
    }

    #[test]
    fn compressed_cluster() {
        let data: Vec<u8> = (0..C).map(|i| (i % 253) as u8).collect();
        let packed = miniz_oxide::deflate::compress_to_vec(&data, 6);
        let mut b = image();
        let host = 3 * C + 100;
        b[host..host + packed.len()].copy_from_slice(&packed);
        let sectors = (100 + packed.len() as u64).div_ceil(512) - 1;
        put64(&mut b, 2 * C, 1 << 62 | sectors << 54 | host as u64);
        let q = open(b).unwrap();
        let mut all = vec![0u8; C];
        q.read_exact_at(0, &mut all).unwrap();
        assert_eq!(all, data);
        // Unaligned reads go through the last-cluster cache.
        for off in [1usize, 4096, 60000] {
            let mut part = vec![0u8; 1000];
            q.read_exact_at(off as u64, &mut part).unwrap();
            assert_eq!(part, data[off..off + 1000]);
        }
        // Two inflations (the whole-cluster read bypasses the cache, the small reads
        // share one), and the read budget sees them on top of the bytes asked for.
        assert_eq!(q.inflated(), 2 * C as u64);
        let q: Arc<dyn ReadAt> = Arc::new(q);
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let budgeted = crate::inspect::source::Budgeted::new(q, read, C as u64 + 10);
        let e = budgeted.read_exact_at(0, &mut [0u8; 16]).unwrap_err();
        assert!(matches!(e, ReadError::BudgetExceeded { .. }), "{e}");
        // Descriptor past EOF.
        let mut b = image();
        put64(&mut b, 2 * C, (1 << 62) | (90 * C as u64));
        let e = open(b)
            .unwrap()
            .read_exact_at(0, &mut [0u8; 8])
            .unwrap_err();
        assert!(e.to_string().contains("compressed cluster"), "{e}");
        // Garbage that does not inflate.
        let mut b = image();
        put64(&mut b, 2 * C, (1 << 62) | (3 * C as u64));
        assert!(open(b).unwrap().read_exact_at(0, &mut [0u8; 8]).is_err());
    }

    #[test]
    fn unattached_backing_is_an_error() {
        let mut b = image();
        put64(&mut b, 8, 0x200);
        b[16..20].copy_from_slice(&4u32.to_be_bytes());
        b[0x200..0x204].copy_from_slice(b"base");
        let mut q = open(b).unwrap();
        assert_eq!(q.backing_file(), Some(&b"base"[..]));
        let e = q.read_exact_at(0, &mut [0u8; 8]).unwrap_err();
        assert!(e.to_string().contains("base"), "{e}");
        // Attached and shorter than the image: bytes past its end are zeros.
        q.attach_backing(Arc::new(MemSource(vec![7u8; 100])));
        let mut buf = [1u8; 200];
        q.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..100].iter().all(|&x| x == 7) && buf[100..].iter().all(|&x| x == 0));
    }

    #[test]
    fn extended_l2_subclusters() {
        let mut b = image();
        // Extended L2 (bit 4): 16-byte entries.
        put64(&mut b, 72, 1 << 4);
        put64(&mut b, 2 * C, 3 * C as u64);
        put64(&mut b, 2 * C + 8, 0b1 | 0b10 << 32); // sc0 allocated, sc1 zero, rest unallocated
        let mut q = open(b).unwrap();
        q.attach_backing(Arc::new(MemSource(vec![9u8; 1 << 20])));
        let sc = C / 32;
        let mut buf = vec![0u8; C];
        q.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..sc].iter().all(|&x| x == 0x5a));
        assert!(buf[sc..2 * sc].iter().all(|&x| x == 0));
        assert!(buf[2 * sc..].iter().all(|&x| x == 9));
    }
}
