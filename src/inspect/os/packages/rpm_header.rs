//! One rpm header: the tagged record rpm keeps per installed package, in every database
//! backend (SQLite, Berkeley DB, ndb) alike.
//!
//! Layout (all integers big-endian): an optional 8-byte magic (`8e ad e8 01` + 4 reserved
//! bytes, present in `.rpm` files, absent in the database), the index entry count `il` and
//! data size `dl` (u32 each), `il` index entries of 16 bytes `{tag, type, offset, count}`,
//! then the `dl`-byte data store that the entries' offsets point into.

use super::{description_text, field_text, summary_text, PackageError};
use crate::inspect::report::Application;

const DB: &str = "rpm header";

/// The header magic of `.rpm` files: 3 magic bytes, version 1, 4 reserved bytes.
const MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];

/// rpm's own limits (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`): a header above them is one
/// rpm would refuse to load, so it is corrupt, not large.
const MAX_INDEX_ENTRIES: u32 = 0xffff;
const MAX_DATA_SIZE: u32 = 0x0fff_ffff;

pub const RPMTAG_NAME: i32 = 1000;
pub const RPMTAG_VERSION: i32 = 1001;
pub const RPMTAG_RELEASE: i32 = 1002;
pub const RPMTAG_EPOCH: i32 = 1003;
pub const RPMTAG_SUMMARY: i32 = 1004;
pub const RPMTAG_DESCRIPTION: i32 = 1005;
pub const RPMTAG_URL: i32 = 1020;
pub const RPMTAG_SOURCERPM: i32 = 1044;
pub const RPMTAG_ARCH: i32 = 1022;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// One 16-byte index entry, decoded.
#[derive(Clone, Copy)]
struct Entry {
    /// Position of the entry in the index, for error messages.
    index: usize,
    tag: i32,
    kind: u32,
    offset: i32,
    count: u32,
}

/// A header whose index and data store have been located and bounds-checked as a whole;
/// entries are checked when read.
struct Header<'a> {
    /// Byte offset of the data store within the blob, for error messages.
    data_start: usize,
    data: &'a [u8],
    entries: Vec<Entry>,
}

/// Parses an rpm header blob (with or without the 8-byte magic) into an application.
///
/// NAME and VERSION are required; EPOCH, RELEASE, ARCH, SUMMARY, DESCRIPTION, URL and
/// SOURCERPM are optional (the `gpg-pubkey` pseudo-packages rpm keeps for imported keys
/// have no ARCH nor SOURCERPM). SUMMARY and DESCRIPTION are I18N strings whose first
/// value is the untranslated (C locale) one. rpm has epochs: a header without EPOCH has
/// epoch 0, as libguestfs reports it. `source_package` is the name part of SOURCERPM
/// (`<name>-<version>-<release>.src.rpm`). When a tag appears twice (an
/// entry added after install, outside the signed region), the later entry wins, as in rpm.
///
/// `gpg-pubkey` headers are returned like any other: `rpm -qa` and libguestfs both list
/// them, and whether to show them is the consumer's choice.
pub fn parse_rpm_header(blob: &[u8]) -> Result<Application, PackageError> {
    let header = Header::parse(blob)?;
    let name = header.string(RPMTAG_NAME)?.ok_or_else(|| missing("NAME"))?;
    let version = header
        .string(RPMTAG_VERSION)?
        .ok_or_else(|| missing("VERSION"))?;
    let text = |bytes: &[u8], what: &'static str| {
        field_text(bytes).ok_or(PackageError::TooLarge {
            database: DB,
            what,
            size: bytes.len() as u64,
            limit: super::MAX_FIELD_LEN as u64,
        })
    };
    let name = text(name, "NAME length")?;
    if name.is_empty() {
        return Err(missing("NAME"));
    }
    Ok(Application {
        name,
        version: text(version, "VERSION length")?,
        release: header
            .string(RPMTAG_RELEASE)?
            .map(|r| text(r, "RELEASE length"))
            .transpose()?,
        arch: header
            .string(RPMTAG_ARCH)?
            .map(|a| text(a, "ARCH length"))
            .transpose()?,
        summary: header.string(RPMTAG_SUMMARY)?.and_then(summary_text),
        description: header
            .string(RPMTAG_DESCRIPTION)?
            .and_then(description_text),
        url: header.string(RPMTAG_URL)?.and_then(summary_text),
        source_package: header
            .string(RPMTAG_SOURCERPM)?
            .and_then(source_name)
            .and_then(field_text)
            .filter(|s| !s.is_empty()),
        epoch: Some(header.int32(RPMTAG_EPOCH)?.unwrap_or(0)),
        ..Default::default()
    })
}

