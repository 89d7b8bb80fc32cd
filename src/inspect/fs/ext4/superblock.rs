//! Our own look at the ext2/3/4 superblock, before ext4-view loads it.
//!
//! ext4-view trusts a few superblock numbers further than a hostile image deserves: it
//! reserves a vector with one slot per block group, reads every group descriptor with
//! its own read, and replays a journal of any size in memory. The values that size
//! those allocations and loops are bounded here first, with offsets in the messages.

use crate::inspect::bytes::{le16, le32};
use crate::inspect::crc32c;
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

/// Byte offset of the primary superblock.
pub(super) const OFFSET: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;
const MAGIC: u16 = 0xef53;

/// Most block groups we let ext4-view load: 2^20 groups of 128 MiB (4 KiB blocks) is a
/// 128 TiB filesystem, far above any VM disk, and 16 MiB of descriptors in memory.
pub(super) const MAX_BLOCK_GROUPS: u64 = 1 << 20;

/// Largest journal we let ext4-view replay. Replay keeps the journal's block map and
/// revocation lists in memory, roughly in proportion to the journal size; mke2fs never
/// makes a default journal above 1 GiB (plus a small fast-commit area).
pub(super) const MAX_REPLAY_JOURNAL_BYTES: u64 = (1 << 30) + (64 << 20);

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// Offset of the superblock checksum (crc32c of the bytes before it).
const CHECKSUM_OFFSET: usize = 0x3fc;

/// The superblock facts the reader needs after the checks passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Geometry {
    pub block_size: u64,
    pub blocks_count: u64,
    pub block_groups: u64,
    /// Whether a journal will be replayed in memory when the filesystem is loaded.
    pub replays_journal: bool,
}

/// Reads and bounds the superblock of the filesystem in `src`.
pub(super) fn check(src: &dyn ReadAt) -> Result<Geometry, FsError> {
    let mut sb = [0u8; SUPERBLOCK_LEN];
    src.read_exact_at(OFFSET, &mut sb)?;

    let magic = le16(&sb, 0x38);
    if magic != MAGIC {
        return Err(corrupt(format!(
            "superblock at byte {OFFSET}: magic 0x{magic:04x}, expected 0x{MAGIC:04x}"
        )));
    }
    let log_block_size = le32(&sb, 0x18);
    if log_block_size > 6 {
        return Err(corrupt(format!(
            "superblock at byte {OFFSET}: block size 2^(10+{log_block_size}) is above 64 KiB"
        )));
    }
    let block_size = 1024u64 << log_block_size;
    let incompat = le32(&sb, 0x60);
    let compat = le32(&sb, 0x5c);

    let mut blocks_count = u64::from(le32(&sb, 0x04));
    if incompat & INCOMPAT_64BIT != 0 {
        blocks_count |= u64::from(le32(&sb, 0x150)) << 32;
    }
    // A filesystem larger than its device cannot be mounted (the kernel refuses it too),
    // and this bounds every count derived from blocks_count by the real source size.
    let fs_bytes = blocks_count.checked_mul(block_size);
    if fs_bytes.is_none_or(|bytes| bytes > src.size()) {
        return Err(corrupt(format!(
            "superblock: {blocks_count} blocks of {block_size} bytes do not fit in the {} bytes of the device",
            src.size()
        )));
    }
    let first_data_block = u64::from(le32(&sb, 0x14));
    if first_data_block >= blocks_count {
        return Err(corrupt(format!(
            "superblock: first data block {first_data_block} is not below the block count {blocks_count}"
        )));
    }
    let blocks_per_group = u64::from(le32(&sb, 0x20));
    if blocks_per_group == 0 {
        return Err(corrupt("superblock: zero blocks per group".to_string()));
    }
    let block_groups = (blocks_count - first_data_block).div_ceil(blocks_per_group);
    if block_groups > MAX_BLOCK_GROUPS {
        return Err(FsError::Unsupported {
            fs: "ext4",
            message: format!(
                "{block_groups} block groups are more than this reader's limit of {MAX_BLOCK_GROUPS}"
            ),
        });
    }

    let replays_journal = compat & COMPAT_HAS_JOURNAL != 0
        && incompat & INCOMPAT_RECOVER != 0
        // ext4-view refuses these layouts itself, with a precise message; the journal
        // inode is not where we would look for it there.
        && incompat & (INCOMPAT_JOURNAL_DEV | INCOMPAT_META_BG) == 0;
    if replays_journal {
        let size = journal_size(src, &sb, block_size, incompat)?;
        if size > MAX_REPLAY_JOURNAL_BYTES {
            return Err(FsError::Unsupported {
                fs: "ext4",
                message: format!(
                    "the journal needs replay and holds {size} bytes, above this reader's replay limit of {MAX_REPLAY_JOURNAL_BYTES}"
                ),
            });
        }
    }

    Ok(Geometry {
        block_size,
        blocks_count,
        block_groups,
        replays_journal,
    })
}

