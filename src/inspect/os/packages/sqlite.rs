//! A minimal, read-only reader of the SQLite 3 file format, just enough to list the rows
//! of one table: rpm (>= 4.16) keeps its package headers in an SQLite database, and we
//! may not link C code or run `sqlite3` on guest data.
//!
//! Supported: every page size (including 65536), reserved bytes, UTF-8/16 text, table
//! b-trees (interior and leaf pages), overflow chains, and the write-ahead log. Not
//! needed and not read: index b-trees, freelists, pointer maps, rollback journals.
//!
//! Hostile input is bounded by construction: every page is visited at most once per
//! parse (a second visit is a cycle or a shared page, hence corruption), b-tree depth is
//! capped, and a row's payload is never larger than the input bytes themselves.

pub mod btree;
#[cfg(test)]
pub(crate) mod build;
pub mod header;
pub mod record;
pub mod wal;

use std::collections::HashSet;

use header::{DbHeader, TextEncoding};
use record::Value;
use wal::WalIndex;

use super::PackageError;

const FILE: &str = "SQLite database";

/// One page, borrowed from the database file or from the log, with where it came from
/// (for error messages).
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub number: u32,
    /// The whole page (`page_size` bytes).
    pub data: &'a [u8],
    pub file: &'static str,
    pub file_offset: u64,
}

impl Page<'_> {
    /// An error about this page, located by file and byte offset.
    pub fn corrupt(&self, offset_in_page: usize, message: &str) -> PackageError {
        corrupt_in(
            self.file,
            &format!("page {}", self.number),
            self.file_offset.saturating_add(offset_in_page as u64),
            message,
        )
    }
}

/// An open database: the file's bytes, the committed part of its log, and the set of
/// pages visited so far (the loop and cycle guard).
pub struct Database<'a> {
    db: &'a [u8],
    wal: Option<(&'a [u8], WalIndex)>,
    pub header: DbHeader,
    page_count: u32,
    visited: HashSet<u32>,
    /// Non-fatal findings (a log that had to be ignored, unreadable schema rows).
    pub warnings: Vec<String>,
}

