//! rpm's `ndb` database, `/usr/lib/sysimage/rpm/Packages.db` (SUSE: SLES 15 SP3 and
//! later, openSUSE Leap 15.3 and later, Tumbleweed until its move to SQLite).
//!
//! The file is rpm's own package store (`lib/backend/ndb/rpmpkg.c`), all little-endian:
//! - a 32-byte header: magic `RpmP`, version 0, generation, the number of 4 KiB slot
//!   pages, the next package number;
//! - slot pages right after it: 16-byte slots `Slot`, package number, block offset,
//!   block count (a zero offset is a free slot), in 16-byte blocks;
//! - blobs at those blocks: head `BlbS`, package number, generation, length; the rpm
//!   header itself; padding; tail adler32, length, `BlbE`.
//!
//! `Index.db` only holds indexes (by name, file, ...) rebuilt from these headers, so a
//! listing needs `Packages.db` alone, as `rpm -qa` does. The checks are rpm's: a slot
//! without its magic or pointing outside the file makes the whole database unreadable;
//! a blob whose head or tail does not match its slot is skipped with a warning. Like
//! rpm's read path the adler32 is not verified (rpm checks it only in `--verifydb`).

use super::{parse_rpm_header, sort_applications, PackageError, PackageList, MAX_PACKAGES};
use crate::inspect::bytes::le32;

const DATABASE: &str = "Packages.db";
const HEADER_SIZE: usize = 32;
const MAGIC: &[u8; 4] = b"RpmP";
const VERSION: u32 = 0;
const SLOT_MAGIC: &[u8; 4] = b"Slot";
const SLOT_SIZE: usize = 16;
const BLOCK: u64 = 16;
const PAGE: u64 = 4096;
const BLOB_HEAD_MAGIC: &[u8; 4] = b"BlbS";
const BLOB_TAIL_MAGIC: &[u8; 4] = b"BlbE";
const BLOB_HEAD: u64 = 16;
const BLOB_TAIL: u64 = 12;

/// One used slot: where package `pkgidx`'s blob lies.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pkgidx: u32,
    blkoff: u32,
    blkcnt: u32,
}

fn corrupt(structure: &str, offset: u64, message: impl Into<String>) -> PackageError {
    PackageError::Corrupt {
        database: DATABASE,
        structure: structure.to_string(),
        offset,
        message: message.into(),
    }
}

/// Lists the packages of a `Packages.db`, sorted by name then version.
pub fn parse_rpmdb_ndb(db: &[u8]) -> Result<PackageList, PackageError> {
    let slots = read_slots(db)?;
    let mut list = PackageList::default();
    for slot in slots {
        let header = blob(db, &slot).and_then(|b| parse_rpm_header(b).map_err(|e| e.to_string()));
        match header {
            Ok(app) => {
                if list.applications.len() >= MAX_PACKAGES {
                    return Err(PackageError::TooLarge {
                        database: DATABASE,
                        what: "number of packages",
                        size: list.applications.len() as u64 + 1,
                        limit: MAX_PACKAGES as u64,
                    });
                }
                list.applications.push(app);
            }
            Err(e) => list.warn(format!("{DATABASE}: package {} skipped: {e}", slot.pkgidx)),
        }
    }
    sort_applications(&mut list.applications);
    Ok(list)
}

