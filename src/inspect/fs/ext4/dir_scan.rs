//! Our own read of a directory's entries (name to inode number), straight from the device.
//!
//! ext4-view 1.0 (the newest release, pinned) shows the inode number of an opened
//! regular file only (in its `File` debug output) and none for a directory or a
//! symlink. But a directory or a long symlink has an extent tree too, and ext4-view walks
//! it just as blindly (see [`extent_check`](super::extent_check)) whenever it looks a name
//! up in the directory or reads the link. So the worker resolves each path component's
//! inode number itself, with this scan of the parent directory, and checks its extent
//! tree before ext4-view touches it.
//!
//! The scan is linear over every data block of the directory: an htree directory's
//! index blocks hold only empty entries (inode 0) there, so its names are found the
//! same way. The directory's size is bounded by the caller.
//!
//! Limit: the device as written is read, without the journal ext4-view may replay in
//! memory; a name only the journal holds is not found here (the caller then leaves that
//! component unchecked).

use crate::inspect::bytes::{le16, le32};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

use super::error_map::corrupt;
use super::extent_check::{self, Leaf};
use super::superblock;

/// Block numbers per inode of a block-mapped file: 12 direct, then single, double and
/// triple indirect.
const DIRECT: usize = 12;

/// Calls `found(name, inode)` for each entry of directory inode `inode`, whose extent
/// tree is checked on the way; stops early when `found` returns `false`.
pub(super) fn scan(
    src: &dyn ReadAt,
    block_size: u64,
    inode: u64,
    max_bytes: u64,
    found: &mut dyn FnMut(&[u8], u64) -> bool,
) -> Result<(), FsError> {
    let raw = superblock::read_inode(src, inode)?;
    let size = u64::from(le32(&raw, 0x4)) | u64::from(le32(&raw, 0x6c)) << 32;
    if size > max_bytes {
        return Err(corrupt(format!(
            "inode {inode}: directory of {size} bytes is larger than {max_bytes}"
        )));
    }
    let blocks = size.div_ceil(block_size);
    let physical: Vec<u64> = match extent_check::walk(src, block_size, inode, &raw)? {
        Some(leaves) => from_extents(&leaves, blocks),
        None => block_map(src, block_size, &raw, blocks)?,
    };
    let mut block = vec![0u8; block_size as usize];
    for at in physical {
        let offset = at
            .checked_mul(block_size)
            .ok_or_else(|| corrupt(format!("inode {inode}: block {at} overflows")))?;
        src.read_exact_at(offset, &mut block)?;
        if !entries(&block, found) {
            return Ok(());
        }
    }
    Ok(())
}

/// Device blocks of the first `blocks` file blocks that have data (unwritten extents and
/// holes read as zeros: no entries). At most `blocks` in all, however the leaves overlap.
fn from_extents(leaves: &[Leaf], blocks: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for l in leaves.iter().filter(|l| !l.unwritten) {
        let start = u64::from(l.logical);
        let end = (start + u64::from(l.len)).min(blocks);
        for b in start..end {
            if out.len() as u64 >= blocks {
                return out;
            }
            out.push(l.physical.saturating_add(b - start));
        }
    }
    out
}

/// Device blocks of the first `blocks` file blocks of an ext2/3 block-mapped inode
/// (0 is a hole and is skipped).
fn block_map(
    src: &dyn ReadAt,
    block_size: u64,
    raw: &[u8],
    blocks: u64,
) -> Result<Vec<u64>, FsError> {
    let mut out = Vec::new();
    let slots: Vec<u32> = (0..15).map(|i| le32(raw, 0x28 + 4 * i)).collect();
    let mut left = blocks;
    for &b in &slots[..DIRECT] {
        if left == 0 {
            return Ok(out);
        }
        left -= 1;
        if b != 0 {
            out.push(u64::from(b));
        }
    }
    for (level, &b) in slots[DIRECT..].iter().enumerate() {
        indirect(src, block_size, b, level as u32, &mut left, &mut out)?;
    }
    Ok(out)
}

/// The data blocks below indirect block `b` at `level` (0: it lists data blocks).
fn indirect(
    src: &dyn ReadAt,
    block_size: u64,
    b: u32,
    level: u32,
    left: &mut u64,
    out: &mut Vec<u64>,
) -> Result<(), FsError> {
    let per_block = block_size / 4;
    if *left == 0 {
        return Ok(());
    }
    if b == 0 {
        // A hole: skip what it would have covered.
        *left = left.saturating_sub(per_block.saturating_pow(level + 1));
        return Ok(());
    }
    let mut table = vec![0u8; block_size as usize];
    src.read_exact_at(u64::from(b) * block_size, &mut table)?;
    for i in 0..per_block as usize {
        let child = le32(&table, i * 4);
        if level == 0 {
            if *left == 0 {
                break;
            }
            *left -= 1;
            if child != 0 {
                out.push(u64::from(child));
            }
        } else {
            indirect(src, block_size, child, level - 1, left, out)?;
        }
    }
    Ok(())
}

/// Calls `found` for each live entry of one directory block; `false` once it asked to
/// stop. A damaged record ends the block (as the kernel skips the rest of it).
fn entries(block: &[u8], found: &mut dyn FnMut(&[u8], u64) -> bool) -> bool {
    let mut pos = 0usize;
    while pos + 8 <= block.len() {
        let inode = le32(block, pos);
        let rec_len = usize::from(le16(block, pos + 4));
        let name_len = usize::from(block[pos + 6]);
        if rec_len < 8 || pos + rec_len > block.len() {
            break;
        }
        if inode != 0 && name_len > 0 && 8 + name_len <= rec_len {
            let name = &block[pos + 8..pos + 8 + name_len];
            if !found(name, u64::from(inode)) {
                return false;
            }
        }
        pos += rec_len;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(inode: u32, name: &[u8], rec_len: u16) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend(inode.to_le_bytes());
        r.extend(rec_len.to_le_bytes());
        r.push(name.len() as u8);
        r.push(1);
        r.extend(name);
        r.resize(rec_len as usize, 0);
        r
    }

    #[test]
    fn entries_are_read_and_damage_ends_the_block() {
        let mut block = [
            record(2, b".", 12),
            record(0, b"gone", 16),
            record(12, b"etc", 12),
        ]
        .concat();
        block.extend(record(13, b"os-release", 1024 - block.len() as u16));
        let mut seen = Vec::new();
        assert!(entries(&block, &mut |n, i| {
            seen.push((n.to_vec(), i));
            true
        }));
        assert_eq!(
            seen,
            vec![
                (b".".to_vec(), 2),
                (b"etc".to_vec(), 12),
                (b"os-release".to_vec(), 13)
            ]
        );
        // A record length of zero would never advance.
        block[12 + 4..12 + 6].copy_from_slice(&0u16.to_le_bytes());
        let mut count = 0;
        entries(&block, &mut |_, _| {
            count += 1;
            true
        });
        assert_eq!(count, 1);
    }

    #[test]
    fn extents_give_blocks_within_the_size() {
        let leaves = [
            Leaf {
                logical: 0,
                len: 2,
                physical: 100,
                unwritten: false,
            },
            Leaf {
                logical: 2,
                len: 5,
                physical: 200,
                unwritten: false,
            },
            Leaf {
                logical: 7,
                len: 1,
                physical: 300,
                unwritten: true,
            },
        ];
        assert_eq!(from_extents(&leaves, 3), vec![100, 101, 200]);
    }
}
