//! The XFS superblock (big-endian, sector 0 of allocation group 0): the geometry every
//! other structure is addressed by, and the feature bits that change on-disk layouts.
//!
//! Everything the reader later multiplies or shifts by is bounded here, once, so the
//! address arithmetic elsewhere cannot overflow on a hostile superblock.

use super::{corrupt, unsupported, verify_crc};
use crate::inspect::bytes::{array, be16, be32, be64, field};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

const MAGIC: &[u8; 4] = b"XFSB";
/// Offset of the v5 superblock CRC (little-endian, over the whole sector).
const CRC_OFFSET: usize = 224;

// sb_versionnum bits.
const VERSION_NUMBITS: u16 = 0x000f;
const VERSION_DIRV2: u16 = 0x2000;
const VERSION_MOREBITS: u16 = 0x8000;
// sb_features2 bits (v4; mirrored on v5).
const FEATURES2_CRC: u32 = 0x0100;
const FEATURES2_FTYPE: u32 = 0x0200;
// v5 incompatible features.
pub(super) const INCOMPAT_FTYPE: u32 = 0x01;
const INCOMPAT_SPINODES: u32 = 0x02;
const INCOMPAT_META_UUID: u32 = 0x04;
const INCOMPAT_BIGTIME: u32 = 0x08;
const INCOMPAT_NEEDSREPAIR: u32 = 0x10;
const INCOMPAT_NREXT64: u32 = 0x20;
const INCOMPAT_EXCHRANGE: u32 = 0x40;
const INCOMPAT_PARENT: u32 = 0x80;
/// Incompatible features that do not change how files, directories and symlinks are
/// laid out for a reader (parent pointers live in attribute forks, which we never read;
/// exchange-range only adds log items).
const INCOMPAT_KNOWN: u32 = INCOMPAT_FTYPE
    | INCOMPAT_SPINODES
    | INCOMPAT_META_UUID
    | INCOMPAT_BIGTIME
    | INCOMPAT_NEEDSREPAIR
    | INCOMPAT_NREXT64
    | INCOMPAT_EXCHRANGE
    | INCOMPAT_PARENT;

/// Largest directory block XFS allows (64 KiB).
const MAX_DIR_BLOCK: u64 = 65536;

/// The geometry and features of one XFS filesystem, validated.
#[derive(Debug, Clone)]
pub(super) struct Superblock {
    /// 5 for CRC-enabled (v5) filesystems, 4 otherwise.
    pub version: u8,
    pub block_size: u64,
    pub block_log: u32,
    pub sector_size: u64,
    pub dblocks: u64,
    pub ag_blocks: u64,
    pub ag_count: u64,
    /// Bits of an AG-relative block number inside an fsblock or inode number.
    pub ag_blk_log: u32,
    pub inode_size: u64,
    /// Bits of the inode-in-block index inside an inode number.
    pub inop_blog: u32,
    pub root_ino: u64,
    /// Fs blocks per directory block, as a shift.
    pub dir_blk_log: u32,
    /// Directory entries carry a file type byte.
    pub ftype: bool,
    /// The UUID metadata blocks are stamped with (the meta UUID when it differs).
    pub meta_uuid: [u8; 16],
    /// First block of the internal log, or `None` for an external log.
    pub log_start: Option<u64>,
    pub log_blocks: u64,
    pub needs_repair: bool,
}

impl Superblock {
    /// Reads and validates the superblock of `src`.
    pub fn read(src: &dyn ReadAt) -> Result<Superblock, FsError> {
        let mut sb = [0u8; 512];
        src.read_exact_at(0, &mut sb)?;
        if field(&sb, 0, 4) != MAGIC {
            return Err(corrupt("no XFS superblock magic".to_string()));
        }
        let parsed = Superblock::parse(&sb)?;
        if parsed.version == 5 {
            let mut sector = vec![0u8; parsed.sector_size as usize];
            src.read_exact_at(0, &mut sector)?;
            verify_crc(&sector, CRC_OFFSET, "superblock")?;
        }
        Ok(parsed)
    }