/// The header's checks and the used slots, in block order (rpm's listing order).
fn read_slots(db: &[u8]) -> Result<Vec<Slot>, PackageError> {
    if db.len() < HEADER_SIZE || &db[..4] != MAGIC {
        return Err(corrupt(
            "header",
            0,
            "no RpmP magic: not an rpm ndb database",
        ));
    }
    let version = le32(db, 4);
    if version != VERSION {
        return Err(PackageError::Unsupported(format!(
            "{DATABASE} version {version} (only version {VERSION} exists)"
        )));
    }
    let len = db.len() as u64;
    if !len.is_multiple_of(BLOCK) {
        return Err(corrupt(
            "file",
            len,
            format!("size {len} is not a multiple of {BLOCK}"),
        ));
    }
    let pages = u64::from(le32(db, 12));
    // Every slot page must be in the file: this also bounds the slots looked at.
    if pages == 0 || pages * PAGE > len {
        return Err(corrupt(
            "header",
            12,
            format!("{pages} slot pages do not fit in {len} bytes"),
        ));
    }
    let file_blocks = len / BLOCK;
    let first_blob_block = pages * PAGE / BLOCK;
    let mut slots = Vec::new();
    for at in (HEADER_SIZE..(pages * PAGE) as usize).step_by(SLOT_SIZE) {
        let s = &db[at..at + SLOT_SIZE];
        if &s[..4] != SLOT_MAGIC {
            return Err(corrupt("slot", at as u64, "no Slot magic"));
        }
        let slot = Slot {
            pkgidx: le32(s, 4),
            blkoff: le32(s, 8),
            blkcnt: le32(s, 12),
        };
        if slot.blkoff == 0 {
            continue; // free
        }
        let (off, cnt) = (u64::from(slot.blkoff), u64::from(slot.blkcnt));
        if off + cnt > file_blocks {
            return Err(corrupt(
                "slot",
                at as u64,
                format!("package {} lies past the end of the file", slot.pkgidx),
            ));
        }
        if slot.pkgidx == 0 || cnt == 0 || off < first_blob_block {
            return Err(corrupt("slot", at as u64, "bad slot entry"));
        }
        slots.push(slot);
    }
    slots.sort_by_key(|s| s.blkoff);
    Ok(slots)
}

/// The rpm header stored for `slot`, its head and tail checked against the slot.
fn blob<'a>(db: &'a [u8], slot: &Slot) -> Result<&'a [u8], String> {
    // In range: `read_slots` checked the slot against the file size.
    let start = u64::from(slot.blkoff) * BLOCK;
    let end = start + u64::from(slot.blkcnt) * BLOCK;
    let area = &db[start as usize..end as usize];
    if (area.len() as u64) < BLOB_HEAD + BLOB_TAIL {
        return Err("blob shorter than its head and tail".into());
    }
    if &area[..4] != BLOB_HEAD_MAGIC {
        return Err("no BlbS magic at the slot's block".into());
    }
    if le32(area, 4) != slot.pkgidx {
        return Err(format!("blob belongs to package {}", le32(area, 4)));
    }
    let len = u64::from(le32(area, 12));
    if (BLOB_HEAD + len + BLOB_TAIL).div_ceil(BLOCK) != u64::from(slot.blkcnt) {
        return Err(format!(
            "blob length {len} does not fill the slot's {} blocks",
            slot.blkcnt
        ));
    }
    let tail = &area[area.len() - BLOB_TAIL as usize..];
    if u64::from(le32(tail, 4)) != len || &tail[8..] != BLOB_TAIL_MAGIC {
        return Err("blob tail does not match its head".into());
    }
    Ok(&area[BLOB_HEAD as usize..(BLOB_HEAD + len) as usize])
}

/// Writes `Packages.db` files for tests, laid out as rpm's `rpmpkgPut` lays them out.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// rpm's adler32 (RFC 1950), over the blob head, data and padding.
    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in bytes {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    /// A database of `headers`, package numbers 1.., `pages` slot pages.
    pub fn ndb(headers: &[Vec<u8>], pages: u32) -> Vec<u8> {
        let mut db = vec![0u8; pages as usize * PAGE as usize];
        db[..4].copy_from_slice(MAGIC);
        db[8..12].copy_from_slice(&1u32.to_le_bytes());
        db[12..16].copy_from_slice(&pages.to_le_bytes());
        db[16..20].copy_from_slice(&(headers.len() as u32 + 1).to_le_bytes());
        for at in (HEADER_SIZE..db.len()).step_by(SLOT_SIZE) {
            db[at..at + 4].copy_from_slice(SLOT_MAGIC);
        }
        for (i, h) in headers.iter().enumerate() {
            let pkgidx = i as u32 + 1;
            let blkoff = (db.len() as u64 / BLOCK) as u32;
            let total = (BLOB_HEAD + h.len() as u64 + BLOB_TAIL).div_ceil(BLOCK) * BLOCK;
            let mut blob = Vec::with_capacity(total as usize);
            blob.extend_from_slice(BLOB_HEAD_MAGIC);
            blob.extend_from_slice(&pkgidx.to_le_bytes());
            blob.extend_from_slice(&1u32.to_le_bytes());
            blob.extend_from_slice(&(h.len() as u32).to_le_bytes());
            blob.extend_from_slice(h);
            blob.resize(total as usize - BLOB_TAIL as usize, 0);
            let sum = adler32(&blob);
            blob.extend_from_slice(&sum.to_le_bytes());
            blob.extend_from_slice(&(h.len() as u32).to_le_bytes());
            blob.extend_from_slice(BLOB_TAIL_MAGIC);
            let slot = HEADER_SIZE + i * SLOT_SIZE;
            db[slot + 4..slot + 8].copy_from_slice(&pkgidx.to_le_bytes());
            db[slot + 8..slot + 12].copy_from_slice(&blkoff.to_le_bytes());
            db[slot + 12..slot + 16].copy_from_slice(&((total / BLOCK) as u32).to_le_bytes());
            db.extend_from_slice(&blob);
        }
        db
    }
}

