//! The btrfs superblock: the fixed entry point (64 KiB into every device, with mirrors
//! at 64 MiB and 256 GiB) naming the chunk tree, the root tree and the geometry.

use crate::inspect::bytes::{array, field, le16, le32, le64};
use crate::inspect::crc32c;
use crate::inspect::source::ReadAt;

use super::corrupt;
use crate::inspect::fs::FsError;

/// Where the superblock copies live; the first one is the one the kernel writes and
/// reads, the others are used here only when it is damaged (as `btrfs rescue` would).
pub const SUPER_OFFSETS: [u64; 3] = [0x1_0000, 0x400_0000, 0x40_0000_0000];
pub const SUPER_SIZE: usize = 4096;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
/// Offset and size of the bootstrap chunk array inside the superblock.
const SYS_CHUNK_ARRAY: usize = 0x32b;
const SYS_CHUNK_ARRAY_MAX: usize = 2048;

/// Checksum algorithms of `csum_type`: only CRC32C (the default) is verified.
pub const CSUM_CRC32C: u16 = 0;

/// Incompat feature bits that change what we parse.
pub const INCOMPAT_METADATA_UUID: u64 = 1 << 10;
pub const INCOMPAT_EXTENDED_IREF: u64 = 1 << 6;
pub const INCOMPAT_RAID1C34: u64 = 1 << 11;
/// Bits we understand; anything else (zoned, encryption, extent tree v2...) is refused
/// rather than misread.
const INCOMPAT_KNOWN: u64 = (1 << 0) // mixed backref
    | (1 << 1) // default subvol
    | (1 << 2) // mixed groups
    | (1 << 3) // compress lzo
    | (1 << 4) // compress zstd
    | (1 << 5) // big metadata
    | INCOMPAT_EXTENDED_IREF
    | (1 << 7) // raid56
    | (1 << 8) // skinny metadata
    | (1 << 9) // no holes
    | INCOMPAT_METADATA_UUID
    | INCOMPAT_RAID1C34
    | (1 << 14); // block group tree

/// The facts of one valid superblock.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub fsid: [u8; 16],
    /// The fsid stamped into tree-block headers (differs with `metadata_uuid`).
    pub metadata_fsid: [u8; 16],
    pub generation: u64,
    pub root: u64,
    pub root_level: u8,
    pub chunk_root: u64,
    pub chunk_root_level: u8,
    pub num_devices: u64,
    pub sectorsize: u32,
    pub nodesize: u32,
    pub csum_type: u16,
    /// This device's id (from the embedded device item).
    pub devid: u64,
    /// Kept for tests and debugging; the probe reports the label.
    #[cfg_attr(not(test), allow(dead_code))]
    pub label: String,
    pub sys_chunk_array: Vec<u8>,
}

