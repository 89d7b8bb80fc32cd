//! VHDX metadata: the two headers (the valid one with the higher sequence number wins),
//! the region table (where the BAT and the metadata region are), and the metadata items
//! (block size, sector sizes, virtual size, parent locator). Every structure with a
//! checksum is verified with CRC-32C before any field of it is used.
//!
//! Everything is little endian; GUIDs are compared as stored bytes.

use crate::inspect::bytes::{array, checked_field, field, le16, le32, le64};
use crate::inspect::crc32c;
use crate::inspect::source::ReadError;
use crate::inspect::source::{read_vec, ReadAt};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const HEADER_OFFSETS: [u64; 2] = [64 * KIB, 128 * KIB];
const HEADER_LEN: u64 = 4 * KIB;
const REGION_OFFSETS: [u64; 2] = [192 * KIB, 256 * KIB];
const REGION_LEN: u64 = 64 * KIB;
const MAX_REGION_ENTRIES: u32 = 2047;
/// The metadata region holds small items; qemu and Hyper-V use 1 MiB.
const MAX_METADATA: u64 = 16 * MIB;
const MAX_METADATA_ENTRIES: u16 = 2047;
/// Virtual disks up to 64 TiB, the format's own limit.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// A GUID as written on disk (mixed endian), written here in its text form's order.
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

pub const BAT_REGION: [u8; 16] = guid(
    0x2dc2_7766,
    0xf623,
    0x4200,
    [0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08],
);
pub const METADATA_REGION: [u8; 16] = guid(
    0x8b7c_a206,
    0x4790,
    0x4b9a,
    [0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e],
);
const FILE_PARAMETERS: [u8; 16] = guid(
    0xcaa1_6737,
    0xfa36,
    0x4d43,
    [0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b],
);
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2fa5_4224,
    0xcd1b,
    0x4876,
    [0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8],
);
const VIRTUAL_DISK_ID: [u8; 16] = guid(
    0xbeca_12ab,
    0xb2e6,
    0x4523,
    [0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46],
);
const LOGICAL_SECTOR: [u8; 16] = guid(
    0x8141_bf1d,
    0xa96f,
    0x4709,
    [0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f],
);
const PHYSICAL_SECTOR: [u8; 16] = guid(
    0xcda3_48c7,
    0x445d,
    0x4471,
    [0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56],
);
const PARENT_LOCATOR: [u8; 16] = guid(
    0xa8d3_5f2d,
    0xb30b,
    0x454d,
    [0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c],
);
const VHDX_PARENT_TYPE: [u8; 16] = guid(
    0xb04a_efb7,
    0xd19e,
    0x4a81,
    [0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13],
);

pub(crate) fn corrupt(offset: u64, message: impl Into<String>) -> ReadError {
    ReadError::Corrupt {
        format: "vhdx",
        offset,
        message: message.into(),
    }
}

fn unsupported(message: impl Into<String>) -> ReadError {
    ReadError::Unsupported {
        format: "vhdx",
        message: message.into(),
    }
}

/// CRC-32C of `b` with its checksum field (4 bytes at `at`) taken as zero.
fn checksum_ok(b: &[u8], at: usize) -> bool {
    let mut copy = b.to_vec();
    copy[at..at + 4].fill(0);
    crc32c::checksum(&copy) == le32(b, at)
}

/// The current header.
#[derive(Debug, Clone)]
pub struct VhdxHeader {
    pub sequence: u64,
    pub data_write_guid: [u8; 16],
    pub log_guid: [u8; 16],
    pub log_length: u32,
    pub log_offset: u64,
}

impl VhdxHeader {
    /// Reads both headers and returns the valid one with the higher sequence number.
    pub fn read(file: &dyn ReadAt) -> Result<VhdxHeader, ReadError> {
        let mut best: Option<VhdxHeader> = None;
        for at in HEADER_OFFSETS {
            let Ok(b) = read_vec(file, at, HEADER_LEN, HEADER_LEN) else {
                continue;
            };
            if field(&b, 0, 4) != b"head" || !checksum_ok(&b, 4) {
                continue;
            }
            let version = le16(&b, 66);
            if version != 1 {
                return Err(unsupported(format!("header version {version}")));
            }
            let h = VhdxHeader {
                sequence: le64(&b, 8),
                data_write_guid: array(&b, 32),
                log_guid: array(&b, 48),
                log_length: le32(&b, 68),
                log_offset: le64(&b, 72),
            };
            if best.as_ref().is_none_or(|b| h.sequence > b.sequence) {
                best = Some(h);
            }
        }
        best.ok_or_else(|| corrupt(HEADER_OFFSETS[0], "neither header is valid"))
    }
}

