//! Value records (`vk`) and their data: inline (4 bytes or less), in one cell, or in a
//! big-data (`db`) chain of segments for data over 16344 bytes.

use crate::inspect::bytes::{be32, le16, le32, le64};

use super::bins::Bins;
use super::key::decode_name;
use super::{corrupt, HiveError, MAX_VALUE_BYTES};

const COMP_NAME: u16 = 0x0001;
/// Data-size flag: the data sits in the offset field itself.
const INLINE: u32 = 0x8000_0000;
/// Largest data kept in one cell; bigger data uses a `db` chain (hive 1.4+).
const BIG_DATA_THRESHOLD: usize = 16344;

const REG_SZ: u32 = 1;
const REG_EXPAND_SZ: u32 = 2;
const REG_BINARY: u32 = 3;
const REG_DWORD: u32 = 4;
const REG_DWORD_BIG_ENDIAN: u32 = 5;
const REG_MULTI_SZ: u32 = 7;
const REG_QWORD: u32 = 11;

/// A value's data, decoded by its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegValue {
    Sz(String),
    ExpandSz(String),
    MultiSz(Vec<String>),
    Dword(u32),
    Qword(u64),
    Binary(Vec<u8>),
    /// Any other type (or a DWORD/QWORD of the wrong size), raw.
    Other {
        kind: u32,
        data: Vec<u8>,
    },
}

impl RegValue {
    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RegValue::Sz(s) | RegValue::ExpandSz(s) => Some(s),
            _ => None,
        }
    }

    /// A number, from a DWORD or QWORD.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            RegValue::Dword(d) => Some(u64::from(*d)),
            RegValue::Qword(q) => Some(*q),
            _ => None,
        }
    }

    /// Raw bytes of a binary value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            RegValue::Binary(b) | RegValue::Other { data: b, .. } => Some(b),
            _ => None,
        }
    }
}

fn record(bins: &Bins, offset: u32) -> Result<&[u8], HiveError> {
    let c = bins.cell(offset)?;
    if c.len() < 20 || &c[..2] != b"vk" {
        return Err(corrupt(offset, "not a value record"));
    }
    Ok(c)
}

pub(crate) fn name(bins: &Bins, offset: u32) -> Result<String, HiveError> {
    let c = record(bins, offset)?;
    let len = usize::from(le16(c, 2));
    let raw = c
        .get(20..20 + len)
        .ok_or_else(|| corrupt(offset, "value name past its cell"))?;
    Ok(decode_name(raw, le16(c, 16) & COMP_NAME != 0))
}

pub(crate) fn read(bins: &Bins, offset: u32) -> Result<(String, RegValue), HiveError> {
    let c = record(bins, offset)?;
    let size_field = le32(c, 4);
    let kind = le32(c, 12);
    let data = if size_field & INLINE != 0 {
        let n = (size_field & !INLINE).min(4) as usize;
        c[8..8 + n].to_vec()
    } else {
        let size = size_field as usize;
        if size > MAX_VALUE_BYTES {
            return Err(HiveError::TooLarge {
                what: "value",
                size: size as u64,
                limit: MAX_VALUE_BYTES as u64,
            });
        }
        let at = le32(c, 8);
        if size == 0 {
            Vec::new()
        } else {
            let cell = bins.cell(at)?;
            if size > BIG_DATA_THRESHOLD && cell.starts_with(b"db") {
                big_data(bins, at, cell, size)?
            } else {
                cell.get(..size)
                    .ok_or_else(|| corrupt(at, format!("value of {size} bytes past its cell")))?
                    .to_vec()
            }
        }
    };
    Ok((name(bins, offset)?, decode(kind, data)))
}

/// Concatenates the segments of a big-data chain up to `size` bytes.
fn big_data(bins: &Bins, at: u32, db: &[u8], size: usize) -> Result<Vec<u8>, HiveError> {
    let n = usize::from(le16(db, 2));
    let list = bins.cell(le32(db, 4))?;
    if n * 4 > list.len() {
        return Err(corrupt(
            at,
            format!("big data of {n} segments past its list"),
        ));
    }
    let mut out = Vec::with_capacity(size);
    for i in 0..n {
        let seg = bins.cell(le32(list, i * 4))?;
        let take = seg.len().min(BIG_DATA_THRESHOLD).min(size - out.len());
        out.extend_from_slice(&seg[..take]);
        if out.len() == size {
            return Ok(out);
        }
    }
    Err(corrupt(
        at,
        format!("big data chain holds {} of {size} bytes", out.len()),
    ))
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// A string value ends at its first NUL (writers often store one or more).
fn sz(b: &[u8]) -> String {
    let s = utf16(b);
    match s.find('\0') {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn decode(kind: u32, data: Vec<u8>) -> RegValue {
    match (kind, data.len()) {
        (REG_SZ, _) => RegValue::Sz(sz(&data)),
        (REG_EXPAND_SZ, _) => RegValue::ExpandSz(sz(&data)),
        (REG_MULTI_SZ, _) => RegValue::MultiSz(
            utf16(&data)
                .split('\0')
                .take_while(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        (REG_DWORD, 4) => RegValue::Dword(le32(&data, 0)),
        (REG_DWORD_BIG_ENDIAN, 4) => RegValue::Dword(be32(&data, 0)),
        (REG_QWORD, 8) => RegValue::Qword(le64(&data, 0)),
        (REG_BINARY, _) => RegValue::Binary(data),
        _ => RegValue::Other { kind, data },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn decodes_types() {
        assert_eq!(decode(REG_SZ, w("Wïn\0\0")), RegValue::Sz("Wïn".into()));
        assert_eq!(
            decode(REG_MULTI_SZ, w("a\0bc\0\0")),
            RegValue::MultiSz(vec!["a".into(), "bc".into()])
        );
        assert_eq!(decode(REG_DWORD, vec![1, 0, 0, 0]), RegValue::Dword(1));
        assert_eq!(
            decode(REG_DWORD_BIG_ENDIAN, vec![0, 0, 0, 1]),
            RegValue::Dword(1)
        );
        assert_eq!(
            decode(REG_QWORD, 5u64.to_le_bytes().to_vec()).as_u64(),
            Some(5)
        );
        assert!(matches!(
            decode(REG_DWORD, vec![1]),
            RegValue::Other { kind: 4, .. }
        ));
    }
}