/// Reads the primary superblock, or the first valid mirror when it is damaged.
/// Returns the superblock and, when a mirror was used, a warning.
pub fn read(src: &dyn ReadAt) -> Result<(Superblock, Option<String>), FsError> {
    let mut first_err = None;
    for (i, &off) in SUPER_OFFSETS.iter().enumerate() {
        if off + SUPER_SIZE as u64 > src.size() {
            break;
        }
        let mut buf = vec![0u8; SUPER_SIZE];
        src.read_exact_at(off, &mut buf)?;
        match parse(&buf, off) {
            Ok(sb) => {
                let warn = (i > 0).then(|| {
                    format!(
                        "btrfs primary superblock is damaged ({}); using the copy at {off:#x}",
                        first_err
                            .as_ref()
                            .map_or(String::new(), |e: &FsError| e.to_string())
                    )
                });
                return Ok((sb, warn));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| corrupt("device too small for a btrfs superblock")))
}

/// Checks and decodes one superblock copy read at `at`.
pub fn parse(b: &[u8], at: u64) -> Result<Superblock, FsError> {
    if field(b, 0x40, 8) != MAGIC {
        return Err(corrupt(format!("no superblock magic at {at:#x}")));
    }
    let csum_type = le16(b, 0xc4);
    if csum_type == CSUM_CRC32C && crc32c::checksum(field(b, 0x20, SUPER_SIZE - 0x20)) != le32(b, 0)
    {
        return Err(corrupt(format!("superblock checksum mismatch at {at:#x}")));
    }
    if le64(b, 0x30) != at {
        return Err(corrupt(format!(
            "superblock at {at:#x} says it is at {:#x}",
            le64(b, 0x30)
        )));
    }
    let sectorsize = le32(b, 0x90);
    let nodesize = le32(b, 0x94);
    if !sectorsize.is_power_of_two() || !(4096..=65536).contains(&sectorsize) {
        return Err(corrupt(format!("sector size {sectorsize}")));
    }
    if !nodesize.is_power_of_two() || !(4096..=65536).contains(&nodesize) || nodesize < sectorsize {
        return Err(corrupt(format!("node size {nodesize}")));
    }
    let incompat = le64(b, 0xbc);
    if incompat & !INCOMPAT_KNOWN != 0 {
        return Err(FsError::Unsupported {
            fs: "btrfs",
            message: format!("incompatible features {:#x}", incompat & !INCOMPAT_KNOWN),
        });
    }
    let array_size = le32(b, 0xa0) as usize;
    if array_size > SYS_CHUNK_ARRAY_MAX {
        return Err(corrupt(format!("sys_chunk_array of {array_size} bytes")));
    }
    let fsid = array(b, 0x20);
    let metadata_fsid = if incompat & INCOMPAT_METADATA_UUID != 0 {
        array(b, 0x23b)
    } else {
        fsid
    };
    let label_bytes = field(b, 0x12b, 256);
    let end = label_bytes.iter().position(|&c| c == 0).unwrap_or(256);
    Ok(Superblock {
        fsid,
        metadata_fsid,
        generation: le64(b, 0x48),
        root: le64(b, 0x50),
        chunk_root: le64(b, 0x58),
        num_devices: le64(b, 0x88),
        sectorsize,
        nodesize,
        csum_type,
        root_level: b.get(0xc6).copied().unwrap_or(0),
        chunk_root_level: b.get(0xc7).copied().unwrap_or(0),
        devid: le64(b, 0xc9),
        label: String::from_utf8_lossy(&label_bytes[..end]).into_owned(),
        sys_chunk_array: field(b, SYS_CHUNK_ARRAY, array_size).to_vec(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// A minimal valid primary superblock (checksummed) for tests.
    pub(crate) fn sample() -> Vec<u8> {
        let mut b = vec![0u8; SUPER_SIZE];
        b[0x20] = 0xaa;
        b[0x30..0x38].copy_from_slice(&0x1_0000u64.to_le_bytes());
        b[0x40..0x48].copy_from_slice(MAGIC);
        b[0x90..0x94].copy_from_slice(&4096u32.to_le_bytes());
        b[0x94..0x98].copy_from_slice(&16384u32.to_le_bytes());
        b[0x12b..0x12f].copy_from_slice(b"test");
        seal(&mut b);
        b
    }

    pub(crate) fn seal(b: &mut [u8]) {
        let crc = crc32c::checksum(&b[0x20..SUPER_SIZE]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn primary_then_mirror() {
        let mut disk = vec![0u8; 0x400_0000 + SUPER_SIZE];
        disk[0x1_0000..0x1_0000 + SUPER_SIZE].copy_from_slice(&sample());
        let (sb, warn) = read(&MemSource(disk.clone())).unwrap();
        assert_eq!(
            (sb.label.as_str(), sb.nodesize, warn),
            ("test", 16384, None)
        );

        // A damaged primary: the mirror at 64 MiB is used, with a warning.
        let mut mirror = sample();
        mirror[0x30..0x38].copy_from_slice(&0x400_0000u64.to_le_bytes());
        mirror[0x12b] = b'T';
        seal(&mut mirror);
        disk[0x400_0000..].copy_from_slice(&mirror);
        disk[0x1_0000 + 0x100] ^= 1;
        let (sb, warn) = read(&MemSource(disk.clone())).unwrap();
        assert_eq!(sb.label, "Test");
        assert!(warn.unwrap().contains("checksum"));

        // Both damaged: a typed error.
        disk[0x400_0000 + 0x100] ^= 1;
        let err = read(&MemSource(disk)).unwrap_err();
        assert!(matches!(err, FsError::Corrupt { fs: "btrfs", .. }), "{err}");
    }

    #[test]
    fn absurd_geometry_is_refused() {
        let mut b = sample();
        b[0x94..0x98].copy_from_slice(&3000u32.to_le_bytes());
        seal(&mut b);
        assert!(parse(&b, 0x1_0000).is_err());
        let mut b = sample();
        b[0xa0..0xa4].copy_from_slice(&5000u32.to_le_bytes());
        seal(&mut b);
        assert!(parse(&b, 0x1_0000).is_err());
        let mut b = sample();
        b[0xbc] = 0; // fine
        b[0xbf] = 0x80; // an unknown incompat bit
        seal(&mut b);
        assert!(matches!(
            parse(&b, 0x1_0000),
            Err(FsError::Unsupported { .. })
        ));
    }
}
