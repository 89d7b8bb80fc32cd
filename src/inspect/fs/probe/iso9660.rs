//! ISO 9660 primary volume descriptor (and the Joliet supplementary one for the label).
//!
//! The "UUID" of an ISO is, as in blkid, its modification (else creation) timestamp
//! written as `YYYY-MM-DD-HH-MM-SS-CC`.

use super::{label, read_array, utf16_label, Probed};
use crate::inspect::bytes::{field, le16, le32};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const PVD_OFFSET: u64 = 0x8000;
const SECTOR: u64 = 2048;
/// Volume descriptors after the primary one looked at for Joliet.
const MAX_DESCRIPTORS: u64 = 16;
const TYPE_SUPPLEMENTARY: u8 = 2;
const TYPE_END: u8 = 0xff;

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    let Some(pvd) = read_array::<2048>(src, PVD_OFFSET)? else {
        return Ok(None);
    };
    if field(&pvd, 9, 5) == b"CDROM" {
        // High Sierra, the pre-standard format: only a label.
        return Ok(Some(Probed {
            fs_type: "iso9660",
            uuid: None,
            label: label(&pvd[48..80]),
            size: None,
        }));
    }
    if field(&pvd, 1, 5) != b"CD001" {
        return Ok(None);
    }
    let pvd_label = field(&pvd, 40, 32);
    let mut found_label = label(pvd_label);
    for i in 1..=MAX_DESCRIPTORS {
        let Some(vd) = read_array::<2048>(src, PVD_OFFSET + i * SECTOR)? else {
            break;
        };
        if vd[0] == TYPE_END {
            break;
        }
        let escape = field(&vd, 88, 3);
        let joliet = [&b"%/@"[..], b"%/C", b"%/E"].contains(&escape);
        if vd[0] == TYPE_SUPPLEMENTARY && joliet {
            // The Joliet copy is UCS-2 and holds only 16 characters: prefer the PVD's
            // label when Joliet says the same thing.
            if !ascii_eq_utf16be(pvd_label, field(&vd, 40, 32)) {
                found_label = utf16_label(field(&vd, 40, 32), true);
            }
            break;
        }
    }
    let size = u64::from(le32(&pvd, 80)) * u64::from(le16(&pvd, 128));
    Ok(Some(Probed {
        fs_type: "iso9660",
        uuid: date_uuid(field(&pvd, 830, 17)).or_else(|| date_uuid(field(&pvd, 813, 17))),
        label: found_label,
        size: Some(size),
    }))
}

/// Whether the UTF-16BE string equals the start of the ASCII one, unit by unit.
fn ascii_eq_utf16be(ascii: &[u8], utf16: &[u8]) -> bool {
    utf16
        .chunks_exact(2)
        .zip(ascii)
        .all(|(u, &a)| u[0] == 0 && u[1] == a)
}

/// A volume timestamp (16 digits + time-zone byte) as blkid's UUID; `None` when unset
/// (all '0' with zone 0) or not digits.
fn date_uuid(d: &[u8]) -> Option<String> {
    let digits = field(d, 0, 16);
    if digits.len() != 16 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.iter().all(|&c| c == b'0') && d[16] == 0 {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    Some(format!(
        "{}-{}-{}-{}-{}-{}-{}",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14],
        &s[14..16]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    fn image() -> Vec<u8> {
        let mut d = vec![0u8; 0x8000 + 4 * 2048];
        let p = 0x8000;
        d[p] = 1;
        d[p + 1..p + 6].copy_from_slice(b"CD001");
        d[p + 40..p + 72].copy_from_slice(&[b' '; 32]);
        d[p + 40..p + 46].copy_from_slice(b"ISOLAB");
        d[p + 80..p + 84].copy_from_slice(&100u32.to_le_bytes());
        d[p + 128..p + 130].copy_from_slice(&2048u16.to_le_bytes());
        d[p + 813..p + 829].copy_from_slice(b"2024010203040506");
        d[p + 830..p + 846].copy_from_slice(b"0000000000000000");
        d[p + 2048] = TYPE_END;
        d
    }

    #[test]
    fn pvd_label_uuid_and_size() {
        let p = probe(&MemSource(image())).unwrap().unwrap();
        assert_eq!(p.label.as_deref(), Some("ISOLAB"));
        assert_eq!(p.uuid.as_deref(), Some("2024-01-02-03-04-05-06"));
        assert_eq!(p.size, Some(100 * 2048));
    }

    #[test]
    fn joliet_label_wins_when_it_differs() {
        let mut d = image();
        let s = 0x8000 + 2048;
        d[s] = TYPE_SUPPLEMENTARY;
        d[s + 88..s + 91].copy_from_slice(b"%/E");
        for (i, u) in "Ünïcode".encode_utf16().enumerate() {
            d[s + 40 + 2 * i..s + 42 + 2 * i].copy_from_slice(&u.to_be_bytes());
        }
        d[s + 2048] = TYPE_END;
        let p = probe(&MemSource(d)).unwrap().unwrap();
        assert_eq!(p.label.as_deref(), Some("Ünïcode"));
    }
}
