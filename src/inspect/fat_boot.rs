//! The FAT boot sector's BIOS parameter block (BPB): the one parser of it.
//!
//! Three layers read this structure: the partition layer (a FAT written to the whole disk
//! ends in 0x55AA like an MBR and must not be read as one), the probe (blkid's acceptance
//! rules) and the vfat reader (which adds the specification's stricter checks). It lives
//! here, below all of them, so the partition layer need not call up into `fs`.
//!
//! FAT12, FAT16 or FAT32 is decided by the number of data clusters alone, as the
//! Microsoft specification, the Linux driver and dosfstools do: fewer than 4085 is FAT12,
//! fewer than 65525 FAT16. `fsck.fat` accepts a FAT12 of 4084 clusters and a FAT16 of
//! 65524, and refuses 65525 with a 16-bit FAT; `blkid -p` accepts the same volumes (its
//! limits 0xff4/0xfff4 are the same numbers written as "more than") though its VERSION
//! tag already says FAT16 at 4084 clusters. `integration/inspect_fs.rs` builds volumes at
//! these boundaries with mkfs.vfat and checks both tools against this parser.

use crate::inspect::bytes::{field, le16, le32};

/// Most data clusters of a FAT12 volume.
pub(crate) const FAT12_MAX_CLUSTERS: u64 = 4084;
/// Most data clusters of a FAT16 volume.
pub(crate) const FAT16_MAX_CLUSTERS: u64 = 65524;
/// Most data clusters blkid accepts with a FAT32 layout (0x0FFFFFF6; the specification
/// allows one fewer, which the reader checks).
const FAT32_MAX_CLUSTERS_BLKID: u64 = 0x0fff_fff6;

/// Which FAT entry width the volume uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// The BPB's fields, in sectors as stored, once the geometry blkid demands holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bpb {
    pub sector_size: u64,
    pub cluster_sectors: u64,
    pub reserved: u64,
    pub fats: u64,
    pub root_entries: u64,
    pub total_sectors: u64,
    /// Sectors of one FAT: the 16-bit field at 0x16, else the FAT32 one at 0x24.
    pub fat_length: u64,
    /// The 16-bit FAT size is 0: the FAT32 layout (extended BPB at 0x24..0x5a).
    pub fat32_layout: bool,
    /// Data clusters (0 when the data region is smaller than one cluster).
    pub cluster_count: u64,
    pub fat_type: FatType,
    /// FAT32 only: mirroring flags and active FAT (0x28), root cluster (0x2c), FSInfo
    /// sector (0x30).
    pub ext_flags: u16,
    pub root_cluster: u32,
    pub fsinfo_sector: u16,
}

impl Bpb {
    /// Parses the BPB of boot sector `s`, with the geometry checks blkid makes; `Err`
    /// says which field is wrong.
    pub(crate) fn parse(s: &[u8; 512]) -> Result<Bpb, String> {
        let sector_size = le16(s, 0x0b);
        if !(512..=4096).contains(&sector_size) || !sector_size.is_power_of_two() {
            return Err(format!("{sector_size} bytes per sector (offset 0x0b)"));
        }
        let cluster_sectors = s[0x0d];
        if !cluster_sectors.is_power_of_two() {
            return Err(format!(
                "{cluster_sectors} sectors per cluster (offset 0x0d)"
            ));
        }
        let reserved = u64::from(le16(s, 0x0e));
        if reserved == 0 {
            return Err("zero reserved sectors (offset 0x0e)".to_string());
        }
        let fats = u64::from(s[0x10]);
        if fats == 0 {
            return Err("0 FATs (offset 0x10)".to_string());
        }
        let media = s[0x15];
        if media != 0xf0 && media < 0xf8 {
            return Err(format!("media byte 0x{media:02x} (offset 0x15)"));
        }
        let (sector_size, cluster_sectors) = (u64::from(sector_size), u64::from(cluster_sectors));
        let root_entries = u64::from(le16(s, 0x11));
        let total_sectors = match le16(s, 0x13) {
            0 => u64::from(le32(s, 0x20)),
            n => u64::from(n),
        };
        let fat16_length = le16(s, 0x16);
        let fat32_length = le32(s, 0x24);
        let fat_length = match fat16_length {
            0 => u64::from(fat32_length),
            n => u64::from(n),
        };
        // All terms are at most 2^32 * 255, so the sum cannot overflow a u64.
        let first_data = reserved + fat_length * fats + (root_entries * 32).div_ceil(sector_size);
        let data = total_sectors.checked_sub(first_data).ok_or_else(|| {
            format!("{total_sectors} sectors end before the data region at sector {first_data}")
        })?;
        let cluster_count = data / cluster_sectors;
        let fat32_layout = fat16_length == 0;
        let fat_type = if fat32_layout && fat32_length != 0 {
            if cluster_count > FAT32_MAX_CLUSTERS_BLKID {
                return Err(format!("{cluster_count} clusters are too many for FAT32"));
            }
            FatType::Fat32
        } else if cluster_count <= FAT12_MAX_CLUSTERS {
            FatType::Fat12
        } else if cluster_count <= FAT16_MAX_CLUSTERS {
            FatType::Fat16
        } else {
            return Err(format!(
                "{cluster_count} clusters need FAT32, but the boot sector has a 16-bit FAT size"
            ));
        };
        Ok(Bpb {
            sector_size,
            cluster_sectors,
            reserved,
            fats,
            root_entries,
            total_sectors,
            fat_length,
            fat32_layout,
            cluster_count,
            fat_type,
            ext_flags: le16(s, 0x28),
            root_cluster: le32(s, 0x2c),
            fsinfo_sector: le16(s, 0x30),
        })
    }

