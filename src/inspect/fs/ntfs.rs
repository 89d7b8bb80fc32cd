//! Read-only NTFS file access.
//!
//! Our own reader rather than the `ntfs` crate: that crate reads through `Read + Seek`
//! and would need an adapter per file plus its own error mapping, while this one reads
//! through the shared [`ReadAt`] (so the job's budget and cancellation apply to every
//! byte) with typed, bounded errors on hostile volumes. Layout: [`boot`] (geometry),
//! [`record`] (MFT records and their fixups), [`attr`] (attributes and attribute
//! lists), [`runs`] (data runs), [`index`] (directory B-trees), [`upcase`] (the
//! volume's case table), [`lznt1`] (compressed files).
//!
//! Shown as ntfs-3g shows a volume: Win32/POSIX names (DOS 8.3 aliases hidden), the
//! metafiles (`$MFT`, ...) hidden, lookups exact first and then case-insensitive by the
//! volume's `$UpCase`, symlinks and junctions as symlinks whose targets are never
//! followed out of the volume, alternate data streams ignored. Files compressed by WOF
//! (CompactOS) or encrypted by EFS are typed `Unsupported` errors.

mod attr;
mod boot;
mod index;
mod lznt1;
mod record;
mod runs;
mod upcase;

use std::collections::HashSet;
use std::sync::Arc;

use super::{DirEntry, FileKind, FileSystem, FsError, Metadata, MAX_DIR_ENTRIES};
use crate::inspect::bytes::{le16, le32};
use crate::inspect::cache::BoundedCache;
use crate::inspect::source::ReadAt;
use attr::{Attribute, Value};
use boot::Boot;
use record::Record;
use runs::Run;
use upcase::UpCase;

/// Directories kept listed, so walking a tree does not re-read each parent per file.
const CACHED_DIRS: usize = 64;
/// Longest path accepted.
const MAX_PATH_BYTES: usize = 4096;
/// Largest `$ATTRIBUTE_LIST` read (real ones are a few KiB even for huge files).
const MAX_ATTR_LIST_BYTES: u64 = 1 << 20;
/// Most extension records one file may spread over.
const MAX_EXTENSION_RECORDS: usize = 4096;
/// Most index blocks one directory listing visits (64 MiB of 4 KiB blocks).
const MAX_INDEX_BLOCKS: usize = 16384;
/// Deepest B-tree accepted; real directories are a few levels deep.
const MAX_INDEX_DEPTH: usize = 32;
/// Largest reparse point read.
const MAX_REPARSE_BYTES: u64 = 16 << 10;

const RECORD_MFT: u64 = 0;
const RECORD_VOLUME: u64 = 3;
const RECORD_ROOT: u64 = 5;
const RECORD_UPCASE: u64 = 10;
/// Records below this are metafiles, hidden as ntfs-3g and ntfsls hide them.
const FIRST_USER_RECORD: u64 = 16;
const ATTR_VOLUME_NAME: u32 = 0x60;

const TAG_MOUNT_POINT: u32 = 0xa000_0003;
const TAG_SYMLINK: u32 = 0xa000_000c;
const TAG_WOF: u32 = 0x8000_0017;
const TAG_DEDUP: u32 = 0x8000_0013;
/// Symlink flag: the target is relative to the link's directory.
const SYMLINK_RELATIVE: u32 = 1;

pub(crate) fn corrupt(message: String) -> FsError {
    FsError::Corrupt {
        fs: "ntfs",
        message,
    }
}

fn unsupported(message: String) -> FsError {
    FsError::Unsupported {
        fs: "ntfs",
        message,
    }
}

/// The value of one attribute (all its extents), ready to read.
struct Stream {
    resident: Option<Vec<u8>>,
    runs: Vec<Run>,
    data_size: u64,
    initialized_size: u64,
    /// Clusters per compression unit, for an LZNT1-compressed value.
    compression_unit: Option<u64>,
}

/// A file's record and every attribute of it, extension records included.
struct File {
    is_dir: bool,
    attrs: Vec<Attribute>,
}