/// The name part of a source rpm file name: `bash-5.2.26-3.fc40.src.rpm` -> `bash`.
/// Version and release contain no `-`, so the name is everything before the second-last
/// `-`. `None` when the value has not that shape.
fn source_name(srpm: &[u8]) -> Option<&[u8]> {
    let stem = srpm
        .strip_suffix(b".src.rpm")
        .or_else(|| srpm.strip_suffix(b".nosrc.rpm"))?;
    let release_dash = stem.iter().rposition(|&b| b == b'-')?;
    let version_dash = stem[..release_dash].iter().rposition(|&b| b == b'-')?;
    Some(&stem[..version_dash])
}

impl<'a> Header<'a> {
    fn parse(blob: &'a [u8]) -> Result<Header<'a>, PackageError> {
        let start = if blob.starts_with(&MAGIC) { 8 } else { 0 };
        let il = be32(blob, start)
            .ok_or_else(|| corrupt("header", start, "truncated before index count"))?;
        let dl = be32(blob, start + 4)
            .ok_or_else(|| corrupt("header", start + 4, "truncated before data size"))?;
        if il > MAX_INDEX_ENTRIES {
            return Err(PackageError::TooLarge {
                database: DB,
                what: "index entry count",
                size: il.into(),
                limit: MAX_INDEX_ENTRIES.into(),
            });
        }
        if dl > MAX_DATA_SIZE {
            return Err(PackageError::TooLarge {
                database: DB,
                what: "data store size",
                size: dl.into(),
                limit: MAX_DATA_SIZE.into(),
            });
        }
        // Both are bounded above, so this arithmetic cannot overflow.
        let index_start = start + 8;
        let data_start = index_start + 16 * il as usize;
        let data_end = data_start + dl as usize;
        if data_end > blob.len() {
            return Err(corrupt(
                "header",
                start,
                &format!(
                    "{il} index entries and {dl} data bytes need {data_end} bytes, blob has {}",
                    blob.len()
                ),
            ));
        }
        let entries = (0..il as usize)
            .map(|i| {
                let at = index_start + 16 * i;
                // In range: checked against data_end above.
                Entry {
                    index: i,
                    tag: be32(blob, at).unwrap_or(0) as i32,
                    kind: be32(blob, at + 4).unwrap_or(0),
                    offset: be32(blob, at + 8).unwrap_or(0) as i32,
                    count: be32(blob, at + 12).unwrap_or(0),
                }
            })
            .collect();
        Ok(Header {
            data_start,
            data: &blob[data_start..data_end],
            entries,
        })
    }

    /// The last index entry for `tag`, if any.
    fn find(&self, tag: i32) -> Option<Entry> {
        self.entries.iter().rev().find(|e| e.tag == tag).copied()
    }

    /// The data at an entry's offset, checked to lie inside the data store.
    fn data_at(&self, entry: Entry) -> Result<&'a [u8], PackageError> {
        usize::try_from(entry.offset)
            .ok()
            .and_then(|off| self.data.get(off..))
            .ok_or_else(|| {
                self.bad(
                    entry,
                    &format!(
                        "offset {} outside the {}-byte data store",
                        entry.offset,
                        self.data.len()
                    ),
                )
            })
    }

