//! LVM2 physical volumes: the PV label (`LABELONE` in one of the first four sectors)
//! and, from its metadata area, the volume group's name and UUID.
//!
//! Full VG metadata (logical volumes and their segments) is a later issue; what is read
//! here is what `blkid` reports for a PV plus the VG identity, all bounded: the label is
//! one sector, the metadata text is at most [`MAX_METADATA`] bytes.

use crate::inspect::bytes::{field, le32, le64};
use crate::inspect::fs::probe::{read_array, read_opt};
use crate::inspect::image::ImageError;
use crate::inspect::source::ReadAt;

const LABEL_ID: &[u8; 8] = b"LABELONE";
const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
const SECTOR: u64 = 512;
/// Sectors scanned for the label.
const LABEL_SCAN_SECTORS: u64 = 4;
/// LVM's CRC seed (its CRC is CRC-32 without the final inversion, from this seed).
const CRC_SEED: u32 = 0xf597_a6cf;
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
const MDA_HEADER_SIZE: u64 = 512;
/// Largest metadata text read.
pub const MAX_METADATA: u64 = 4 << 20;
/// Most data or metadata areas listed in one PV header.
const MAX_AREAS: usize = 8;

/// An area of the PV (data or metadata), in bytes from the start of the PV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub offset: u64,
    pub size: u64,
}

/// What the PV label says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLabel {
    /// Sector (0-3) holding the label.
    pub sector: u64,
    /// PV UUID in LVM's dashed form (6-4-4-4-4-4-6), as blkid prints it.
    pub uuid: String,
    /// Size of the PV in bytes, as recorded by pvcreate.
    pub device_size: u64,
    pub data_areas: Vec<Area>,
    pub metadata_areas: Vec<Area>,
}

/// The volume group a PV belongs to, from its newest metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgSummary {
    pub name: String,
    /// VG UUID as written in the metadata (already dashed).
    pub uuid: String,
    pub seqno: u64,
}

/// LVM's CRC of `data`.
fn lvm_crc(data: &[u8]) -> u32 {
    // crc32fast keeps its state inverted: seeding it with !SEED and inverting the result
    // gives LVM's uninverted CRC.
    let mut h = crc32fast::Hasher::new_with_initial(!CRC_SEED);
    h.update(data);
    !h.finalize()
}

/// Looks for a PV label in the first four sectors of `src`.
pub fn detect(src: &dyn ReadAt) -> Result<Option<PvLabel>, ImageError> {
    for sector in 0..LABEL_SCAN_SECTORS {
        let Some(s) = read_array::<512>(src, sector * SECTOR)? else {
            return Ok(None);
        };
        if field(&s, 0, 8) != LABEL_ID || field(&s, 24, 8) != LABEL_TYPE {
            continue;
        }
        // The label must say where it is, and its CRC covers bytes 20..512.
        if le64(&s, 8) != sector || lvm_crc(&s[20..]) != le32(&s, 16) {
            continue;
        }
        let pvh = le32(&s, 20) as usize;
        let Some(uuid_raw) = field(&s, pvh, 32).get(..32) else {
            continue;
        };
        let device_size = le64(&s, pvh.saturating_add(32));
        let mut at = pvh.saturating_add(40);
        let data_areas = areas(&s, &mut at);
        let metadata_areas = areas(&s, &mut at);
        return Ok(Some(PvLabel {
            sector,
            uuid: dashed(uuid_raw),
            device_size,
            data_areas,
            metadata_areas,
        }));
    }
    Ok(None)
}

/// Reads a zero-terminated list of (offset, size) pairs starting at `*at`, within the
/// sector and at most [`MAX_AREAS`] long.
fn areas(s: &[u8], at: &mut usize) -> Vec<Area> {
    let mut out = Vec::new();
    while field(s, *at, 16).len() == 16 {
        let (offset, size) = (le64(s, *at), le64(s, *at + 8));
        *at += 16;
        if offset == 0 {
            break;
        }
        if out.len() < MAX_AREAS {
            out.push(Area { offset, size });
        }
    }
    out
}

