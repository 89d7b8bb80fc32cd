//! The internal log, read only to tell whether it is clean: the kernel replays a dirty
//! log at mount time, and we do not, so files changed by the transactions still in it
//! read as they were before those transactions (the report says so).
//!
//! The log is a ring of 512-byte basic blocks. Each block's first word carries the
//! cycle number (the pass around the ring that wrote it), so the head is where the
//! cycle number drops; the last record before the head is an unmount record exactly
//! when the filesystem was cleanly unmounted. This follows the kernel's
//! `xlog_find_head` and `xlog_check_unmount_rec`, without their search for torn writes
//! (a log with a torn write is dirty anyway).

use super::superblock::Superblock;
use crate::inspect::bytes::be32;
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

const BB: u64 = 512;
const RECORD_MAGIC: u32 = 0xfeed_babe;
/// Record header bytes one header block describes; bigger records have more header
/// blocks (v2 logs).
const HEADER_CYCLE_SIZE: u32 = 32 * 1024;
/// An op header flag: this transaction is the unmount record.
const UNMOUNT_TRANS: u8 = 0x20;
/// How far before the head the last record header may start: the largest record
/// (256 KiB) and its header blocks.
const MAX_RECORD_BBS: u64 = 512 + 16;

/// What the log says about the filesystem's last unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogState {
    /// Unmounted cleanly (or never written): nothing to replay.
    Clean,
    /// The log holds transactions the kernel would replay.
    Dirty,
}

/// Reads the head of the internal log.
pub(super) fn state(src: &dyn ReadAt, sb: &Superblock) -> Result<LogState, FsError> {
    let Some(start_fsb) = sb.log_start else {
        return Ok(LogState::Dirty);
    };
    let start = sb.extent_offset(start_fsb, sb.log_blocks)?;
    let n = sb.log_blocks * sb.block_size / BB;
    if n < 8 {
        return Ok(LogState::Dirty);
    }
    let log = Ring { src, start, n };
    let first = log.cycle(0)?;
    let last = log.cycle(n - 1)?;
    if first == 0 {
        // Never written (zeroed by an old mkfs): nothing to replay when all of it is.
        return Ok(if last == 0 {
            LogState::Clean
        } else {
            LogState::Dirty
        });
    }
    // Blocks [0, head) were written in cycle `first`, the rest in an earlier one.
    let head = if first == last {
        n
    } else {
        let (mut lo, mut hi) = (0, n - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if log.cycle(mid)? == first {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    };
    // The last record header before the head.
    for back in 1..=MAX_RECORD_BBS.min(n) {
        let at = (head + n - back) % n;
        let header = log.block(at)?;
        if be32(&header, 0) != RECORD_MAGIC {
            continue;
        }
        let version = be32(&header, 8);
        let len = u64::from(be32(&header, 12));
        let num_ops = be32(&header, 40);
        let h_size = be32(&header, 320);
        let hblks = if version & 2 != 0 && h_size > HEADER_CYCLE_SIZE {
            u64::from(h_size.div_ceil(HEADER_CYCLE_SIZE))
        } else {
            1
        };
        let after = (at + hblks + len.div_ceil(BB)) % n;
        if after != head % n || num_ops != 1 {
            return Ok(LogState::Dirty);
        }
        let op = log.block((at + hblks) % n)?;
        return Ok(if op[9] & UNMOUNT_TRANS != 0 {
            LogState::Clean
        } else {
            LogState::Dirty
        });
    }
    Ok(LogState::Dirty)
}

/// The log's basic blocks.
struct Ring<'a> {
    src: &'a dyn ReadAt,
    start: u64,
    n: u64,
}

impl Ring<'_> {
    fn block(&self, bb: u64) -> Result<[u8; BB as usize], FsError> {
        let mut b = [0u8; BB as usize];
        self.src
            .read_exact_at(self.start + (bb % self.n) * BB, &mut b)?;
        Ok(b)
    }

    /// The cycle a block was written in: a record header states it in its second word,
    /// every other block carries it in its first.
    fn cycle(&self, bb: u64) -> Result<u32, FsError> {
        let mut w = [0u8; 8];
        self.src.read_exact_at(self.start + bb * BB, &mut w)?;
        Ok(if be32(&w, 0) == RECORD_MAGIC {
            be32(&w, 4)
        } else {
            be32(&w, 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::superblock::tests::sector;
    use super::*;
    use crate::inspect::source::MemSource;

    /// The log of `sector()` (block 600, 100 blocks) with one record at its start:
    /// a header block, then one data block holding an op header with `flags`.
    fn image(num_ops: u32, flags: u8, records: bool) -> (MemSource, Superblock) {
        let sb = Superblock::parse(&sector()).unwrap();
        let mut img = vec![0u8; 4000 * 4096];
        if records {
            let at = 600 * 4096;
            let h = &mut img[at..at + 512];
            h[0..4].copy_from_slice(&RECORD_MAGIC.to_be_bytes());
            h[4..8].copy_from_slice(&1u32.to_be_bytes());
            h[8..12].copy_from_slice(&2u32.to_be_bytes());
            h[12..16].copy_from_slice(&512u32.to_be_bytes());
            h[40..44].copy_from_slice(&num_ops.to_be_bytes());
            h[320..324].copy_from_slice(&HEADER_CYCLE_SIZE.to_be_bytes());
            let d = &mut img[at + 512..at + 1024];
            d[0..4].copy_from_slice(&1u32.to_be_bytes());
            d[9] = flags;
        }
        (MemSource(img), sb)
    }

    #[test]
    fn unmount_record_at_the_head_is_clean() {
        let (src, sb) = image(1, UNMOUNT_TRANS, true);
        assert_eq!(state(&src, &sb).unwrap(), LogState::Clean);
        let (src, sb) = image(1, 0, true);
        assert_eq!(state(&src, &sb).unwrap(), LogState::Dirty);
        let (src, sb) = image(2, UNMOUNT_TRANS, true);
        assert_eq!(state(&src, &sb).unwrap(), LogState::Dirty);
        let (src, sb) = image(0, 0, false);
        assert_eq!(state(&src, &sb).unwrap(), LogState::Clean, "zeroed log");
    }
}