#[cfg(test)]
mod tests {
    use super::super::rpm_header::build::package;
    use super::*;

    fn headers() -> Vec<Vec<u8>> {
        (0..5)
            .map(|i| package(&format!("pkg{i}"), Some(i), "1.0", "1"))
            .collect()
    }

    #[test]
    fn lists_every_used_slot() {
        let db = build::ndb(&headers(), 1);
        let list = parse_rpmdb_ndb(&db).unwrap();
        assert!(list.warnings.is_empty(), "{:?}", list.warnings);
        let names: Vec<_> = list.applications.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["pkg0", "pkg1", "pkg2", "pkg3", "pkg4"]);
        assert_eq!(list.applications[3].epoch, Some(3));
        // A freed slot (offset 0) is not a package.
        let mut freed = db.clone();
        freed[HEADER_SIZE + SLOT_SIZE + 8..HEADER_SIZE + SLOT_SIZE + 12].fill(0);
        assert_eq!(parse_rpmdb_ndb(&freed).unwrap().applications.len(), 4);
        // Two slot pages.
        let two = build::ndb(&headers(), 2);
        assert_eq!(parse_rpmdb_ndb(&two).unwrap().applications.len(), 5);
    }

    #[test]
    fn bad_blobs_are_skipped_bad_slots_are_fatal() {
        let db = build::ndb(&headers(), 1);
        let blob_of = |i: usize| u64::from(le32(&db, HEADER_SIZE + i * SLOT_SIZE + 8)) * BLOCK;
        let mut bad = db.clone();
        bad[blob_of(2) as usize] = b'X';
        let list = parse_rpmdb_ndb(&bad).unwrap();
        assert_eq!(list.applications.len(), 4);
        assert!(
            list.warnings[0].contains("package 3"),
            "{:?}",
            list.warnings
        );
        let mut slot = db.clone();
        slot[HEADER_SIZE + 2 * SLOT_SIZE] = b'x';
        assert!(parse_rpmdb_ndb(&slot).is_err());
        let mut past = db.clone();
        past[HEADER_SIZE + 8..HEADER_SIZE + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_rpmdb_ndb(&past).is_err());
        let mut pages = db.clone();
        pages[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_rpmdb_ndb(&pages).is_err());
        assert!(parse_rpmdb_ndb(b"RpmP").is_err());
        assert!(parse_rpmdb_ndb(&db[..db.len() - 16]).is_err());
    }

    #[test]
    fn every_truncation_and_byte_flip_is_ok_or_error() {
        let db = build::ndb(&headers(), 1);
        for end in (0..db.len()).step_by(3) {
            let _ = parse_rpmdb_ndb(&db[..end]);
        }
        for i in (0..db.len()).filter(|i| *i < 256 || *i >= PAGE as usize) {
            for v in [0x00, 0x01, 0x7f, 0xff] {
                let mut b = db.clone();
                b[i] = v;
                let _ = parse_rpmdb_ndb(&b);
            }
        }
    }
}
