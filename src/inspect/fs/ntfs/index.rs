//! Directory indexes (`$I30`): the B-tree of `$FILE_NAME` keys kept in `$INDEX_ROOT`
//! (inside the record) and `$INDEX_ALLOCATION` (`INDX` blocks elsewhere).
//!
//! Both hold a node header followed by entries; an entry may point to a child block by
//! VCN. A listing visits every node once (a visited set stops cycles).

use crate::inspect::bytes::{le16, le32, le64};
use crate::inspect::fs::FsError;

use super::attr::utf16_at;
use super::corrupt;

const ENTRY_HAS_CHILD: u16 = 0x0001;
const ENTRY_LAST: u16 = 0x0002;

/// `$FILE_NAME` namespace of names that exist only as DOS 8.3 aliases.
const NAMESPACE_DOS: u8 = 2;
/// File attribute: a directory (as set in index keys).
const FILE_ATTR_DIRECTORY: u32 = 0x1000_0000;
/// File attribute: a reparse point (symlink, junction, WOF, dedup...).
pub(crate) const FILE_ATTR_REPARSE: u32 = 0x0000_0400;

/// One `$FILE_NAME` value: a name of a file in its parent directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileName {
    pub parent: u64,
    pub flags: u32,
    /// The reparse tag when `flags` has [`FILE_ATTR_REPARSE`].
    pub reparse_tag: u32,
    pub namespace: u8,
    pub name: Vec<u16>,
}

impl FileName {
    pub fn parse(b: &[u8]) -> Option<FileName> {
        let len = usize::from(*b.get(0x40)?);
        Some(FileName {
            parent: le64(b, 0) & 0x0000_ffff_ffff_ffff,
            flags: le32(b, 0x38),
            reparse_tag: le32(b, 0x3c),
            namespace: *b.get(0x41)?,
            name: utf16_at(b, 0x42, len)?,
        })
    }

    pub fn is_dos_only(&self) -> bool {
        self.namespace == NAMESPACE_DOS
    }

    pub fn is_dir(&self) -> bool {
        self.flags & FILE_ATTR_DIRECTORY != 0
    }
}

/// One entry of a node: a file reference and its name (none for the last entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// MFT record number (low 48 bits) and sequence number (high 16).
    pub file_ref: u64,
    pub name: Option<FileName>,
    /// VCN of the child node holding the keys sorted before this one.
    pub child: Option<u64>,
}

/// Parses the entries of a node whose header starts at `header` in `b` (offsets in
/// the header are relative to it).
pub(crate) fn parse_node(b: &[u8], header: usize) -> Result<Vec<Entry>, FsError> {
    let first = le32(b, header) as usize;
    let used = le32(b, header + 4) as usize;
    let end = header
        .checked_add(used)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| corrupt(format!("index node of {used} bytes past its block")))?;
    let mut at = header
        .checked_add(first)
        .ok_or_else(|| corrupt("index entry offset overflows".into()))?;
    let mut out = Vec::new();
    loop {
        if at + 0x10 > end {
            return Err(corrupt("index node has no last entry".into()));
        }
        let len = usize::from(le16(b, at + 8));
        let key_len = usize::from(le16(b, at + 10));
        let flags = le16(b, at + 12);
        if len < 0x10 || !len.is_multiple_of(8) || at + len > end || 0x10 + key_len > len {
            return Err(corrupt(format!("index entry of {len} bytes at {at}")));
        }
        let child = if flags & ENTRY_HAS_CHILD != 0 {
            if len < 0x18 {
                return Err(corrupt("index entry too short for its child VCN".into()));
            }
            Some(le64(b, at + len - 8))
        } else {
            None
        };
        let last = flags & ENTRY_LAST != 0;
        let name = if last || key_len == 0 {
            None
        } else {
            Some(
                FileName::parse(&b[at + 0x10..at + 0x10 + key_len])
                    .ok_or_else(|| corrupt(format!("index key at {at} cut short")))?,
            )
        };
        out.push(Entry {
            file_ref: le64(b, at),
            name,
            child,
        });
        if last {
            return Ok(out);
        }
        at += len;
    }
}