/// Formats a 32-character LVM id as 6-4-4-4-4-4-6.
fn dashed(raw: &[u8]) -> String {
    let mut out = String::with_capacity(38);
    for (i, &c) in raw.iter().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            out.push('-');
        }
        out.push(char::from(c));
    }
    out
}

/// Reads the VG name, UUID and seqno from the first metadata area that holds valid
/// metadata; `None` when the PV is not (yet) in a VG or no area checks out.
pub fn read_vg_summary(src: &dyn ReadAt, pv: &PvLabel) -> Result<Option<VgSummary>, ImageError> {
    for area in &pv.metadata_areas {
        if let Some(text) = metadata_text(src, area)? {
            if let Some(vg) = parse_summary(&text) {
                return Ok(Some(vg));
            }
        }
    }
    Ok(None)
}

/// The current metadata text of one metadata area (the ring buffer may wrap).
fn metadata_text(src: &dyn ReadAt, area: &Area) -> Result<Option<Vec<u8>>, ImageError> {
    let Some(h) = read_array::<512>(src, area.offset)? else {
        return Ok(None);
    };
    if field(&h, 4, 16) != MDA_MAGIC
        || lvm_crc(&h[4..]) != le32(&h, 0)
        || le64(&h, 24) != area.offset
    {
        return Ok(None);
    }
    let mda_size = le64(&h, 32).min(area.size);
    // The first raw location is the committed metadata.
    let (offset, size, checksum) = (le64(&h, 40), le64(&h, 48), le32(&h, 56));
    if size == 0 || size > MAX_METADATA || offset < MDA_HEADER_SIZE || offset >= mda_size {
        return Ok(None);
    }
    let first = size.min(mda_size - offset);
    let rest = size - first;
    if rest > mda_size - MDA_HEADER_SIZE {
        return Ok(None);
    }
    let Some(abs) = area.offset.checked_add(offset) else {
        return Ok(None);
    };
    let Some(mut text) = read_opt(src, abs, first)? else {
        return Ok(None);
    };
    if rest > 0 {
        let Some(wrapped) = read_opt(src, area.offset + MDA_HEADER_SIZE, rest)? else {
            return Ok(None);
        };
        text.extend_from_slice(&wrapped);
    }
    Ok((lvm_crc(&text) == checksum).then_some(text))
}

/// Picks `name { id = "..." seqno = N ... }` out of LVM's text metadata: the first
/// top-level section is the VG; `id` and `seqno` are its direct fields.
fn parse_summary(text: &[u8]) -> Option<VgSummary> {
    let text = std::str::from_utf8(text.split(|&b| b == 0).next()?).ok()?;
    let mut name = None;
    let (mut uuid, mut seqno) = (None, None);
    let mut depth = 0usize;
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if depth == 0 {
            if let Some(section) = line.strip_suffix('{') {
                if name.is_none() {
                    name = Some(section.trim().to_string());
                }
            }
        } else if depth == 1 && name.is_some() {
            if let Some((key, value)) = line.split_once('=') {
                match key.trim() {
                    "id" => uuid = Some(value.trim().trim_matches('"').to_string()),
                    "seqno" => seqno = value.trim().parse().ok(),
                    _ => {}
                }
            }
        }
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if depth == 0 && name.is_some() && uuid.is_some() {
            break;
        }
    }
    Some(VgSummary {
        name: name.filter(|n| !n.is_empty())?,
        uuid: uuid?,
        seqno: seqno.unwrap_or(0),
    })
}

