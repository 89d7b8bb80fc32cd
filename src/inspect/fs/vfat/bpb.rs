//! The FAT boot sector's BIOS parameter block: the volume's geometry.

use crate::inspect::bytes::{le16, le32};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

/// Which FAT entry width the volume uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// Where the root directory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootDir {
    /// FAT12/16: a fixed region of `entries` 32-byte entries at byte `offset`.
    Fixed { offset: u64, entries: u32 },
    /// FAT32: an ordinary cluster chain.
    Chain { first_cluster: u32 },
}

/// The validated geometry of a FAT volume, all in bytes so later code does no sector
/// arithmetic of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub fat_type: FatType,
    pub cluster_size: u64,
    /// Byte offset of the FAT copy we read (the active one on FAT32 without mirroring).
    pub fat_offset: u64,
    pub fat_len: u64,
    pub root: RootDir,
    /// Byte offset of cluster 2, the first data cluster.
    pub data_offset: u64,
    /// Number of data clusters; valid cluster numbers are `2..cluster_count + 2`.
    pub cluster_count: u32,
}

impl Geometry {
    /// Highest valid cluster number.
    pub fn max_cluster(&self) -> u32 {
        self.cluster_count + 1
    }

    /// Byte offset of `cluster`, which the caller has checked is in range.
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset + u64::from(cluster - 2) * self.cluster_size
    }
}

/// Reads and validates the boot sector of the volume in `src`.
///
/// The checks are those of the Microsoft FAT specification and of the Linux driver:
/// a volume that fails them is not read at all, so every later offset is in range.
pub(crate) fn read(src: &dyn ReadAt) -> Result<Geometry, FsError> {
    let mut s = [0u8; 512];
    src.read_exact_at(0, &mut s)?;
    parse(&s, src.size())
}

fn parse(s: &[u8; 512], device_size: u64) -> Result<Geometry, FsError> {
    let bytes_per_sector = u64::from(le16(s, 0x0b));
    if !(512..=4096).contains(&bytes_per_sector) || !bytes_per_sector.is_power_of_two() {
        return Err(bad(format!(
            "{bytes_per_sector} bytes per sector (offset 0x0b)"
        )));
    }
    let sectors_per_cluster = u64::from(s[0x0d]);
    if !sectors_per_cluster.is_power_of_two() {
        return Err(bad(format!(
            "{sectors_per_cluster} sectors per cluster (offset 0x0d)"
        )));
    }
    let reserved = u64::from(le16(s, 0x0e));
    if reserved == 0 {
        return Err(bad("zero reserved sectors (offset 0x0e)".to_string()));
    }
    let fats = u64::from(s[0x10]);
    if !(1..=4).contains(&fats) {
        return Err(bad(format!("{fats} FATs (offset 0x10)")));
    }
    let media = s[0x15];
    if media != 0xf0 && media < 0xf8 {
        return Err(bad(format!("media byte 0x{media:02x} (offset 0x15)")));
    }
    let root_entries = u64::from(le16(s, 0x11));
    let total_sectors = match le16(s, 0x13) {
        0 => u64::from(le32(s, 0x20)),
        n => u64::from(n),
    };
    let fat_size16 = u64::from(le16(s, 0x16));
    let fat32_layout = fat_size16 == 0;
    let fat_sectors = if fat32_layout {
        u64::from(le32(s, 0x24))
    } else {
        fat_size16
    };
    if fat_sectors == 0 {
        return Err(bad("zero sectors per FAT (offsets 0x16, 0x24)".to_string()));
    }

    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    // All terms are at most 2^32 * 4, so the sums cannot overflow a u64.
    let first_data_sector = reserved + fats * fat_sectors + root_sectors;
    if total_sectors <= first_data_sector {
        return Err(bad(format!(
            "{total_sectors} sectors leave no data region after sector {first_data_sector}"
        )));
    }
    let metadata_end = first_data_sector * bytes_per_sector;
    if metadata_end > device_size {
        return Err(bad(format!(
            "FATs and root directory end at byte {metadata_end}, past the {device_size}-byte device"
        )));
    }
    let cluster_count = (total_sectors - first_data_sector) / sectors_per_cluster;

    // The specification decides by cluster count alone. A FAT32-shaped boot sector
    // (no 16-bit FAT size) with fewer clusters is still read as FAT32, as Linux does:
    // mkfs.fat makes such volumes on small devices when asked for FAT32.
    let fat_type = if fat32_layout {
        FatType::Fat32
    } else if cluster_count < 4085 {
        FatType::Fat12
    } else if cluster_count < 65525 {
        FatType::Fat16
    } else {
        return Err(bad(format!(
            "{cluster_count} clusters need FAT32, but the boot sector has a 16-bit FAT size"
        )));
    };
    if cluster_count == 0 || cluster_count > 0x0fff_fff5 {
        return Err(bad(format!("{cluster_count} data clusters")));
    }
    let bits = match fat_type {
        FatType::Fat12 => 12,
        FatType::Fat16 => 16,
        FatType::Fat32 => 32,
    };
    let fat_len = fat_sectors * bytes_per_sector;
    let fat_entries = fat_len * 8 / bits;
    if fat_entries < cluster_count + 2 {
        return Err(bad(format!(
            "a FAT of {fat_len} bytes cannot hold {cluster_count} clusters"
        )));
    }

    let mut fat_index = 0;
    let root = match fat_type {
        FatType::Fat32 => {
            if root_entries != 0 {
                return Err(bad(format!("FAT32 with {root_entries} fixed root entries")));
            }
            let ext_flags = le16(s, 0x28);
            if ext_flags & 0x80 != 0 {
                // Mirroring disabled: only the active FAT is current.
                fat_index = u64::from(ext_flags & 0x0f);
                if fat_index >= fats {
                    return Err(bad(format!(
                        "active FAT {fat_index} of {fats} (offset 0x28)"
                    )));
                }
            }
            let first_cluster = le32(s, 0x2c);
            if first_cluster < 2 || u64::from(first_cluster) > cluster_count + 1 {
                return Err(bad(format!(
                    "root cluster {first_cluster} out of range (offset 0x2c)"
                )));
            }
            RootDir::Chain { first_cluster }
        }
        FatType::Fat12 | FatType::Fat16 => {
            if root_entries == 0 {
                return Err(bad("FAT12/16 with no root directory entries".to_string()));
            }
            RootDir::Fixed {
                offset: (reserved + fats * fat_sectors) * bytes_per_sector,
                entries: root_entries as u32,
            }
        }
    };

    Ok(Geometry {
        fat_type,
        cluster_size: sectors_per_cluster * bytes_per_sector,
        fat_offset: (reserved + fat_index * fat_sectors) * bytes_per_sector,
        fat_len,
        root,
        data_offset: metadata_end,
        cluster_count: cluster_count as u32,
    })
}