impl File {
    fn find<'a>(&'a self, kind: u32, name: &'a str) -> impl Iterator<Item = &'a Attribute> {
        self.attrs.iter().filter(move |a| a.is(kind, name))
    }

    fn resident<'a>(&'a self, kind: u32, name: &'a str) -> Option<&'a [u8]> {
        self.find(kind, name).find_map(|a| match &a.value {
            Value::Resident(v) => Some(v.as_slice()),
            Value::NonResident(_) => None,
        })
    }

    /// The reparse tag when the file is a reparse point.
    fn reparse_tag(&self) -> Option<u32> {
        let v = self.resident(attr::REPARSE_POINT, "")?;
        (v.len() >= 4).then(|| le32(v, 0))
    }
}

/// One listed name.
#[derive(Debug, Clone)]
struct Child {
    name: String,
    units: Vec<u16>,
    file_ref: u64,
    kind: FileKind,
}

/// A read-only NTFS volume.
pub struct NtfsFs {
    src: Arc<dyn ReadAt>,
    boot: Boot,
    mft: Stream,
    upcase: UpCase,
    label: Option<String>,
    warnings: Vec<String>,
    dirs: BoundedCache<u64, Arc<Vec<Child>>>,
}

impl NtfsFs {
    /// Validates the boot sector and reads `$MFT`'s own runs and the `$UpCase` table;
    /// everything else is read on demand.
    pub fn open(src: Arc<dyn ReadAt>) -> Result<NtfsFs, FsError> {
        let boot = boot::read(src.as_ref())?;
        let mut fs = NtfsFs {
            src,
            mft: Stream {
                resident: None,
                // Until $MFT's own runs are known: its first record where the boot
                // sector says.
                runs: vec![Run {
                    vcn: 0,
                    len: boot.record_size.div_ceil(boot.cluster_size),
                    lcn: Some(boot.mft_lcn),
                }],
                data_size: boot.record_size,
                initialized_size: boot.record_size,
                compression_unit: None,
            },
            boot,
            upcase: UpCase::ascii(),
            label: None,
            warnings: Vec::new(),
            dirs: BoundedCache::new(CACHED_DIRS),
        };
        fs.mft = fs.mft_stream()?;
        match fs.read_upcase() {
            Ok(t) => fs.upcase = t,
            Err(e) => fs.warnings.push(format!(
                "cannot read $UpCase ({e}); names are matched ignoring ASCII case only"
            )),
        }
        fs.label = fs.read_label();
        Ok(fs)
    }

    /// Notes met while opening (nothing that stops reading).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The volume serial number as blkid prints it.
    pub fn uuid(&self) -> String {
        format!("{:016X}", self.boot.serial)
    }

    /// The volume label (`$Volume`'s `$VOLUME_NAME`).
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// `$MFT`'s `$DATA`, following its attribute list when the MFT is so fragmented
    /// that its runs spill into extension records (found through the runs known so far).
    fn mft_stream(&self) -> Result<Stream, FsError> {
        let base = self.read_record(RECORD_MFT)?;
        let mut attrs = base.attributes()?;
        let missing = || corrupt("$MFT has no $DATA attribute".into());
        let mut stream = self
            .stream_of(&attrs, attr::DATA, "")?
            .ok_or_else(missing)?;
        if let Some(list) = attrs
            .iter()
            .find(|a| a.kind == attr::ATTRIBUTE_LIST)
            .cloned()
        {
            let bytes = self.read_value(&list, MAX_ATTR_LIST_BYTES)?;
            let mut seen = HashSet::from([RECORD_MFT]);
            for e in attr::parse_list(&bytes) {
                if e.kind != attr::DATA || !seen.insert(e.record) {
                    continue;
                }
                if seen.len() > MAX_EXTENSION_RECORDS {
                    return Err(corrupt("$MFT has too many extension records".into()));
                }
                let ext = self.read_record_in(&stream, e.record)?;
                attrs.extend(
                    ext.attributes()?
                        .into_iter()
                        .filter(|a| a.kind == attr::DATA),
                );
                stream = self
                    .stream_of(&attrs, attr::DATA, "")?
                    .ok_or_else(missing)?;
            }
        }
        Ok(stream)
    }

