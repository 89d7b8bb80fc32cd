//! Blocks of the extent-map B+tree (bmbt): a long-format B+tree block header, then
//! either extent records (level 0) or keys and child pointers; and the tree's root,
//! which lives inside the inode's data fork with a shorter header.
//!
//! Only the bmbt is read: files and directories need their extent maps, while inodes
//! are found by number arithmetic, so the inode and free-space B+trees are never walked.

use super::superblock::Superblock;
use super::{corrupt, verify_crc};
use crate::inspect::bytes::{array, be16, be64};
use crate::inspect::fs::FsError;

const MAGIC_V4: &[u8; 4] = b"BMAP";
const MAGIC_V5: &[u8; 4] = b"BMA3";
/// Header of a long-format B+tree block: v4 and v5 (with CRC, owner and self address).
const HEADER_V4: usize = 24;
const HEADER_V5: usize = 72;
const CRC_OFFSET: usize = 64;
/// Header of the root inside the inode: level and record count.
const ROOT_HEADER: usize = 4;
/// Deepest tree accepted (the kernel's bound is 9 with nrext64; more is corruption).
pub(super) const MAX_LEVELS: u16 = 12;

/// One node or leaf, with its records located.
#[derive(Debug)]
pub(super) struct Node<'a> {
    pub level: u16,
    /// Extent records (level 0): 16 bytes each.
    pub records: &'a [u8],
    /// Child block numbers (level > 0).
    pub children: Vec<u64>,
}

/// Parses the root held in an inode's data fork.
pub(super) fn root(fork: &[u8], ino: u64) -> Result<Node<'_>, FsError> {
    let level = be16(fork, 0);
    let numrecs = usize::from(be16(fork, 2));
    if level == 0 || level > MAX_LEVELS {
        return Err(corrupt(format!(
            "inode {ino}: extent B+tree root at level {level}"
        )));
    }
    // Keys and pointers are 8 bytes each; the pointers start after the largest number
    // of keys the fork could hold.
    let max = (fork.len().saturating_sub(ROOT_HEADER)) / 16;
    node(fork, ROOT_HEADER, level, numrecs, max, ino)
}

/// Parses a non-root block read from `daddr` (512-byte units) for inode `ino`.
pub(super) fn block<'a>(
    buf: &'a [u8],
    sb: &Superblock,
    ino: u64,
    daddr: u64,
) -> Result<Node<'a>, FsError> {
    let (magic, header) = if sb.crc() {
        (MAGIC_V5, HEADER_V5)
    } else {
        (MAGIC_V4, HEADER_V4)
    };
    let here = format!("inode {ino}: extent B+tree block at sector {daddr}");
    if &array::<4>(buf, 0) != magic {
        return Err(corrupt(format!("{here}: bad magic")));
    }
    if sb.crc() {
        verify_crc(buf, CRC_OFFSET, &here)?;
        if be64(buf, 24) != daddr || be64(buf, 56) != ino || array::<16>(buf, 40) != sb.meta_uuid {
            return Err(corrupt(format!(
                "{here}: belongs elsewhere (address, owner or UUID differ)"
            )));
        }
    }
    let level = be16(buf, 4);
    let numrecs = usize::from(be16(buf, 6));
    if level > MAX_LEVELS {
        return Err(corrupt(format!("{here}: level {level}")));
    }
    let max = (buf.len() - header) / 16;
    node(buf, header, level, numrecs, max, ino)
}

fn node(
    buf: &[u8],
    header: usize,
    level: u16,
    numrecs: usize,
    max: usize,
    ino: u64,
) -> Result<Node<'_>, FsError> {
    if numrecs > max {
        return Err(corrupt(format!(
            "inode {ino}: extent B+tree block claims {numrecs} records, room for {max}"
        )));
    }
    if level == 0 {
        return Ok(Node {
            level,
            records: &buf[header..header + numrecs * 16],
            children: Vec::new(),
        });
    }
    let ptrs = header + max * 8;
    let children = (0..numrecs).map(|i| be64(buf, ptrs + i * 8)).collect();
    Ok(Node {
        level,
        records: &[],
        children,
    })
}
