//! LUKS1/LUKS2 header detection: version, UUID and (LUKS2) label, as blkid reports them.
//!
//! Only the binary header is read: unlocking is out of scope, so the payload stays an
//! opaque container in the report. When the primary LUKS2 header is damaged, the
//! secondary copy is looked for at the offsets LUKS2 allows, as blkid does.

pub mod crypt;
pub mod header;
pub mod open;

use crate::inspect::bytes::{be16, be64, field, label, read_array};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";
/// Where a LUKS2 secondary header may start (bytes); its `hdr_offset` must agree.
const SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

/// The facts of a LUKS header that inspection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksHeader {
    /// 1 or 2 (other values are reported as found).
    pub version: u16,
    pub uuid: Option<String>,
    /// LUKS2 only.
    pub label: Option<String>,
    /// LUKS2 only: the owner subsystem label.
    pub subsystem: Option<String>,
    /// Byte offset of the header used: 0, or a secondary header's offset.
    pub header_offset: u64,
}

/// Looks for a LUKS header at the start of `src` (then for a LUKS2 secondary header).
pub fn detect(src: &dyn ReadAt) -> Result<Option<LuksHeader>, ReadError> {
    if let Some(h) = header_at(src, 0, MAGIC)? {
        return Ok(Some(h));
    }
    for offset in SECONDARY_OFFSETS {
        if let Some(h) = header_at(src, offset, MAGIC_SECONDARY)? {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

/// Whether `src` starts with a BitLocker volume header (`-FVE-FS-` OEM id, as blkid
/// checks; BitLocker To Go's `MSWIN4.1` variant carries its signature further in and is
/// not recognised). Its contents cannot be read without the key.
pub fn detect_bitlocker(src: &dyn ReadAt) -> Result<bool, ReadError> {
    let Some(bs) = read_array::<512>(src, 0)? else {
        return Ok(false);
    };
    Ok(field(&bs, 3, 8) == b"-FVE-FS-" && bs[510] == 0x55 && bs[511] == 0xaa)
}

fn header_at(
    src: &dyn ReadAt,
    offset: u64,
    magic: &[u8; 6],
) -> Result<Option<LuksHeader>, ReadError> {
    let Some(h) = read_array::<512>(src, offset)? else {
        return Ok(None);
    };
    if field(&h, 0, 6) != magic {
        return Ok(None);
    }
    let version = be16(&h, 6);
    // A LUKS2 header records where it lives; a copy found elsewhere is stale.
    if version == 2 && be64(&h, 256) != offset {
        return Ok(None);
    }
    // LUKS1 and LUKS2 both keep the UUID string at 168 (40 bytes).
    let uuid = (version == 1 || version == 2)
        .then(|| label(&h[168..208]))
        .flatten();
    let (label_, subsystem) = if version == 2 {
        (label(&h[24..72]), label(&h[208..256]))
    } else {
        (None, None)
    };
    Ok(Some(LuksHeader {
        version,
        uuid,
        label: label_,
        subsystem,
        header_offset: offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    fn header(magic: &[u8; 6], version: u16, offset: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..6].copy_from_slice(magic);
        h[6..8].copy_from_slice(&version.to_be_bytes());
        h[24..29].copy_from_slice(b"crypt");
        h[168..172].copy_from_slice(b"abcd");
        h[256..264].copy_from_slice(&offset.to_be_bytes());
        h
    }

    #[test]
    fn luks1_has_no_label() {
        let mut d = vec![0u8; 4096];
        d[..512].copy_from_slice(&header(MAGIC, 1, 0));
        let h = detect(&MemSource(d)).unwrap().unwrap();
        assert_eq!(
            (h.version, h.uuid.as_deref(), h.label),
            (1, Some("abcd"), None)
        );
    }

    #[test]
    fn luks2_secondary_header_when_primary_is_gone() {
        let mut d = vec![0u8; 0x10000];
        d[0x4000..0x4200].copy_from_slice(&header(MAGIC_SECONDARY, 2, 0x4000));
        let h = detect(&MemSource(d.clone())).unwrap().unwrap();
        assert_eq!(
            (h.label.as_deref(), h.header_offset),
            (Some("crypt"), 0x4000)
        );
        // A copy claiming another offset is ignored.
        d[0x4000..0x4200].copy_from_slice(&header(MAGIC_SECONDARY, 2, 0x8000));
        assert_eq!(detect(&MemSource(d)).unwrap(), None);
    }
}
