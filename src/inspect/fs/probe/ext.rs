//! ext2/ext3/ext4 superblock: which of the three it is, told apart by feature flags the
//! way blkid does (not by what the guest's fstab claims).

use super::{label, read_array, Probed};
use crate::inspect::bytes::{array, le16, le32};
use crate::inspect::crc32c;
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const SUPERBLOCK_OFFSET: u64 = 1024;
const MAGIC: u16 = 0xef53;

const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_64BIT: u32 = 0x0080;
const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
const FLAGS_TEST_FILESYS: u32 = 0x0004;

/// Features an ext2 driver understands: sparse_super, large_file, btree_dir (ro);
/// filetype, meta_bg (incompat). ext3 adds only recover (incompat).
const EXT2_RO_COMPAT: u32 = 0x0001 | 0x0002 | 0x0004;
const EXT2_INCOMPAT: u32 = 0x0002 | 0x0010;
const EXT3_INCOMPAT: u32 = EXT2_INCOMPAT | 0x0004;

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    let Some(sb) = read_array::<1024>(src, SUPERBLOCK_OFFSET)? else {
        return Ok(None);
    };
    if le16(&sb, 0x38) != MAGIC {
        return Ok(None);
    }
    let (compat, incompat, ro) = (le32(&sb, 0x5c), le32(&sb, 0x60), le32(&sb, 0x64));
    // metadata_csum: the superblock carries its own CRC32C; a mismatch means a stale or
    // damaged superblock, which blkid refuses too.
    if ro & RO_COMPAT_METADATA_CSUM != 0 && crc32c::update(!0, &sb[..0x3fc]) != le32(&sb, 0x3fc) {
        return Ok(None);
    }
    let Some(fs_type) = classify(compat, incompat, ro, le32(&sb, 0x160)) else {
        return Ok(None);
    };
    let log_block = le32(&sb, 0x18);
    let blocks_hi = if incompat & INCOMPAT_64BIT != 0 {
        u64::from(le32(&sb, 0x150))
    } else {
        0
    };
    let blocks = u64::from(le32(&sb, 0x04)) | (blocks_hi << 32);
    // Block sizes above 64 KiB do not exist; refuse to compute a size from one.
    let size = (log_block <= 6)
        .then(|| blocks.checked_mul(1024 << log_block))
        .flatten();
    Ok(Some(Probed {
        fs_type,
        uuid: crate::inspect::bytes::uuid_be(&array(&sb, 0x68)),
        label: label(&sb[0x78..0x88]),
        size,
    }))
}

/// blkid's rules: an external journal is "jbd"; no journal and only ext2 features is
/// "ext2"; a journal and only ext3 features is "ext3"; any feature ext3 lacks makes it
/// "ext4" ("ext4dev" when flagged as a test filesystem). A journal-less filesystem whose
/// only extra feature is `recover` matches none of them, as in blkid.
fn classify(compat: u32, incompat: u32, ro: u32, flags: u32) -> Option<&'static str> {
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Some("jbd");
    }
    let journal = compat & COMPAT_HAS_JOURNAL != 0;
    let beyond_ext3 = ro & !EXT2_RO_COMPAT != 0 || incompat & !EXT3_INCOMPAT != 0;
    if !journal && ro & !EXT2_RO_COMPAT == 0 && incompat & !EXT2_INCOMPAT == 0 {
        Some("ext2")
    } else if journal && !beyond_ext3 {
        Some("ext3")
    } else if beyond_ext3 {
        Some(if flags & FLAGS_TEST_FILESYS != 0 {
            "ext4dev"
        } else {
            "ext4"
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    #[test]
    fn feature_flags_decide_the_type() {
        assert_eq!(classify(0, 0x2, 0x3, 0), Some("ext2"));
        assert_eq!(classify(0x4, 0x2 | 0x4, 0x3, 0), Some("ext3"));
        assert_eq!(classify(0x4, 0x2 | 0x40 | 0x200, 0x3, 0), Some("ext4"));
        assert_eq!(classify(0, 0x2 | 0x40, 0x3, 0), Some("ext4")); // no journal, extents
        assert_eq!(
            classify(0x4, 0x2 | 0x40, 0x3, FLAGS_TEST_FILESYS),
            Some("ext4dev")
        );
        assert_eq!(classify(0, 0x8, 0, 0), Some("jbd"));
        assert_eq!(classify(0, 0x4, 0, 0), None);
    }

    fn image(ro: u32, blocks_lo: u32, blocks_hi: u32, incompat: u32) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        let sb = &mut d[1024..2048];
        sb[0x04..0x08].copy_from_slice(&blocks_lo.to_le_bytes());
        sb[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes()); // 4 KiB blocks
        sb[0x38..0x3a].copy_from_slice(&MAGIC.to_le_bytes());
        sb[0x5c..0x60].copy_from_slice(&COMPAT_HAS_JOURNAL.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        sb[0x64..0x68].copy_from_slice(&ro.to_le_bytes());
        sb[0x68] = 0xab;
        sb[0x78..0x7d].copy_from_slice(b"root ");
        sb[0x150..0x154].copy_from_slice(&blocks_hi.to_le_bytes());
        let crc = crc32c::update(!0, &sb[..0x3fc]);
        sb[0x3fc..].copy_from_slice(&crc.to_le_bytes());
        d
    }

    #[test]
    fn superblock_fields_and_checksum() {
        let d = image(0x400 | 0x3, 10, 1, 0x2 | 0x40 | 0x80);
        let p = probe(&MemSource(d.clone())).unwrap().unwrap();
        assert_eq!(p.fs_type, "ext4");
        assert_eq!(p.label.as_deref(), Some("root"));
        assert_eq!(
            p.uuid.as_deref(),
            Some("ab000000-0000-0000-0000-000000000000")
        );
        assert_eq!(p.size, Some(((1u64 << 32) | 10) * 4096));
        let mut bad = d;
        bad[1024 + 0x78] = b'R'; // label changed, checksum now stale
        assert_eq!(probe(&MemSource(bad)).unwrap(), None);
        // Without 64bit the high word is ignored.
        let p = probe(&MemSource(image(0x3, 10, 1, 0x2 | 0x40)))
            .unwrap()
            .unwrap();
        assert_eq!(p.size, Some(10 * 4096));
    }
}