    /// The first string of a STRING, STRING_ARRAY or I18NSTRING entry (bytes, no NUL).
    fn string(&self, tag: i32) -> Result<Option<&'a [u8]>, PackageError> {
        let Some(entry) = self.find(tag) else {
            return Ok(None);
        };
        if !matches!(
            entry.kind,
            TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING
        ) {
            return Err(self.bad(entry, &format!("type {} is not a string type", entry.kind)));
        }
        if entry.count == 0 || (entry.kind == TYPE_STRING && entry.count != 1) {
            return Err(self.bad(entry, &format!("string count {}", entry.count)));
        }
        let data = self.data_at(entry)?;
        let end = data
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.bad(entry, "string not NUL-terminated inside the data store"))?;
        Ok(Some(&data[..end]))
    }

    /// The first value of an INT32 entry.
    fn int32(&self, tag: i32) -> Result<Option<u32>, PackageError> {
        let Some(entry) = self.find(tag) else {
            return Ok(None);
        };
        if entry.kind != TYPE_INT32 || entry.count == 0 {
            return Err(self.bad(
                entry,
                &format!(
                    "type {} count {} is not an INT32 value",
                    entry.kind, entry.count
                ),
            ));
        }
        let data = self.data_at(entry)?;
        be32(data, 0)
            .map(Some)
            .ok_or_else(|| self.bad(entry, "INT32 value crosses the end of the data store"))
    }

    fn bad(&self, entry: Entry, message: &str) -> PackageError {
        let at = self
            .data_start
            .saturating_sub(16 * (self.entries.len() - entry.index));
        corrupt(
            &format!("index entry {} (tag {})", entry.index, entry.tag),
            at,
            message,
        )
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn missing(tag: &str) -> PackageError {
    PackageError::Corrupt {
        database: DB,
        structure: "header".to_string(),
        offset: 0,
        message: format!("no {tag} tag"),
    }
}

fn corrupt(structure: &str, offset: usize, message: &str) -> PackageError {
    PackageError::Corrupt {
        database: DB,
        structure: structure.to_string(),
        offset: offset as u64,
        message: message.to_string(),
    }
}

/// Builds header blobs for tests (here and in the SQLite / Berkeley DB readers' tests).
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// A value to store under a tag.
    pub enum Value<'a> {
        Str(&'a str),
        I18n(&'a [&'a str]),
        Int(u32),
    }

    /// Encodes entries the way rpm's `headerExport` does (without the magic).
    pub fn header(entries: &[(i32, Value<'_>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, value) in entries {
            let (kind, count) = match value {
                Value::Str(_) => (TYPE_STRING, 1),
                Value::I18n(v) => (TYPE_I18NSTRING, v.len() as u32),
                Value::Int(_) => {
                    while data.len() % 4 != 0 {
                        data.push(0);
                    }
                    (TYPE_INT32, 1)
                }
            };
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&kind.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&count.to_be_bytes());
            match value {
                Value::Str(s) => {
                    data.extend_from_slice(s.as_bytes());
                    data.push(0);
                }
                Value::I18n(v) => {
                    for s in *v {
                        data.extend_from_slice(s.as_bytes());
                        data.push(0);
                    }
                }
                Value::Int(i) => data.extend_from_slice(&i.to_be_bytes()),
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    /// A typical package header.
    pub fn package(name: &str, epoch: Option<u32>, version: &str, release: &str) -> Vec<u8> {
        let mut entries = vec![
            (RPMTAG_NAME, Value::Str(name)),
            (RPMTAG_VERSION, Value::Str(version)),
            (RPMTAG_RELEASE, Value::Str(release)),
            (
                RPMTAG_SUMMARY,
                Value::I18n(&["A summary", "Eine Zusammenfassung"]),
            ),
            (RPMTAG_ARCH, Value::Str("x86_64")),
        ];
        if let Some(e) = epoch {
            entries.push((RPMTAG_EPOCH, Value::Int(e)));
        }
        header(&entries)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn parses_a_package_header() {
        let blob = package("bash", Some(2), "5.2.26", "1.fc40");
        let app = parse_rpm_header(&blob).unwrap();
        assert_eq!(app.name, "bash");
        assert_eq!(app.epoch, Some(2));
        assert_eq!(app.version, "5.2.26");
        assert_eq!(app.release.as_deref(), Some("1.fc40"));
        assert_eq!(app.arch.as_deref(), Some("x86_64"));
        assert_eq!(app.summary.as_deref(), Some("A summary"));
    }

    #[test]
    fn accepts_the_file_magic() {
        let mut blob = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
        blob.extend(package("a", None, "1", "1"));
        let app = parse_rpm_header(&blob).unwrap();
        assert_eq!((app.name.as_str(), app.epoch), ("a", Some(0)));
        assert_eq!(
            (app.url, app.source_package, app.description),
            (None, None, None)
        );
    }

    #[test]
    fn url_source_rpm_and_description() {
        let blob = header(&[
            (RPMTAG_NAME, Value::Str("python3-libs")),
            (RPMTAG_VERSION, Value::Str("3.12.3")),
            (RPMTAG_URL, Value::Str("https://www.python.org/")),
            (
                RPMTAG_SOURCERPM,
                Value::Str("python3.12-3.12.3-2.fc40.src.rpm"),
            ),
            (
                RPMTAG_DESCRIPTION,
                Value::I18n(&["Line one.\nLine two.", "Zeile eins."]),
            ),
        ]);
        let app = parse_rpm_header(&blob).unwrap();
        assert_eq!(app.url.as_deref(), Some("https://www.python.org/"));
        assert_eq!(app.source_package.as_deref(), Some("python3.12"));
        assert_eq!(app.description.as_deref(), Some("Line one.\nLine two."));
        assert_eq!(source_name(b"a-b-c-1-2.nosrc.rpm"), Some(&b"a-b-c"[..]));
        assert_eq!(source_name(b"nodash.src.rpm"), None);
        assert_eq!(source_name(b"one-dash.src.rpm"), None);
        assert_eq!(source_name(b"a-1-2.rpm"), None);
    }

    #[test]
    fn later_duplicate_wins() {
        let blob = header(&[
            (RPMTAG_NAME, Value::Str("a")),
            (RPMTAG_VERSION, Value::Str("1")),
            (RPMTAG_NAME, Value::Str("b")),
        ]);
        assert_eq!(parse_rpm_header(&blob).unwrap().name, "b");
    }

    #[test]
    fn rejects_bad_entries() {
        // NAME stored as INT32.
        let blob = header(&[
            (RPMTAG_NAME, Value::Int(3)),
            (RPMTAG_VERSION, Value::Str("1")),
        ]);
        let err = parse_rpm_header(&blob).unwrap_err().to_string();
        assert!(err.contains("tag 1000"), "{err}");
        // Missing VERSION.
        assert!(parse_rpm_header(&header(&[(RPMTAG_NAME, Value::Str("a"))])).is_err());
        // Offset past the data store.
        let mut blob = package("a", Some(1), "1", "1");
        blob[8 + 8..8 + 12].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
        assert!(parse_rpm_header(&blob).is_err());
        // Huge counts.
        assert!(matches!(
            parse_rpm_header(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            Err(PackageError::TooLarge { .. })
        ));
    }

    #[test]
    fn every_truncation_and_byte_flip_is_ok_or_error() {
        let blob = package("coreutils", Some(1), "9.4", "3.fc40");
        for end in 0..blob.len() {
            assert!(parse_rpm_header(&blob[..end]).is_err());
        }
        for i in 0..blob.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut b = blob.clone();
                b[i] = v;
                let _ = parse_rpm_header(&b);
            }
        }
    }
}