impl<'a> Database<'a> {
    /// Opens a database from its bytes and, optionally, the bytes of its `-wal` file. A
    /// log that is empty is normal (cleanly closed database); one that cannot be used
    /// (bad header, other page size, database not in WAL mode) is ignored with a warning,
    /// which is also what SQLite does.
    pub fn open(db: &'a [u8], wal: Option<&'a [u8]>) -> Result<Database<'a>, PackageError> {
        let mut warnings = Vec::new();
        let mut log = None;
        if let Some(bytes) = wal.filter(|w| !w.is_empty()) {
            match WalIndex::parse(bytes) {
                Ok(index) if index.pages.is_empty() => {
                    if index.uncommitted_frames > 0 {
                        warnings.push(format!(
                            "SQLite WAL: {} frames of an uncommitted transaction ignored",
                            index.uncommitted_frames
                        ));
                    }
                }
                Ok(index) => log = Some((bytes, index)),
                Err(e) => warnings.push(format!("write-ahead log ignored: {e}")),
            }
        }
        let mut header = None;
        if let Some((bytes, index)) = &log {
            // The file's own header decides whether a log applies at all; only a file
            // too short to have one (never checkpointed) leaves it to the log's page 1.
            if DbHeader::parse(db).is_ok_and(|h| !h.wal_mode) {
                warnings
                    .push("write-ahead log ignored: the database is not in WAL mode".to_string());
            } else {
                let page1 = index
                    .pages
                    .get(&1)
                    .and_then(|&at| bytes.get(at..at + index.page_size))
                    .unwrap_or(db);
                let h = DbHeader::parse(page1)?;
                if h.page_size != index.page_size {
                    warnings.push(format!(
                        "write-ahead log ignored: its page size {} differs from the database's {}",
                        index.page_size, h.page_size
                    ));
                } else {
                    if index.uncommitted_frames > 0 {
                        warnings.push(format!(
                            "SQLite WAL: {} frames of an uncommitted transaction ignored",
                            index.uncommitted_frames
                        ));
                    }
                    header = Some(h);
                }
            }
        }
        let header = match header {
            Some(h) => h,
            None => {
                log = None;
                DbHeader::parse(db)?
            }
        };
        let file_pages = u32::try_from(db.len() / header.page_size).unwrap_or(u32::MAX);
        let page_count = match (&log, header.page_count) {
            (Some((_, index)), _) => index.db_pages.unwrap_or(file_pages),
            (None, Some(n)) => n,
            (None, None) => file_pages,
        };
        Ok(Database {
            db,
            wal: log,
            header,
            page_count,
            visited: HashSet::new(),
            warnings,
        })
    }

    /// Total bytes of input (file plus log): no row payload can be larger.
    pub fn input_len(&self) -> usize {
        self.db
            .len()
            .saturating_add(self.wal.as_ref().map_or(0, |(w, _)| w.len()))
    }

    /// Fetches page `number` (newest committed image), refusing a page already visited in
    /// this parse: in a sound database every page has exactly one use, so a revisit means
    /// a cycle or a corrupt pointer.
    pub fn page(&mut self, number: u32) -> Result<Page<'a>, PackageError> {
        let size = self.header.page_size;
        if number == 0 || number > self.page_count {
            return Err(corrupt(
                "page reference",
                0,
                &format!(
                    "page {number} out of range (database has {} pages)",
                    self.page_count
                ),
            ));
        }
        if !self.visited.insert(number) {
            return Err(corrupt(
                &format!("page {number}"),
                (u64::from(number) - 1) * size as u64,
                "page reached twice (cycle or shared page)",
            ));
        }
        if let Some((bytes, index)) = &self.wal {
            if let Some(&at) = index.pages.get(&number) {
                // The index only holds frames that were read whole.
                if let Some(data) = bytes.get(at..at + size) {
                    return Ok(Page {
                        number,
                        data,
                        file: "SQLite WAL",
                        file_offset: at as u64,
                    });
                }
            }
        }
        let start = (number as usize - 1).checked_mul(size);
        match start.and_then(|s| Some((s, self.db.get(s..s.checked_add(size)?)?))) {
            Some((s, data)) => Ok(Page {
                number,
                data,
                file: FILE,
                file_offset: s as u64,
            }),
            None => Err(corrupt(
                &format!("page {number}"),
                start.unwrap_or(usize::MAX) as u64,
                &format!(
                    "page lies beyond the end of the {}-byte file",
                    self.db.len()
                ),
            )),
        }
    }

    /// Decodes a TEXT value in the database's encoding.
    pub fn text(&self, bytes: &[u8]) -> String {
        match self.header.encoding {
            TextEncoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            TextEncoding::Utf16le => utf16(bytes, u16::from_le_bytes),
            TextEncoding::Utf16be => utf16(bytes, u16::from_be_bytes),
        }
    }

    /// The root page of the table called `name` (ASCII case-insensitive, as in SQL), from
    /// the schema table on page 1. Schema rows that cannot be read become warnings.
    pub fn find_table(&mut self, name: &str) -> Result<Option<u32>, PackageError> {
        let mut rows = Vec::new();
        let mut problems = Vec::new();
        btree::walk_table(self, 1, &mut |rowid, payload| {
            match payload {
                Ok(p) => rows.push(p.into_owned()),
                Err(e) => problems.push(format!("schema row {rowid} unreadable: {e}")),
            }
            Ok(())
        })?;
        self.warnings.extend(problems);
        for payload in rows {
            let values = match record::decode(&payload) {
                Ok(v) => v,
                Err(e) => {
                    self.warnings
                        .push(format!("schema row unreadable: {}", e.0));
                    continue;
                }
            };
            // Columns: type, name, tbl_name, rootpage, sql.
            if let [Value::Text(kind), Value::Text(table), _, Value::Integer(root), ..] = values[..]
            {
                if self.text(kind) == "table" && self.text(table).eq_ignore_ascii_case(name) {
                    return u32::try_from(root)
                        .ok()
                        .filter(|&r| r != 0)
                        .map(Some)
                        .ok_or_else(|| {
                            corrupt("schema", 0, &format!("table {name} has root page {root}"))
                        });
                }
            }
        }
        Ok(None)
    }
}

