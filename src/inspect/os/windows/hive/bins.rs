//! Hive bins and cells. After the base block the file is a sequence of bins (`hbin`,
//! multiples of 4 KiB), each a sequence of cells: a signed 32-bit size (negative when
//! allocated) and the cell's data. Cells are named by their offset from the first bin.

use crate::inspect::bytes::le32;

use super::base::BASE_SIZE;
use super::{corrupt, HiveError};

const BIN_HEADER: usize = 32;

/// The hive's bins, each checked, and the bytes they live in.
pub(crate) struct Bins {
    data: Vec<u8>,
    /// `(start, end)` of each bin, relative to the first bin, sorted.
    ranges: Vec<(usize, usize)>,
}

impl Bins {
    /// Walks the bins of `data` (the whole file) up to `size` bytes after the base
    /// block. A bin with a bad signature ends the walk, as in Windows' own loader (the
    /// rest of the file is slack), unless it is the first.
    pub fn parse(data: Vec<u8>, size: u32) -> Result<Bins, HiveError> {
        let end = (BASE_SIZE + size as usize).min(data.len());
        let mut ranges = Vec::new();
        let mut at = BASE_SIZE;
        while at + BIN_HEADER <= end {
            let len = le32(&data, at + 8) as usize;
            if &data[at..at + 4] != b"hbin"
                || len < 4096
                || !len.is_multiple_of(4096)
                || at + len > end
            {
                break;
            }
            ranges.push((at - BASE_SIZE, at - BASE_SIZE + len));
            at += len;
        }
        if ranges.is_empty() {
            return Err(corrupt(
                (BASE_SIZE) as u64,
                "no hive bin after the base block",
            ));
        }
        Ok(Bins { data, ranges })
    }

    /// The data of the allocated cell at `offset`, within its bin.
    pub fn cell(&self, offset: u32) -> Result<&[u8], HiveError> {
        let off = offset as usize;
        let i = self.ranges.partition_point(|&(_, e)| e <= off);
        let Some(&(start, end)) = self.ranges.get(i).filter(|(s, _)| *s <= off) else {
            return Err(corrupt(offset, "cell outside every hive bin"));
        };
        if off < start + BIN_HEADER || !off.is_multiple_of(8) || off + 4 > end {
            return Err(corrupt(offset, "cell offset is not a cell of its bin"));
        }
        let abs = BASE_SIZE + off;
        let raw = le32(&self.data, abs) as i32;
        let size = raw.unsigned_abs() as usize;
        if size < 8 || off + size > end {
            return Err(corrupt(
                offset,
                format!("cell of {raw} bytes does not fit its bin"),
            ));
        }
        Ok(&self.data[abs + 4..abs + size])
    }
}