/// Where the BAT and the metadata region are.
#[derive(Debug, Clone, Copy)]
pub struct Regions {
    pub bat: (u64, u64),
    pub metadata: (u64, u64),
}

impl Regions {
    /// Reads the first valid region table (the second is a copy).
    pub fn read(file: &dyn ReadAt) -> Result<Regions, ReadError> {
        let mut last = corrupt(REGION_OFFSETS[0], "neither region table is valid");
        for at in REGION_OFFSETS {
            let Ok(b) = read_vec(file, at, REGION_LEN, REGION_LEN) else {
                continue;
            };
            if field(&b, 0, 4) != b"regi" || !checksum_ok(&b, 4) {
                continue;
            }
            match Self::parse(&b, at) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn parse(b: &[u8], at: u64) -> Result<Regions, ReadError> {
        let count = le32(b, 8);
        if count > MAX_REGION_ENTRIES {
            return Err(corrupt(at + 8, format!("{count} region entries")));
        }
        let (mut bat, mut metadata) = (None, None);
        for i in 0..count as usize {
            let e = 16 + 32 * i;
            let id: [u8; 16] = array(b, e);
            let range = (le64(b, e + 16), u64::from(le32(b, e + 24)));
            let required = le32(b, e + 28) & 1 != 0;
            if range.0 % MIB != 0 || range.1 % MIB != 0 || range.0 < MIB {
                return Err(corrupt(
                    at + e as u64,
                    "region is not MiB aligned or overlaps the headers",
                ));
            }
            match id {
                BAT_REGION => bat = Some(range),
                METADATA_REGION => metadata = Some(range),
                _ if required => return Err(unsupported("an unknown required region")),
                _ => {}
            }
        }
        match (bat, metadata) {
            (Some(bat), Some(metadata)) => Ok(Regions { bat, metadata }),
            _ => Err(corrupt(
                at,
                "region table lacks the BAT or the metadata region",
            )),
        }
    }
}

/// The metadata items the reader uses.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub block_size: u32,
    pub has_parent: bool,
    pub leave_blocks_allocated: bool,
    pub virtual_size: u64,
    pub disk_id: [u8; 16],
    pub logical_sector: u32,
    pub physical_sector: u32,
    /// Parent locator key/value pairs (UTF-16 in the file).
    pub parent: Vec<(String, String)>,
}

impl Metadata {
    pub fn read(file: &dyn ReadAt, (at, len): (u64, u64)) -> Result<Metadata, ReadError> {
        if len > MAX_METADATA || at.checked_add(len).is_none_or(|e| e > file.size()) {
            return Err(corrupt(
                at,
                "metadata region is too large or past the end of the file",
            ));
        }
        let b = read_vec(file, at, len, MAX_METADATA)?;
        if field(&b, 0, 8) != b"metadata" {
            return Err(corrupt(at, "no metadata table signature"));
        }
        let count = le16(&b, 10);
        if count > MAX_METADATA_ENTRIES {
            return Err(corrupt(at + 10, format!("{count} metadata entries")));
        }
        let mut items: Vec<([u8; 16], &[u8], bool)> = Vec::new();
        for i in 0..count as usize {
            let e = 32 + 32 * i;
            let id: [u8; 16] = array(&b, e);
            let off = le32(&b, e + 16) as usize;
            let n = le32(&b, e + 20) as usize;
            let flags = le32(&b, e + 24);
            let data = field(&b, off, n);
            if data.len() != n || (n > 0 && off < 64 * 1024) {
                return Err(corrupt(
                    at + e as u64,
                    "metadata item outside the metadata region",
                ));
            }
            items.push((id, data, flags & 4 != 0));
        }
        let get = |id: [u8; 16]| items.iter().find(|(i, _, _)| *i == id).map(|(_, d, _)| *d);
        let known = [
            FILE_PARAMETERS,
            VIRTUAL_DISK_SIZE,
            VIRTUAL_DISK_ID,
            LOGICAL_SECTOR,
            PHYSICAL_SECTOR,
            PARENT_LOCATOR,
        ];
        if let Some((id, _, _)) = items
            .iter()
            .find(|(id, _, req)| *req && !known.contains(id))
        {
            return Err(unsupported(format!(
                "unknown required metadata item {id:02x?}"
            )));
        }
        let need = |id: [u8; 16], what: &str| {
            get(id).ok_or_else(|| corrupt(at, format!("metadata lacks the {what}")))
        };
        let params = need(FILE_PARAMETERS, "file parameters")?;
        let m = Metadata {
            block_size: le32(params, 0),
            leave_blocks_allocated: le32(params, 4) & 1 != 0,
            has_parent: le32(params, 4) & 2 != 0,
            virtual_size: le64(need(VIRTUAL_DISK_SIZE, "virtual disk size")?, 0),
            disk_id: get(VIRTUAL_DISK_ID)
                .map(|d| array(d, 0))
                .unwrap_or_default(),
            logical_sector: le32(need(LOGICAL_SECTOR, "logical sector size")?, 0),
            physical_sector: le32(need(PHYSICAL_SECTOR, "physical sector size")?, 0),
            parent: match get(PARENT_LOCATOR) {
                Some(d) => parse_locator(d).map_err(|m| corrupt(at, m))?,
                None => Vec::new(),
            },
        };
        let bs = m.block_size;
        if !(MIB as u32..=256 * MIB as u32).contains(&bs) || !bs.is_power_of_two() {
            return Err(corrupt(at, format!("block size {bs}")));
        }
        if !matches!(m.logical_sector, 512 | 4096) || !matches!(m.physical_sector, 512 | 4096) {
            return Err(corrupt(
                at,
                format!("sector sizes {}/{}", m.logical_sector, m.physical_sector),
            ));
        }
        if m.virtual_size == 0
            || m.virtual_size > MAX_VIRTUAL_SIZE
            || !m.virtual_size.is_multiple_of(u64::from(m.logical_sector))
        {
            return Err(corrupt(at, format!("virtual size {}", m.virtual_size)));
        }
        if m.has_parent && m.parent.is_empty() {
            return Err(corrupt(at, "differencing disk without a parent locator"));
        }
        Ok(m)
    }

