//! Our own walk of a file's extent tree, before ext4-view reads the file.
//!
//! ext4-view 1.0 walks an extent tree without remembering the nodes it visited, and
//! skips zero-length extents without reading anything. A hostile tree shaped as a DAG
//! (every index entry of every level pointing at the same child, depth 5, a leaf of
//! zero-length extents) then makes it visit 340^5 leaves, all from its block cache: no
//! read reaches the disk, so neither the read budget nor the cancel flag ever fires, and
//! the reader thread spins for ever.
//!
//! So before ext4-view reads a regular file, looks a name up in a directory or reads a
//! symlink stored in blocks, its tree is walked here from the raw device: each node block may appear once (a tree, not a DAG or a loop), every extent
//! has a length, the depth is at most 5 and at most [`MAX_NODES`] index nodes are
//! visited. The walk reads a few blocks per file (the root sits in the inode).
//!
//! Limit: the inode and the nodes are read from the device as written; metadata that
//! only a journal replay would bring is not seen (ext4-view replays in memory).

use std::collections::HashSet;

use crate::inspect::bytes::{le16, le32};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

use super::error_map::corrupt;
use super::superblock;

/// Most tree nodes visited for one file. A maximally fragmented 1 GiB file of 4 KiB
/// blocks needs about 800 leaves; a DAG would need billions.
pub(super) const MAX_NODES: usize = 4096;

const EXTENT_MAGIC: u16 = 0xf30a;
const EXTENTS_FL: u32 = 0x8_0000;
const MAX_DEPTH: u16 = 5;

/// One leaf extent: `len` blocks of the file from block `logical` on, stored from device
/// block `physical` (`len` already without the unwritten flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Leaf {
    pub logical: u32,
    pub len: u16,
    pub physical: u64,
    /// Preallocated, never written: reads as zeros.
    pub unwritten: bool,
}

/// Checks the extent tree of inode `inode`; a file mapped by block lists (ext2/3) has no
/// tree and passes (ext4-view bounds those walks by the file size).
pub(super) fn check(src: &dyn ReadAt, block_size: u64, inode: u64) -> Result<(), FsError> {
    let raw = superblock::read_inode(src, inode)?;
    walk(src, block_size, inode, &raw).map(|_| ())
}

/// Whether the raw inode maps its data with an extent tree.
pub(super) fn has_extents(raw: &[u8]) -> bool {
    le32(raw, 0x20) & EXTENTS_FL != 0
}

/// Checks the extent tree of the raw inode `raw` (number `inode`) and returns its leaf
/// extents (in no particular order); `None` for a file mapped by block lists.
pub(super) fn walk(
    src: &dyn ReadAt,
    block_size: u64,
    inode: u64,
    raw: &[u8],
) -> Result<Option<Vec<Leaf>>, FsError> {
    if !has_extents(raw) {
        return Ok(None);
    }
    let bad = |why: String| corrupt(format!("inode {inode}: extent tree: {why}"));
    let mut seen: HashSet<u64> = HashSet::new();
    let mut leaves = Vec::new();
    // (node bytes, depth the parent expects; None for the root)
    let mut stack: Vec<(Vec<u8>, Option<u16>)> = vec![(raw[0x28..0x28 + 60].to_vec(), None)];
    while let Some((node, expected)) = stack.pop() {
        if le16(&node, 0) != EXTENT_MAGIC {
            return Err(bad("node without the extent magic".into()));
        }
        let entries = usize::from(le16(&node, 2));
        let depth = le16(&node, 6);
        if depth > MAX_DEPTH || expected.is_some_and(|d| d != depth) {
            return Err(bad(format!(
                "node of depth {depth} where {expected:?} belongs"
            )));
        }
        if 12 + entries * 12 > node.len() {
            return Err(bad(format!(
                "{entries} entries do not fit in a node of {} bytes",
                node.len()
            )));
        }
        for i in 0..entries {
            let e = &node[12 + i * 12..24 + i * 12];
            if depth == 0 {
                let raw_len = le16(e, 4);
                if raw_len == 0 {
                    return Err(bad(format!(
                        "zero-length extent at file block {}",
                        le32(e, 0)
                    )));
                }
                let unwritten = raw_len > 32768;
                leaves.push(Leaf {
                    logical: le32(e, 0),
                    len: if unwritten { raw_len - 32768 } else { raw_len },
                    physical: u64::from(le32(e, 8)) | u64::from(le16(e, 6)) << 32,
                    unwritten,
                });
                continue;
            }
            let child = u64::from(le32(e, 4)) | u64::from(le16(e, 8)) << 32;
            if !seen.insert(child) {
                return Err(bad(format!(
                    "node block {child} is referenced twice (a loop or a shared subtree)"
                )));
            }
            if seen.len() > MAX_NODES {
                return Err(bad(format!("more than {MAX_NODES} nodes")));
            }
            let at = child
                .checked_mul(block_size)
                .ok_or_else(|| bad(format!("node block {child} overflows")))?;
            let mut block = vec![0u8; block_size as usize];
            src.read_exact_at(at, &mut block)?;
            stack.push((block, Some(depth - 1)));
        }
    }
    Ok(Some(leaves))
}