    fn read_record(&self, n: u64) -> Result<Record, FsError> {
        self.read_record_in(&self.mft, n)
    }

    /// Record `n`, read through `mft` (the full `$MFT` stream, or a partial one while
    /// it is being assembled).
    fn read_record_in(&self, mft: &Stream, n: u64) -> Result<Record, FsError> {
        let size = self.boot.record_size;
        let offset = n
            .checked_mul(size)
            .filter(|o| o + size <= mft.data_size)
            .ok_or_else(|| corrupt(format!("MFT record {n} is past the end of $MFT")))?;
        let mut bytes = vec![0u8; size as usize];
        self.read_at(mft, offset, &mut bytes)?;
        Record::parse(n, bytes)
    }

    /// The record behind a directory entry's file reference, every attribute gathered.
    fn file(&self, file_ref: u64) -> Result<File, FsError> {
        let n = file_ref & 0x0000_ffff_ffff_ffff;
        let seq = (file_ref >> 48) as u16;
        let base = self.read_record(n)?;
        if !base.in_use() {
            return Err(corrupt(format!(
                "MFT record {n} is referenced but not in use"
            )));
        }
        if seq != 0 && base.sequence() != seq {
            return Err(corrupt(format!(
                "stale reference to MFT record {n} (sequence {seq}, record has {})",
                base.sequence()
            )));
        }
        let mut attrs = base.attributes()?;
        if let Some(list) = attrs
            .iter()
            .find(|a| a.kind == attr::ATTRIBUTE_LIST)
            .cloned()
        {
            let bytes = self.read_value(&list, MAX_ATTR_LIST_BYTES)?;
            let mut seen = HashSet::from([n]);
            for e in attr::parse_list(&bytes) {
                if !seen.insert(e.record) {
                    continue;
                }
                if seen.len() > MAX_EXTENSION_RECORDS {
                    return Err(corrupt(format!(
                        "MFT record {n}: too many extension records"
                    )));
                }
                let ext = self.read_record(e.record)?;
                if ext.base() != n {
                    return Err(corrupt(format!(
                        "MFT record {} listed as an extension of {n} belongs to {}",
                        e.record,
                        ext.base()
                    )));
                }
                attrs.extend(
                    ext.attributes()?
                        .into_iter()
                        .filter(|a| a.kind != attr::ATTRIBUTE_LIST),
                );
            }
        }
        Ok(File {
            is_dir: base.is_dir(),
            attrs,
        })
    }

    /// The value of an attribute that lives in one record (an attribute list).
    fn read_value(&self, a: &Attribute, max: u64) -> Result<Vec<u8>, FsError> {
        let s = self
            .stream_of(
                std::slice::from_ref(a),
                a.kind,
                &String::from_utf16_lossy(&a.name),
            )?
            .ok_or_else(|| corrupt("attribute vanished".into()))?;
        self.read_all(&s, max, "attribute")
    }