    /// First sector of the data region (cluster 2), after the FATs and the fixed root.
    pub(crate) fn first_data_sector(&self) -> u64 {
        self.reserved
            + self.fats * self.fat_length
            + (self.root_entries * 32).div_ceil(self.sector_size)
    }

    /// First sector of the FAT12/16 fixed root directory.
    pub(crate) fn root_dir_sector(&self) -> u64 {
        self.reserved + self.fats * self.fat_length
    }
}

/// Whether blkid would call sector `bs` a FAT boot sector, and its BPB if so.
///
/// FAT has no strong magic: blkid wants one of the OEM/type strings, or else the 0x55AA
/// trailer and not one of the FAT-like pseudo boot sectors OS/2 writes in front of JFS
/// and HPFS, or BitLocker's; then a sane geometry.
pub(crate) fn blkid_accepts(bs: &[u8; 512]) -> Option<Bpb> {
    let strong_magic = [
        (0x52, &b"MSWIN"[..]),
        (0x52, b"FAT32   "),
        (0x36, b"MSDOS"),
        (0x36, b"FAT16   "),
        (0x36, b"FAT12   "),
        (0x36, b"FAT     "),
    ]
    .iter()
    .any(|&(at, m)| field(bs, at, m.len()) == m);
    if !strong_magic {
        if bs[510] != 0x55 || bs[511] != 0xaa {
            return None;
        }
        if field(bs, 0x36, 8) == b"JFS     " || field(bs, 0x36, 8) == b"HPFS    " {
            return None;
        }
    }
    if field(bs, 3, 8) == b"-FVE-FS-" {
        return None;
    }
    Bpb::parse(bs).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A FAT12 boot sector: 512-byte sectors, 1 sector per cluster, 1 reserved sector,
    /// 2 FATs of 1 sector, 16 root entries, `total` sectors.
    pub(crate) fn fat12_sector(total: u16) -> [u8; 512] {
        let mut s = [0u8; 512];
        s[0..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
        s[0x0b..0x0d].copy_from_slice(&512u16.to_le_bytes());
        s[0x0d] = 1;
        s[0x0e..0x10].copy_from_slice(&1u16.to_le_bytes());
        s[0x10] = 2;
        s[0x11..0x13].copy_from_slice(&16u16.to_le_bytes());
        s[0x13..0x15].copy_from_slice(&total.to_le_bytes());
        s[0x15] = 0xf8;
        s[0x16..0x18].copy_from_slice(&1u16.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    /// A sector with a 16-bit FAT layout and exactly `clusters` data clusters.
    fn with_clusters(clusters: u64) -> [u8; 512] {
        let mut s = fat12_sector(0);
        s[0x16..0x18].copy_from_slice(&256u16.to_le_bytes());
        // 1 reserved + 2 * 256 FAT + 1 root sector before the data region.
        let total = u32::try_from(1 + 512 + 1 + clusters).unwrap();
        s[0x20..0x24].copy_from_slice(&total.to_le_bytes());
        s
    }

    #[test]
    fn cluster_count_decides_the_fat_width_at_both_boundaries() {
        let ty = |n| Bpb::parse(&with_clusters(n)).map(|b| (b.fat_type, b.cluster_count));
        assert_eq!(ty(4084), Ok((FatType::Fat12, 4084)));
        assert_eq!(ty(4085), Ok((FatType::Fat16, 4085)));
        assert_eq!(ty(65524), Ok((FatType::Fat16, 65524)));
        assert!(ty(65525).unwrap_err().contains("need FAT32"));
    }

    #[test]
    fn blkid_needs_a_magic_or_the_trailer() {
        assert!(blkid_accepts(&fat12_sector(64)).is_some());
        let mut s = fat12_sector(64);
        s[510] = 0;
        assert!(blkid_accepts(&s).is_none());
        s[0x36..0x3e].copy_from_slice(b"FAT12   ");
        assert!(blkid_accepts(&s).is_some());
        let mut s = fat12_sector(64);
        s[0x36..0x3e].copy_from_slice(b"HPFS    ");
        assert!(blkid_accepts(&s).is_none());
        let mut s = fat12_sector(64);
        s[3..11].copy_from_slice(b"-FVE-FS-");
        assert!(blkid_accepts(&s).is_none());
    }
}
