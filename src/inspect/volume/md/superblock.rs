//! MD RAID member superblocks: version 0.90 (4 KiB, in the last 64 KiB-aligned 64 KiB of
//! the device) and version 1.x (1.0 near the end, 1.1 at offset 0, 1.2 at 4 KiB), as
//! the kernel's md driver and mdadm write them.
//!
//! Only what assembling and reading the array needs is decoded; every value is checked
//! against the member's size before it is trusted (counts, chunk size, data offset).

use crate::inspect::bytes::{field, label, le16, le32, le64, read_array};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

/// The md superblock magic (both versions).
pub const MD_MAGIC: u32 = 0xa92b_4efc;
/// Most members an array may have here (md's own limit for 1.x is 1920; real arrays
/// have a handful).
pub const MAX_MEMBERS: u32 = 256;
/// Largest chunk accepted (mdadm allows up to 2 GiB in theory; anything real is far
/// smaller).
pub const MAX_CHUNK: u64 = 1 << 30;

/// Which superblock format a member carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbVersion {
    V090,
    V10,
    V11,
    V12,
}

impl SbVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SbVersion::V090 => "0.90",
            SbVersion::V10 => "1.0",
            SbVersion::V11 => "1.1",
            SbVersion::V12 => "1.2",
        }
    }
}

/// One member's view of its array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdSuperblock {
    pub version: SbVersion,
    /// The 16 array-UUID bytes as stored (0.90: the four words, native little-endian).
    pub uuid_raw: [u8; 16],
    /// `host:name` (1.x); `None` for 0.90.
    pub name: Option<String>,
    /// 0.90's preferred minor (`/dev/md<N>`).
    pub preferred_minor: Option<u32>,
    /// md's level: -1 linear, 0, 1, 4, 5, 6, 10.
    pub level: i32,
    pub layout: u32,
    /// Bytes; 0 for levels without chunks.
    pub chunk: u64,
    pub raid_disks: u32,
    /// Bytes of each member used for array data (0 when the superblock does not say).
    pub component_size: u64,
    /// Where the array data starts on this member, in bytes.
    pub data_offset: u64,
    /// Bytes from `data_offset` this member holds.
    pub data_size: u64,
    pub events: u64,
    /// This member's slot in the array (`None`: spare, faulty or journal).
    pub role: Option<u32>,
    /// The whole superblock checksum verified.
    pub checksum_ok: bool,
    /// A reshape (level, layout, chunk or member-count change) is in progress: the
    /// array is part old, part new geometry.
    pub reshaping: bool,
}

impl MdSuperblock {
    /// The array UUID as mdadm prints it (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`).
    pub fn uuid_mdadm(&self) -> String {
        let words: Vec<String> = match self.version {
            SbVersion::V090 => (0..4)
                .map(|i| format!("{:08x}", le32(&self.uuid_raw, i * 4)))
                .collect(),
            _ => self
                .uuid_raw
                .chunks(4)
                .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
                .collect(),
        };
        words.join(":")
    }

