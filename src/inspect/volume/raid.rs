//! A chunked RAID array as a byte source, shared by MD and LVM's dm-raid (both run the
//! kernel's md personalities, so both put chunks in the same places): raid0 stripes,
//! raid1 copies, raid10 near copies, raid4/5/6 data chunks where md's layout algorithm
//! puts them. One missing member of a parity array is rebuilt by XOR of the rest of its
//! row with P; a raid10 chunk is read from whichever copy is present. Q (the raid6
//! Reed-Solomon syndrome) is never needed for that and is not computed, so raid6 reads
//! with at most one member missing, like raid5.

use std::sync::Arc;

use crate::inspect::bytes::xor_into;
use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, ReadAt};

/// md's parity layout algorithms (`raid5_compute_sector` in the kernel).
pub mod algo {
    pub const LEFT_ASYMMETRIC: u32 = 0;
    pub const RIGHT_ASYMMETRIC: u32 = 1;
    pub const LEFT_SYMMETRIC: u32 = 2;
    pub const RIGHT_SYMMETRIC: u32 = 3;
    pub const PARITY_0: u32 = 4;
    pub const PARITY_N: u32 = 5;
    /// raid6 only: DDF's layouts, which LVM's `raid6_zr`, `raid6_nr`, `raid6_nc` use.
    pub const ROTATING_ZERO_RESTART: u32 = 8;
    pub const ROTATING_N_RESTART: u32 = 9;
    pub const ROTATING_N_CONTINUE: u32 = 10;

    /// Whether we know where `algo` puts the chunks of a raid5 (`q` false) or raid6.
    pub fn known(algo: u32, q: bool) -> bool {
        algo <= PARITY_N || (q && (ROTATING_ZERO_RESTART..=ROTATING_N_CONTINUE).contains(&algo))
    }
}

/// How the chunks of an array sit on its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// raid1: every member is a full copy.
    Mirror,
    /// raid0: chunks round-robin over the members.
    Stripe,
    /// raid10 "near": each chunk on `copies` consecutive members.
    Near(u64),
    /// raid4/5/6: one parity chunk (two for raid6, `q`) per row, placed by md `algo`
    /// (see [`algo`]).
    Parity { algo: u32, q: bool },
}

/// An array over its members' data areas (`None`: a missing member).
pub struct RaidSource {
    slots: Vec<Option<Arc<dyn ReadAt>>>,
    chunk: u64,
    size: u64,
    kind: Kind,
}

impl RaidSource {
    /// The array of `size` bytes; `None` when the members present cannot give every
    /// chunk (a caller turns that into its own typed error). `chunk` must be non-zero
    /// for chunked kinds and parity layouts must be [`algo::known`].
    pub fn new(
        slots: Vec<Option<Arc<dyn ReadAt>>>,
        chunk: u64,
        size: u64,
        kind: Kind,
    ) -> Option<RaidSource> {
        let src = RaidSource {
            slots,
            chunk: chunk.max(1),
            size,
            kind,
        };
        src.readable().then_some(src)
    }

    /// The slots with no member.
    pub fn missing(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|i| self.slots[*i as usize].is_none())
            .collect()
    }

    /// Whether every chunk has a present copy, or can be rebuilt from P.
    fn readable(&self) -> bool {
        let n = self.slots.len() as u64;
        let missing = self.missing().len() as u64;
        match self.kind {
            Kind::Mirror => missing < n,
            Kind::Stripe => missing == 0,
            // Chunk placement repeats every `n` chunks: check one period.
            Kind::Near(copies) => {
                copies >= 1
                    && copies <= n
                    && (0..n)
                        .all(|c| (0..copies).any(|k| self.slot((c * copies + k) % n).is_some()))
            }
            Kind::Parity { algo: a, q } => {
                let parity = if q { 2 } else { 1 };
                n > parity && algo::known(a, q) && missing <= 1
            }
        }
    }

    fn slot(&self, i: u64) -> Option<&Arc<dyn ReadAt>> {
        self.slots.get(i as usize).and_then(|s| s.as_ref())
    }

    fn lost(&self, what: &str) -> ReadError {
        ReadError::Unsupported {
            format: "raid",
            message: format!("{what} is on a missing member"),
        }
    }

    /// Reads `buf.len()` bytes (within one chunk) of data chunk `c` from `within`.
    fn read_chunk(&self, c: u64, within: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let n = self.slots.len() as u64;
        let at = |row: u64| row * self.chunk + within;
        match self.kind {
            Kind::Mirror => self
                .slots
                .iter()
                .flatten()
                .next()
                .ok_or_else(|| self.lost("the data"))?
                .read_exact_at(c * self.chunk + within, buf),
            Kind::Stripe => self
                .slot(c % n)
                .ok_or_else(|| self.lost("a chunk"))?
                .read_exact_at(at(c / n), buf),
            Kind::Near(copies) => {
                for k in 0..copies {
                    let pos = c * copies + k;
                    if let Some(s) = self.slot(pos % n) {
                        return s.read_exact_at(at(pos / n), buf);
                    }
                }
                Err(self.lost("every copy of a chunk"))
            }
            Kind::Parity { algo, q } => {
                let data = n - if q { 2 } else { 1 };
                let (row, d) = (c / data, c % data);
                let (dd, pd, _) = parity_row(algo, q, n, row, d);
                if let Some(s) = self.slot(dd) {
                    return s.read_exact_at(at(row), buf);
                }
                // Rebuild: P xor every other data chunk of the row.
                self.slot(pd)
                    .ok_or_else(|| self.lost("a chunk and its parity"))?
                    .read_exact_at(at(row), buf)?;
                let mut other = vec![0u8; buf.len()];
                for od in (0..data).filter(|od| *od != d) {
                    let (slot, _, _) = parity_row(algo, q, n, row, od);
                    self.slot(slot)
                        .ok_or_else(|| self.lost("more than one chunk of a row"))?
                        .read_exact_at(at(row), &mut other)?;
                    xor_into(buf, &other);
                }
                Ok(())
            }
        }
    }
}

