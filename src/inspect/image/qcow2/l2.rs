//! qcow2 L2 tables: what one L2 entry (standard 64-bit or extended 128-bit) says about a
//! guest cluster, and a bounded cache of loaded tables so sequential reads do not re-read
//! the same table for every cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::super::read_map::{same_run, Run};
use super::header::corrupt;
use crate::inspect::source::ReadError;

/// Bits 9..=55 of an L1/L2 entry: a host offset.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
/// Bit 0 of a standard descriptor: the cluster reads as zeros.
const ZERO: u64 = 1;
/// Every extended L2 entry describes 32 subclusters.
pub const SUBCLUSTERS: u64 = 32;

/// One loaded L2 table: the entries as native integers (two words per extended entry).
pub type L2Table = Arc<[u64]>;

/// Decodes entry `index` of `table` for the byte at `in_cluster` inside the guest cluster.
/// Returns the run of that byte and how many bytes from it on share it within the cluster
/// (the rest of the cluster, or of the subcluster run): data in the image file, zeros (zero
/// flag, or zero bit of a subcluster), the backing file (not allocated here), or the
/// compressed cluster whose raw L2 entry is the key.
pub fn decode(
    table: &[u64],
    index: usize,
    in_cluster: u64,
    cluster_bits: u32,
    extended: bool,
    table_offset: u64,
) -> Result<(Run, u64), ReadError> {
    let cluster_size = 1u64 << cluster_bits;
    let words = if extended { 2 } else { 1 };
    let word = |i: usize| table.get(index * words + i).copied().unwrap_or(0);
    let entry = word(0);
    let entry_offset = table_offset + (index * words * 8) as u64;
    let rest = cluster_size - in_cluster;
    if entry & COMPRESSED != 0 {
        return Ok((Run::Compressed(entry), rest));
    }
    let host = entry & OFFSET_MASK;
    if !host.is_multiple_of(cluster_size) {
        return Err(corrupt(
            entry_offset,
            format!(
                "L2 entry {entry:#018x} has a host offset {host:#x} that is not cluster aligned"
            ),
        ));
    }
    if !extended {
        let m = if entry & ZERO != 0 {
            Run::Zero
        } else if host == 0 {
            Run::Parent
        } else {
            Run::Host(host + in_cluster)
        };
        return Ok((m, rest));
    }

    // Extended entry: per-subcluster allocation (low 32 bits) and zero (high 32) bitmaps.
    let bitmap = word(1);
    let alloc = bitmap as u32;
    let zero = (bitmap >> 32) as u32;
    if alloc & zero != 0 {
        return Err(corrupt(
            entry_offset + 8,
            format!("subcluster bitmap {bitmap:#018x} marks subclusters both allocated and zero"),
        ));
    }
    if alloc != 0 && host == 0 {
        return Err(corrupt(
            entry_offset,
            "allocated subclusters without a host cluster offset",
        ));
    }
    let sc_bits = cluster_bits - 5;
    let sc = in_cluster >> sc_bits;
    // Extend over the following subclusters with the same state.
    let (first, end) = same_run(sc, SUBCLUSTERS, |i| (alloc >> i & 1, zero >> i & 1));
    let len = (end << sc_bits) - in_cluster;
    let m = match first {
        (1, _) => Run::Host(host + in_cluster),
        (_, 1) => Run::Zero,
        _ => Run::Parent,
    };
    Ok((m, len))
}

/// Caps the cache both by bytes and by table count (the eviction scan is linear).
const CACHE_BYTES: u64 = 32 << 20;
const MAX_TABLES: u64 = 4096;
const MIN_TABLES: u64 = 16;

/// Loaded L2 tables keyed by host offset, evicting the least recently used when full.
/// Behind a mutex because a `ReadAt` is shared between threads.
pub struct L2Cache {
    inner: Mutex<CacheInner>,
    capacity: usize,
}

struct CacheInner {
    tables: HashMap<u64, (L2Table, u64)>,
    tick: u64,
}

