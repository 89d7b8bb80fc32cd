//! Transaction logs (`.LOG1`/`.LOG2`, the format of Windows 8.1 and later): a base
//! block, then log entries (`HvLE`), each a set of dirty pages to write over the hive
//! bins, protected by two Marvin32 hashes and numbered by sequence.
//!
//! Replay starts at the entry whose sequence number equals the primary file's
//! secondary sequence number and continues while the next number is found in either
//! log; an entry with a bad hash or size ends it, as in Windows' own recovery.

use crate::inspect::bytes::{le32, le64};

use super::base::{self, Base, BASE_SIZE};
use super::{HiveError, MAX_HIVE_BYTES};

const ENTRY_HEADER: usize = 40;
const MARVIN_SEED: u64 = 0x82EF_4D88_7A4E_55C5;
/// Most entries replayed (each carries at least one page).
const MAX_ENTRIES: usize = 1 << 16;

/// One valid log entry.
struct Entry<'a> {
    seq: u32,
    bins_size: u32,
    pages: Vec<(u32, &'a [u8])>,
}

/// Applies what the logs hold over `hive`; `Ok(None)` when they hold nothing that
/// continues it, `Ok(Some(n))` after applying `n` entries.
pub(crate) fn replay(
    hive: &mut Vec<u8>,
    primary: &Base,
    logs: &[Vec<u8>],
) -> Result<Option<usize>, HiveError> {
    let mut entries: Vec<Entry> = Vec::new();
    for log in logs {
        if base::parse(log).is_err() {
            continue;
        }
        entries.extend(parse_entries(log));
    }
    // Replay can only add what the logs carry: a hive growing past that is a lie.
    let max_len = hive.len() + logs.iter().map(Vec::len).sum::<usize>();
    let mut expected = primary.seq2;
    let mut applied = 0;
    let mut last_size = None;
    while applied < MAX_ENTRIES {
        let Some(e) = entries.iter().find(|e| e.seq == expected) else {
            break;
        };
        let need = BASE_SIZE + e.bins_size as usize;
        if need > max_len {
            break;
        }
        if need as u64 > MAX_HIVE_BYTES {
            return Err(HiveError::TooLarge {
                what: "replayed hive",
                size: need as u64,
                limit: MAX_HIVE_BYTES,
            });
        }
        if hive.len() < need {
            hive.resize(need, 0);
        }
        for &(offset, data) in &e.pages {
            let at = BASE_SIZE + offset as usize;
            if at + data.len() <= hive.len() {
                hive[at..at + data.len()].copy_from_slice(data);
            }
        }
        last_size = Some(e.bins_size);
        applied += 1;
        expected = expected.wrapping_add(1);
    }
    let Some(size) = last_size else {
        return Ok(None);
    };
    // The hive is now consistent up to `expected - 1`: a clean base block says so.
    hive[4..8].copy_from_slice(&expected.wrapping_sub(1).to_le_bytes());
    hive[8..12].copy_from_slice(&expected.wrapping_sub(1).to_le_bytes());
    hive[40..44].copy_from_slice(&size.to_le_bytes());
    let c = base::checksum(hive);
    hive[508..512].copy_from_slice(&c.to_le_bytes());
    Ok(Some(applied))
}

/// The valid entries of one log, in file order; the first invalid one ends them.
fn parse_entries(log: &[u8]) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    let mut at = 512;
    while at + ENTRY_HEADER <= log.len() && out.len() < MAX_ENTRIES {
        let e = &log[at..];
        if &e[..4] != b"HvLE" {
            break;
        }
        let size = le32(e, 4) as usize;
        let count = le32(e, 20) as usize;
        let bins_size = le32(e, 16);
        if size < ENTRY_HEADER
            || !size.is_multiple_of(512)
            || size > e.len()
            || !bins_size.is_multiple_of(4096)
        {
            break;
        }
        let e = &e[..size];
        if !hash_matches(le64(e, 24), &e[ENTRY_HEADER..]) || !hash_matches(le64(e, 32), &e[..32]) {
            break;
        }
        let refs_end = ENTRY_HEADER + count * 8;
        if count == 0 || refs_end > size {
            break;
        }
        let mut pages = Vec::with_capacity(count);
        let mut data_at = refs_end;
        let mut ok = true;
        for i in 0..count {
            let r = ENTRY_HEADER + i * 8;
            let (offset, len) = (le32(e, r), le32(e, r + 4) as usize);
            if !len.is_multiple_of(4096) || data_at + len > size {
                ok = false;
                break;
            }
            pages.push((offset, &e[data_at..data_at + len]));
            data_at += len;
        }
        if !ok {
            break;
        }
        out.push(Entry {
            seq: le32(e, 12),
            bins_size,
            pages,
        });
        at += size;
    }
    out
}

/// Whether a stored 64-bit hash field matches Marvin32 of `data`.
fn hash_matches(stored: u64, data: &[u8]) -> bool {
    stored == marvin32(data)
}

/// Marvin32 (the keyed hash Windows uses for log entries) with the registry's seed,
/// as a 64-bit value: the final state `p1:p0`.
pub(crate) fn marvin32(data: &[u8]) -> u64 {
    marvin32_seeded(data, MARVIN_SEED)
}

fn marvin32_seeded(data: &[u8], seed: u64) -> u64 {
    let mut p0 = seed as u32;
    let mut p1 = (seed >> 32) as u32;
    let block = |v: u32, p0: &mut u32, p1: &mut u32| {
        *p0 = p0.wrapping_add(v);
        *p1 ^= *p0;
        *p0 = p0.rotate_left(20).wrapping_add(*p1);
        *p1 = p1.rotate_left(9) ^ *p0;
        *p0 = p0.rotate_left(27).wrapping_add(*p1);
        *p1 = p1.rotate_left(19);
    };
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        block(
            u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            &mut p0,
            &mut p1,
        );
    }
    let rest = chunks.remainder();
    let last = match rest.len() {
        0 => 0x80,
        1 => 0x8000 | u32::from(rest[0]),
        2 => 0x0080_0000 | u32::from(rest[0]) | u32::from(rest[1]) << 8,
        _ => 0x8000_0000 | u32::from(rest[0]) | u32::from(rest[1]) << 8 | u32::from(rest[2]) << 16,
    };
    block(last, &mut p0, &mut p1);
    block(0, &mut p0, &mut p1);
    (u64::from(p1) << 32) | u64::from(p0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marvin32_known_answers() {
        // Test vectors of the reference implementation (seed 0x004FB61A001BDBCC).
        let seed = 0x004f_b61a_001b_dbcc;
        assert_eq!(marvin32_seeded(b"", seed), 0x30ed_35c1_00cd_3c7d);
        assert_eq!(marvin32_seeded(&[0xaf], seed), 0x48e7_3fc7_7d75_ddc1);
        assert_eq!(marvin32_seeded(&[0xe7, 0x0f], seed), 0xb5f6_e1fc_485d_bff8);
        assert_eq!(
            marvin32_seeded(&[0x37, 0xf4, 0x95], seed),
            0xf0b0_7c78_9b8c_f7e8
        );
    }
}
