//! The FAT boot sector's BIOS parameter block: the volume's geometry.

use crate::inspect::fat_boot::Bpb;
pub(crate) use crate::inspect::fat_boot::FatType;
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

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

/// Reads and validates the boot sector of the volume in `src`: a volume that fails the
/// checks is not read at all.
pub(crate) fn read(src: &dyn ReadAt) -> Result<Geometry, FsError> {
    let mut s = [0u8; 512];
    src.read_exact_at(0, &mut s)?;
    parse(&s, src.size())
}

/// The reader's checks on top of [`Bpb::parse`]: those of the Microsoft FAT
/// specification and of the Linux driver, so every later offset is in range.
fn parse(s: &[u8; 512], device_size: u64) -> Result<Geometry, FsError> {
    let b = Bpb::parse(s).map_err(bad)?;
    if b.fats > 4 {
        return Err(bad(format!("{} FATs (offset 0x10)", b.fats)));
    }
    if b.fat_length == 0 {
        return Err(bad("zero sectors per FAT (offsets 0x16, 0x24)".to_string()));
    }
    let first_data_sector = b.first_data_sector();
    if b.total_sectors <= first_data_sector {
        return Err(bad(format!(
            "{} sectors leave no data region after sector {first_data_sector}",
            b.total_sectors
        )));
    }
    let metadata_end = first_data_sector * b.sector_size;
    if metadata_end > device_size {
        return Err(bad(format!(
            "FATs and root directory end at byte {metadata_end}, past the {device_size}-byte device"
        )));
    }
    let cluster_count = b.cluster_count;
    // A FAT32-shaped boot sector (no 16-bit FAT size) with few clusters is still read as
    // FAT32, as Linux does: mkfs.fat makes such volumes on small devices when asked.
    // The specification's FAT32 limit is one below blkid's.
    if cluster_count == 0 || cluster_count > 0x0fff_fff5 {
        return Err(bad(format!("{cluster_count} data clusters")));
    }
    let bits = match b.fat_type {
        FatType::Fat12 => 12,
        FatType::Fat16 => 16,
        FatType::Fat32 => 32,
    };
    let fat_len = b.fat_length * b.sector_size;
    let fat_entries = fat_len * 8 / bits;
    if fat_entries < cluster_count + 2 {
        return Err(bad(format!(
            "a FAT of {fat_len} bytes cannot hold {cluster_count} clusters"
        )));
    }

    let mut fat_index = 0;
    let root = match b.fat_type {
        FatType::Fat32 => {
            if b.root_entries != 0 {
                return Err(bad(format!(
                    "FAT32 with {} fixed root entries",
                    b.root_entries
                )));
            }
            if b.ext_flags & 0x80 != 0 {
                // Mirroring disabled: only the active FAT is current.
                fat_index = u64::from(b.ext_flags & 0x0f);
                if fat_index >= b.fats {
                    return Err(bad(format!(
                        "active FAT {fat_index} of {} (offset 0x28)",
                        b.fats
                    )));
                }
            }
            let first_cluster = b.root_cluster;
            if first_cluster < 2 || u64::from(first_cluster) > cluster_count + 1 {
                return Err(bad(format!(
                    "root cluster {first_cluster} out of range (offset 0x2c)"
                )));
            }
            RootDir::Chain { first_cluster }
        }
        FatType::Fat12 | FatType::Fat16 => {
            if b.root_entries == 0 {
                return Err(bad("FAT12/16 with no root directory entries".to_string()));
            }
            RootDir::Fixed {
                offset: b.root_dir_sector() * b.sector_size,
                entries: b.root_entries as u32,
            }
        }
    };

    Ok(Geometry {
        fat_type: b.fat_type,
        cluster_size: b.cluster_sectors * b.sector_size,
        fat_offset: (b.reserved + fat_index * b.fat_length) * b.sector_size,
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
mod tests {
    use super::*;
    use crate::inspect::fat_boot::tests::fat12_sector;

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
