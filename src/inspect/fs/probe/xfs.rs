//! XFS superblock (big-endian, at offset 0), with blkid's sanity checks and, for v5
//! filesystems, the CRC32C of the superblock sector.

use super::{label, read_array, read_opt, Probed};
use crate::inspect::bytes::{array, be16, be32, be64, field};
use crate::inspect::crc32c;
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const MAGIC: &[u8; 4] = b"XFSB";
const VERSION_MOREBITS: u16 = 0x8000;
const VERSION2_CRC: u32 = 0x100;
const CRC_OFFSET: usize = 224;

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    let Some(sb) = read_array::<512>(src, 0)? else {
        return Ok(None);
    };
    if field(&sb, 0, 4) != MAGIC || !sane(&sb) {
        return Ok(None);
    }
    let version = be16(&sb, 100);
    if version & 0x0f == 5 {
        if version & VERSION_MOREBITS == 0 || be32(&sb, 200) & VERSION2_CRC == 0 {
            return Ok(None);
        }
        // The CRC covers the whole superblock sector, with the CRC field as zeros.
        let Some(mut sector) = read_opt(src, 0, u64::from(be16(&sb, 102)))? else {
            return Ok(None);
        };
        let stored = u32::from_le_bytes(array(&sector, CRC_OFFSET));
        sector[CRC_OFFSET..CRC_OFFSET + 4].fill(0);
        if crc32c::checksum(&sector) != stored {
            return Ok(None);
        }
    }
    let (blocksize, dblocks) = (be32(&sb, 4), be64(&sb, 8));
    Ok(Some(Probed {
        fs_type: "xfs",
        uuid: crate::inspect::bytes::uuid_be(&array(&sb, 32)),
        label: label(&sb[108..120]),
        size: dblocks.checked_mul(u64::from(blocksize)),
    }))
}

/// The geometry checks blkid makes before trusting the magic (also what keeps the
/// sector size used for the CRC read within 512..=32768).
fn sane(sb: &[u8; 512]) -> bool {
    let blocksize = be32(sb, 4);
    let dblocks = be64(sb, 8);
    let rextsize = u64::from(be32(sb, 80));
    let agblocks = u64::from(be32(sb, 84));
    let agcount = u64::from(be32(sb, 88));
    let sectsize = u32::from(be16(sb, 102));
    let inodesize = u32::from(be16(sb, 104));
    let (blocklog, sectlog, inodelog, inopblog) = (sb[120], sb[121], sb[122], sb[123]);
    let imax_pct = sb[127];
    let pow = |log: u8| 1u64 << (log & 63);
    let rext_bytes = rextsize * u64::from(blocksize);
    agcount > 0
        && (9..=15).contains(&sectlog)
        && u64::from(sectsize) == pow(sectlog)
        && (9..=16).contains(&blocklog)
        && u64::from(blocksize) == pow(blocklog)
        && (8..=11).contains(&inodelog)
        && u64::from(inodesize) == pow(inodelog)
        && blocklog.checked_sub(inodelog) == Some(inopblog)
        && (4096..=1 << 30).contains(&rext_bytes)
        && imax_pct <= 100
        && dblocks != 0
        && dblocks <= agcount * agblocks
        && dblocks >= (agcount - 1) * agblocks + 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    fn image() -> Vec<u8> {
        let mut d = vec![0u8; 8192];
        d[..4].copy_from_slice(MAGIC);
        d[4..8].copy_from_slice(&4096u32.to_be_bytes());
        d[8..16].copy_from_slice(&1000u64.to_be_bytes());
        d[32] = 0x11;
        d[80..84].copy_from_slice(&1u32.to_be_bytes());
        d[84..88].copy_from_slice(&250u32.to_be_bytes());
        d[88..92].copy_from_slice(&4u32.to_be_bytes());
        d[100..102].copy_from_slice(&(5u16 | VERSION_MOREBITS).to_be_bytes());
        d[102..104].copy_from_slice(&512u16.to_be_bytes());
        d[104..106].copy_from_slice(&512u16.to_be_bytes());
        d[108..112].copy_from_slice(b"data");
        d[120..124].copy_from_slice(&[12, 9, 9, 3]);
        d[127] = 25;
        d[200..204].copy_from_slice(&VERSION2_CRC.to_be_bytes());
        let crc = crc32c::checksum(&d[..512]);
        d[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        d
    }

    #[test]
    fn v5_superblock_with_checksum() {
        let p = probe(&MemSource(image())).unwrap().unwrap();
        assert_eq!(
            (p.fs_type, p.label.as_deref(), p.size),
            ("xfs", Some("data"), Some(4096 * 1000))
        );
        assert_eq!(
            p.uuid.as_deref(),
            Some("11000000-0000-0000-0000-000000000000")
        );
        let mut bad = image();
        bad[109] = b'A';
        assert_eq!(probe(&MemSource(bad)).unwrap(), None);
        let mut insane = image();
        insane[88..92].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(probe(&MemSource(insane)).unwrap(), None);
    }
}