/// The superblock with the "needs recovery" flag cleared (and its checksum redone), to
/// load a filesystem whose journal ext4-view cannot replay the way `mount -o noload`
/// does: files show the last checkpointed state.
pub(super) fn without_recovery(src: &dyn ReadAt) -> Result<Vec<u8>, FsError> {
    let mut sb = vec![0u8; SUPERBLOCK_LEN];
    src.read_exact_at(OFFSET, &mut sb)?;
    let incompat = le32(&sb, 0x60) & !INCOMPAT_RECOVER;
    sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
    if le32(&sb, 0x64) & RO_COMPAT_METADATA_CSUM != 0 {
        let sum = crc32c::update(!0, &sb[..CHECKSUM_OFFSET]);
        sb[CHECKSUM_OFFSET..].copy_from_slice(&sum.to_le_bytes());
    }
    Ok(sb)
}

/// Size in bytes of the journal inode, found through the group descriptor table the
/// same way ext4-view will find it.
fn journal_size(
    src: &dyn ReadAt,
    sb: &[u8],
    block_size: u64,
    incompat: u32,
) -> Result<u64, FsError> {
    let inode = u64::from(le32(sb, 0xe0));
    let mut raw = [0u8; 128];
    src.read_exact_at(
        inode_offset(src, sb, block_size, incompat, inode)?,
        &mut raw,
    )?;
    Ok(u64::from(le32(&raw, 0x4)) | u64::from(le32(&raw, 0x6c)) << 32)
}

/// The first 128 bytes of inode `inode` (the part every inode size has), found through
/// the group descriptor table as ext4-view finds it.
pub(super) fn read_inode(src: &dyn ReadAt, inode: u64) -> Result<[u8; 128], FsError> {
    let mut sb = [0u8; SUPERBLOCK_LEN];
    src.read_exact_at(OFFSET, &mut sb)?;
    let block_size = 1024u64 << le32(&sb, 0x18).min(6);
    let mut raw = [0u8; 128];
    let at = inode_offset(src, &sb, block_size, le32(&sb, 0x60), inode)?;
    src.read_exact_at(at, &mut raw)?;
    Ok(raw)
}

/// Byte offset of inode `inode` in the device.
fn inode_offset(
    src: &dyn ReadAt,
    sb: &[u8],
    block_size: u64,
    incompat: u32,
    inode: u64,
) -> Result<u64, FsError> {
    let inodes_per_group = u64::from(le32(sb, 0x28));
    if inode == 0 || inodes_per_group == 0 {
        return Err(corrupt(format!(
            "superblock: inode {inode} with {inodes_per_group} inodes per group"
        )));
    }
    let inode_size = if le32(sb, 0x4c) == 0 {
        128
    } else {
        u64::from(le16(sb, 0x58))
    };
    if inode_size < 128 || inode_size > block_size {
        return Err(corrupt(format!("superblock: inode size {inode_size}")));
    }
    let desc_size = if incompat & INCOMPAT_64BIT != 0 {
        u64::from(le16(sb, 0xfe))
    } else {
        32
    };
    if desc_size < 32 {
        return Err(corrupt(format!(
            "superblock: group descriptor size {desc_size}"
        )));
    }

    let group = (inode - 1) / inodes_per_group;
    let table_block = if block_size == 1024 { 2 } else { 1 };
    let desc_offset = group
        .checked_mul(desc_size)
        .and_then(|o| o.checked_add(table_block * block_size))
        .ok_or_else(|| corrupt(format!("group descriptor {group} offset overflows")))?;
    let mut desc = [0u8; 64];
    let desc = &mut desc[..desc_size.min(64) as usize];
    src.read_exact_at(desc_offset, desc)?;
    let mut inode_table = u64::from(le32(desc, 0x8));
    if incompat & INCOMPAT_64BIT != 0 && desc.len() >= 64 {
        inode_table |= u64::from(le32(desc, 0x28)) << 32;
    }

    inode_table
        .checked_mul(block_size)
        .and_then(|o| o.checked_add(((inode - 1) % inodes_per_group) * inode_size))
        .ok_or_else(|| {
            corrupt(format!(
                "group descriptor at byte {desc_offset}: inode table block {inode_table} overflows"
            ))
        })
}

