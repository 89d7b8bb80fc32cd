//! A file's extent map: the packed 128-bit extent records of the data fork (in the
//! inode, or in the leaves of its B+tree), decoded, checked and sorted, and reads of a
//! logical byte range through it. Holes and unwritten (preallocated) extents read as
//! zeros, as the kernel returns them.

use std::collections::HashSet;

use super::btree::{self, MAX_LEVELS};
use super::inode::{Format, Inode};
use super::superblock::Superblock;
use super::{corrupt, unsupported};
use crate::inspect::bytes::be64;
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

/// Most extents one map holds (40 bytes each in memory). Far above any real file's
/// count that we would read; a larger claim is refused, not allocated.
pub(super) const MAX_EXTENTS: u64 = 1 << 18;
/// Most B+tree blocks one map walk reads.
const MAX_TREE_BLOCKS: usize = 1 << 16;
/// File offsets are 54-bit block numbers, of at most 2^63 bytes: with 512-byte blocks
/// the full 54 bits, fewer with larger blocks.
const MAX_FILE_BLOCK: u64 = 1 << 54;

/// One mapped run of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    /// First file block.
    pub off: u64,
    /// Length in blocks.
    pub len: u64,
    /// Byte offset of the run on the device (checked at decode time).
    pub phys: u64,
    /// Allocated but never written (preallocated): reads as zeros.
    pub unwritten: bool,
}

/// Decodes one record: flag (1 bit), file offset (54), start block (52), length (21).
fn decode(rec: &[u8], sb: &Superblock, ino: u64) -> Result<Extent, FsError> {
    let l0 = be64(rec, 0);
    let l1 = be64(rec, 8);
    let unwritten = l0 >> 63 != 0;
    let off = (l0 & 0x7fff_ffff_ffff_ffff) >> 9;
    let fsb = ((l0 & 0x1ff) << 43) | (l1 >> 21);
    let len = l1 & 0x1f_ffff;
    // File byte offsets must fit in 63 bits (as the kernel's loff_t).
    if len == 0 || off + len > MAX_FILE_BLOCK >> sb.block_log.saturating_sub(9) {
        return Err(corrupt(format!(
            "inode {ino}: extent at file block {off} of {len} blocks"
        )));
    }
    let phys = sb
        .extent_offset(fsb, len)
        .map_err(|e| corrupt(format!("inode {ino}: {e}")))?;
    Ok(Extent {
        off,
        len,
        phys,
        unwritten,
    })
}

/// The extents of an inode's data fork, sorted by file offset and non-overlapping.
#[derive(Debug, Default)]
pub(super) struct ExtentMap {
    pub extents: Vec<Extent>,
}

impl ExtentMap {
    /// Builds the map of `inode` (extents or B+tree format).
    pub fn read(src: &dyn ReadAt, sb: &Superblock, inode: &Inode) -> Result<ExtentMap, FsError> {
        let ino = inode.ino;
        if inode.nextents > MAX_EXTENTS {
            return Err(unsupported(format!(
                "inode {ino}: {} extents, more than the {MAX_EXTENTS} read",
                inode.nextents
            )));
        }
        let mut extents = Vec::new();
        match inode.format {
            Format::Extents => {
                let n = inode.nextents as usize;
                if n * 16 > inode.fork.len() {
                    return Err(corrupt(format!(
                        "inode {ino}: {n} extent records do not fit in the inode"
                    )));
                }
                for rec in inode.fork[..n * 16].chunks_exact(16) {
                    extents.push(decode(rec, sb, ino)?);
                }
            }
            Format::Btree => walk(src, sb, inode, &mut extents)?,
            Format::Local | Format::Dev => {}
        }
        if extents.len() as u64 != inode.nextents {
            return Err(corrupt(format!(
                "inode {ino}: states {} extents, its B+tree holds {}",
                inode.nextents,
                extents.len()
            )));
        }
        extents.sort_by_key(|e| e.off);
        for w in extents.windows(2) {
            if w[0].off + w[0].len > w[1].off {
                return Err(corrupt(format!(
                    "inode {ino}: extents overlap at file block {}",
                    w[1].off
                )));
            }
        }
        Ok(ExtentMap { extents })
    }