/// Decodes UTF-16 code units (of the given byte order), replacing invalid ones.
fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or('\u{FFFD}'))
        .collect()
}

/// An error in the database file at a byte offset.
pub(crate) fn corrupt(structure: &str, offset: u64, message: &str) -> PackageError {
    corrupt_in(FILE, structure, offset, message)
}

/// An error in `file` (the database or its log) at a byte offset.
pub(crate) fn corrupt_in(
    file: &'static str,
    structure: &str,
    offset: u64,
    message: &str,
) -> PackageError {
    PackageError::Corrupt {
        database: file,
        structure: structure.to_string(),
        offset,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::build::Builder;
    use super::wal::build::wal;
    use super::*;

    #[test]
    fn finds_tables_case_insensitively() {
        let file = Builder::single_table(512, "Packages", &[vec![1, 2]], 1);
        let mut db = Database::open(&file, None).unwrap();
        assert_eq!(db.find_table("packages").unwrap(), Some(2));
        let mut db = Database::open(&file, None).unwrap();
        assert_eq!(db.find_table("Basenames").unwrap(), None);
    }

    #[test]
    fn utf16_schema_text() {
        // A UTF-16LE database: schema text is UTF-16 and the header says so.
        let utf16 = |s: &str| {
            s.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        let (kind, name) = (utf16("table"), utf16("Packages"));
        let mut b = Builder::new(512);
        b.alloc();
        let root = b.alloc();
        let text = |v: &Vec<u8>| 13 + 2 * v.len() as u64;
        let schema = Builder::record(&[
            (text(&kind), &kind),
            (text(&name), &name),
            (text(&name), &name),
            (1, &[root as u8]),
        ]);
        let cell = b.leaf_cell(1, &schema);
        b.write_page(1, 13, &[cell], 0);
        b.write_page(root, 13, &[], 0);
        let mut file = b.finish();
        file[56..60].copy_from_slice(&2u32.to_be_bytes());
        let mut db = Database::open(&file, None).unwrap();
        assert_eq!(db.text(&name), "Packages");
        assert_eq!(db.find_table("Packages").unwrap(), Some(root));
    }

    #[test]
    fn wal_applies_only_in_wal_mode() {
        let old = Builder::single_table(512, "a", &[vec![1]], 1);
        let new = Builder::single_table(512, "b", &[vec![2]], 1);
        let frames: Vec<(u32, u32, &[u8])> = new
            .chunks(512)
            .enumerate()
            .map(|(i, p)| (i as u32 + 1, if i == 2 { 3 } else { 0 }, p))
            .collect();
        let log = wal(512, &frames);
        let mut db = Database::open(&old, Some(&log)).unwrap();
        assert!(db.warnings.is_empty(), "{:?}", db.warnings);
        assert_eq!(db.find_table("b").unwrap(), Some(2));
        // Never checkpointed: the file is empty and everything is in the log.
        let mut db = Database::open(&[], Some(&log)).unwrap();
        assert_eq!(db.find_table("b").unwrap(), Some(2));
        // A rollback-journal database ignores a stray log, with a warning.
        let mut legacy = old.clone();
        legacy[18] = 1;
        legacy[19] = 1;
        let mut db = Database::open(&legacy, Some(&log)).unwrap();
        assert_eq!(db.find_table("a").unwrap(), Some(2));
        assert_eq!(db.warnings.len(), 1, "{:?}", db.warnings);
    }

    #[test]
    fn pages_are_bounded() {
        let file = Builder::single_table(512, "a", &[vec![1]], 1);
        let mut db = Database::open(&file, None).unwrap();
        assert!(db.page(0).is_err());
        assert!(db.page(4).is_err());
        assert!(db.page(3).is_ok());
        assert!(db
            .page(3)
            .unwrap_err()
            .to_string()
            .contains("reached twice"));
        // A header claiming more pages than the file holds.
        let mut short = file.clone();
        short[28..32].copy_from_slice(&9u32.to_be_bytes());
        let mut db = Database::open(&short, None).unwrap();
        assert!(db
            .page(9)
            .unwrap_err()
            .to_string()
            .contains("beyond the end"));
    }
}