impl ReadAt for RaidSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        if let Kind::Mirror = self.kind {
            return self.read_chunk(0, offset, buf);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (c, within) = (pos / self.chunk, pos % self.chunk);
            let run = ((self.chunk - within) as usize).min(buf.len() - done);
            self.read_chunk(c, within, &mut buf[done..done + run])?;
            done += run;
        }
        Ok(())
    }
}

/// Where md puts one row of a raid4/5/6 array of `n` members: (member of data index
/// `d`, P member, Q member), following the kernel's `raid5_compute_sector`. `algo`
/// must be [`algo::known`].
pub fn parity_row(algo: u32, q: bool, n: u64, row: u64, d: u64) -> (u64, u64, Option<u64>) {
    use algo::*;
    let data = n - if q { 2 } else { 1 };
    if !q {
        let (pd, dd) = match algo {
            LEFT_ASYMMETRIC => {
                let pd = data - row % n;
                (pd, if d >= pd { d + 1 } else { d })
            }
            RIGHT_ASYMMETRIC => {
                let pd = row % n;
                (pd, if d >= pd { d + 1 } else { d })
            }
            LEFT_SYMMETRIC => {
                let pd = data - row % n;
                (pd, (pd + 1 + d) % n)
            }
            RIGHT_SYMMETRIC => {
                let pd = row % n;
                (pd, (pd + 1 + d) % n)
            }
            PARITY_0 => (0, d + 1),
            _ => (data, d),
        };
        return (dd, pd, None);
    }
    // Asymmetric layouts: "D D P Q D", or "Q D D D P" when P is on the last member.
    let asymmetric = |pd: u64| {
        if pd == n - 1 {
            (pd, 0, d + 1)
        } else if d >= pd {
            (pd, pd + 1, d + 2)
        } else {
            (pd, pd + 1, d)
        }
    };
    let (pd, qd, dd) = match algo {
        LEFT_ASYMMETRIC => asymmetric(n - 1 - row % n),
        // Zero-restart places data like right-asymmetric (only Q's order differs).
        RIGHT_ASYMMETRIC | ROTATING_ZERO_RESTART => asymmetric(row % n),
        // N-restart is left-asymmetric shifted by one row: the first row is D D D P Q.
        ROTATING_N_RESTART => asymmetric(n - 1 - (row + 1) % n),
        LEFT_SYMMETRIC | RIGHT_SYMMETRIC => {
            let pd = if algo == LEFT_SYMMETRIC {
                n - 1 - row % n
            } else {
                row % n
            };
            (pd, (pd + 1) % n, (pd + 2 + d) % n)
        }
        // N-continue: left-symmetric with Q before P.
        ROTATING_N_CONTINUE => {
            let pd = n - 1 - row % n;
            (pd, (pd + n - 1) % n, (pd + 1 + d) % n)
        }
        PARITY_0 => (0, 1, d + 2),
        _ => (data, data + 1, d),
    };
    (dd, pd, Some(qd))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::inspect::source::MemSource;

    /// Lays `data` out as an `n`-member parity array of `chunk`-byte chunks (P filled
    /// in, Q left zero), as md would.
    fn lay_out(algo: u32, q: bool, n: u64, chunk: usize, data: &[u8]) -> Vec<Vec<u8>> {
        let per_row = n - if q { 2 } else { 1 };
        let chunks = (data.len() / chunk) as u64;
        let rows = chunks.div_ceil(per_row) as usize;
        let mut disks = vec![vec![0u8; rows * chunk]; n as usize];
        for c in 0..chunks {
            let (row, d) = (c / per_row, c % per_row);
            let (dd, pd, _) = parity_row(algo, q, n, row, d);
            let at = row as usize * chunk;
            let bytes = &data[c as usize * chunk..(c as usize + 1) * chunk];
            disks[dd as usize][at..at + chunk].copy_from_slice(bytes);
            for (p, b) in disks[pd as usize][at..at + chunk].iter_mut().zip(bytes) {
                *p ^= b;
            }
        }
        disks
    }

    fn array(
        disks: &[Vec<u8>],
        dropped: &[usize],
        chunk: u64,
        size: u64,
        kind: Kind,
    ) -> Option<RaidSource> {
        let slots = disks
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (!dropped.contains(&i)).then(|| Arc::new(MemSource(d.clone())) as Arc<dyn ReadAt>)
            })
            .collect();
        RaidSource::new(slots, chunk, size, kind)
    }

    #[test]
    fn every_parity_layout_reads_back_with_each_member_missing() {
        let chunk = 512usize;
        for (q, n, algos) in [
            (false, 3u64, vec![0, 1, 2, 3, 4, 5]),
            (false, 4, vec![0, 1, 2, 3, 4, 5]),
            (true, 5, vec![0, 1, 2, 3, 4, 5, 8, 9, 10]),
        ] {
            let per_row = n as usize - if q { 2 } else { 1 };
            let data: Vec<u8> = (0..per_row * 7 * chunk)
                .map(|i| (i * 7 % 253) as u8)
                .collect();
            for algo in algos {
                let disks = lay_out(algo, q, n, chunk, &data);
                let kind = Kind::Parity { algo, q };
                for dropped in (0..n as usize).map(Some).chain([None]) {
                    let dropped: Vec<usize> = dropped.into_iter().collect();
                    let src = array(&disks, &dropped, chunk as u64, data.len() as u64, kind)
                        .expect("one missing member is readable");
                    let mut got = vec![0u8; data.len()];
                    src.read_exact_at(0, &mut got).unwrap();
                    assert_eq!(got, data, "algo {algo} q {q} n {n} dropped {dropped:?}");
                }
                // Two missing: refused up front, not read wrong.
                assert!(array(&disks, &[0, 1], chunk as u64, data.len() as u64, kind).is_none());
            }
        }
    }

    #[test]
    fn every_row_uses_each_member_once() {
        for (q, n, algos) in [
            (false, 4u64, vec![0, 1, 2, 3, 4, 5]),
            (true, 6, vec![0, 1, 2, 3, 4, 5, 8, 9, 10]),
        ] {
            for algo in algos {
                for row in 0..2 * n {
                    let data = n - if q { 2 } else { 1 };
                    let (_, pd, qd) = parity_row(algo, q, n, row, 0);
                    let mut used: Vec<u64> = (0..data)
                        .map(|d| parity_row(algo, q, n, row, d).0)
                        .collect();
                    used.push(pd);
                    used.extend(qd);
                    used.sort();
                    assert_eq!(used, (0..n).collect::<Vec<_>>(), "algo {algo} row {row}");
                }
            }
        }
    }

    #[test]
    fn layouts_match_the_kernel_tables() {
        // raid5 left-symmetric, 3 members: row 0 P on 2, data 0,1; row 1 P on 1, data 2,0.
        assert_eq!(parity_row(2, false, 3, 0, 0), (0, 2, None));
        assert_eq!(parity_row(2, false, 3, 1, 0), (2, 1, None));
        // raid6 left-symmetric, 4 members: row 0 P 3, Q 0, data 1, 2.
        assert_eq!(parity_row(2, true, 4, 0, 0), (1, 3, Some(0)));
        assert_eq!(parity_row(2, true, 4, 1, 0), (0, 2, Some(3)));
        // Zero-restart, 5 members: row 0 is P Q D D D; row 4 is Q D D D P.
        assert_eq!(parity_row(8, true, 5, 0, 0), (2, 0, Some(1)));
        assert_eq!(parity_row(8, true, 5, 4, 0), (1, 4, Some(0)));
        // N-restart: row 0 is D D D P Q.
        assert_eq!(parity_row(9, true, 5, 0, 2), (2, 3, Some(4)));
        // N-continue: row 0 is D D D Q P, row 1 D D Q P D (data continues after P).
        assert_eq!(parity_row(10, true, 5, 0, 0), (0, 4, Some(3)));
        assert_eq!(parity_row(10, true, 5, 1, 0), (4, 3, Some(2)));
    }

    #[test]
    fn near_copies_survive_one_missing_member_per_pair() {
        // 4 members, 2 copies: chunk c on members 2c%4 and 2c%4+1.
        let chunk = 512usize;
        let data: Vec<u8> = (0..8 * chunk).map(|i| (i % 251) as u8).collect();
        let mut disks = vec![vec![0u8; 4 * chunk]; 4];
        for c in 0..8usize {
            for k in 0..2 {
                let pos = c * 2 + k;
                let at = pos / 4 * chunk;
                disks[pos % 4][at..at + chunk].copy_from_slice(&data[c * chunk..(c + 1) * chunk]);
            }
        }
        for dropped in [vec![], vec![0], vec![1, 2], vec![0, 3]] {
            let src = array(&disks, &dropped, 512, data.len() as u64, Kind::Near(2)).unwrap();
            let mut got = vec![0u8; data.len()];
            src.read_exact_at(0, &mut got).unwrap();
            assert_eq!(got, data, "{dropped:?}");
        }
        assert!(array(&disks, &[0, 1], 512, data.len() as u64, Kind::Near(2)).is_none());
        assert!(array(&disks, &[1], 512, data.len() as u64, Kind::Stripe).is_none());
    }
}
