//! The btrfs key: (objectid, type, offset), the sort order of every tree.

use crate::inspect::bytes::le64;

/// One key; ordered field by field, as the trees sort them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub objectid: u64,
    pub ty: u8,
    pub offset: u64,
}

impl Key {
    /// On-disk size (packed little-endian).
    pub const SIZE: usize = 17;

    pub const fn new(objectid: u64, ty: u8, offset: u64) -> Key {
        Key {
            objectid,
            ty,
            offset,
        }
    }

    /// Decodes the first 17 bytes of `b`, if there are that many.
    pub fn parse(b: &[u8]) -> Option<Key> {
        if b.len() < Key::SIZE {
            return None;
        }
        Some(Key {
            objectid: le64(b, 0),
            ty: b[8],
            offset: le64(b, 9),
        })
    }

    #[cfg(test)]
    pub fn to_bytes(self) -> [u8; 17] {
        let mut b = [0u8; 17];
        b[..8].copy_from_slice(&self.objectid.to_le_bytes());
        b[8] = self.ty;
        b[9..].copy_from_slice(&self.offset.to_le_bytes());
        b
    }
}
