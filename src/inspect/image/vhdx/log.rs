//! The VHDX log, replayed in memory: a writer that crashed may have logged metadata or
//! data writes that never reached their place in the file. We never write the image, so
//! the active sequence of log entries is applied to an overlay of 4 KiB pages that every
//! later read of the file goes through.
//!
//! Log layout (little endian, in a circular region of the file): entries of whole 4 KiB
//! sectors, each a header (`loge`, CRC-32C of the whole entry, length, tail, sequence
//! number, descriptor count, log GUID, flushed and last file offsets), 32-byte descriptors
//! (`desc`: write one 4 KiB sector made of 8 leading bytes, a data sector's 4084 and 4
//! trailing bytes; `zero`: zero a range), then one data sector (`data`) per `desc`.
//! The active sequence ends at the valid entry with the highest sequence number whose
//! `tail` leads, entry by entry with consecutive numbers, back to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::meta::VhdxHeader;
use crate::inspect::bytes::{array, le32, le64};
use crate::inspect::crc32c;
use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, read_vec, ReadAt};

const PAGE: u64 = 4096;
/// Logs larger than this are not replayed (qemu's default log is 1 MiB).
pub const MAX_LOG: u64 = 64 << 20;
/// Pages the overlay may hold (zeroed ranges count too): 64 MiB.
const MAX_PAGES: u64 = 16 << 10;
/// Highest-numbered entries tried as the head of the active sequence.
const MAX_HEADS: usize = 16;

/// A valid entry: its offset in the log and its header fields.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: u64,
    len: u64,
    tail: u64,
    seq: u64,
    last_file_offset: u64,
}

/// Why a log cannot be replayed (the caller turns it into `NeedsLogReplay`).
pub type Refusal = String;

/// The result of replaying a log: pages of the file as the writer meant them.
pub struct Replayed {
    /// `None`: the page reads as zeros.
    pages: BTreeMap<u64, Option<Box<[u8]>>>,
    /// The file size the writer had reached (the log may extend the file).
    size: u64,
    pub entries: usize,
}

/// Replays the log of `h` from `file`: `Ok(None)` when there is nothing to replay,
/// `Ok(Some(Err(reason)))` when there is but it cannot be replayed here.
pub fn replay(
    file: &dyn ReadAt,
    h: &VhdxHeader,
) -> Result<Option<Result<Replayed, Refusal>>, ReadError> {
    if h.log_guid == [0; 16] {
        return Ok(None);
    }
    let (at, len) = (h.log_offset, u64::from(h.log_length));
    if !(PAGE..=MAX_LOG).contains(&len) || !len.is_multiple_of(PAGE) {
        return Ok(Some(Err(format!(
            "log of {len} bytes cannot be replayed in memory"
        ))));
    }
    if at.checked_add(len).is_none_or(|e| e > file.size()) {
        return Ok(Some(Err(format!(
            "log at {at:#x} runs past the end of the file"
        ))));
    }
    let log = read_vec(file, at, len, MAX_LOG)?;
    // Checksums cost the entry's length: a log of overlapping entries claiming the whole
    // log each would cost its size squared, so the bytes checked are capped.
    let mut budget = 4 * len;
    let mut entries = Vec::new();
    for off in (0..len).step_by(PAGE as usize) {
        if let Some(e) = valid_entry(&log, off, &h.log_guid, &mut budget) {
            entries.push(e);
        }
        if budget == 0 {
            return Ok(Some(Err(
                "the log's entries overlap too much to be checked".into(),
            )));
        }
    }
    if entries.is_empty() {
        // A GUID with no valid entry: an empty log (qemu reads such files as they are).
        return Ok(None);
    }
    let mut heads = entries.clone();
    heads.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
    for head in heads.iter().take(MAX_HEADS) {
        if let Some(sequence) = sequence_to(&entries, head, len) {
            return Ok(Some(apply(&log, &sequence, file.size())));
        }
    }
    Ok(Some(Err(
        "the log has entries but no valid active sequence".into(),
    )))
}

/// `len` bytes of the circular log starting at `off`.
fn circular(log: &[u8], off: u64, len: u64) -> Vec<u8> {
    let n = log.len() as u64;
    (0..len).map(|i| log[((off + i) % n) as usize]).collect()
}

fn valid_entry(log: &[u8], off: u64, guid: &[u8; 16], budget: &mut u64) -> Option<Entry> {
    let head = circular(log, off, 64);
    if &head[0..4] != b"loge" || array::<16>(&head, 32) != *guid {
        return None;
    }
    let len = u64::from(le32(&head, 8));
    if len < PAGE || !len.is_multiple_of(PAGE) || len > log.len() as u64 {
        return None;
    }
    if len > *budget {
        *budget = 0;
        return None;
    }
    *budget -= len;
    let mut bytes = circular(log, off, len);
    let stored = le32(&bytes, 4);
    bytes[4..8].fill(0);
    if crc32c::checksum(&bytes) != stored {
        return None;
    }
    Some(Entry {
        at: off,
        len,
        tail: u64::from(le32(&head, 12)),
        seq: le64(&head, 16),
        last_file_offset: le64(&head, 56),
    })
}

/// The entries from `head.tail` to `head`, each following the previous one in the log
/// with the next sequence number, or `None`.
fn sequence_to(entries: &[Entry], head: &Entry, log_len: u64) -> Option<Vec<Entry>> {
    let by_offset: std::collections::HashMap<u64, Entry> =
        entries.iter().map(|e| (e.at, *e)).collect();
    let find = |at: u64| by_offset.get(&at).copied();
    let mut cur = find(head.tail)?;
    let mut out = vec![cur];
    while cur.at != head.at {
        let next = find((cur.at + cur.len) % log_len)?;
        if next.seq != cur.seq.checked_add(1)? || out.len() as u64 > log_len / PAGE {
            return None;
        }
        out.push(next);
        cur = next;
    }
    (cur.seq == head.seq).then_some(out)
}

