//! rpm's SQLite database, `/var/lib/rpm/rpmdb.sqlite` (rpm >= 4.16: Fedora >= 33,
//! RHEL/Rocky/Alma >= 9, openSUSE Tumbleweed since 2021).
//!
//! rpm's schema is `CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob
//! BLOB NOT NULL)` plus index tables we do not need: each row's blob is one rpm header.

use super::sqlite::record::{self, Value};
use super::sqlite::{btree, Database};
use super::{parse_rpm_header, sort_applications, PackageError, PackageList, MAX_PACKAGES};

/// Lists the packages of an rpmdb.sqlite file. Same as
/// [`parse_rpmdb_sqlite_with_wal`] without a log: use that one when the guest has a
/// non-empty `rpmdb.sqlite-wal`, whose committed transactions are part of the database.
pub fn parse_rpmdb_sqlite(db: &[u8]) -> Result<PackageList, PackageError> {
    parse_rpmdb_sqlite_with_wal(db, None)
}

/// Lists the packages of an rpmdb.sqlite file and its write-ahead log (`-wal`), sorted
/// by name then version. `-shm` is not needed: the log is read the way SQLite's recovery
/// reads it.
///
/// A damaged database structure is an error; a row whose payload or header is damaged is
/// skipped with a warning naming its `hnum`, as `rpm -qa` skips it with an error message.
pub fn parse_rpmdb_sqlite_with_wal(
    db: &[u8],
    wal: Option<&[u8]>,
) -> Result<PackageList, PackageError> {
    let mut database = Database::open(db, wal)?;
    let root = database.find_table("Packages")?.ok_or_else(|| {
        super::sqlite::corrupt("schema", 0, "no Packages table: not an rpm database")
    })?;
    let mut list = PackageList::default();
    for w in std::mem::take(&mut database.warnings) {
        list.warn(w);
    }
    btree::walk_table(&mut database, root, &mut |hnum, payload| {
        let header = payload.map_err(|e| e.to_string()).and_then(|p| {
            let blob = blob_column(&p).map_err(|e| format!("record: {e}"))?;
            parse_rpm_header(blob).map_err(|e| e.to_string())
        });
        match header {
            Ok(app) => {
                if list.applications.len() >= MAX_PACKAGES {
                    return Err(PackageError::TooLarge {
                        database: "rpmdb.sqlite",
                        what: "number of packages",
                        size: list.applications.len() as u64 + 1,
                        limit: MAX_PACKAGES as u64,
                    });
                }
                list.applications.push(app);
            }
            Err(e) => list.warn(format!("rpmdb.sqlite: package hnum {hnum} skipped: {e}")),
        }
        Ok(())
    })?;
    sort_applications(&mut list.applications);
    Ok(list)
}

/// The header blob of a Packages row: the first BLOB column (`hnum`, the rowid alias,
/// is stored as NULL).
fn blob_column(payload: &[u8]) -> Result<&[u8], String> {
    let values = record::decode(payload).map_err(|e| e.0)?;
    values
        .iter()
        .find_map(|v| match v {
            Value::Blob(b) => Some(*b),
            _ => None,
        })
        .ok_or_else(|| "row has no BLOB column".to_string())
}

#[cfg(test)]
mod tests {
    use super::super::rpm_header::build::package;
    use super::super::sqlite::build::Builder;
    use super::super::sqlite::wal::build::wal;
    use super::*;

    fn headers() -> Vec<Vec<u8>> {
        let mut h: Vec<Vec<u8>> = (0..7)
            .map(|i| package(&format!("pkg{i}"), Some(i), "1.0", "1"))
            .collect();
        // One header much larger than a page: an overflow chain of several pages.
        let long = "x".repeat(3000);
        h.push(package("big", None, &long, "2"));
        h
    }

    #[test]
    fn reads_rows_across_leaves_and_overflow() {
        for page_size in [512, 1024, 4096, 65536] {
            let db = Builder::rpmdb(page_size, &headers(), 2);
            let list = parse_rpmdb_sqlite(&db).unwrap();
            assert!(list.warnings.is_empty(), "{:?}", list.warnings);
            let names: Vec<_> = list.applications.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(
                names,
                ["big", "pkg0", "pkg1", "pkg2", "pkg3", "pkg4", "pkg5", "pkg6"],
                "page size {page_size}"
            );
            assert_eq!(list.applications[0].version.len(), 3000);
            assert_eq!(list.applications[7].epoch, Some(6));
        }
    }

    #[test]
    fn wal_frames_replace_pages() {
        let page_size = 1024;
        let old = Builder::rpmdb(page_size, &headers()[..3], 3);
        let new = Builder::rpmdb(page_size, &headers()[3..6], 3);
        // The new database's pages, committed in the log of the old one.
        let frames: Vec<(u32, u32, &[u8])> = new
            .chunks(page_size)
            .enumerate()
            .map(|(i, p)| {
                (
                    i as u32 + 1,
                    if i + 1 == new.len() / page_size {
                        (new.len() / page_size) as u32
                    } else {
                        0
                    },
                    p,
                )
            })
            .collect();
        let log = wal(page_size, &frames);
        let list = parse_rpmdb_sqlite_with_wal(&old, Some(&log)).unwrap();
        let names: Vec<_> = list.applications.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["pkg3", "pkg4", "pkg5"]);
        // Without the commit frame, nothing in the log counts.
        let log = wal(page_size, &frames[..frames.len() - 1]);
        let list = parse_rpmdb_sqlite_with_wal(&old, Some(&log)).unwrap();
        assert_eq!(list.applications.len(), 3);
        assert_eq!(list.applications[0].name, "pkg0");
        assert!(!list.warnings.is_empty());
        // A log that is not a log is ignored with a warning.
        let list = parse_rpmdb_sqlite_with_wal(&old, Some(b"garbage")).unwrap();
        assert_eq!(list.applications.len(), 3);
        assert_eq!(list.warnings.len(), 1);
    }

    #[test]
    fn cycles_and_bad_rows() {
        let db = Builder::rpmdb(1024, &headers(), 3);
        // Interior root (page 2) whose right-most child points back at itself.
        let mut looped = db.clone();
        looped[1024 + 8..1024 + 12].copy_from_slice(&2u32.to_be_bytes());
        let err = parse_rpmdb_sqlite(&looped).unwrap_err().to_string();
        assert!(err.contains("reached twice"), "{err}");
        // A broken header blob: that row is skipped with a warning, others survive.
        let mut bad = db.clone();
        let pkg1 = &headers()[1];
        let blob_start = bad
            .windows(pkg1.len())
            .position(|w| w == &pkg1[..])
            .unwrap();
        bad[blob_start..blob_start + 4].copy_from_slice(&[0xff; 4]);
        let list = parse_rpmdb_sqlite(&bad).unwrap();
        assert_eq!(list.applications.len(), 7);
        assert!(list.warnings[0].contains("hnum 2"), "{:?}", list.warnings);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_ok_or_error() {
        let db = Builder::rpmdb(512, &headers(), 2);
        for end in (0..db.len()).step_by(7) {
            let _ = parse_rpmdb_sqlite(&db[..end]);
        }
        for i in 0..db.len() {
            for v in [0x00, 0x01, 0x7f, 0xff] {
                let mut b = db.clone();
                b[i] = v;
                let _ = parse_rpmdb_sqlite(&b);
            }
        }
    }
}