    /// Assembles the attribute `kind`/`name` of a file from its extents.
    fn stream_of(
        &self,
        attrs: &[Attribute],
        kind: u32,
        name: &str,
    ) -> Result<Option<Stream>, FsError> {
        let mut extents = Vec::new();
        for a in attrs.iter().filter(|a| a.is(kind, name)) {
            match &a.value {
                Value::Resident(v) => {
                    return Ok(Some(Stream {
                        resident: Some(v.clone()),
                        runs: Vec::new(),
                        data_size: v.len() as u64,
                        initialized_size: v.len() as u64,
                        compression_unit: None,
                    }))
                }
                Value::NonResident(nr) => extents.push((a, nr)),
            }
        }
        extents.sort_by_key(|(_, nr)| nr.start_vcn);
        let Some((first_attr, first)) = extents.first() else {
            return Ok(None);
        };
        if first.start_vcn != 0 {
            return Err(corrupt("non-resident attribute has no first extent".into()));
        }
        if first_attr.encrypted() {
            return Err(unsupported("the file is encrypted (EFS)".into()));
        }
        let compression_unit = if first_attr.compressed() && first.compression_unit != 0 {
            // Windows compresses only in units of 16 clusters of at most 4 KiB; anything
            // else would make us buffer units of up to 512 MiB for a hostile volume.
            if first.compression_unit != 4 || self.boot.cluster_size > 64 << 10 {
                return Err(unsupported(format!(
                    "compression unit of 2^{} clusters of {} bytes",
                    first.compression_unit, self.boot.cluster_size
                )));
            }
            Some(1u64 << first.compression_unit)
        } else {
            None
        };
        let mut runs: Vec<Run> = Vec::new();
        let mut next_vcn = 0u64;
        for (_, nr) in &extents {
            if nr.start_vcn < next_vcn {
                return Err(corrupt(format!(
                    "attribute extents overlap at VCN {}",
                    nr.start_vcn
                )));
            }
            let decoded = runs::decode(&nr.runs, nr.start_vcn, self.boot.clusters)?;
            if let Some(last) = decoded.last() {
                next_vcn = last.vcn + last.len;
            }
            runs.extend(decoded);
        }
        Ok(Some(Stream {
            resident: None,
            runs,
            data_size: first.data_size,
            initialized_size: first.initialized_size.min(first.data_size),
            compression_unit,
        }))
    }