    /// The value of a parent locator key.
    pub fn parent_value(&self, key: &str) -> Option<&str> {
        self.parent
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The key/value pairs of a VHDX parent locator item.
fn parse_locator(d: &[u8]) -> Result<Vec<(String, String)>, String> {
    if array::<16>(d, 0) != VHDX_PARENT_TYPE {
        return Err("parent locator of an unknown type".into());
    }
    let count = le16(d, 18) as usize;
    let utf16 = |off: usize, len: usize| -> Result<String, String> {
        let raw = checked_field(d, off, len)
            .filter(|_| len.is_multiple_of(2))
            .ok_or("parent locator entry outside its item")?;
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(String::from_utf16_lossy(&units))
    };
    (0..count)
        .map(|i| {
            let e = 20 + 12 * i;
            if field(d, e, 12).len() != 12 {
                return Err("parent locator entries run past the item".to_string());
            }
            let key = utf16(le32(d, e) as usize, le16(d, e + 8) as usize)?;
            let value = utf16(le32(d, e + 4) as usize, le16(d, e + 10) as usize)?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_layout() {
        // 2DC27766-F623-4200-9D64-115E9BFD4A08 as stored.
        assert_eq!(&BAT_REGION[..4], &[0x66, 0x77, 0xc2, 0x2d]);
        assert_eq!(
            &BAT_REGION[8..],
            &[0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08]
        );
    }

    #[test]
    fn locator() {
        let mut d = VHDX_PARENT_TYPE.to_vec();
        d.extend([0, 0, 1, 0]);
        d.extend(32u32.to_le_bytes());
        d.extend(36u32.to_le_bytes());
        d.extend(4u16.to_le_bytes());
        d.extend(6u16.to_le_bytes());
        d.extend("ab".encode_utf16().flat_map(|u| u.to_le_bytes()));
        d.extend("xyz".encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(
            parse_locator(&d).unwrap(),
            vec![("ab".into(), "xyz".into())]
        );
        d.truncate(38);
        assert!(parse_locator(&d).is_err());
    }
}
