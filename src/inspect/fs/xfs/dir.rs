//! A directory, whatever its layout: short form (inside the inode), block (one
//! directory block holding entries and hashes), leaf or node (several data blocks, plus
//! hash leaves and a free index at higher offsets). Every layout keeps its entries in
//! the data fork's first 32 GiB (the data space), so listing and lookup read only the
//! data blocks there, in order.

use super::bmap::ExtentMap;
use super::inode::{Format, Inode};
use super::superblock::Superblock;
use super::{corrupt, dir_data, dir_sf, unsupported};
use crate::inspect::fs::{FileKind, FsError};
use crate::inspect::source::ReadAt;

/// Byte offset where the hash leaves start: the end of the data space.
const LEAF_OFFSET: u64 = 1 << 35;
/// Most directory bytes read for one listing or lookup (entries of up to ~4 million
/// names); a bigger claim is refused.
const MAX_DIR_BYTES: u64 = 256 << 20;

/// One name of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// The `ftype` byte when the filesystem records it.
    pub ftype: Option<u8>,
}

impl Entry {
    /// The kind from the file type byte, `None` without `ftype` (the inode says).
    pub fn kind(&self) -> Option<FileKind> {
        self.ftype.map(|t| match t {
            1 => FileKind::File,
            2 => FileKind::Dir,
            7 => FileKind::Symlink,
            _ => FileKind::Other,
        })
    }
}

/// Calls `f` for each entry of directory `dir` (never `.` or `..`) until it returns
/// false.
pub(super) fn for_each(
    src: &dyn ReadAt,
    sb: &Superblock,
    dir: &Inode,
    f: &mut dyn FnMut(Entry) -> bool,
) -> Result<(), FsError> {
    let ino = dir.ino;
    match dir.format {
        Format::Local => dir_sf::for_each(&dir.fork, dir.size, sb.ftype, ino, f),
        Format::Extents | Format::Btree => {
            let map = ExtentMap::read(src, sb, dir)?;
            let bsize = sb.dir_block_size();
            let fsbs = 1u64 << sb.dir_blk_log;
            let leaf_fsb = LEAF_OFFSET >> sb.block_log;
            let mut buf = vec![0u8; bsize as usize];
            let mut last: Option<u64> = None;
            let mut read = 0u64;
            for e in map.below(leaf_fsb) {
                let first = e.off / fsbs;
                let end = (e.off + e.len).min(leaf_fsb).div_ceil(fsbs);
                for db in first..end {
                    if last.is_some_and(|l| db <= l) {
                        continue;
                    }
                    last = Some(db);
                    read += bsize;
                    if read > MAX_DIR_BYTES {
                        return Err(unsupported(format!(
                            "directory {ino}: more than {MAX_DIR_BYTES} bytes of entries"
                        )));
                    }
                    map.read_at(src, sb, db * bsize, &mut buf)?;
                    if !dir_data::for_each(&buf, sb, ino, db, f)? {
                        return Ok(());
                    }
                }
            }
            Ok(())
        }
        Format::Dev => Err(corrupt(format!("directory {ino} has a device data fork"))),
    }
}