    /// Fills `buf` with the bytes of an uncompressed stream at `offset`.
    fn read_at(&self, s: &Stream, offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= s.data_size)
            .ok_or_else(|| corrupt(format!("read at {offset} past the end of an attribute")))?;
        if let Some(v) = &s.resident {
            buf.copy_from_slice(&v[offset as usize..end as usize]);
            return Ok(());
        }
        let cs = self.boot.cluster_size;
        let mut pos = offset;
        while pos < end {
            let vcn = pos / cs;
            let run = runs::find(&s.runs, vcn)
                .ok_or_else(|| corrupt(format!("no data run maps cluster {vcn}")))?;
            let run_end = (run.vcn + run.len).saturating_mul(cs);
            let n = (run_end.min(end) - pos) as usize;
            let slot = &mut buf[(pos - offset) as usize..(pos - offset) as usize + n];
            match run.lcn {
                Some(lcn) => {
                    let disk = (lcn + (vcn - run.vcn)) * cs + pos % cs;
                    self.src.read_exact_at(disk, slot)?;
                }
                None => slot.fill(0),
            }
            pos += n as u64;
        }
        // Past the initialized size the clusters hold garbage; NTFS reads zeros.
        if end > s.initialized_size {
            let from = s.initialized_size.saturating_sub(offset) as usize;
            buf[from..].fill(0);
        }
        Ok(())
    }

    /// The whole value of `s`, refusing values above `max`.
    fn read_all(&self, s: &Stream, max: u64, what: &str) -> Result<Vec<u8>, FsError> {
        if s.data_size > max {
            return Err(FsError::TooLarge {
                path: what.to_string(),
                size: s.data_size,
                limit: max,
            });
        }
        let mut out = vec![0u8; s.data_size as usize];
        match s.compression_unit {
            None => self.read_at(s, 0, &mut out)?,
            Some(cu) => self.read_compressed(s, cu, &mut out)?,
        }
        Ok(out)
    }

    /// Reads an LZNT1-compressed value unit by unit: a unit whose clusters are all
    /// allocated is stored raw, one entirely sparse is zeros, and one partly sparse
    /// holds compressed chunks in its allocated clusters.
    fn read_compressed(&self, s: &Stream, cu: u64, out: &mut [u8]) -> Result<(), FsError> {
        let cs = self.boot.cluster_size;
        let unit_bytes = cu * cs;
        let mut unit_buf = vec![0u8; unit_bytes as usize];
        let mut packed = Vec::with_capacity(unit_bytes as usize);
        let mut start = 0u64;
        while start < out.len() as u64 {
            let vcn0 = start / cs;
            packed.clear();
            let mut allocated = 0u64;
            for vcn in vcn0..vcn0 + cu {
                let Some(run) = runs::find(&s.runs, vcn) else {
                    continue;
                };
                if let Some(lcn) = run.lcn {
                    let mut c = vec![0u8; cs as usize];
                    self.src.read_exact_at((lcn + vcn - run.vcn) * cs, &mut c)?;
                    packed.extend_from_slice(&c);
                    allocated += 1;
                }
            }
            let n = (unit_bytes.min(out.len() as u64 - start)) as usize;
            let slot = &mut out[start as usize..start as usize + n];
            if allocated == cu {
                slot.copy_from_slice(&packed[..n]);
            } else if allocated == 0 {
                slot.fill(0);
            } else {
                unit_buf.fill(0);
                lznt1::decompress(&packed, &mut unit_buf)
                    .map_err(|m| corrupt(format!("LZNT1 unit at VCN {vcn0}: {m}")))?;
                slot.copy_from_slice(&unit_buf[..n]);
            }
            start += unit_bytes;
        }
        if (out.len() as u64) > s.initialized_size {
            out[s.initialized_size as usize..].fill(0);
        }
        Ok(())
    }

    fn read_upcase(&self) -> Result<UpCase, FsError> {
        let f = self.file(RECORD_UPCASE)?;
        let s = self
            .stream_of(&f.attrs, attr::DATA, "")?
            .ok_or_else(|| corrupt("$UpCase has no data".into()))?;
        Ok(UpCase::from_bytes(&self.read_all(
            &s,
            upcase::TABLE_BYTES,
            "$UpCase",
        )?))
    }

    fn read_label(&self) -> Option<String> {
        let f = self.file(RECORD_VOLUME).ok()?;
        let v = f.resident(ATTR_VOLUME_NAME, "")?;
        let units = attr::utf16_at(v, 0, v.len() / 2)?;
        Some(String::from_utf16_lossy(&units)).filter(|s| !s.is_empty())
    }

    /// The names in the directory `file_ref`, in index order.
    fn list(&self, file_ref: u64) -> Result<Arc<Vec<Child>>, FsError> {
        let key = file_ref & 0x0000_ffff_ffff_ffff;
        if let Some(hit) = self.dirs.get(&key) {
            return Ok(hit);
        }
        let f = self.file(file_ref)?;
        if !f.is_dir {
            return Err(FsError::NotADirectory(format!("MFT record {key}")));
        }
        let root = f
            .resident(attr::INDEX_ROOT, "$I30")
            .ok_or_else(|| corrupt(format!("directory {key} has no $I30 index root")))?;
        let root = index::parse_root(root)?;
        let alloc = self.stream_of(&f.attrs, attr::INDEX_ALLOCATION, "$I30")?;
        let mut walk = Walk {
            fs: self,
            alloc: alloc.as_ref(),
            block_size: root.block_size,
            visited: HashSet::new(),
            out: Vec::new(),
        };
        walk.node(&root.entries, 0)?;
        let listed = Arc::new(walk.out);
        self.dirs.insert(key, listed.clone());
        Ok(listed)
    }

    /// Walks `path` from the root directory: each component matched exactly, else
    /// case-insensitively by `$UpCase`.
    fn resolve(&self, path: &str) -> Result<(u64, FileKind), FsError> {
        if !path.starts_with('/') {
            return Err(FsError::NotFound(path.to_string()));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(unsupported(format!(
                "path of {} bytes is longer than {MAX_PATH_BYTES}",
                path.len()
            )));
        }
        let root = (RECORD_ROOT, FileKind::Dir);
        let mut node = root;
        let mut parents = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => continue,
                ".." => {
                    node = parents.pop().unwrap_or(root);
                    continue;
                }
                _ => {}
            }
            if node.1 != FileKind::Dir {
                return Err(FsError::NotADirectory(path.to_string()));
            }
            let children = self.list(node.0).map_err(|e| match e {
                FsError::NotADirectory(_) => FsError::NotADirectory(path.to_string()),
                e => e,
            })?;
            let want: Vec<u16> = part.encode_utf16().collect();
            let found = children
                .iter()
                .find(|c| c.units == want)
                .or_else(|| children.iter().find(|c| self.upcase.eq(&c.units, &want)))
                .ok_or_else(|| FsError::NotFound(path.to_string()))?;
            parents.push(std::mem::replace(&mut node, (found.file_ref, found.kind)));
        }
        Ok(node)
    }
}