impl L2Cache {
    pub fn new(cluster_size: u64) -> L2Cache {
        let capacity = (CACHE_BYTES / cluster_size).clamp(MIN_TABLES, MAX_TABLES) as usize;
        L2Cache {
            inner: Mutex::new(CacheInner {
                tables: HashMap::new(),
                tick: 0,
            }),
            capacity,
        }
    }

    /// Returns the table at `offset`, loading it with `load` on a miss. The lock is not held
    /// while loading, so a slow read does not stall other readers' cache hits.
    pub fn get(
        &self,
        offset: u64,
        load: impl FnOnce() -> Result<Vec<u64>, ReadError>,
    ) -> Result<L2Table, ReadError> {
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some((table, used)) = inner.tables.get_mut(&offset) {
                *used = tick;
                return Ok(table.clone());
            }
        }
        let table: L2Table = load()?.into();
        let mut inner = self.lock();
        if inner.tables.len() >= self.capacity {
            if let Some(&victim) = inner
                .tables
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k)
            {
                inner.tables.remove(&victim);
            }
        }
        let tick = inner.tick;
        inner.tables.insert(offset, (table.clone(), tick));
        Ok(table)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic elsewhere cannot leave the map inconsistent (each change is one call).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().tables.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BITS: u32 = 16;

    #[test]
    fn standard_entries() {
        let t = [
            0,
            1,
            0x30000,
            0x30000 | 1 << 63,
            0x30001,
            0x30200,
            1 << 62 | 5,
        ];
        let d = |i, off| decode(&t, i, off, BITS, false, 0x1000);
        assert_eq!(d(0, 0).unwrap(), (Run::Parent, 65536));
        assert_eq!(d(1, 100).unwrap(), (Run::Zero, 65436));
        assert_eq!(d(2, 10).unwrap(), (Run::Host(0x3000a), 65526));
        assert_eq!(d(3, 0).unwrap(), (Run::Host(0x30000), 65536));
        // Zero flag wins over a preallocated offset.
        assert_eq!(d(4, 0).unwrap(), (Run::Zero, 65536));
        let e = d(5, 0).unwrap_err();
        assert!(
            matches!(e, ReadError::Corrupt { offset: 0x1028, .. }),
            "{e}"
        );
        assert_eq!(d(6, 7).unwrap(), (Run::Compressed(1 << 62 | 5), 65529));
        // Index past a short table reads as an empty entry rather than panicking.
        assert_eq!(d(100, 0).unwrap().0, Run::Parent);
    }

    #[test]
    fn extended_entries() {
        let sc = 65536 / 32;
        // Subclusters 0-1 allocated, 2 zero, 3.. unallocated.
        let t = [
            0x40000,
            0b11 | 0b100 << 32,
            0,
            0,
            0x40000,
            1 | 1 << 32,
            0,
            1,
        ];
        let d = |i, off| decode(&t, i, off, BITS, true, 0);
        assert_eq!(d(0, 0).unwrap(), (Run::Host(0x40000), 2 * sc));
        assert_eq!(d(0, sc + 5).unwrap(), (Run::Host(0x40000 + sc + 5), sc - 5));
        assert_eq!(d(0, 2 * sc).unwrap(), (Run::Zero, sc));
        assert_eq!(d(0, 3 * sc).unwrap(), (Run::Parent, 65536 - 3 * sc));
        assert_eq!(d(1, 0).unwrap(), (Run::Parent, 65536));
        assert!(d(2, 0).is_err(), "allocated and zero at once");
        assert!(d(3, 0).is_err(), "allocated without host offset");
    }

    #[test]
    fn cache_is_bounded() {
        let cache = L2Cache::new(1 << 21); // 2 MiB clusters -> MIN_TABLES
        for i in 0..100u64 {
            let t = cache.get(i << 21, || Ok(vec![i; 4])).unwrap();
            assert_eq!(t[0], i);
        }
        assert_eq!(cache.len(), MIN_TABLES as usize);
        // Hits do not reload.
        let t = cache.get(99 << 21, || panic!("should be cached")).unwrap();
        assert_eq!(t[0], 99);
        assert!(cache.get(1 << 40, || Err(corrupt(0, "boom"))).is_err());
    }
}