/// Applies the descriptors of `sequence` in order.
fn apply(log: &[u8], sequence: &[Entry], file_size: u64) -> Result<Replayed, Refusal> {
    let mut pages: BTreeMap<u64, Option<Box<[u8]>>> = BTreeMap::new();
    let mut size = file_size;
    for e in sequence {
        let bytes = circular(log, e.at, e.len);
        let count = u64::from(le32(&bytes, 24));
        let desc_sectors = (64 + 32 * count).div_ceil(PAGE);
        if desc_sectors > e.len / PAGE {
            return Err(format!("log entry {} has {count} descriptors", e.seq));
        }
        let mut data_sector = desc_sectors;
        for i in 0..count {
            let d = (64 + 32 * i) as usize;
            let kind = &bytes[d..d + 4];
            let file_offset = le64(&bytes, d + 16);
            if le64(&bytes, d + 24) != e.seq || !file_offset.is_multiple_of(PAGE) {
                return Err(format!(
                    "log entry {} descriptor {i} is inconsistent",
                    e.seq
                ));
            }
            match kind {
                b"zero" => {
                    let n = le64(&bytes, d + 8);
                    if !n.is_multiple_of(PAGE) || n / PAGE > MAX_PAGES {
                        return Err(format!("log entry {} zeroes {n} bytes", e.seq));
                    }
                    for p in 0..n / PAGE {
                        pages.insert(file_offset + p * PAGE, None);
                    }
                    size = size.max(file_offset.saturating_add(n));
                }
                b"desc" => {
                    let s = (data_sector * PAGE) as usize;
                    if data_sector >= e.len / PAGE || &bytes[s..s + 4] != b"data" {
                        return Err(format!(
                            "log entry {} lacks the data sector of descriptor {i}",
                            e.seq
                        ));
                    }
                    let seq =
                        u64::from(le32(&bytes, s + 4)) << 32 | u64::from(le32(&bytes, s + 4092));
                    if seq != e.seq {
                        return Err(format!("log entry {} has a torn data sector", e.seq));
                    }
                    let mut page = Vec::with_capacity(PAGE as usize);
                    page.extend_from_slice(&bytes[d + 8..d + 16]); // leading bytes
                    page.extend_from_slice(&bytes[s + 8..s + 4092]);
                    page.extend_from_slice(&bytes[d + 4..d + 8]); // trailing bytes
                    pages.insert(file_offset, Some(page.into_boxed_slice()));
                    size = size.max(file_offset.saturating_add(PAGE));
                    data_sector += 1;
                }
                _ => return Err(format!("log entry {} has an unknown descriptor", e.seq)),
            }
            if pages.len() as u64 > MAX_PAGES {
                return Err("the log rewrites more than 64 MiB".into());
            }
        }
        size = size.max(e.last_file_offset);
    }
    Ok(Replayed {
        pages,
        size,
        entries: sequence.len(),
    })
}

/// The image file as the log says it should be: file bytes, then the replayed pages.
pub struct Overlay {
    file: Arc<dyn ReadAt>,
    log: Replayed,
}

impl Overlay {
    pub fn new(file: Arc<dyn ReadAt>, log: Replayed) -> Overlay {
        Overlay { file, log }
    }
}

impl ReadAt for Overlay {
    fn size(&self) -> u64 {
        self.log.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.log.size)?;
        let end = offset + buf.len() as u64;
        let real = self
            .file
            .size()
            .saturating_sub(offset)
            .min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(real);
        if !head.is_empty() {
            self.file.read_exact_at(offset, head)?;
        }
        tail.fill(0);
        let first = offset - offset % PAGE;
        for (&page, data) in self.log.pages.range(first..end) {
            let from = page.max(offset);
            let to = (page + PAGE).min(end);
            let out = &mut buf[(from - offset) as usize..(to - offset) as usize];
            match data {
                Some(d) => out.copy_from_slice(&d[(from - page) as usize..(to - page) as usize]),
                None => out.fill(0),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    #[test]
    fn overlay_patches_pages_and_extends_the_file() {
        let mut pages = BTreeMap::new();
        pages.insert(4096, Some(vec![7u8; 4096].into_boxed_slice()));
        pages.insert(12288, None);
        pages.insert(16384, Some(vec![9u8; 4096].into_boxed_slice()));
        let log = Replayed {
            pages,
            size: 20480,
            entries: 1,
        };
        let o = Overlay::new(Arc::new(MemSource(vec![1u8; 14000])), log);
        let mut buf = vec![0u8; 20480];
        o.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 1));
        assert!(buf[4096..8192].iter().all(|&b| b == 7));
        assert!(buf[8192..12288].iter().all(|&b| b == 1));
        assert!(buf[12288..16384].iter().all(|&b| b == 0));
        assert!(buf[16384..].iter().all(|&b| b == 9));
        let mut small = [0u8; 10];
        o.read_exact_at(8190, &mut small).unwrap();
        assert_eq!(small, [7, 7, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert!(o.read_exact_at(20475, &mut small).is_err());
    }

    #[test]
    fn circular_entries_wrap() {
        let log: Vec<u8> = (0..8192u32).map(|i| (i / 4096) as u8).collect();
        let e = circular(&log, 4096 + 4094, 4);
        assert_eq!(e, [1, 1, 0, 0]);
    }
}