/// One directory listing in progress: the B-tree is walked in order, each index
/// block visited at most once.
struct Walk<'a> {
    fs: &'a NtfsFs,
    alloc: Option<&'a Stream>,
    block_size: u64,
    visited: HashSet<u64>,
    out: Vec<Child>,
}

impl Walk<'_> {
    fn node(&mut self, entries: &[index::Entry], depth: usize) -> Result<(), FsError> {
        if depth > MAX_INDEX_DEPTH {
            return Err(corrupt("directory index deeper than any real one".into()));
        }
        for e in entries {
            if let Some(vcn) = e.child {
                let block = self.block(vcn)?;
                self.node(&block, depth + 1)?;
            }
            let Some(name) = &e.name else { continue };
            let record = e.file_ref & 0x0000_ffff_ffff_ffff;
            if name.is_dos_only() || record < FIRST_USER_RECORD {
                continue;
            }
            if self.out.len() >= MAX_DIR_ENTRIES {
                return Ok(());
            }
            let reparse = name.flags & index::FILE_ATTR_REPARSE != 0;
            let kind = if reparse && matches!(name.reparse_tag, TAG_SYMLINK | TAG_MOUNT_POINT) {
                FileKind::Symlink
            } else if name.is_dir() {
                FileKind::Dir
            } else {
                FileKind::File
            };
            self.out.push(Child {
                name: String::from_utf16_lossy(&name.name),
                units: name.name.clone(),
                file_ref: e.file_ref,
                kind,
            });
        }
        Ok(())
    }

    /// The entries of the index block at `vcn`.
    fn block(&mut self, vcn: u64) -> Result<Vec<index::Entry>, FsError> {
        if !self.visited.insert(vcn) {
            return Err(corrupt(format!(
                "directory index block {vcn} is reached twice (a cycle)"
            )));
        }
        if self.visited.len() > MAX_INDEX_BLOCKS {
            return Err(corrupt("directory index has too many blocks".into()));
        }
        let alloc = self.alloc.ok_or_else(|| {
            corrupt("index entry has a child but there is no $INDEX_ALLOCATION".into())
        })?;
        let bs = self.block_size;
        if !(512..=boot::MAX_RECORD_SIZE).contains(&bs) || !bs.is_power_of_two() {
            return Err(corrupt(format!("index block size {bs}")));
        }
        // Block VCNs count clusters, or 512-byte units when blocks are smaller.
        let unit = if bs >= self.fs.boot.cluster_size {
            self.fs.boot.cluster_size
        } else {
            512
        };
        let offset = vcn
            .checked_mul(unit)
            .ok_or_else(|| corrupt(format!("index block VCN {vcn}")))?;
        let mut b = vec![0u8; bs as usize];
        self.fs.read_at(alloc, offset, &mut b)?;
        record::apply_fixups(&mut b, b"INDX", &format!("index block {vcn}"))?;
        index::parse_node(&b, 0x18)
    }
}

