//! The 100-byte header at the start of every SQLite database file.

use super::corrupt;
use crate::inspect::os::packages::PackageError;

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How TEXT values are encoded; fixed for the whole database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    Utf16le,
    Utf16be,
}

/// The header fields the reader needs, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbHeader {
    pub page_size: usize,
    /// Page size minus the reserved bytes at the end of each page.
    pub usable_size: usize,
    /// Whether the file is in WAL mode (read/write versions 2), so a `-wal` file applies.
    pub wal_mode: bool,
    /// The in-header database size in pages, when SQLite would trust it (the change
    /// counter matches "version valid for"); otherwise the file size decides.
    pub page_count: Option<u32>,
    pub encoding: TextEncoding,
}

impl DbHeader {
    /// Parses and validates the header at the start of `page1`.
    pub fn parse(page1: &[u8]) -> Result<DbHeader, PackageError> {
        let h = page1.get(..100).ok_or_else(|| {
            corrupt(
                "database header",
                0,
                "file shorter than the 100-byte header",
            )
        })?;
        if &h[..16] != MAGIC {
            return Err(corrupt(
                "database header",
                0,
                "not an SQLite 3 database (bad magic)",
            ));
        }
        let raw = u16::from_be_bytes([h[16], h[17]]);
        let page_size = if raw == 1 { 65536 } else { usize::from(raw) };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(
                "database header",
                16,
                &format!("invalid page size {raw}"),
            ));
        }
        let (write_version, read_version) = (h[18], h[19]);
        if !matches!(read_version, 1 | 2) || !matches!(write_version, 1 | 2) {
            return Err(corrupt(
                "database header",
                18,
                &format!("unknown file format versions {write_version}/{read_version}"),
            ));
        }
        let usable_size = page_size - usize::from(h[20]);
        // SQLite's own minimum: below it the overflow arithmetic breaks down.
        if usable_size < 480 {
            return Err(corrupt(
                "database header",
                20,
                &format!("{} reserved bytes per page leave too little", h[20]),
            ));
        }
        let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let page_count = (be32(24) == be32(92) && be32(28) != 0).then(|| be32(28));
        let encoding = match be32(56) {
            // 0 only in a database with no schema yet; SQLite then defaults to UTF-8.
            0 | 1 => TextEncoding::Utf8,
            2 => TextEncoding::Utf16le,
            3 => TextEncoding::Utf16be,
            e => {
                return Err(corrupt(
                    "database header",
                    56,
                    &format!("unknown text encoding {e}"),
                ))
            }
        };
        Ok(DbHeader {
            page_size,
            usable_size,
            wal_mode: read_version == 2 || write_version == 2,
            page_count,
            encoding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(MAGIC);
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        h[18] = 2;
        h[19] = 2;
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&3u32.to_be_bytes());
        h[56..60].copy_from_slice(&1u32.to_be_bytes());
        h[92..96].copy_from_slice(&7u32.to_be_bytes());
        h
    }

    #[test]
    fn parses() {
        let h = DbHeader::parse(&header()).unwrap();
        assert_eq!(
            (h.page_size, h.usable_size, h.wal_mode, h.page_count),
            (4096, 4096, true, Some(3))
        );
        let mut b = header();
        b[16..18].copy_from_slice(&1u16.to_be_bytes());
        b[92] = 9;
        let h = DbHeader::parse(&b).unwrap();
        assert_eq!((h.page_size, h.page_count), (65536, None));
    }

    #[test]
    fn rejects() {
        let mut b = header();
        b[16..18].copy_from_slice(&512u16.to_be_bytes());
        b[20] = 33;
        assert!(DbHeader::parse(&b).is_err(), "usable size 479");
        b[20] = 32;
        assert!(DbHeader::parse(&b).is_ok(), "usable size 480");
        for (at, v) in [(0, b'x'), (16, 0x11), (18, 3), (59, 4)] {
            let mut b = header();
            b[at] = v;
            assert!(DbHeader::parse(&b).is_err(), "byte {at}");
        }
        assert!(DbHeader::parse(&header()[..99]).is_err());
    }
}
