//! A tree block: a header, then either leaf items (key, offset, size, with their data at
//! the block's end) or, in internal nodes, key pointers to children one level down.

use crate::inspect::bytes::{array, le32, le64};
use crate::inspect::crc32c;
use crate::inspect::fs::FsError;

use super::corrupt;
use super::key::Key;
use super::superblock::CSUM_CRC32C;

pub const HEADER_SIZE: usize = 101;
const ITEM_SIZE: usize = 25;
const PTR_SIZE: usize = 33;
/// Trees are at most 8 levels deep (BTRFS_MAX_LEVEL).
pub const MAX_LEVEL: u8 = 7;

/// A parsed, verified tree block.
#[derive(Debug)]
pub struct Node {
    pub level: u8,
    /// Leaf: (key, data range in `data`); empty for internal nodes.
    pub items: Vec<(Key, std::ops::Range<usize>)>,
    /// Internal node: (first key, child logical address).
    pub ptrs: Vec<(Key, u64)>,
    pub data: Vec<u8>,
}

impl Node {
    /// Checks the block read at logical `bytenr` (checksum, address, fsid, counts) and
    /// indexes its items. Item data ranges are checked to lie inside the block.
    pub fn parse(
        data: Vec<u8>,
        bytenr: u64,
        csum_type: u16,
        fsid: &[u8; 16],
    ) -> Result<Node, FsError> {
        let bad = |m: String| corrupt(format!("tree block {bytenr:#x}: {m}"));
        if data.len() < HEADER_SIZE {
            return Err(bad("shorter than its header".into()));
        }
        if csum_type == CSUM_CRC32C && crc32c::checksum(&data[0x20..]) != le32(&data, 0) {
            return Err(bad("checksum mismatch".into()));
        }
        if le64(&data, 0x30) != bytenr {
            return Err(bad(format!("header says {:#x}", le64(&data, 0x30))));
        }
        if array::<16>(&data, 0x20) != *fsid {
            return Err(bad("belongs to another filesystem".into()));
        }
        let nritems = le32(&data, 0x60) as usize;
        let level = data[0x64];
        if level > MAX_LEVEL {
            return Err(bad(format!("level {level}")));
        }
        let body = data.len() - HEADER_SIZE;
        let mut items = Vec::new();
        let mut ptrs = Vec::new();
        if level == 0 {
            if nritems > body / ITEM_SIZE {
                return Err(bad(format!("{nritems} items")));
            }
            items.reserve(nritems);
            for i in 0..nritems {
                let at = HEADER_SIZE + i * ITEM_SIZE;
                let key = Key::parse(&data[at..]).ok_or_else(|| bad("truncated item".into()))?;
                let off = le32(&data, at + 17) as usize;
                let size = le32(&data, at + 21) as usize;
                let start = HEADER_SIZE + off;
                if items
                    .last()
                    .is_some_and(|(prev, _): &(Key, _)| *prev >= key)
                {
                    return Err(bad(format!("item {i} is out of order")));
                }
                match start.checked_add(size) {
                    Some(end) if end <= data.len() => items.push((key, start..end)),
                    _ => {
                        return Err(bad(format!(
                            "item {i} data at {off} of {size} bytes is outside the block"
                        )))
                    }
                }
            }
        } else {
            if nritems == 0 || nritems > body / PTR_SIZE {
                return Err(bad(format!("{nritems} pointers")));
            }
            ptrs.reserve(nritems);
            for i in 0..nritems {
                let at = HEADER_SIZE + i * PTR_SIZE;
                let key = Key::parse(&data[at..]).ok_or_else(|| bad("truncated pointer".into()))?;
                if ptrs
                    .last()
                    .is_some_and(|(prev, _): &(Key, u64)| *prev >= key)
                {
                    return Err(bad(format!("pointer {i} is out of order")));
                }
                ptrs.push((key, le64(&data, at + 17)));
            }
        }
        Ok(Node {
            level,
            items,
            ptrs,
            data,
        })
    }

    /// The data of item `i`.
    pub fn item_data(&self, i: usize) -> &[u8] {
        self.items
            .get(i)
            .and_then(|(_, r)| self.data.get(r.clone()))
            .unwrap_or(&[])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a checksummed leaf of `size` bytes with `items`.
    pub(crate) fn leaf(
        bytenr: u64,
        fsid: &[u8; 16],
        size: usize,
        items: &[(Key, Vec<u8>)],
    ) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[0x20..0x30].copy_from_slice(fsid);
        b[0x30..0x38].copy_from_slice(&bytenr.to_le_bytes());
        b[0x60..0x64].copy_from_slice(&(items.len() as u32).to_le_bytes());
        let mut end = size;
        for (i, (k, d)) in items.iter().enumerate() {
            end -= d.len();
            b[end..end + d.len()].copy_from_slice(d);
            let at = HEADER_SIZE + i * ITEM_SIZE;
            b[at..at + 17].copy_from_slice(&k.to_bytes());
            b[at + 17..at + 21].copy_from_slice(&((end - HEADER_SIZE) as u32).to_le_bytes());
            b[at + 21..at + 25].copy_from_slice(&(d.len() as u32).to_le_bytes());
        }
        seal(&mut b);
        b
    }

    /// Builds a checksummed internal node at `level`.
    pub(crate) fn internal(
        bytenr: u64,
        fsid: &[u8; 16],
        size: usize,
        level: u8,
        ptrs: &[(Key, u64)],
    ) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[0x20..0x30].copy_from_slice(fsid);
        b[0x30..0x38].copy_from_slice(&bytenr.to_le_bytes());
        b[0x60..0x64].copy_from_slice(&(ptrs.len() as u32).to_le_bytes());
        b[0x64] = level;
        for (i, (k, p)) in ptrs.iter().enumerate() {
            let at = HEADER_SIZE + i * PTR_SIZE;
            b[at..at + 17].copy_from_slice(&k.to_bytes());
            b[at + 17..at + 25].copy_from_slice(&p.to_le_bytes());
        }
        seal(&mut b);
        b
    }

    pub(crate) fn seal(b: &mut [u8]) {
        let crc = crc32c::checksum(&b[0x20..]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn leaf_items_and_checks() {
        let fsid = [7u8; 16];
        let k = Key::new(256, 1, 0);
        let b = leaf(4096, &fsid, 4096, &[(k, vec![1, 2, 3])]);
        let n = Node::parse(b.clone(), 4096, 0, &fsid).unwrap();
        assert_eq!(n.items[0].0, k);
        assert_eq!(n.item_data(0), &[1, 2, 3]);
        assert!(Node::parse(b.clone(), 8192, 0, &fsid).is_err());
        assert!(Node::parse(b.clone(), 4096, 0, &[0; 16]).is_err());
        let mut bad = b.clone();
        bad[200] ^= 1;
        assert!(Node::parse(bad, 4096, 0, &fsid).is_err());
        // An item whose data runs past the block.
        let mut bad = b;
        bad[HEADER_SIZE + 21..HEADER_SIZE + 25].copy_from_slice(&u32::MAX.to_le_bytes());
        seal(&mut bad);
        let err = Node::parse(bad, 4096, 0, &fsid).unwrap_err();
        assert!(err.to_string().contains("outside the block"), "{err}");
    }
}
