//! One attribute of an MFT record: its common header, and either its resident value or
//! the sizes and run list of its non-resident value.

use crate::inspect::bytes::{le16, le32, le64};

pub(crate) const ATTRIBUTE_LIST: u32 = 0x20;
pub(crate) const FILE_NAME: u32 = 0x30;
pub(crate) const DATA: u32 = 0x80;
pub(crate) const INDEX_ROOT: u32 = 0x90;
pub(crate) const INDEX_ALLOCATION: u32 = 0xa0;
pub(crate) const REPARSE_POINT: u32 = 0xc0;

/// Attribute flag: the value is compressed (LZNT1 compression units).
const FLAG_COMPRESSED: u16 = 0x0001;
/// Attribute flag: the value is encrypted (EFS), which we cannot read.
const FLAG_ENCRYPTED: u16 = 0x4000;

/// Where an attribute's value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// The value itself, inside the record.
    Resident(Vec<u8>),
    /// Clusters elsewhere, described by the encoded run list of this extent.
    NonResident(NonResident),
}

/// The header of one extent of a non-resident value; a value may be split into
/// several extents (in several records), each covering `start_vcn..=last_vcn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NonResident {
    pub start_vcn: u64,
    pub last_vcn: u64,
    /// Encoded run list (decoded by `runs::decode`).
    pub runs: Vec<u8>,
    /// log2 of the compression unit in clusters (4 on every real volume), 0 when not
    /// compressed. Only meaningful in the first extent, as are the sizes.
    pub compression_unit: u8,
    pub allocated_size: u64,
    pub data_size: u64,
    pub initialized_size: u64,
}

/// One parsed attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub kind: u32,
    /// UTF-16 name (`$I30` for directory indexes, empty for the main data stream).
    pub name: Vec<u16>,
    pub flags: u16,
    pub value: Value,
}

impl Attribute {
    /// Parses the attribute in `b` (exactly its length, already checked to be >= 0x18).
    pub fn parse(b: &[u8]) -> Result<Attribute, String> {
        let kind = le32(b, 0);
        let non_resident = b[8] != 0;
        let name_len = usize::from(b[9]);
        let name_off = usize::from(le16(b, 10));
        let flags = le16(b, 12);
        let name = utf16_at(b, name_off, name_len).ok_or("name outside the attribute")?;
        let value = if non_resident {
            if b.len() < 0x40 {
                return Err("non-resident header cut short".into());
            }
            let runs_off = usize::from(le16(b, 0x20));
            if runs_off < 0x40 || runs_off > b.len() {
                return Err(format!("run list offset {runs_off}"));
            }
            Value::NonResident(NonResident {
                start_vcn: le64(b, 0x10),
                last_vcn: le64(b, 0x18),
                runs: b[runs_off..].to_vec(),
                compression_unit: b[0x22],
                allocated_size: le64(b, 0x28),
                data_size: le64(b, 0x30),
                initialized_size: le64(b, 0x38),
            })
        } else {
            let len = le32(b, 0x10) as usize;
            let off = usize::from(le16(b, 0x14));
            let end = off.checked_add(len).filter(|&e| e <= b.len());
            match end {
                Some(end) if off >= 0x18 || len == 0 => Value::Resident(b[off..end].to_vec()),
                _ => return Err(format!("resident value of {len} bytes at {off}")),
            }
        };
        Ok(Attribute {
            kind,
            name,
            flags,
            value,
        })
    }

    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    pub fn encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    pub fn is(&self, kind: u32, name: &str) -> bool {
        self.kind == kind && self.name.iter().copied().eq(name.encode_utf16())
    }
}

/// `len` UTF-16 code units at byte `off` of `b`.
pub(crate) fn utf16_at(b: &[u8], off: usize, len: usize) -> Option<Vec<u16>> {
    let end = off.checked_add(len * 2)?;
    let raw = b.get(off..end)?;
    Some(
        raw.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// One entry of an `$ATTRIBUTE_LIST`: which record holds which attribute extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListEntry {
    pub kind: u32,
    pub record: u64,
}

/// Parses an `$ATTRIBUTE_LIST` value; entries that do not fit end the list.
pub(crate) fn parse_list(b: &[u8]) -> Vec<ListEntry> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 0x1a <= b.len() {
        let len = usize::from(le16(b, at + 4));
        if len < 0x1a || at + len > b.len() {
            break;
        }
        out.push(ListEntry {
            kind: le32(b, at),
            record: le64(b, at + 0x10) & 0x0000_ffff_ffff_ffff,
        });
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_and_non_resident() {
        let mut a = vec![0u8; 0x20];
        a[0..4].copy_from_slice(&DATA.to_le_bytes());
        a[0x10..0x14].copy_from_slice(&3u32.to_le_bytes());
        a[0x14..0x16].copy_from_slice(&0x18u16.to_le_bytes());
        a[0x18..0x1b].copy_from_slice(b"abc");
        let p = Attribute::parse(&a).unwrap();
        assert_eq!(p.value, Value::Resident(b"abc".to_vec()));
        assert!(p.is(DATA, ""));
        a[0x10] = 200;
        assert!(Attribute::parse(&a).is_err());

        let mut n = vec![0u8; 0x48];
        n[0..4].copy_from_slice(&DATA.to_le_bytes());
        n[8] = 1;
        n[0x20] = 0x40;
        n[0x30] = 9;
        n[0x40..0x44].copy_from_slice(&[0x11, 2, 5, 0]);
        let p = Attribute::parse(&n).unwrap();
        let Value::NonResident(nr) = p.value else {
            panic!()
        };
        assert_eq!((nr.data_size, &nr.runs[..3]), (9, &[0x11, 2, 5][..]));
    }
}
