//! One MFT record (`FILE`) or index block (`INDX`): the update sequence array that
//! protects it, and the walk over a record's attributes.
//!
//! NTFS writes each record with the last two bytes of every 512-byte stride replaced by
//! an update sequence number, the originals kept in an array in the header. A stride
//! whose last two bytes differ from that number was torn by a partial write, so the
//! record is refused rather than read half old, half new.

use crate::inspect::bytes::{le16, le32, le64};
use crate::inspect::fs::FsError;

use super::attr::Attribute;
use super::corrupt;

/// The stride the update sequence protects, whatever the sector size.
const STRIDE: usize = 512;
const ATTR_END: u32 = 0xffff_ffff;

/// Record header flag: the record is in use.
const IN_USE: u16 = 0x0001;
/// Record header flag: the record is a directory (has a `$I30` index).
const IS_DIR: u16 = 0x0002;

/// Checks the update sequence of `buf` (whose first four bytes are `magic`) and puts
/// the original bytes back.
pub(crate) fn apply_fixups(buf: &mut [u8], magic: &[u8; 4], what: &str) -> Result<(), FsError> {
    if &buf[..4.min(buf.len())] != magic {
        return Err(corrupt(format!(
            "{what}: no {} signature",
            String::from_utf8_lossy(magic)
        )));
    }
    let off = usize::from(le16(buf, 4));
    let count = usize::from(le16(buf, 6));
    let strides = buf.len() / STRIDE;
    if count != strides + 1 || off < 8 || off + 2 * count > buf.len() || !off.is_multiple_of(2) {
        return Err(corrupt(format!(
            "{what}: update sequence of {count} entries at {off} for {strides} strides"
        )));
    }
    let usn = [buf[off], buf[off + 1]];
    for i in 1..count {
        let end = i * STRIDE - 2;
        if buf[end..end + 2] != usn {
            return Err(corrupt(format!(
                "{what}: update sequence mismatch in stride {i} (torn write)"
            )));
        }
        let orig = [buf[off + 2 * i], buf[off + 2 * i + 1]];
        buf[end..end + 2].copy_from_slice(&orig);
    }
    Ok(())
}

/// A fixed-up MFT record.
pub(crate) struct Record {
    pub number: u64,
    pub bytes: Vec<u8>,
}

impl Record {
    /// Validates the header of the record `number` read into `bytes`.
    pub fn parse(number: u64, mut bytes: Vec<u8>) -> Result<Record, FsError> {
        let what = format!("MFT record {number}");
        apply_fixups(&mut bytes, b"FILE", &what)?;
        let rec = Record { number, bytes };
        let first = usize::from(le16(&rec.bytes, 0x14));
        let used = le32(&rec.bytes, 0x18) as usize;
        if first < 0x30 || first > used || used > rec.bytes.len() {
            return Err(corrupt(format!(
                "{what}: attributes at {first}, {used} bytes used of {}",
                rec.bytes.len()
            )));
        }
        Ok(rec)
    }

    pub fn in_use(&self) -> bool {
        le16(&self.bytes, 0x16) & IN_USE != 0
    }

    pub fn is_dir(&self) -> bool {
        le16(&self.bytes, 0x16) & IS_DIR != 0
    }

    pub fn sequence(&self) -> u16 {
        le16(&self.bytes, 0x10)
    }

    /// The base record this one extends (0 for a base record).
    pub fn base(&self) -> u64 {
        le64(&self.bytes, 0x20) & 0x0000_ffff_ffff_ffff
    }

    /// Every attribute in the record, in order. Each step moves forward inside the
    /// used part of the record, so the walk ends on any bytes.
    pub fn attributes(&self) -> Result<Vec<Attribute>, FsError> {
        let used = le32(&self.bytes, 0x18) as usize;
        let b = &self.bytes[..used];
        let mut at = usize::from(le16(b, 0x14));
        let mut out = Vec::new();
        loop {
            if at + 4 > b.len() {
                // Windows always ends the list with the end marker.
                return Err(corrupt(format!(
                    "MFT record {}: attribute list runs past the record",
                    self.number
                )));
            }
            if le32(b, at) == ATTR_END {
                return Ok(out);
            }
            let len = le32(b, at + 4) as usize;
            if len < 0x18 || !len.is_multiple_of(8) || at + len > b.len() {
                return Err(corrupt(format!(
                    "MFT record {}: attribute at {at} of {len} bytes does not fit",
                    self.number
                )));
            }
            out.push(Attribute::parse(&b[at..at + len]).map_err(|m| {
                corrupt(format!(
                    "MFT record {}: attribute at {at}: {m}",
                    self.number
                ))
            })?);
            at += len;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Protects `buf` with update sequence number `usn` (array at 0x30 for records).
    pub(crate) fn protect(buf: &mut [u8], off: usize, usn: u16) {
        let count = buf.len() / STRIDE + 1;
        buf[4..6].copy_from_slice(&(off as u16).to_le_bytes());
        buf[6..8].copy_from_slice(&(count as u16).to_le_bytes());
        buf[off..off + 2].copy_from_slice(&usn.to_le_bytes());
        for i in 1..count {
            let end = i * STRIDE - 2;
            let orig = [buf[end], buf[end + 1]];
            buf[off + 2 * i..off + 2 * i + 2].copy_from_slice(&orig);
            buf[end..end + 2].copy_from_slice(&usn.to_le_bytes());
        }
    }

    #[test]
    fn fixups_restore_and_detect_torn_writes() {
        let mut b = vec![0u8; 1024];
        b[..4].copy_from_slice(b"FILE");
        b[510] = 0xaa;
        b[1022] = 0xbb;
        protect(&mut b, 0x30, 7);
        assert_eq!(le16(&b, 510), 7);
        let mut ok = b.clone();
        apply_fixups(&mut ok, b"FILE", "t").unwrap();
        assert_eq!((ok[510], ok[1022]), (0xaa, 0xbb));
        b[1022] = 9;
        let err = apply_fixups(&mut b, b"FILE", "t").unwrap_err();
        assert!(err.to_string().contains("mismatch"), "{err}");
        let mut short = vec![0u8; 1024];
        short[..4].copy_from_slice(b"FILE");
        short[4..8].copy_from_slice(&[0xfe, 0x03, 3, 0]);
        assert!(apply_fixups(&mut short, b"FILE", "t").is_err());
    }
}