    /// Validates the fields of a superblock sector (no checksum).
    pub fn parse(sb: &[u8]) -> Result<Superblock, FsError> {
        let block_size = u64::from(be32(sb, 4));
        let dblocks = be64(sb, 8);
        let log_start = be64(sb, 48);
        let root_ino = be64(sb, 56);
        let ag_blocks = u64::from(be32(sb, 84));
        let ag_count = u64::from(be32(sb, 88));
        let log_blocks = u64::from(be32(sb, 96));
        let versionnum = be16(sb, 100);
        let sector_size = u64::from(be16(sb, 102));
        let inode_size = u64::from(be16(sb, 104));
        let inopblock = u64::from(be16(sb, 106));
        let (block_log, sect_log, inode_log, inop_blog, ag_blk_log) =
            (sb[120], sb[121], sb[122], sb[123], sb[124]);
        let inprogress = sb[126];
        let dir_blk_log = u32::from(sb[192]);
        let features2 = be32(sb, 200);
        let incompat = be32(sb, 216);

        let version = (versionnum & VERSION_NUMBITS) as u8;
        let pow = |log: u8| 1u64 << (log & 63);
        let bad = |what: &str| Err(corrupt(format!("superblock: {what}")));
        if !(9..=16).contains(&block_log) || block_size != pow(block_log) {
            return bad("block size is not a power of two in 512..=65536");
        }
        if !(9..=15).contains(&sect_log) || sector_size != pow(sect_log) || sector_size > block_size
        {
            return bad("sector size is not a power of two in 512..=block size");
        }
        if !(8..=11).contains(&inode_log)
            || inode_size != pow(inode_log)
            || inode_size > block_size
            || u32::from(block_log) != u32::from(inode_log) + u32::from(inop_blog)
            || inopblock != block_size / inode_size
        {
            return bad("inode size or inodes per block inconsistent");
        }
        if ag_count == 0 || !(64..=1 << 31).contains(&ag_blocks) {
            return bad("allocation group count or size out of range");
        }
        // agblklog is the rounded-up log2 of agblocks: an inode number's layout.
        if u64::from(ag_blk_log) != u64::from(64 - (ag_blocks - 1).leading_zeros()) {
            return bad("agblklog does not match agblocks");
        }
        // Every byte offset computed later is at most dblocks x block size.
        if dblocks == 0
            || dblocks
                .checked_mul(block_size)
                .is_none_or(|b| b > i64::MAX as u64)
            || dblocks > ag_count.saturating_mul(ag_blocks)
            || dblocks <= (ag_count - 1) * ag_blocks
        {
            return bad("data block count does not match the allocation groups");
        }
        if u64::from(ag_blk_log) + u64::from(inop_blog) > 56 {
            return bad("inode number layout too wide");
        }
        if dir_blk_log > 16 || block_size << dir_blk_log > MAX_DIR_BLOCK {
            return bad("directory block size above 64 KiB");
        }
        if inprogress != 0 {
            return Err(corrupt(
                "superblock: mkfs did not finish (sb_inprogress set)".to_string(),
            ));
        }
        let ftype = match version {
            4 => {
                if versionnum & VERSION_DIRV2 == 0 {
                    return Err(unsupported(
                        "version 1 directories (pre-2003 XFS)".to_string(),
                    ));
                }
                let f2 = if versionnum & VERSION_MOREBITS != 0 {
                    features2
                } else {
                    0
                };
                if f2 & FEATURES2_CRC != 0 {
                    return bad("v4 superblock with the CRC feature");
                }
                f2 & FEATURES2_FTYPE != 0
            }
            5 => {
                if incompat & !INCOMPAT_KNOWN != 0 {
                    return Err(unsupported(format!(
                        "incompatible feature bits {:#x}",
                        incompat & !INCOMPAT_KNOWN
                    )));
                }
                if inode_size < 512 {
                    return bad("v5 filesystem with inodes below 512 bytes");
                }
                incompat & INCOMPAT_FTYPE != 0
            }
            v => return Err(unsupported(format!("superblock version {v}"))),
        };
        let uuid: [u8; 16] = array(sb, 32);
        let meta_uuid = if version == 5 && incompat & INCOMPAT_META_UUID != 0 {
            array(sb, 248)
        } else {
            uuid
        };
        let sb = Superblock {
            version,
            block_size,
            block_log: u32::from(block_log),
            sector_size,
            dblocks,
            ag_blocks,
            ag_count,
            ag_blk_log: u32::from(ag_blk_log),
            inode_size,
            inop_blog: u32::from(inop_blog),
            root_ino,
            dir_blk_log,
            ftype,
            meta_uuid,
            log_start: (log_start != 0).then_some(log_start),
            log_blocks,
            needs_repair: version == 5 && incompat & INCOMPAT_NEEDSREPAIR != 0,
        };
        sb.inode_offset(root_ino)
            .map_err(|_| corrupt(format!("superblock: root inode {root_ino} is out of range")))?;
        Ok(sb)
    }

