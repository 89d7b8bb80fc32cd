//! Directory data blocks, the blocks that hold the entries of every directory bigger
//! than short form: the single block of a block-format directory (entries, then a leaf
//! of hashes and a tail) and the data blocks of leaf- and node-format directories (only
//! entries; their hash leaves and free-space index live in other address ranges of the
//! fork and are not needed to list or look up a name).
//!
//! Entries are 8-byte aligned: inode number, name length, name, file type (with
//! `ftype`), then a 2-byte tag; unused space is a run marked 0xffff with its length.

use super::dir::Entry;
use super::superblock::Superblock;
use super::{corrupt, verify_crc};
use crate::inspect::bytes::{array, be16, be32, be64, field};
use crate::inspect::fs::FsError;

const BLOCK_V4: &[u8; 4] = b"XD2B";
const DATA_V4: &[u8; 4] = b"XD2D";
const BLOCK_V5: &[u8; 4] = b"XDB3";
const DATA_V5: &[u8; 4] = b"XDD3";
const HEADER_V4: usize = 16;
const HEADER_V5: usize = 64;
const CRC_OFFSET: usize = 4;
const FREE_TAG: u16 = 0xffff;

/// Calls `f` for each entry of one directory block of directory `ino` (never `.` or
/// `..`); `f` returns false to stop, and so does this function then.
pub(super) fn for_each(
    block: &[u8],
    sb: &Superblock,
    ino: u64,
    dblock: u64,
    f: &mut dyn FnMut(Entry) -> bool,
) -> Result<bool, FsError> {
    let here = format!("directory {ino}: block {dblock}");
    let magic = array::<4>(block, 0);
    let (header, is_block) = match (sb.crc(), &magic) {
        (false, m) if m == BLOCK_V4 => (HEADER_V4, true),
        (false, m) if m == DATA_V4 => (HEADER_V4, false),
        (true, m) if m == BLOCK_V5 => (HEADER_V5, true),
        (true, m) if m == DATA_V5 => (HEADER_V5, false),
        _ => return Err(corrupt(format!("{here}: bad magic"))),
    };
    if sb.crc() {
        verify_crc(block, CRC_OFFSET, &here)?;
        if be64(block, 40) != ino || array::<16>(block, 24) != sb.meta_uuid {
            return Err(corrupt(format!(
                "{here}: owned by another inode or filesystem"
            )));
        }
    }
    let end = if is_block {
        // Tail: leaf entry count and stale count; the leaf entries sit just before it.
        let count = u64::from(be32(block, block.len() - 8));
        let leaf = count
            .checked_mul(8)
            .and_then(|l| l.checked_add(8))
            .filter(|&l| l <= (block.len() - header) as u64)
            .ok_or_else(|| corrupt(format!("{here}: leaf of {count} entries too big")))?;
        block.len() - leaf as usize
    } else {
        block.len()
    };
    let mut pos = header;
    while pos < end {
        if be16(block, pos) == FREE_TAG {
            let len = usize::from(be16(block, pos + 2));
            if len < 8 || len % 8 != 0 || pos + len > end {
                return Err(corrupt(format!(
                    "{here}: free space of {len} bytes at {pos}"
                )));
            }
            pos += len;
            continue;
        }
        let child = be64(block, pos);
        let namelen = usize::from(block.get(pos + 8).copied().unwrap_or(0));
        let size = (8 + 1 + namelen + usize::from(sb.ftype) + 2).next_multiple_of(8);
        if namelen == 0 || pos + size > end {
            return Err(corrupt(format!("{here}: entry at {pos} runs past the end")));
        }
        let name = field(block, pos + 9, namelen);
        if name != b"." && name != b".." {
            let entry = Entry {
                name: name.to_vec(),
                ino: child,
                ftype: sb.ftype.then(|| block[pos + 9 + namelen]),
            };
            if !f(entry) {
                return Ok(false);
            }
        }
        pos += size;
    }
    Ok(true)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::inspect::crc32c;

    /// A v5 block-format directory block of `size` bytes for directory `ino` holding
    /// `.`, `..` and `names` with their inode numbers, ftype on (all regular files).
    pub fn block_dir(sb: &Superblock, ino: u64, size: usize, names: &[(&str, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[..4].copy_from_slice(BLOCK_V5);
        b[24..40].copy_from_slice(&sb.meta_uuid);
        b[40..48].copy_from_slice(&ino.to_be_bytes());
        let mut pos = HEADER_V5;
        let all: Vec<(&str, u64)> = [(".", ino), ("..", ino)]
            .into_iter()
            .chain(names.iter().copied())
            .collect();
        for (name, child) in &all {
            b[pos..pos + 8].copy_from_slice(&child.to_be_bytes());
            b[pos + 8] = name.len() as u8;
            b[pos + 9..pos + 9 + name.len()].copy_from_slice(name.as_bytes());
            b[pos + 9 + name.len()] = 1;
            pos += (12 + name.len()).next_multiple_of(8);
        }
        let count = all.len();
        let leaf = size - 8 - count * 8;
        b[pos..pos + 2].copy_from_slice(&FREE_TAG.to_be_bytes());
        b[pos + 2..pos + 4].copy_from_slice(&((leaf - pos) as u16).to_be_bytes());
        b[size - 8..size - 4].copy_from_slice(&(count as u32).to_be_bytes());
        let crc = crc32c::checksum(&b);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn lists_a_block_and_catches_damage() {
        let sb = Superblock::parse(&super::super::superblock::tests::sector()).unwrap();
        let b = block_dir(&sb, 128, 4096, &[("one", 1000), ("two_longer_name", 1001)]);
        let mut names = Vec::new();
        for_each(&b, &sb, 128, 0, &mut |e| {
            names.push((String::from_utf8(e.name).unwrap(), e.ino));
            true
        })
        .unwrap();
        assert_eq!(
            names,
            [
                ("one".to_string(), 1000),
                ("two_longer_name".to_string(), 1001)
            ]
        );
        assert!(for_each(&b, &sb, 129, 0, &mut |_| true).is_err(), "owner");
        let mut bad = b.clone();
        bad[100] ^= 4;
        let err = for_each(&bad, &sb, 128, 0, &mut |_| true).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