    /// Fills `buf` with the file's bytes from byte `start`: holes and unwritten extents
    /// are zeros.
    pub fn read_at(
        &self,
        src: &dyn ReadAt,
        sb: &Superblock,
        start: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        buf.fill(0);
        let end = start + buf.len() as u64;
        let bs = sb.block_size;
        // First extent that ends after `start`.
        let first = self
            .extents
            .partition_point(|e| (e.off + e.len) * bs <= start);
        for e in &self.extents[first..] {
            let (e_start, e_end) = (e.off * bs, (e.off + e.len) * bs);
            if e_start >= end {
                break;
            }
            if e.unwritten {
                continue;
            }
            let lo = e_start.max(start);
            let hi = e_end.min(end);
            let dst = &mut buf[(lo - start) as usize..(hi - start) as usize];
            src.read_exact_at(e.phys + (lo - e_start), dst)?;
        }
        Ok(())
    }

    /// Extents that start below file block `limit` (a directory's data space).
    pub fn below(&self, limit: u64) -> impl Iterator<Item = &Extent> {
        self.extents.iter().take_while(move |e| e.off < limit)
    }
}

/// Collects the leaf records of a B+tree data fork, depth first (left to right), with
/// each child one level below its parent, no block visited twice and a cap on blocks.
fn walk(
    src: &dyn ReadAt,
    sb: &Superblock,
    inode: &Inode,
    out: &mut Vec<Extent>,
) -> Result<(), FsError> {
    let ino = inode.ino;
    let root = btree::root(&inode.fork, ino)?;
    let mut stack: Vec<(u64, u16)> = root
        .children
        .iter()
        .rev()
        .map(|&c| (c, root.level - 1))
        .collect();
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; sb.block_size as usize];
    while let Some((fsb, level)) = stack.pop() {
        if !seen.insert(fsb) {
            return Err(corrupt(format!(
                "inode {ino}: extent B+tree block {fsb} is reached twice (a cycle)"
            )));
        }
        if seen.len() > MAX_TREE_BLOCKS || stack.len() > MAX_TREE_BLOCKS {
            return Err(unsupported(format!(
                "inode {ino}: extent B+tree of more than {MAX_TREE_BLOCKS} blocks"
            )));
        }
        let offset = sb
            .extent_offset(fsb, 1)
            .map_err(|e| corrupt(format!("inode {ino}: B+tree pointer: {e}")))?;
        src.read_exact_at(offset, &mut buf)?;
        let node = btree::block(&buf, sb, ino, Superblock::daddr(offset))?;
        if node.level != level || level >= MAX_LEVELS {
            return Err(corrupt(format!(
                "inode {ino}: extent B+tree block {fsb} at level {}, expected {level}",
                node.level
            )));
        }
        if level == 0 {
            for rec in node.records.chunks_exact(16) {
                if out.len() as u64 >= MAX_EXTENTS {
                    return Err(unsupported(format!(
                        "inode {ino}: more than {MAX_EXTENTS} extents"
                    )));
                }
                out.push(decode(rec, sb, ino)?);
            }
        } else {
            stack.extend(node.children.iter().rev().map(|&c| (c, level - 1)));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Encodes an extent record.
    pub fn record(off: u64, fsb: u64, len: u64, unwritten: bool) -> [u8; 16] {
        let l0 = (u64::from(unwritten) << 63) | (off << 9) | (fsb >> 43);
        let l1 = (fsb << 21) | len;
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&l0.to_be_bytes());
        r[8..].copy_from_slice(&l1.to_be_bytes());
        r
    }

    #[test]
    fn decodes_records() {
        let sb = Superblock::parse(&super::super::superblock::tests::sector()).unwrap();
        let e = decode(&record(7, (1 << 10) | 20, 3, true), &sb, 1).unwrap();
        assert_eq!(
            e,
            Extent {
                off: 7,
                len: 3,
                phys: 1020 * 4096,
                unwritten: true
            }
        );
        assert!(decode(&record(0, 5000, 1, false), &sb, 1).is_err());
        assert!(decode(&record(0, 20, 0, false), &sb, 1).is_err());
    }
}