    pub fn crc(&self) -> bool {
        self.version == 5
    }

    /// Size of the inode core: v3 (CRC) inodes carry 76 more bytes.
    pub fn inode_core_size(&self) -> usize {
        if self.crc() {
            176
        } else {
            100
        }
    }

    /// Bytes of one directory block.
    pub fn dir_block_size(&self) -> u64 {
        self.block_size << self.dir_blk_log
    }

    /// Byte offset of inode `ino`: AG number, AG block and index in the block are bit
    /// fields of the number, sized by agblklog and inopblog.
    pub fn inode_offset(&self, ino: u64) -> Result<u64, FsError> {
        let index = ino & ((1 << self.inop_blog) - 1);
        let agbno = (ino >> self.inop_blog) & ((1 << self.ag_blk_log) - 1);
        let agno = ino >> (self.inop_blog + self.ag_blk_log);
        if agno >= self.ag_count || agbno >= self.ag_blocks || agbno == 0 {
            return Err(corrupt(format!("inode number {ino} is out of range")));
        }
        let block = agno * self.ag_blocks + agbno;
        if block >= self.dblocks {
            return Err(corrupt(format!("inode number {ino} is past the end")));
        }
        Ok(block * self.block_size + index * self.inode_size)
    }

    /// Byte offset of `count` blocks at fsblock number `fsb` (AG number in the high
    /// bits, AG block in the low `agblklog` bits), refused when the run leaves its AG or
    /// the device, or covers the AG's header sectors.
    pub fn extent_offset(&self, fsb: u64, count: u64) -> Result<u64, FsError> {
        let agno = fsb >> self.ag_blk_log;
        let agbno = fsb & ((1 << self.ag_blk_log) - 1);
        let out = || {
            corrupt(format!(
                "extent of {count} blocks at fsblock {fsb} lies outside the filesystem"
            ))
        };
        if agno >= self.ag_count || count == 0 {
            return Err(out());
        }
        let end = agbno.checked_add(count).ok_or_else(out)?;
        if end > self.ag_blocks {
            return Err(out());
        }
        let block = agno * self.ag_blocks + agbno;
        if block + count > self.dblocks {
            return Err(out());
        }
        // Sectors 0-3 of every AG hold its superblock copy, AGF, AGI and AGFL.
        if agbno * self.block_size < 4 * self.sector_size {
            return Err(corrupt(format!(
                "extent at fsblock {fsb} covers the headers of allocation group {agno}"
            )));
        }
        Ok(block * self.block_size)
    }

    /// Byte offset of AG `agno`'s first sector.
    pub fn ag_offset(&self, agno: u64) -> u64 {
        agno * self.ag_blocks * self.block_size
    }

