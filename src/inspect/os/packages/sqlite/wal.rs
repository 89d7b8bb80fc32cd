//! SQLite's write-ahead log (`<db>-wal`): committed page images not yet copied back into
//! the database file.
//!
//! A database in WAL mode may hold recent transactions only in the log (a guest shut down
//! without a final checkpoint), so a reader that ignored it would miss packages. SQLite
//! rebuilds its `-shm` index from the log on recovery; we do the same and never need
//! `-shm`. Layout: a 32-byte header (magic, version, page size, checkpoint sequence, two
//! salts, checksum), then frames of a 24-byte header (page number, database size after
//! commit or 0, the salts, a cumulative checksum) plus one page image.

use std::collections::HashMap;

use super::corrupt_in;
use crate::inspect::os::packages::PackageError;

const FILE: &str = "SQLite WAL";
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;
const HEADER_LEN: usize = 32;
const FRAME_HEADER_LEN: usize = 24;

/// The committed content of a log: for each page, where its newest committed image is.
#[derive(Debug, Default)]
pub struct WalIndex {
    pub page_size: usize,
    /// Page number -> byte offset of the page image inside the log.
    pub pages: HashMap<u32, usize>,
    /// Database size in pages after the last committed transaction, if any committed.
    pub db_pages: Option<u32>,
    /// Frames that followed the last commit (an interrupted transaction), ignored.
    pub uncommitted_frames: usize,
}

impl WalIndex {
    /// Reads the valid prefix of a log the way SQLite's recovery does: frames count only
    /// while their salts match the header and the running checksum verifies, and only up
    /// to the last commit frame. A header that does not verify is an error (the caller
    /// turns it into "log ignored", which is what SQLite does with such a file).
    pub fn parse(wal: &[u8]) -> Result<WalIndex, PackageError> {
        let h = wal
            .get(..HEADER_LEN)
            .ok_or_else(|| corrupt_in(FILE, "WAL header", 0, "shorter than the 32-byte header"))?;
        let be32 =
            |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let big_endian = match be32(h, 0) {
            MAGIC_BE => true,
            MAGIC_LE => false,
            m => {
                return Err(corrupt_in(
                    FILE,
                    "WAL header",
                    0,
                    &format!("bad magic {m:#010x}"),
                ))
            }
        };
        if be32(h, 4) != VERSION {
            return Err(corrupt_in(
                FILE,
                "WAL header",
                4,
                &format!("unknown version {}", be32(h, 4)),
            ));
        }
        let page_size = be32(h, 8) as usize;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt_in(
                FILE,
                "WAL header",
                8,
                &format!("invalid page size {page_size}"),
            ));
        }
        let mut sum = checksum(big_endian, (0, 0), &h[..24]);
        if sum != (be32(h, 24), be32(h, 28)) {
            return Err(corrupt_in(
                FILE,
                "WAL header",
                24,
                "header checksum mismatch",
            ));
        }
        let salts = &h[16..24];
        let mut index = WalIndex {
            page_size,
            ..WalIndex::default()
        };
        let mut pending: Vec<(u32, usize)> = Vec::new();
        let frame_len = FRAME_HEADER_LEN + page_size;
        let mut at = HEADER_LEN;
        // Bounded: `at` advances by a whole frame each turn and stops at the end of input.
        while let Some(frame) = wal.get(at..at + frame_len) {
            let (fh, image) = frame.split_at(FRAME_HEADER_LEN);
            let page = be32(fh, 0);
            if page == 0 || &fh[8..16] != salts {
                break;
            }
            sum = checksum(big_endian, sum, &fh[..8]);
            sum = checksum(big_endian, sum, image);
            if sum != (be32(fh, 16), be32(fh, 20)) {
                break;
            }
            pending.push((page, at + FRAME_HEADER_LEN));
            let commit_size = be32(fh, 4);
            if commit_size != 0 {
                index.pages.extend(pending.drain(..));
                index.db_pages = Some(commit_size);
            }
            at += frame_len;
        }
        index.uncommitted_frames = pending.len();
        Ok(index)
    }
}

/// SQLite's WAL checksum: over 32-bit words taken in pairs, in the byte order the magic
/// selects, continuing from `(s0, s1)`. `bytes.len()` is a multiple of 8 for every call.
fn checksum(big_endian: bool, (mut s0, mut s1): (u32, u32), bytes: &[u8]) -> (u32, u32) {
    let word = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    for pair in bytes.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// Builds logs for tests.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// A log with one frame per `(page, commit_size, image)`, checksummed like SQLite.
    pub fn wal(page_size: usize, frames: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC_BE.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&(page_size as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut sum = checksum(true, (0, 0), &out);
        out.extend_from_slice(&sum.0.to_be_bytes());
        out.extend_from_slice(&sum.1.to_be_bytes());
        for (page, commit, image) in frames {
            let mut image = image.to_vec();
            image.resize(page_size, 0);
            let mut fh = Vec::new();
            fh.extend_from_slice(&page.to_be_bytes());
            fh.extend_from_slice(&commit.to_be_bytes());
            fh.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            sum = checksum(true, sum, &fh[..8]);
            sum = checksum(true, sum, &image);
            fh.extend_from_slice(&sum.0.to_be_bytes());
            fh.extend_from_slice(&sum.1.to_be_bytes());
            out.extend(fh);
            out.extend(image);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::wal;
    use super::*;

    #[test]
    fn committed_frames_only() {
        let log = wal(
            512,
            &[(2, 0, b"a"), (3, 5, b"b"), (2, 5, b"c"), (4, 0, b"d")],
        );
        let idx = WalIndex::parse(&log).unwrap();
        assert_eq!(idx.db_pages, Some(5));
        assert_eq!(idx.pages.len(), 2);
        assert_eq!(log[idx.pages[&2]], b'c');
        assert_eq!(log[idx.pages[&3]], b'b');
        assert_eq!(idx.uncommitted_frames, 1);
    }

    #[test]
    fn a_bad_checksum_ends_the_log() {
        let mut log = wal(512, &[(2, 3, b"a"), (3, 3, b"b")]);
        let second_image = HEADER_LEN + 2 * FRAME_HEADER_LEN + 512;
        log[second_image] ^= 1;
        let idx = WalIndex::parse(&log).unwrap();
        assert_eq!(idx.pages.len(), 1);
        log[30] ^= 1;
        assert!(WalIndex::parse(&log).is_err());
    }

    #[test]
    fn every_truncation_is_ok_or_error() {
        let log = wal(512, &[(1, 0, b"a"), (2, 2, b"b")]);
        for end in 0..log.len() {
            let _ = WalIndex::parse(&log[..end]);
        }
    }
}