fn bad(what: String) -> FsError {
    FsError::Corrupt {
        fs: "vfat",
        message: format!("boot sector: {what}"),
    }
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

    #[test]
    fn parses_a_fat12_geometry() {
        let g = parse(&fat12_sector(64), 64 * 512).unwrap();
        assert_eq!(g.fat_type, FatType::Fat12);
        assert_eq!(g.cluster_size, 512);
        assert_eq!(g.fat_offset, 512);
        assert_eq!(
            g.root,
            RootDir::Fixed {
                offset: 3 * 512,
                entries: 16
            }
        );
        assert_eq!(g.data_offset, 4 * 512);
        assert_eq!(g.cluster_count, 60);
        assert_eq!(g.cluster_offset(2), 4 * 512);
    }

    #[test]
    fn rejects_bad_parameter_blocks() {
        let cases: [(usize, &[u8]); 7] = [
            (0x0b, &1000u16.to_le_bytes()), // bytes per sector not a power of two
            (0x0b, &256u16.to_le_bytes()),  // below 512
            (0x0d, &[3]),                   // sectors per cluster
            (0x0d, &[0]),
            (0x0e, &[0, 0]), // reserved sectors
            (0x10, &[0]),    // FAT count
            (0x10, &[5]),
        ];
        for (off, value) in cases {
            let mut s = fat12_sector(64);
            s[off..off + value.len()].copy_from_slice(value);
            let err = parse(&s, 64 * 512).unwrap_err();
            assert!(
                matches!(err, FsError::Corrupt { fs: "vfat", .. }),
                "{off:#x}: {err}"
            );
        }
        // A FAT of one sector cannot describe 4000 clusters.
        let err = parse(&fat12_sector(4000), 4000 * 512).unwrap_err();
        assert!(err.to_string().contains("cannot hold"), "{err}");
        // Metadata past the end of the device.
        assert!(parse(&fat12_sector(64), 1024).is_err());
        // No data region at all.
        assert!(parse(&fat12_sector(4), 64 * 512).is_err());
    }

    #[test]
    fn cluster_count_decides_fat12_or_fat16() {
        let mut s = fat12_sector(0);
        s[0x13..0x15].copy_from_slice(&0u16.to_le_bytes());
        s[0x16..0x18].copy_from_slice(&40u16.to_le_bytes()); // room for 20k FAT16 entries
        s[0x20..0x24].copy_from_slice(&10_000u32.to_le_bytes());
        let g = parse(&s, 10_000 * 512).unwrap();
        assert_eq!(g.fat_type, FatType::Fat16);
        assert_eq!(u64::from(g.cluster_count), 10_000 - 1 - 80 - 1);
    }
}
