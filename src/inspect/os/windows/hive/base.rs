//! The base block: the first 4 KiB of a hive or of a transaction log.

use crate::inspect::bytes::le32;

use super::{corrupt, HiveError};

pub(crate) const BASE_SIZE: usize = 4096;

/// The fields of a valid base block we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Base {
    pub seq1: u32,
    pub seq2: u32,
    /// Root key cell offset (relative to the first hive bin).
    pub root: u32,
    /// Bytes of hive bins data after the base block.
    pub bins_size: u32,
}

impl Base {
    /// Written partly: Windows bumps the first sequence number before writing and the
    /// second after.
    pub fn dirty(&self) -> bool {
        self.seq1 != self.seq2
    }
}

/// The XOR-32 checksum of the first 508 bytes, with Windows' two reserved results
/// remapped.
pub(crate) fn checksum(b: &[u8]) -> u32 {
    let x = (0..127).fold(0u32, |acc, i| acc ^ le32(b, i * 4));
    match x {
        0xffff_ffff => 0xffff_fffe,
        0 => 1,
        x => x,
    }
}

/// Validates the base block at the start of `b`.
pub(crate) fn parse(b: &[u8]) -> Result<Base, HiveError> {
    if b.len() < BASE_SIZE || &b[..4] != b"regf" {
        return Err(HiveError::NotAHive("no regf signature".into()));
    }
    let stored = le32(b, 508);
    if checksum(b) != stored {
        return Err(corrupt(
            508u64,
            format!(
                "base block checksum {stored:#010x}, computed {:#010x}",
                checksum(b)
            ),
        ));
    }
    let major = le32(b, 20);
    if major != 1 {
        return Err(HiveError::NotAHive(format!("format version {major}")));
    }
    let bins_size = le32(b, 40);
    if !bins_size.is_multiple_of(4096) {
        return Err(corrupt(40u64, format!("hive bins size {bins_size}")));
    }
    Ok(Base {
        seq1: le32(b, 4),
        seq2: le32(b, 8),
        root: le32(b, 36),
        bins_size,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn block(root: u32, bins_size: u32, seq: (u32, u32)) -> Vec<u8> {
        let mut b = vec![0u8; BASE_SIZE];
        b[..4].copy_from_slice(b"regf");
        b[4..8].copy_from_slice(&seq.0.to_le_bytes());
        b[8..12].copy_from_slice(&seq.1.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..28].copy_from_slice(&5u32.to_le_bytes());
        b[32..36].copy_from_slice(&1u32.to_le_bytes());
        b[36..40].copy_from_slice(&root.to_le_bytes());
        b[40..44].copy_from_slice(&bins_size.to_le_bytes());
        b[44..48].copy_from_slice(&1u32.to_le_bytes());
        let c = checksum(&b);
        b[508..512].copy_from_slice(&c.to_le_bytes());
        b
    }

    #[test]
    fn checksum_and_dirty_state() {
        let b = block(0x20, 4096, (3, 3));
        let p = parse(&b).unwrap();
        assert_eq!((p.root, p.bins_size, p.dirty()), (0x20, 4096, false));
        assert!(parse(&block(0x20, 4096, (4, 3))).unwrap().dirty());
        let mut bad = b.clone();
        bad[100] ^= 1;
        assert!(matches!(
            parse(&bad),
            Err(HiveError::Corrupt { offset: 508, .. })
        ));
        assert!(matches!(parse(&b[..100]), Err(HiveError::NotAHive(_))));
    }
}