    /// 512-byte "disk address" of a byte offset, as v5 headers record their own place.
    pub fn daddr(offset: u64) -> u64 {
        offset >> 9
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A v5 superblock sector: 4 KiB blocks, 4 AGs of 1000 blocks, 512-byte inodes.
    pub fn sector() -> Vec<u8> {
        let mut d = vec![0u8; 512];
        d[..4].copy_from_slice(MAGIC);
        d[4..8].copy_from_slice(&4096u32.to_be_bytes());
        d[8..16].copy_from_slice(&4000u64.to_be_bytes());
        d[32] = 0x11;
        d[48..56].copy_from_slice(&600u64.to_be_bytes());
        d[56..64].copy_from_slice(&128u64.to_be_bytes());
        d[80..84].copy_from_slice(&1u32.to_be_bytes());
        d[84..88].copy_from_slice(&1000u32.to_be_bytes());
        d[88..92].copy_from_slice(&4u32.to_be_bytes());
        d[96..100].copy_from_slice(&100u32.to_be_bytes());
        d[100..102].copy_from_slice(&(5u16 | VERSION_MOREBITS).to_be_bytes());
        d[102..104].copy_from_slice(&512u16.to_be_bytes());
        d[104..106].copy_from_slice(&512u16.to_be_bytes());
        d[106..108].copy_from_slice(&8u16.to_be_bytes());
        d[120..125].copy_from_slice(&[12, 9, 9, 3, 10]);
        d[200..204].copy_from_slice(&FEATURES2_CRC.to_be_bytes());
        d[216..220].copy_from_slice(&INCOMPAT_FTYPE.to_be_bytes());
        d
    }

    #[test]
    fn geometry_and_addresses() {
        let sb = Superblock::parse(&sector()).unwrap();
        assert_eq!((sb.version, sb.ftype, sb.inode_core_size()), (5, true, 176));
        // ino 128: AG 0, block 16, index 0.
        assert_eq!(sb.inode_offset(128).unwrap(), 16 * 4096);
        // AG 1 starts at bit 13 (agblklog 10 + inopblog 3).
        assert_eq!(
            sb.inode_offset((1 << 13) | (5 << 3) | 2).unwrap(),
            (1000 + 5) * 4096 + 2 * 512
        );
        assert!(sb.inode_offset(4 << 13).is_err());
        assert_eq!(sb.extent_offset((2 << 10) | 10, 5).unwrap(), 2010 * 4096);
        assert!(sb.extent_offset((2 << 10) | 998, 5).is_err());
        assert!(sb.extent_offset(1 << 10, 1).is_err(), "AG header block");
    }

    #[test]
    fn any_superblock_bytes_give_a_result_or_an_error() {
        let base = sector();
        let mut seed = 0x9e37_79b9u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..20_000 {
            let mut s = base.clone();
            for _ in 0..=next() % 4 {
                let at = next() as usize % 256;
                s[at] = next() as u8;
            }
            if let Ok(sb) = Superblock::parse(&s) {
                let (a, b) = (u64::from(next()), u64::from(next()));
                let _ = sb.inode_offset(a << 20 | b);
                let _ = sb.extent_offset(a << 32 | b, u64::from(next() % (1 << 21)));
                let _ = sb.dir_block_size();
            }
        }
    }

    #[test]
    fn insane_fields_are_corrupt() {
        for (at, value) in [(4usize, 3000u32), (84, 0), (88, 0), (216, 0x8000)] {
            let mut s = sector();
            s[at..at + 4].copy_from_slice(&value.to_be_bytes());
            assert!(Superblock::parse(&s).is_err(), "field at {at}");
        }
        let mut s = sector();
        s[124] = 11;
        assert!(Superblock::parse(&s).is_err());
        // A directory block log that would shift past 64 bits.
        for log in [5u8, 64, 255] {
            let mut s = sector();
            s[192] = log;
            assert!(Superblock::parse(&s).is_err(), "dirblklog {log}");
        }
    }
}
