//! Btrfs superblock (at 64 KiB), checked by its CRC32C when it uses that checksum. When
//! the primary copy is damaged, the mirrors at 64 MiB and 256 GiB are tried, as the
//! btrfs reader does, so a filesystem with a bad primary is still found.

use super::{label, read_array, Probed};
use crate::inspect::bytes::{array, field, le16, le32, le64};
use crate::inspect::crc32c;
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const SUPERBLOCK_OFFSETS: [u64; 3] = [0x1_0000, 0x400_0000, 0x40_0000_0000];
const MAGIC: &[u8; 8] = b"_BHRfS_M";
const CSUM_TYPE_CRC32C: u16 = 0;

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    for (i, &at) in SUPERBLOCK_OFFSETS.iter().enumerate() {
        let Some(sb) = read_array::<4096>(src, at)? else {
            return Ok(None);
        };
        if field(&sb, 0x40, 8) != MAGIC {
            // No mirror without a primary signature: a stale mirror of an old,
            // overwritten filesystem must not be reported.
            if i == 0 {
                return Ok(None);
            }
            continue;
        }
        // Other checksum types (xxhash, sha256, blake2) are accepted unchecked.
        if le16(&sb, 0xc4) == CSUM_TYPE_CRC32C && crc32c::checksum(&sb[0x20..]) != le32(&sb, 0) {
            continue;
        }
        return Ok(Some(found(&sb)));
    }
    Ok(None)
}

fn found(sb: &[u8; 4096]) -> Probed {
    Probed {
        fs_type: "btrfs",
        uuid: crate::inspect::bytes::uuid_be(&array(sb, 0x20)),
        label: label(field(sb, 0x12b, 256)),
        size: Some(le64(sb, 0x70)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    #[test]
    fn superblock_and_checksum() {
        let mut d = vec![0u8; 0x11000];
        let sb = &mut d[0x10000..];
        sb[0x20] = 0x42;
        sb[0x40..0x48].copy_from_slice(MAGIC);
        sb[0x70..0x78].copy_from_slice(&(1u64 << 30).to_le_bytes());
        sb[0x12b..0x12f].copy_from_slice(b"pool");
        let crc = crc32c::checksum(&sb[0x20..0x1000]);
        sb[..4].copy_from_slice(&crc.to_le_bytes());
        let p = probe(&MemSource(d.clone())).unwrap().unwrap();
        assert_eq!((p.label.as_deref(), p.size), (Some("pool"), Some(1 << 30)));
        assert_eq!(
            p.uuid.as_deref(),
            Some("42000000-0000-0000-0000-000000000000")
        );
        d[0x10000 + 0x12b] = b'P';
        assert_eq!(probe(&MemSource(d.clone())).unwrap(), None);
        // A damaged primary with a good mirror at 64 MiB.
        let mut big = vec![0u8; 0x400_1000];
        big[0x10000..0x11000].copy_from_slice(&d[0x10000..]);
        let mut m = d[0x10000..].to_vec();
        m[0x12b] = b'm';
        let crc = crc32c::checksum(&m[0x20..0x1000]);
        m[..4].copy_from_slice(&crc.to_le_bytes());
        big[0x400_0000..].copy_from_slice(&m);
        assert_eq!(
            probe(&MemSource(big.clone()))
                .unwrap()
                .unwrap()
                .label
                .as_deref(),
            Some("mool")
        );
        // No primary magic at all: nothing, whatever the mirrors say.
        big[0x10040] = 0;
        assert_eq!(probe(&MemSource(big)).unwrap(), None);
    }
}
