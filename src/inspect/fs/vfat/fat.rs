//! The file allocation table: cluster chains.

use std::sync::{Arc, Mutex};

use super::bpb::{FatType, Geometry};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

/// Size of one cached piece of the FAT.
const PAGE: u64 = 4096;
/// Pages kept (direct-mapped by page number): 1 MiB at most, whatever the FAT size, and
/// the whole FAT of any volume up to a few GiB.
const SLOTS: usize = 256;

/// What a FAT entry says follows a cluster in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Next(u32),
    End,
}

/// Reads FAT entries on demand through a small page cache, so a FAT32 table of
/// hundreds of MiB is never loaded whole.
pub(crate) struct Fat {
    src: Arc<dyn ReadAt>,
    fat_type: FatType,
    offset: u64,
    len: u64,
    max_cluster: u32,
    cache: Mutex<Vec<Option<Page>>>,
}

/// One cached piece of the FAT: its page number and bytes.
type Page = (u64, Box<[u8]>);

impl Fat {
    pub(crate) fn new(src: Arc<dyn ReadAt>, g: &Geometry) -> Fat {
        Fat {
            src,
            fat_type: g.fat_type,
            offset: g.fat_offset,
            len: g.fat_len,
            max_cluster: g.max_cluster(),
            cache: Mutex::new(vec![None; SLOTS]),
        }
    }

    /// Whether `cluster` names a data cluster of this volume.
    pub(crate) fn in_range(&self, cluster: u32) -> bool {
        (2..=self.max_cluster).contains(&cluster)
    }

    /// The entry for `cluster`, which must be in range, classified.
    pub(crate) fn next(&self, cluster: u32) -> Result<Link, FsError> {
        let c = u64::from(cluster);
        let (value, end_min, bad) = match self.fat_type {
            FatType::Fat12 => {
                let mut b = [0u8; 2];
                self.read(c + c / 2, &mut b)?;
                let v = u16::from_le_bytes(b);
                let v = if c % 2 == 1 { v >> 4 } else { v & 0x0fff };
                (u32::from(v), 0xff8, 0xff7)
            }
            FatType::Fat16 => {
                let mut b = [0u8; 2];
                self.read(c * 2, &mut b)?;
                (u32::from(u16::from_le_bytes(b)), 0xfff8, 0xfff7)
            }
            FatType::Fat32 => {
                let mut b = [0u8; 4];
                self.read(c * 4, &mut b)?;
                (
                    u32::from_le_bytes(b) & 0x0fff_ffff,
                    0x0fff_fff8,
                    0x0fff_fff7,
                )
            }
        };
        if value >= end_min {
            Ok(Link::End)
        } else if self.in_range(value) {
            Ok(Link::Next(value))
        } else {
            let what = match value {
                0 => "a free cluster".to_string(),
                v if v == bad => "a bad-cluster mark".to_string(),
                v => format!("cluster {v}, outside 2..={}", self.max_cluster),
            };
            Err(corrupt(format!(
                "FAT entry of cluster {cluster} points to {what}"
            )))
        }
    }

    /// The chain starting at `first`: at least `min` and at most `max` clusters, in
    /// order. With `stop_at_min` the walk stops after `min` clusters (a file needs no
    /// more); otherwise it must reach an end mark within `max` clusters. A chain that
    /// visits a cluster twice is a loop and an error.
    pub(crate) fn chain(
        &self,
        first: u32,
        min: u64,
        max: u64,
        stop_at_min: bool,
    ) -> Result<Vec<u32>, FsError> {
        if !self.in_range(first) {
            return Err(corrupt(format!(
                "chain starts at cluster {first}, outside 2..={}",
                self.max_cluster
            )));
        }
        let max = max.min(u64::from(self.max_cluster) - 1);
        let mut chain = Vec::new();
        let mut cluster = first;
        loop {
            chain.push(cluster);
            if stop_at_min && chain.len() as u64 >= min {
                break;
            }
            match self.next(cluster)? {
                Link::End => break,
                Link::Next(n) if chain.len() as u64 >= max => {
                    return Err(corrupt(format!(
                        "chain from cluster {first} goes on to cluster {n} after {max} clusters (a loop?)"
                    )));
                }
                Link::Next(n) => cluster = n,
            }
        }
        if (chain.len() as u64) < min {
            return Err(corrupt(format!(
                "chain from cluster {first} ends after {} clusters, the size needs {min}",
                chain.len()
            )));
        }
        let mut sorted = chain.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt(format!(
                "chain from cluster {first} visits cluster {} twice (a loop)",
                w[0]
            )));
        }
        Ok(chain)
    }

    /// Copies FAT bytes `[off, off + out.len())` through the page cache.
    fn read(&self, off: u64, out: &mut [u8]) -> Result<(), FsError> {
        if off + out.len() as u64 > self.len {
            return Err(corrupt(format!(
                "FAT entry at byte {off} is past the {}-byte FAT",
                self.len
            )));
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0;
        while done < out.len() {
            let pos = off + done as u64;
            let page = pos / PAGE;
            let slot = (page % SLOTS as u64) as usize;
            let cached = matches!(&cache[slot], Some((p, _)) if *p == page);
            if !cached {
                let start = page * PAGE;
                let len = PAGE.min(self.len - start) as usize;
                let mut data = vec![0u8; len].into_boxed_slice();
                self.src.read_exact_at(self.offset + start, &mut data)?;
                cache[slot] = Some((page, data));
            }
            let Some((_, data)) = &cache[slot] else {
                return Err(corrupt(format!("FAT page {page} missing from the cache")));
            };
            let within = (pos - page * PAGE) as usize;
            let n = (out.len() - done).min(data.len() - within);
            out[done..done + n].copy_from_slice(&data[within..within + n]);
            done += n;
        }
        Ok(())
    }
}