fn corrupt(message: String) -> FsError {
    FsError::Corrupt {
        fs: "ext4",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMPAT_FILETYPE: u32 = 0x2;
    use crate::inspect::source::MemSource;

    /// A minimal 64 MiB-looking ext4 superblock in a source of `len` bytes.
    fn image(len: usize) -> Vec<u8> {
        let mut img = vec![0u8; len];
        let sb = &mut img[1024..2048];
        sb[0x38..0x3a].copy_from_slice(&MAGIC.to_le_bytes());
        sb[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes()); // 4 KiB blocks
        sb[0x04..0x08].copy_from_slice(&16u32.to_le_bytes());
        sb[0x20..0x24].copy_from_slice(&32768u32.to_le_bytes());
        sb[0x28..0x2c].copy_from_slice(&16u32.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&(INCOMPAT_FILETYPE | 0x40).to_le_bytes());
        img
    }

    fn set32(img: &mut [u8], off: usize, v: u32) {
        img[1024 + off..1024 + off + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn accepts_a_sane_superblock() {
        let g = check(&MemSource(image(16 * 4096))).unwrap();
        assert_eq!(
            (g.block_size, g.blocks_count, g.block_groups),
            (4096, 16, 1)
        );
    }

    #[test]
    fn rejects_bad_magic_block_size_and_oversized_filesystems() {
        let mut img = image(16 * 4096);
        img[1024 + 0x38] = 0;
        assert!(matches!(
            check(&MemSource(img)),
            Err(FsError::Corrupt { .. })
        ));

        let mut img = image(16 * 4096);
        set32(&mut img, 0x18, 40);
        assert!(matches!(
            check(&MemSource(img)),
            Err(FsError::Corrupt { .. })
        ));

        // 17 blocks claimed on a 16-block device.
        let mut img = image(16 * 4096);
        set32(&mut img, 0x04, 17);
        let err = check(&MemSource(img)).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }

    #[test]
    fn bounds_the_group_count() {
        // 2^21 groups of one block each, on a device big enough to hold them.
        let blocks = (MAX_BLOCK_GROUPS * 2) as u32;
        let mut img = image(2048);
        set32(&mut img, 0x18, 0);
        set32(&mut img, 0x04, blocks);
        set32(&mut img, 0x20, 1);
        struct Sparse(Vec<u8>, u64);
        impl ReadAt for Sparse {
            fn size(&self) -> u64 {
                self.1
            }
            fn read_exact_at(
                &self,
                offset: u64,
                buf: &mut [u8],
            ) -> Result<(), crate::inspect::source::ReadError> {
                MemSource(self.0.clone()).read_exact_at(offset, buf)
            }
        }
        let src = Sparse(img, u64::from(blocks) * 1024);
        assert!(matches!(check(&src), Err(FsError::Unsupported { .. })));
    }

    #[test]
    fn clearing_recovery_keeps_the_rest() {
        let mut img = image(16 * 4096);
        set32(&mut img, 0x60, INCOMPAT_FILETYPE | INCOMPAT_RECOVER);
        set32(&mut img, 0x64, RO_COMPAT_METADATA_CSUM);
        let sb = without_recovery(&MemSource(img.clone())).unwrap();
        assert_eq!(le32(&sb, 0x60), INCOMPAT_FILETYPE);
        assert_eq!(le32(&sb, 0x3fc), crc32c::update(!0, &sb[..0x3fc]));
        assert_eq!(sb[..0x60], img[1024..1024 + 0x60]);
    }

    #[test]
    fn refuses_to_replay_a_huge_journal() {
        let mut img = image(16 * 4096);
        set32(&mut img, 0x5c, COMPAT_HAS_JOURNAL);
        set32(&mut img, 0x60, INCOMPAT_FILETYPE | INCOMPAT_RECOVER | 0x40);
        set32(&mut img, 0x4c, 1);
        img[1024 + 0x58..1024 + 0x5a].copy_from_slice(&256u16.to_le_bytes());
        set32(&mut img, 0xe0, 8);
        // Group 0 descriptor in block 1: inode table at block 4.
        img[4096 + 8..4096 + 12].copy_from_slice(&4u32.to_le_bytes());
        // Inode 8 (index 7) of 256 bytes: size 2^40.
        let ino = 4 * 4096 + 7 * 256;
        img[ino + 0x6c..ino + 0x70].copy_from_slice(&256u32.to_le_bytes());
        let err = check(&MemSource(img)).unwrap_err();
        assert!(matches!(err, FsError::Unsupported { .. }), "{err}");
    }
}