    /// The UUID as blkid reports it for `linux_raid_member` (standard form of the raw
    /// bytes).
    pub fn uuid_blkid(&self) -> String {
        let h: String = self.uuid_raw.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// `raid0`, `raid1`, ... (`linear`, or `level<N>` when unknown).
    pub fn level_name(&self) -> String {
        match self.level {
            -1 => "linear".into(),
            0 | 1 | 4 | 5 | 6 | 10 => format!("raid{}", self.level),
            n => format!("level{n}"),
        }
    }
}

/// Looks for an md superblock on `src`: 1.2, 1.1, 1.0, then 0.90 (as blkid does, the
/// newer formats first). Superblocks failing their checksum are ignored.
pub fn detect(src: &dyn ReadAt) -> Result<Option<MdSuperblock>, ReadError> {
    let size = src.size();
    let sectors = size / 512;
    let mut v1 = vec![(4096, SbVersion::V12), (0, SbVersion::V11)];
    if sectors >= 16 {
        v1.push((((sectors - 16) & !7) * 512, SbVersion::V10));
    }
    for (offset, version) in v1 {
        if let Some(sb) = read_v1(src, offset, version)? {
            return Ok(Some(sb));
        }
    }
    if size >= 128 << 10 {
        let offset = (size & !0xffff) - (64 << 10);
        return read_v090(src, offset);
    }
    Ok(None)
}

/// mdadm's checksum of 1.x: the sum of little-endian words, carries folded back.
fn csum_v1(b: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    let mut words = b.chunks_exact(4);
    for w in words.by_ref() {
        sum += u64::from(le32(w, 0));
    }
    if words.remainder().len() >= 2 {
        sum += u64::from(le16(words.remainder(), 0));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

fn read_v1(
    src: &dyn ReadAt,
    offset: u64,
    version: SbVersion,
) -> Result<Option<MdSuperblock>, ReadError> {
    let Some(mut b) = read_array::<1024>(src, offset)? else {
        return Ok(None);
    };
    if le32(&b, 0) != MD_MAGIC || le32(&b, 4) != 1 {
        return Ok(None);
    }
    // The superblock records its own position (sectors); a copy elsewhere is stale.
    if le64(&b, 144) != offset / 512 {
        return Ok(None);
    }
    let max_dev = le32(&b, 220);
    let sb_len = 256 + 2 * max_dev as usize;
    // Roles beyond what fits in one 1 KiB read would need a larger superblock than
    // mdadm writes for the members allowed here.
    if max_dev > 384 || sb_len > b.len() {
        return Ok(None);
    }
    let stored = le32(&b, 216);
    b[216..220].fill(0);
    let checksum_ok = csum_v1(&b[..sb_len]) == stored;
    if !checksum_ok {
        return Ok(None);
    }
    let dev_number = le32(&b, 160);
    let role = if dev_number < max_dev {
        match le16(&b, 256 + 2 * dev_number as usize) {
            r if r >= 0xfffd => None,
            r => Some(u32::from(r)),
        }
    } else {
        None
    };
    let data_offset = le64(&b, 128).saturating_mul(512);
    let data_size = le64(&b, 136).saturating_mul(512);
    Ok(Some(MdSuperblock {
        version,
        uuid_raw: b[16..32].try_into().unwrap_or([0; 16]),
        name: label(field(&b, 32, 32)),
        preferred_minor: None,
        level: le32(&b, 72) as i32,
        layout: le32(&b, 76),
        chunk: u64::from(le32(&b, 88)) * 512,
        raid_disks: le32(&b, 92),
        component_size: le64(&b, 80).saturating_mul(512),
        data_offset,
        data_size,
        events: le64(&b, 200),
        role,
        checksum_ok,
        reshaping: le32(&b, 8) & 4 != 0,
    }))
}

/// 0.90's checksum: the sum of all 1024 words (checksum word zeroed). mdadm folds the
/// carry back, the kernel keeps the low 32 bits; either is accepted.
fn csum_v090(b: &[u8]) -> (u32, u32) {
    let sum: u64 = b.chunks_exact(4).map(|w| u64::from(le32(w, 0))).sum();
    (((sum & 0xffff_ffff) + (sum >> 32)) as u32, sum as u32)
}

fn read_v090(src: &dyn ReadAt, offset: u64) -> Result<Option<MdSuperblock>, ReadError> {
    let Some(mut b) = read_array::<4096>(src, offset)? else {
        return Ok(None);
    };
    let w = |b: &[u8], i: usize| le32(b, i * 4);
    if w(&b, 0) != MD_MAGIC || w(&b, 1) != 0 || w(&b, 2) != 90 {
        return Ok(None);
    }
    let stored = w(&b, 38);
    b[38 * 4..39 * 4].fill(0);
    let (folded, plain) = csum_v090(&b);
    if stored != folded && stored != plain {
        return Ok(None);
    }
    let mut uuid_raw = [0u8; 16];
    uuid_raw[..4].copy_from_slice(field(&b, 5 * 4, 4));
    uuid_raw[4..].copy_from_slice(field(&b, 13 * 4, 12));
    // this_disk descriptor at word 992: number, major, minor, raid_disk, state.
    let raid_disk = w(&b, 995);
    let state = w(&b, 996);
    let faulty = state & 1 != 0;
    let active = state & 2 != 0;
    let level = w(&b, 7) as i32;
    let component_size = u64::from(w(&b, 8)) * 1024;
    let role = (!faulty && (active || level <= 0)).then_some(raid_disk);
    Ok(Some(MdSuperblock {
        version: SbVersion::V090,
        uuid_raw,
        name: None,
        preferred_minor: Some(w(&b, 11)),
        level,
        layout: w(&b, 64),
        chunk: u64::from(w(&b, 65)),
        raid_disks: w(&b, 10),
        component_size,
        data_offset: 0,
        data_size: offset,
        events: u64::from(w(&b, 40)) << 32 | u64::from(w(&b, 39)),
        role,
        checksum_ok: true,
        reshaping: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// A minimal valid 1.2 superblock on a 1 MiB member.
    pub(crate) fn v12(role: u16) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        let b = &mut d[4096..4096 + 1024];
        b[0..4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[16..32].copy_from_slice(&[0x11; 16]);
        b[32..38].copy_from_slice(b"host:0");
        b[72..76].copy_from_slice(&1u32.to_le_bytes());
        b[80..88].copy_from_slice(&1024u64.to_le_bytes());
        b[92..96].copy_from_slice(&2u32.to_le_bytes());
        b[128..136].copy_from_slice(&1024u64.to_le_bytes());
        b[136..144].copy_from_slice(&1024u64.to_le_bytes());
        b[144..152].copy_from_slice(&8u64.to_le_bytes());
        b[160..164].copy_from_slice(&(role as u32).to_le_bytes());
        b[200..208].copy_from_slice(&7u64.to_le_bytes());
        b[220..224].copy_from_slice(&2u32.to_le_bytes());
        b[256..258].copy_from_slice(&0u16.to_le_bytes());
        b[258..260].copy_from_slice(&1u16.to_le_bytes());
        let c = csum_v1(&b[..260]);
        b[216..220].copy_from_slice(&c.to_le_bytes());
        d
    }

    #[test]
    fn v12_is_parsed_and_its_checksum_checked() {
        let d = v12(1);
        let sb = detect(&MemSource(d.clone())).unwrap().unwrap();
        assert_eq!(sb.version, SbVersion::V12);
        assert_eq!(sb.role, Some(1));
        assert_eq!(sb.data_offset, 512 << 10);
        assert_eq!(sb.name.as_deref(), Some("host:0"));
        assert_eq!(sb.uuid_mdadm(), "11111111:11111111:11111111:11111111");
        let mut bad = d;
        bad[4096 + 100] ^= 1;
        assert_eq!(detect(&MemSource(bad)).unwrap(), None);
    }

    #[test]
    fn nothing_on_zeros_or_small_devices() {
        assert_eq!(detect(&MemSource(vec![0; 1 << 20])).unwrap(), None);
        assert_eq!(detect(&MemSource(vec![0; 10])).unwrap(), None);
    }
}