/// The inode number of a file ext4-view opened. ext4-view 1.0 (pinned) does not expose
/// it, but its `File` debug output is `File { inode: N, position: P, .. }`; a test below
/// fails if that ever changes.
pub(super) fn inode_of(file: &ext4_view::File) -> Option<u64> {
    let text = format!("{file:?}");
    let rest = text.split("inode: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    const B: usize = 1024;

    /// A 1 KiB-block image with inode 12 (inodes per group 16, inode table at block 5)
    /// whose root node is `root`, and node blocks written by the caller.
    fn image(root: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 64 * B];
        let sb = &mut img[1024..2048];
        sb[0x18..0x1c].copy_from_slice(&0u32.to_le_bytes());
        sb[0x28..0x2c].copy_from_slice(&16u32.to_le_bytes());
        // Group descriptor table at block 2: inode table at block 5.
        img[2 * B + 8..2 * B + 12].copy_from_slice(&5u32.to_le_bytes());
        let inode = 5 * B + 11 * 128;
        img[inode + 0x20..inode + 0x24].copy_from_slice(&EXTENTS_FL.to_le_bytes());
        img[inode + 0x28..inode + 0x28 + root.len()].copy_from_slice(root);
        img
    }

    fn header(entries: u16, depth: u16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(EXTENT_MAGIC.to_le_bytes());
        h.extend(entries.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend(depth.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        h
    }

    fn index(child: u32) -> Vec<u8> {
        let mut e = vec![0u8; 12];
        e[4..8].copy_from_slice(&child.to_le_bytes());
        e
    }

    fn leaf(len: u16) -> Vec<u8> {
        let mut e = vec![0u8; 12];
        e[4..6].copy_from_slice(&len.to_le_bytes());
        e[8..12].copy_from_slice(&40u32.to_le_bytes());
        e
    }

    fn check_root(root: Vec<u8>, nodes: &[(usize, Vec<u8>)]) -> Result<(), FsError> {
        let mut img = image(&root);
        for (block, bytes) in nodes {
            img[block * B..block * B + bytes.len()].copy_from_slice(bytes);
        }
        check(&MemSource(img), B as u64, 12)
    }

    #[test]
    fn trees_pass_dags_and_zero_lengths_fail() {
        // A depth-1 tree: root -> two leaves.
        let leaf_node = [header(1, 0), leaf(3)].concat();
        let root = [header(2, 1), index(20), index(21)].concat();
        let ok = check_root(root, &[(20, leaf_node.clone()), (21, leaf_node.clone())]);
        assert!(ok.is_ok(), "{ok:?}");
        // The same leaf twice: a DAG.
        let root = [header(2, 1), index(20), index(20)].concat();
        let e = check_root(root, &[(20, leaf_node)]).unwrap_err();
        assert!(e.to_string().contains("referenced twice"), "{e}");
        // A zero-length extent.
        let root = [header(1, 0), leaf(0)].concat();
        let e = check_root(root, &[]).unwrap_err();
        assert!(e.to_string().contains("zero-length"), "{e}");
        // A node pointing at itself, with the wrong depth.
        let root = [header(1, 1), index(20)].concat();
        let e = check_root(root, &[(20, [header(1, 1), index(20)].concat())]).unwrap_err();
        assert!(e.to_string().contains("depth"), "{e}");
    }
}