pub(crate) fn corrupt(message: String) -> FsError {
    FsError::Corrupt {
        fs: "vfat",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::super::bpb::RootDir;
    use super::*;
    use crate::inspect::source::MemSource;

    fn fat(fat_type: FatType, bytes: Vec<u8>, clusters: u32) -> Fat {
        let g = Geometry {
            fat_type,
            cluster_size: 512,
            fat_offset: 0,
            fat_len: bytes.len() as u64,
            root: RootDir::Chain { first_cluster: 2 },
            data_offset: 0,
            cluster_count: clusters,
        };
        Fat::new(Arc::new(MemSource(bytes)), &g)
    }

    fn fat12(links: &[(u32, u16)]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        for &(c, v) in links {
            let off = (c + c / 2) as usize;
            let mut cur = u16::from_le_bytes([b[off], b[off + 1]]);
            if c % 2 == 1 {
                cur = (cur & 0x000f) | (v << 4);
            } else {
                cur = (cur & 0xf000) | (v & 0x0fff);
            }
            b[off..off + 2].copy_from_slice(&cur.to_le_bytes());
        }
        b
    }

    #[test]
    fn follows_fat12_chains_across_odd_and_even_entries() {
        let f = fat(FatType::Fat12, fat12(&[(2, 3), (3, 7), (7, 0xfff)]), 60);
        assert_eq!(f.chain(2, 3, 10, false).unwrap(), vec![2, 3, 7]);
        assert_eq!(f.chain(2, 2, 10, true).unwrap(), vec![2, 3]);
    }

    #[test]
    fn a_loop_is_corrupt() {
        let f = fat(FatType::Fat12, fat12(&[(2, 3), (3, 2)]), 60);
        // Bounded by the expected length...
        let err = f.chain(2, 0, 10, false).unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
        // ...and caught even when the loop fits inside the expected length.
        let err = f.chain(2, 3, 3, true).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn out_of_range_free_and_bad_links_are_corrupt() {
        let f = fat(FatType::Fat12, fat12(&[(2, 100), (4, 0), (5, 0xff7)]), 60);
        for (start, needle) in [(2, "outside"), (4, "free"), (5, "bad-cluster")] {
            let err = f.chain(start, 0, 10, false).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = f.chain(99, 0, 10, false).unwrap_err();
        assert!(err.to_string().contains("starts at cluster 99"), "{err}");
    }

    #[test]
    fn a_short_chain_is_corrupt() {
        let f = fat(FatType::Fat12, fat12(&[(2, 0xfff)]), 60);
        let err = f.chain(2, 2, 10, true).unwrap_err();
        assert!(err.to_string().contains("ends after 1"), "{err}");
    }

    #[test]
    fn reads_fat16_and_fat32_entries_across_pages() {
        let mut b = vec![0u8; 3 * 4096];
        // FAT32 entry of cluster 1500 sits in the second page; high nibble is ignored.
        b[1500 * 4..1500 * 4 + 4].copy_from_slice(&0xf000_0002u32.to_le_bytes());
        b[2 * 4..2 * 4 + 4].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
        let f = fat(FatType::Fat32, b.clone(), 3000);
        assert_eq!(f.chain(1500, 0, 10, false).unwrap(), vec![1500, 2]);

        let mut b = vec![0u8; 2 * 4096];
        b[2048 * 2..2048 * 2 + 2].copy_from_slice(&0xfff8u16.to_le_bytes());
        let f = fat(FatType::Fat16, b, 4000);
        assert_eq!(f.next(2048).unwrap(), Link::End);
    }
}
