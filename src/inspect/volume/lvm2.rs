//! LVM2 physical volumes: the PV label (`LABELONE` in one of the first four sectors)
//! and, from its metadata area, the volume group's name and UUID.
//!
//! The label says where the PV's metadata areas are; `mda` reads the text from them,
//! `text` parses it and `vg` turns it into the volume group.

pub(super) mod map;
pub(super) mod mda;
pub mod text;
pub mod thin;
pub mod vg;

use crate::inspect::bytes::{field, le32, le64, read_array};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const LABEL_ID: &[u8; 8] = b"LABELONE";
const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
const SECTOR: u64 = 512;
/// Sectors scanned for the label.
const LABEL_SCAN_SECTORS: u64 = 4;
/// LVM's CRC seed (its CRC is CRC-32 without the final inversion, from this seed).
const CRC_SEED: u32 = 0xf597_a6cf;
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

/// LVM's CRC of `data`.
pub(crate) fn lvm_crc(data: &[u8]) -> u32 {
    // crc32fast keeps its state inverted: seeding it with !SEED and inverting the result
    // gives LVM's uninverted CRC.
    let mut h = crc32fast::Hasher::new_with_initial(!CRC_SEED);
    h.update(data);
    !h.finalize()
}

/// Looks for a PV label in the first four sectors of `src`.
pub fn detect(src: &dyn ReadAt) -> Result<Option<PvLabel>, ReadError> {
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

/// One copy of a VG's metadata text found in a metadata area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataCopy {
    pub text: Vec<u8>,
    /// The committed copy whose checksum the area header vouches for; `false` for an
    /// older copy found in the ring buffer after the committed one failed its checks.
    pub verified: bool,
}

/// The metadata copies of every metadata area of `pv`: the committed text when its
/// checksum verifies, else the older copies still in the area's ring buffer (newest
/// first is not known before parsing; the caller picks by seqno).
pub fn read_metadata(src: &dyn ReadAt, pv: &PvLabel) -> Result<Vec<MetadataCopy>, ReadError> {
    let mut out = Vec::new();
    for area in &pv.metadata_areas {
        match mda::committed_text(src, area)? {
            Some(text) => out.push(MetadataCopy {
                text,
                verified: true,
            }),
            None => {
                out.extend(
                    mda::older_copies(src, area)?
                        .into_iter()
                        .map(|text| MetadataCopy {
                            text,
                            verified: false,
                        }),
                )
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;
    use crate::inspect::volume::lvm2::mda::MDA_MAGIC;

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
        let copies = read_metadata(&src, &label).unwrap();
        assert_eq!(
            copies,
            vec![MetadataCopy {
                text: TEXT.as_bytes().to_vec(),
                verified: true
            }]
        );
    }

    #[test]
    fn bad_crc_is_not_a_label() {
        let mut d = pv();
        d[512 + 40] ^= 1;
        assert_eq!(detect(&MemSource(d)).unwrap(), None);
    }

    #[test]
    fn corrupt_metadata_text_falls_back_to_the_ring() {
        // The committed copy is damaged; an older copy sits at the ring's start.
        let mut d = pv();
        d[4096 + 512] ^= 1;
        let older = b"vg0 {\nid = \"AAAAAA\"\nseqno = 2\n}\n\0";
        d[4096 + 1024..4096 + 1024 + older.len()].copy_from_slice(older);
        let src = MemSource(d);
        let label = detect(&src).unwrap().unwrap();
        let copies = read_metadata(&src, &label).unwrap();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert!(!copies[0].verified);
        assert_eq!(copies[0].text, &older[..older.len() - 1]);
    }
}