/// `$INDEX_ROOT`: the collated attribute type (must be `$FILE_NAME` for a directory),
/// the index block size, and the root node's entries.
pub(crate) struct Root {
    pub block_size: u64,
    pub entries: Vec<Entry>,
}

pub(crate) fn parse_root(b: &[u8]) -> Result<Root, FsError> {
    if b.len() < 0x20 {
        return Err(corrupt("$INDEX_ROOT cut short".into()));
    }
    if le32(b, 0) != super::attr::FILE_NAME {
        return Err(corrupt(format!(
            "$I30 index of attribute type {:#x}",
            le32(b, 0)
        )));
    }
    Ok(Root {
        block_size: u64::from(le32(b, 8)),
        entries: parse_node(b, 0x10)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An index entry for `name` (Win32 namespace) referring to record `rec`.
    pub(crate) fn entry(rec: u64, name: &str, ns: u8, flags: u32, child: Option<u64>) -> Vec<u8> {
        let units: Vec<u16> = name.encode_utf16().collect();
        let key_len = 0x42 + 2 * units.len();
        let mut len = (0x10 + key_len).div_ceil(8) * 8;
        if child.is_some() {
            len += 8;
        }
        let mut e = vec![0u8; len];
        e[0..8].copy_from_slice(&rec.to_le_bytes());
        e[8..10].copy_from_slice(&(len as u16).to_le_bytes());
        e[10..12].copy_from_slice(&(key_len as u16).to_le_bytes());
        if let Some(vcn) = child {
            e[12] = ENTRY_HAS_CHILD as u8;
            e[len - 8..].copy_from_slice(&vcn.to_le_bytes());
        }
        let k = 0x10;
        e[k..k + 8].copy_from_slice(&5u64.to_le_bytes());
        e[k + 0x38..k + 0x3c].copy_from_slice(&flags.to_le_bytes());
        e[k + 0x40] = units.len() as u8;
        e[k + 0x41] = ns;
        for (i, u) in units.iter().enumerate() {
            e[k + 0x42 + 2 * i..k + 0x44 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        e
    }

    pub(crate) fn last(child: Option<u64>) -> Vec<u8> {
        let len = if child.is_some() { 0x18 } else { 0x10 };
        let mut e = vec![0u8; len];
        e[8] = len as u8;
        e[12] = (ENTRY_LAST | if child.is_some() { ENTRY_HAS_CHILD } else { 0 }) as u8;
        if let Some(vcn) = child {
            e[0x10..].copy_from_slice(&vcn.to_le_bytes());
        }
        e
    }

    /// A node header at 0 followed by `entries`.
    pub(crate) fn node(entries: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = entries.concat();
        let mut b = vec![0u8; 0x10];
        b[0..4].copy_from_slice(&0x10u32.to_le_bytes());
        b[4..8].copy_from_slice(&((0x10 + body.len()) as u32).to_le_bytes());
        b[8..12].copy_from_slice(&((0x10 + body.len()) as u32).to_le_bytes());
        b.extend(body);
        b
    }

    #[test]
    fn parses_entries() {
        let b = node(&[
            entry(40, "Wïndows", 1, FILE_ATTR_DIRECTORY, None),
            entry(41, "WINDOW~1", NAMESPACE_DOS, 0, Some(3)),
            last(Some(7)),
        ]);
        let e = parse_node(&b, 0).unwrap();
        assert_eq!(e.len(), 3);
        let n = e[0].name.as_ref().unwrap();
        assert_eq!(String::from_utf16(&n.name).unwrap(), "Wïndows");
        assert!(n.is_dir() && !n.is_dos_only());
        assert!(e[1].name.as_ref().unwrap().is_dos_only());
        assert_eq!(
            (e[1].child, e[2].child, e[2].name.is_none()),
            (Some(3), Some(7), true)
        );
    }

    #[test]
    fn hostile_nodes() {
        let mut b = node(&[entry(40, "a", 1, 0, None)]);
        assert!(parse_node(&b, 0).is_err(), "no last entry");
        b[0x18] = 0xff; // entry length
        assert!(parse_node(&b, 0).is_err());
        assert!(parse_node(&[0u8; 8], 0).is_err());
    }
}