impl FileSystem for NtfsFs {
    fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let (file_ref, kind) = self.resolve(path)?;
        let f = self.file(file_ref)?;
        let size = match kind {
            FileKind::Symlink => self.read_link(path).map(|t| t.len() as u64).unwrap_or(0),
            FileKind::Dir => self
                .stream_of(&f.attrs, attr::INDEX_ALLOCATION, "$I30")?
                .map_or(0, |s| s.data_size),
            _ => self
                .stream_of(&f.attrs, attr::DATA, "")?
                .map_or(0, |s| s.data_size),
        };
        let mode = match kind {
            FileKind::Dir => 0o755,
            FileKind::Symlink => 0o777,
            _ => 0o644,
        };
        Ok(Metadata {
            kind,
            size,
            mode,
            uid: 0,
            gid: 0,
            times: Default::default(),
        })
    }

    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let (file_ref, kind) = self.resolve(path)?;
        if kind != FileKind::Dir {
            return Err(FsError::NotADirectory(path.to_string()));
        }
        Ok(self
            .list(file_ref)?
            .iter()
            .map(|c| DirEntry {
                name: c.name.clone(),
                kind: c.kind,
            })
            .collect())
    }

    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let (file_ref, kind) = self.resolve(path)?;
        if kind == FileKind::Dir {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        let f = self.file(file_ref)?;
        match f.reparse_tag() {
            Some(TAG_WOF) => {
                return Err(unsupported(format!(
                    "{path}: compressed by WOF/CompactOS (XPRESS or LZX), which is not supported"
                )))
            }
            Some(TAG_DEDUP) => {
                return Err(unsupported(format!(
                    "{path}: stored by Data Deduplication, which is not supported"
                )))
            }
            _ => {}
        }
        let s = self
            .stream_of(&f.attrs, attr::DATA, "")
            .map_err(|e| match e {
                FsError::Corrupt { fs, message } => FsError::Corrupt {
                    fs,
                    message: format!("{path}: {message}"),
                },
                FsError::Unsupported { fs, message } => FsError::Unsupported {
                    fs,
                    message: format!("{path}: {message}"),
                },
                e => e,
            })?
            .ok_or_else(|| corrupt(format!("{path}: no $DATA attribute")))?;
        self.read_all(&s, limit, path)
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        let (file_ref, kind) = self.resolve(path)?;
        if kind != FileKind::Symlink {
            return Err(FsError::NotASymlink(path.to_string()));
        }
        let f = self.file(file_ref)?;
        let s = self
            .stream_of(&f.attrs, attr::REPARSE_POINT, "")?
            .ok_or_else(|| corrupt(format!("{path}: no reparse point")))?;
        let v = self.read_all(&s, MAX_REPARSE_BYTES, path)?;
        reparse_target(&v).ok_or_else(|| corrupt(format!("{path}: malformed reparse point")))
    }
}

/// The target of a symlink or junction reparse point, with `/` separators. Absolute
/// targets keep their drive (`C:/...`) so they never resolve inside this volume.
fn reparse_target(v: &[u8]) -> Option<String> {
    let tag = le32(v, 0);
    let (buf, relative) = match tag {
        TAG_SYMLINK => (20usize, le32(v, 16) & SYMLINK_RELATIVE != 0),
        TAG_MOUNT_POINT => (16usize, false),
        _ => return None,
    };
    let (sub_off, sub_len) = (usize::from(le16(v, 8)), usize::from(le16(v, 10)));
    let (print_off, print_len) = (usize::from(le16(v, 12)), usize::from(le16(v, 14)));
    let (off, len) = if print_len > 0 {
        (print_off, print_len)
    } else {
        (sub_off, sub_len)
    };
    let units = attr::utf16_at(v, buf.checked_add(off)?, len / 2)?;
    let mut t = String::from_utf16_lossy(&units);
    if !relative {
        if let Some(rest) = t.strip_prefix("\\??\\") {
            t = rest.to_string();
        }
    }
    Some(t.replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reparse_targets() {
        let name: Vec<u8> = "..\\a\\b"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut v = vec![0u8; 20];
        v[0..4].copy_from_slice(&TAG_SYMLINK.to_le_bytes());
        v[10..12].copy_from_slice(&(name.len() as u16).to_le_bytes());
        v[14..16].copy_from_slice(&(name.len() as u16).to_le_bytes());
        v[16] = 1;
        v.extend(&name);
        assert_eq!(reparse_target(&v).as_deref(), Some("../a/b"));
        let name: Vec<u8> = "\\??\\C:\\Users"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut j = vec![0u8; 16];
        j[0..4].copy_from_slice(&TAG_MOUNT_POINT.to_le_bytes());
        j[10..12].copy_from_slice(&(name.len() as u16).to_le_bytes());
        j.extend(&name);
        assert_eq!(reparse_target(&j).as_deref(), Some("C:/Users"));
        assert_eq!(reparse_target(&j[..20]), None);
    }
}
