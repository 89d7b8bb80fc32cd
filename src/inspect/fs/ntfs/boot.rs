//! The NTFS boot sector: the volume's geometry and where `$MFT` starts.

use crate::inspect::bytes::{field, le16, le64};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

use super::corrupt;

/// Largest cluster accepted (Windows formats up to 2 MiB).
const MAX_CLUSTER_SIZE: u64 = 2 << 20;
/// Largest MFT record or index block accepted; real ones are 1 or 4 KiB each.
pub(crate) const MAX_RECORD_SIZE: u64 = 64 << 10;

/// The validated geometry, in bytes, so later code does no sector arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Boot {
    pub cluster_size: u64,
    /// Number of clusters on the volume; every LCN must be below it.
    pub clusters: u64,
    pub mft_lcn: u64,
    pub record_size: u64,
    pub index_block_size: u64,
    /// The volume serial number: what blkid and libguestfs show as the UUID.
    pub serial: u64,
}

/// Reads and validates the boot sector of `src`.
pub(crate) fn read(src: &dyn ReadAt) -> Result<Boot, FsError> {
    let mut bs = [0u8; 512];
    src.read_exact_at(0, &mut bs)?;
    parse(&bs, src.size())
}

/// A size given per cluster when positive, else as a power of two (`-10` = 1 KiB).
fn clusters_or_shift(v: u8, cluster_size: u64) -> Option<u64> {
    let v = v as i8;
    match v {
        1..=64 => Some(u64::from(v as u8) * cluster_size),
        -31..=-1 => Some(1u64 << (-i32::from(v))),
        _ => None,
    }
}

pub(crate) fn parse(bs: &[u8; 512], device_size: u64) -> Result<Boot, FsError> {
    if field(bs, 3, 8) != b"NTFS    " {
        return Err(corrupt("boot sector has no NTFS signature".into()));
    }
    let sector = u64::from(le16(bs, 0x0b));
    if !(256..=4096).contains(&sector) || !sector.is_power_of_two() {
        return Err(corrupt(format!("{sector} bytes per sector")));
    }
    let spc = bs[0x0d];
    let per_cluster = match spc {
        1..=128 if spc.is_power_of_two() => u64::from(spc),
        240..=249 => 1 << (256 - u32::from(spc)),
        _ => return Err(corrupt(format!("sectors-per-cluster byte {spc}"))),
    };
    let cluster_size = sector * per_cluster;
    if cluster_size > MAX_CLUSTER_SIZE {
        return Err(corrupt(format!("cluster size {cluster_size}")));
    }
    let sectors = le64(bs, 0x28);
    // The volume may not claim more than the device holds (the backup boot sector
    // sits in the sector after the counted ones).
    let clusters = (sectors.min(device_size / sector)) / per_cluster;
    let mft_lcn = le64(bs, 0x30);
    if mft_lcn >= clusters {
        return Err(corrupt(format!(
            "$MFT at cluster {mft_lcn} of a volume of {clusters}"
        )));
    }
    let record_size = clusters_or_shift(bs[0x40], cluster_size)
        .filter(|s| (512..=MAX_RECORD_SIZE).contains(s) && s.is_power_of_two())
        .ok_or_else(|| corrupt(format!("MFT record size byte {:#x}", bs[0x40])))?;
    let index_block_size = clusters_or_shift(bs[0x44], cluster_size)
        .filter(|s| (512..=MAX_RECORD_SIZE).contains(s) && s.is_power_of_two())
        .ok_or_else(|| corrupt(format!("index block size byte {:#x}", bs[0x44])))?;
    Ok(Boot {
        cluster_size,
        clusters,
        mft_lcn,
        record_size,
        index_block_size,
        serial: le64(bs, 0x48),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A boot sector of 512-byte sectors, 4 KiB clusters, 1 KiB records, 4 KiB index
    /// blocks, `sectors` long, $MFT at cluster 4.
    pub(crate) fn sector(sectors: u64) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[3..11].copy_from_slice(b"NTFS    ");
        b[0x0b..0x0d].copy_from_slice(&512u16.to_le_bytes());
        b[0x0d] = 8;
        b[0x28..0x30].copy_from_slice(&sectors.to_le_bytes());
        b[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        b[0x40] = (-10i8) as u8;
        b[0x44] = 1;
        b[0x48..0x50].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        b
    }

    #[test]
    fn geometry() {
        let b = parse(&sector(1000), 1 << 20).unwrap();
        assert_eq!(
            b,
            Boot {
                cluster_size: 4096,
                clusters: 125,
                mft_lcn: 4,
                record_size: 1024,
                index_block_size: 4096,
                serial: 0x1122_3344_5566_7788
            }
        );
    }

    #[test]
    fn bad_fields() {
        let mut b = sector(1000);
        b[0x0d] = 3;
        assert!(parse(&b, 1 << 20).is_err());
        let mut b = sector(1000);
        b[0x40] = 0x80;
        assert!(parse(&b, 1 << 20).is_err());
        let b = sector(1000);
        assert!(parse(&b, 8192).is_err(), "MFT beyond a tiny device");
    }
}
