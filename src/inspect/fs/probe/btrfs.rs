//! Btrfs superblock (at 64 KiB), checked by its CRC32C when it uses that checksum.

use super::{crc32c, label, read_array, Probed};
use crate::inspect::bytes::{array, field, le16, le32, le64};
use crate::inspect::image::ImageError;
use crate::inspect::source::ReadAt;

const SUPERBLOCK_OFFSET: u64 = 0x10000;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
const CSUM_TYPE_CRC32C: u16 = 0;

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ImageError> {
    let Some(sb) = read_array::<4096>(src, SUPERBLOCK_OFFSET)? else {
        return Ok(None);
    };
    if field(&sb, 0x40, 8) != MAGIC {
        return Ok(None);
    }
    // Other checksum types (xxhash, sha256, blake2) are accepted unchecked.
    if le16(&sb, 0xc4) == CSUM_TYPE_CRC32C && crc32c::checksum(&sb[0x20..]) != le32(&sb, 0) {
        return Ok(None);
    }
    Ok(Some(Probed {
        fs_type: "btrfs",
        uuid: crate::inspect::bytes::uuid_be(&array(&sb, 0x20)),
        label: label(field(&sb, 0x12b, 256)),
        size: Some(le64(&sb, 0x70)),
    }))
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
        assert_eq!(probe(&MemSource(d)).unwrap(), None);
    }
}
