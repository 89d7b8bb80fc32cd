//! Key nodes (`nk`) and the subkey lists that index their children: `lf`/`lh` (offset
//! plus name hint or hash), `li` (offsets only) and `ri` (a list of those lists).

use std::collections::HashSet;

use crate::inspect::bytes::{le16, le32};

use super::bins::Bins;
use super::value::{self, RegValue};
use super::{corrupt, same_name, HiveError};

/// Key node flag: the name is stored as Latin-1 bytes, not UTF-16LE.
const COMP_NAME: u16 = 0x0020;
/// A list offset meaning "none".
const NONE: u32 = 0xffff_ffff;
/// Most leaves one `ri` may index (each holds up to ~1000 keys).
const MAX_RI_LEAVES: usize = 1 << 14;

/// One key, as read from its `nk` cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub offset: u32,
    pub name: String,
    subkey_count: u32,
    subkeys: u32,
    value_count: u32,
    values: u32,
}

impl Key {
    pub(crate) fn read(bins: &Bins, offset: u32) -> Result<Key, HiveError> {
        let c = bins.cell(offset)?;
        if c.len() < 76 || &c[..2] != b"nk" {
            return Err(corrupt(offset, "not a key node"));
        }
        let name_len = usize::from(le16(c, 72));
        let raw = c
            .get(76..76 + name_len)
            .ok_or_else(|| corrupt(offset, "key name past its cell"))?;
        Ok(Key {
            offset,
            name: decode_name(raw, le16(c, 2) & COMP_NAME != 0),
            subkey_count: le32(c, 20),
            subkeys: le32(c, 28),
            value_count: le32(c, 36),
            values: le32(c, 40),
        })
    }

    /// Offsets of the child key nodes, walking `ri` indirection once.
    fn child_offsets(&self, bins: &Bins) -> Result<Vec<u32>, HiveError> {
        if self.subkey_count == 0 || self.subkeys == NONE {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        leaf(bins, self.subkeys, &mut out, &mut seen, true)?;
        Ok(out)
    }

    pub(crate) fn subkeys(&self, bins: &Bins) -> Result<Vec<Key>, HiveError> {
        self.child_offsets(bins)?
            .into_iter()
            .filter(|&o| o != self.offset)
            .map(|o| Key::read(bins, o))
            .collect()
    }

    pub(crate) fn subkey(&self, bins: &Bins, name: &str) -> Result<Option<Key>, HiveError> {
        for o in self.child_offsets(bins)? {
            let k = Key::read(bins, o)?;
            if same_name(&k.name, name) {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    fn value_offsets(&self, bins: &Bins) -> Result<Vec<u32>, HiveError> {
        if self.value_count == 0 || self.values == NONE {
            return Ok(Vec::new());
        }
        let c = bins.cell(self.values)?;
        let n = self.value_count as usize;
        if n * 4 > c.len() {
            return Err(corrupt(
                self.values,
                format!("{n} values do not fit a list of {} bytes", c.len()),
            ));
        }
        Ok((0..n).map(|i| le32(c, i * 4)).collect())
    }

    pub(crate) fn values(&self, bins: &Bins) -> Result<Vec<(String, RegValue)>, HiveError> {
        self.value_offsets(bins)?
            .into_iter()
            .map(|o| value::read(bins, o))
            .collect()
    }

    pub(crate) fn value(&self, bins: &Bins, name: &str) -> Result<Option<RegValue>, HiveError> {
        for o in self.value_offsets(bins)? {
            if same_name(&value::name(bins, o)?, name) {
                return value::read(bins, o).map(|(_, v)| Some(v));
            }
        }
        Ok(None)
    }
}

/// Appends the key offsets of the list at `offset`; `ri` lists recurse once into
/// their leaves (an `ri` inside an `ri` is corrupt). `seen` stops a list met twice.
fn leaf(
    bins: &Bins,
    offset: u32,
    out: &mut Vec<u32>,
    seen: &mut HashSet<u32>,
    allow_ri: bool,
) -> Result<(), HiveError> {
    if !seen.insert(offset) {
        return Err(corrupt(offset, "subkey list reached twice (a loop)"));
    }
    let c = bins.cell(offset)?;
    if c.len() < 4 {
        return Err(corrupt(offset, "subkey list cut short"));
    }
    let n = usize::from(le16(c, 2));
    let (stride, kind) = match &c[..2] {
        b"lf" | b"lh" => (8, "leaf"),
        b"li" => (4, "leaf"),
        b"ri" if allow_ri => (4, "root"),
        sig => {
            return Err(corrupt(
                offset,
                format!("subkey list signature {:?}", String::from_utf8_lossy(sig)),
            ))
        }
    };
    if 4 + n * stride > c.len() {
        return Err(corrupt(offset, format!("{n} subkeys do not fit the list")));
    }
    if kind == "root" && n > MAX_RI_LEAVES {
        return Err(corrupt(offset, format!("index root of {n} leaves")));
    }
    for i in 0..n {
        let o = le32(c, 4 + i * stride);
        if kind == "root" {
            leaf(bins, o, out, seen, false)?;
        } else {
            out.push(o);
        }
    }
    Ok(())
}

/// A key or value name: Latin-1 when compressed, else UTF-16LE.
pub(crate) fn decode_name(raw: &[u8], compressed: bool) -> String {
    if compressed {
        raw.iter().map(|&b| char::from(b)).collect()
    } else {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    }
}