/// Drops a `#` comment that is not inside a quoted string.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    const TEXT: &str = "vg0 {\nid = \"AAAAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGGGG\"\nseqno = 3\n\
        physical_volumes {\npv0 {\nid = \"x\" # comment\n}\n}\n}\n# Generated by LVM2\n\
        contents = \"Text Format Volume Group\"\n";

    /// A PV with its label in sector 1 and a metadata area at 4 KiB whose text wraps.
    fn pv() -> Vec<u8> {
        let mut d = vec![0u8; 64 << 10];
        let s = 512;
        d[s..s + 8].copy_from_slice(LABEL_ID);
        d[s + 8..s + 16].copy_from_slice(&1u64.to_le_bytes());
        d[s + 20..s + 24].copy_from_slice(&32u32.to_le_bytes());
        d[s + 24..s + 32].copy_from_slice(LABEL_TYPE);
        d[s + 32..s + 64].copy_from_slice(b"3lPhiIHt2NZM0INaHkyiiLP3JZvHH7lA");
        d[s + 64..s + 72].copy_from_slice(&(64u64 << 10).to_le_bytes());
        d[s + 72..s + 80].copy_from_slice(&(1u64 << 20).to_le_bytes()); // data area
        d[s + 104..s + 112].copy_from_slice(&4096u64.to_le_bytes()); // metadata area
        d[s + 112..s + 120].copy_from_slice(&8192u64.to_le_bytes());
        let crc = lvm_crc(&d[s + 20..s + 512]);
        d[s + 16..s + 20].copy_from_slice(&crc.to_le_bytes());
        // Metadata area header: text starts 40 bytes before the end of the area.
        let m = 4096;
        let size = TEXT.len() as u64;
        let offset: u64 = 8192 - 40;
        d[m + 4..m + 20].copy_from_slice(MDA_MAGIC);
        d[m + 20..m + 24].copy_from_slice(&1u32.to_le_bytes());
        d[m + 24..m + 32].copy_from_slice(&4096u64.to_le_bytes());
        d[m + 32..m + 40].copy_from_slice(&8192u64.to_le_bytes());
        d[m + 40..m + 48].copy_from_slice(&offset.to_le_bytes());
        d[m + 48..m + 56].copy_from_slice(&size.to_le_bytes());
        d[m + 56..m + 60].copy_from_slice(&lvm_crc(TEXT.as_bytes()).to_le_bytes());
        let crc = lvm_crc(&d[m + 4..m + 512]);
        d[m..m + 4].copy_from_slice(&crc.to_le_bytes());
        let (a, b) = TEXT.as_bytes().split_at(40);
        d[m + offset as usize..m + 8192].copy_from_slice(a);
        d[m + 512..m + 512 + b.len()].copy_from_slice(b);
        d
    }

    #[test]
    fn label_and_wrapped_metadata() {
        let src = MemSource(pv());
        let label = detect(&src).unwrap().unwrap();
        assert_eq!(label.sector, 1);
        assert_eq!(label.uuid, "3lPhiI-Ht2N-ZM0I-NaHk-yiiL-P3JZ-vHH7lA");
        assert_eq!(label.device_size, 64 << 10);
        assert_eq!(
            label.data_areas,
            vec![Area {
                offset: 1 << 20,
                size: 0
            }]
        );
        assert_eq!(
            label.metadata_areas,
            vec![Area {
                offset: 4096,
                size: 8192
            }]
        );
        let vg = read_vg_summary(&src, &label).unwrap().unwrap();
        assert_eq!(
            vg,
            VgSummary {
                name: "vg0".into(),
                uuid: "AAAAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGGGG".into(),
                seqno: 3
            }
        );
    }

    #[test]
    fn bad_crc_is_not_a_label() {
        let mut d = pv();
        d[512 + 40] ^= 1;
        assert_eq!(detect(&MemSource(d)).unwrap(), None);
    }

    #[test]
    fn corrupt_metadata_text_gives_no_summary() {
        let mut d = pv();
        d[4096 + 512] ^= 1;
        let src = MemSource(d);
        let label = detect(&src).unwrap().unwrap();
        assert_eq!(read_vg_summary(&src, &label).unwrap(), None);
    }
}
