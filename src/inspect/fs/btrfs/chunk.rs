//! The chunk map: how btrfs logical addresses (everything trees and extents point at)
//! become (device, physical offset) pairs. Bootstrapped from the superblock's
//! `sys_chunk_array`, then completed from the chunk tree.
//!
//! Profiles: single, DUP, RAID1/1C3/1C4 (any copy), RAID0 and RAID10 (striped), RAID5/6
//! (data stripes; a data stripe on a missing device is rebuilt from P and the rest of
//! its row, see [`ChunkMap::parity_sources`]; Q is not used).

use std::collections::BTreeMap;

use crate::inspect::bytes::{array, le16, le64};

use super::corrupt;
use super::key::Key;
use crate::inspect::fs::FsError;

pub const CHUNK_ITEM_KEY: u8 = 228;
const CHUNK_FIXED: usize = 48;
const STRIPE_SIZE: usize = 32;
/// More stripes than any real chunk has (RAID0/10/5/6 across many devices).
const MAX_STRIPES: u16 = 256;
/// Most chunks accepted: a 100 TiB filesystem of 1 GiB chunks has ~100k.
const MAX_CHUNKS: usize = 1 << 20;

const RAID0: u64 = 1 << 3;
const RAID1: u64 = 1 << 4;
const DUP: u64 = 1 << 5;
const RAID10: u64 = 1 << 6;
const RAID5: u64 = 1 << 7;
const RAID6: u64 = 1 << 8;
const RAID1C3: u64 = 1 << 9;
const RAID1C4: u64 = 1 << 10;

/// One stripe of a chunk: where on which device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripe {
    pub devid: u64,
    pub offset: u64,
}

/// How a chunk's bytes are laid out over its stripes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Every stripe is a full copy (single, DUP, RAID1, RAID1C3, RAID1C4).
    Mirrored,
    Raid0,
    Raid10 {
        sub_stripes: u16,
    },
    Raid56 {
        parity: u16,
    },
}

/// One chunk: `length` logical bytes from its key's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub length: u64,
    pub stripe_len: u64,
    pub profile: Profile,
    pub stripes: Vec<Stripe>,
}

/// A physical location of some logical bytes; copies are alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Physical {
    pub devid: u64,
    pub offset: u64,
}

/// Logical start -> chunk, non-overlapping.
#[derive(Debug, Default)]
pub struct ChunkMap {
    chunks: BTreeMap<u64, Chunk>,
}

impl ChunkMap {
    /// Parses the superblock's bootstrap array: (key, chunk item) pairs.
    pub fn from_sys_array(array: &[u8]) -> Result<ChunkMap, FsError> {
        let mut map = ChunkMap::default();
        let mut pos = 0;
        while pos < array.len() {
            let key = Key::parse(array.get(pos..).unwrap_or(&[]))
                .ok_or_else(|| corrupt("truncated key in sys_chunk_array"))?;
            pos += Key::SIZE;
            if key.ty != CHUNK_ITEM_KEY {
                return Err(corrupt(format!(
                    "sys_chunk_array holds an item of type {}",
                    key.ty
                )));
            }
            let rest = array.get(pos..).unwrap_or(&[]);
            let (chunk, used) = parse_chunk(rest)?;
            map.insert(key.offset, chunk)?;
            pos += used;
        }
        if map.chunks.is_empty() {
            return Err(corrupt("sys_chunk_array is empty"));
        }
        Ok(map)
    }

    /// Adds the chunk item `data` found at logical `start` in the chunk tree.
    pub fn insert_item(&mut self, start: u64, data: &[u8]) -> Result<(), FsError> {
        let (chunk, _) = parse_chunk(data)?;
        self.insert(start, chunk)
    }

    /// Adds a chunk; the same chunk twice (bootstrap array and tree) is fine, an
    /// overlapping different one is corrupt.
    fn insert(&mut self, start: u64, chunk: Chunk) -> Result<(), FsError> {
        let end = start
            .checked_add(chunk.length)
            .ok_or_else(|| corrupt(format!("chunk at {start:#x} wraps around")))?;
        if let Some(existing) = self.chunks.get(&start) {
            if *existing == chunk {
                return Ok(());
            }
        }
        let before = self.chunks.range(..end).next_back();
        if let Some((&s, c)) = before {
            if s + c.length > start {
                return Err(corrupt(format!(
                    "chunk at {start:#x} overlaps the chunk at {s:#x}"
                )));
            }
        }
        if self.chunks.len() >= MAX_CHUNKS {
            return Err(corrupt("too many chunks"));
        }
        self.chunks.insert(start, chunk);
        Ok(())
    }

    /// The chunk holding `logical`, with its start.
    fn chunk_at(&self, logical: u64) -> Result<(u64, &Chunk), FsError> {
        self.chunks
            .range(..=logical)
            .next_back()
            .filter(|(s, c)| logical - **s < c.length)
            .map(|(s, c)| (*s, c))
            .ok_or_else(|| corrupt(format!("logical address {logical:#x} is in no chunk")))
    }

    /// Where the logical byte `logical` lives: every copy of it, and how many bytes from
    /// there are contiguous (to the end of its stripe element or chunk).
    pub fn map(&self, logical: u64) -> Result<(Vec<Physical>, u64), FsError> {
        let (start, chunk) = self.chunk_at(logical)?;
        let off = logical - start;
        let chunk_left = chunk.length - off;
        let at = |idx: usize, stripe_nr: u64, within: u64| -> Physical {
            let s = chunk.stripes[idx];
            Physical {
                devid: s.devid,
                offset: s
                    .offset
                    .saturating_add(stripe_nr.saturating_mul(chunk.stripe_len))
                    .saturating_add(within),
            }
        };
        let n = chunk.stripes.len() as u64;
        match chunk.profile {
            Profile::Mirrored => {
                let copies = (0..chunk.stripes.len()).map(|i| at(i, 0, off)).collect();
                Ok((copies, chunk_left))
            }
            Profile::Raid0 => {
                let nr = off / chunk.stripe_len;
                let within = off % chunk.stripe_len;
                let idx = (nr % n) as usize;
                let left = (chunk.stripe_len - within).min(chunk_left);
                Ok((vec![at(idx, nr / n, within)], left))
            }
            Profile::Raid10 { sub_stripes } => {
                let sub = u64::from(sub_stripes);
                let factor = n / sub;
                let nr = off / chunk.stripe_len;
                let within = off % chunk.stripe_len;
                let first = ((nr % factor) * sub) as usize;
                let copies = (0..sub_stripes as usize)
                    .map(|k| at(first + k, nr / factor, within))
                    .collect();
                Ok((copies, (chunk.stripe_len - within).min(chunk_left)))
            }
            Profile::Raid56 { parity } => {
                let data = n - u64::from(parity);
                let nr = off / chunk.stripe_len;
                let within = off % chunk.stripe_len;
                let full = nr / data;
                // Parity rotates: the data stripe's device moves by one per full stripe.
                let idx = ((nr % data + full) % n) as usize;
                Ok((
                    vec![at(idx, full, within)],
                    (chunk.stripe_len - within).min(chunk_left),
                ))
            }
        }
    }
}

impl ChunkMap {
    /// For a RAID5/6 data byte: P's location and the other data stripes' of its row,
    /// whose XOR is the byte's stripe (same offset within each stripe element, for as
    /// many bytes as [`ChunkMap::map`] says are contiguous). `None` for other profiles.
    pub fn parity_sources(&self, logical: u64) -> Result<Option<Vec<Physical>>, FsError> {
        let (start, chunk) = self.chunk_at(logical)?;
        let Profile::Raid56 { parity } = chunk.profile else {
            return Ok(None);
        };
        let n = chunk.stripes.len() as u64;
        let data = n - u64::from(parity);
        let off = logical - start;
        let (nr, within) = (off / chunk.stripe_len, off % chunk.stripe_len);
        let full = nr / data;
        let at = |k: u64| {
            let s = chunk.stripes[((k + full) % n) as usize];
            Physical {
                devid: s.devid,
                offset: s
                    .offset
                    .saturating_add(full.saturating_mul(chunk.stripe_len))
                    .saturating_add(within),
            }
        };
        // Stripe k of the row is on device (k + full) % n: data 0..data, then P.
        Ok(Some(
            (0..=data).filter(|k| *k != nr % data).map(at).collect(),
        ))
    }
}

/// Decodes one chunk item; returns it and its size in bytes.
fn parse_chunk(b: &[u8]) -> Result<(Chunk, usize), FsError> {
    if b.len() < CHUNK_FIXED {
        return Err(corrupt("truncated chunk item"));
    }
    let length = le64(b, 0);
    let stripe_len = le64(b, 16);
    let ty = le64(b, 24);
    let num = le16(b, 44);
    let sub = le16(b, 46);
    if num == 0 || num > MAX_STRIPES {
        return Err(corrupt(format!("chunk with {num} stripes")));
    }
    let size = CHUNK_FIXED + STRIPE_SIZE * num as usize;
    if b.len() < size {
        return Err(corrupt("truncated chunk stripes"));
    }
    if length == 0 || stripe_len == 0 || !stripe_len.is_power_of_two() || stripe_len > 1 << 30 {
        return Err(corrupt(format!(
            "chunk of {length} bytes with stripe length {stripe_len}"
        )));
    }
    let stripes: Vec<Stripe> = (0..num as usize)
        .map(|i| {
            let s = &b[CHUNK_FIXED + i * STRIPE_SIZE..];
            Stripe {
                devid: le64(s, 0),
                offset: le64(s, 8),
            }
        })
        .collect();
    let _uuid: [u8; 16] = array(b, CHUNK_FIXED + 16);
    let bad = |what: &str| {
        corrupt(format!(
            "{what} chunk with {num} stripes, {sub} sub-stripes"
        ))
    };
    let profile = if ty & RAID0 != 0 {
        Profile::Raid0
    } else if ty & RAID10 != 0 {
        if sub < 2 || !num.is_multiple_of(sub) {
            return Err(bad("RAID10"));
        }
        Profile::Raid10 { sub_stripes: sub }
    } else if ty & (RAID5 | RAID6) != 0 {
        let parity = if ty & RAID6 != 0 { 2 } else { 1 };
        if num <= parity {
            return Err(bad("RAID5/6"));
        }
        Profile::Raid56 { parity }
    } else {
        let _ = (RAID1, DUP, RAID1C3, RAID1C4);
        Profile::Mirrored
    };
    Ok((
        Chunk {
            length,
            stripe_len,
            profile,
            stripes,
        },
        size,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bytes of a chunk item.
    pub(crate) fn chunk_item(length: u64, ty: u64, sub: u16, stripes: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; CHUNK_FIXED + STRIPE_SIZE * stripes.len()];
        b[0..8].copy_from_slice(&length.to_le_bytes());
        b[16..24].copy_from_slice(&65536u64.to_le_bytes());
        b[24..32].copy_from_slice(&ty.to_le_bytes());
        b[44..46].copy_from_slice(&(stripes.len() as u16).to_le_bytes());
        b[46..48].copy_from_slice(&sub.to_le_bytes());
        for (i, (dev, off)) in stripes.iter().enumerate() {
            let s = CHUNK_FIXED + i * STRIPE_SIZE;
            b[s..s + 8].copy_from_slice(&dev.to_le_bytes());
            b[s + 8..s + 16].copy_from_slice(&off.to_le_bytes());
        }
        b
    }

    pub(crate) fn sys_entry(logical: u64, item: &[u8]) -> Vec<u8> {
        let mut b = Key {
            objectid: 256,
            ty: CHUNK_ITEM_KEY,
            offset: logical,
        }
        .to_bytes()
        .to_vec();
        b.extend_from_slice(item);
        b
    }

    #[test]
    fn profiles_map_as_the_kernel_does() {
        let mut arr = sys_entry(1 << 20, &chunk_item(1 << 20, 2, 0, &[(1, 5 << 20)]));
        arr.extend(sys_entry(
            4 << 20,
            &chunk_item(1 << 20, 2 | DUP, 0, &[(1, 8 << 20), (1, 9 << 20)]),
        ));
        let mut map = ChunkMap::from_sys_array(&arr).unwrap();
        let (p, left) = map.map((1 << 20) + 10).unwrap();
        assert_eq!(
            p,
            vec![Physical {
                devid: 1,
                offset: (5 << 20) + 10
            }]
        );
        assert_eq!(left, (1 << 20) - 10);
        let (p, _) = map.map(4 << 20).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].offset, 9 << 20);
        assert!(map.map(3 << 20).is_err());

        // RAID0 over two devices, 64 KiB stripes: the third stripe element is the
        // second on device 1.
        map.insert_item(
            16 << 20,
            &chunk_item(1 << 20, 1 | RAID0, 0, &[(1, 0), (2, 1 << 20)]),
        )
        .unwrap();
        let (p, left) = map.map((16 << 20) + 2 * 65536 + 5).unwrap();
        assert_eq!(
            p,
            vec![Physical {
                devid: 1,
                offset: 65536 + 5
            }]
        );
        assert_eq!(left, 65536 - 5);
        let (p, _) = map.map((16 << 20) + 65536).unwrap();
        assert_eq!(
            p,
            vec![Physical {
                devid: 2,
                offset: 1 << 20
            }]
        );

        // RAID10 of four: pairs (1,2) and (3,4).
        map.insert_item(
            32 << 20,
            &chunk_item(1 << 20, 1 | RAID10, 2, &[(1, 0), (2, 0), (3, 0), (4, 0)]),
        )
        .unwrap();
        let (p, _) = map.map((32 << 20) + 65536).unwrap();
        assert_eq!(p.iter().map(|p| p.devid).collect::<Vec<_>>(), vec![3, 4]);

        // Overlaps are corrupt; the same chunk again is fine.
        assert!(map
            .insert_item(
                16 << 20,
                &chunk_item(1 << 20, 1 | RAID0, 0, &[(1, 0), (2, 1 << 20)])
            )
            .is_ok());
        assert!(map
            .insert_item((16 << 20) + 4096, &chunk_item(4096, 1, 0, &[(1, 0)]))
            .is_err());
        assert!(map
            .insert_item(15 << 20, &chunk_item(2 << 20, 1, 0, &[(1, 0)]))
            .is_err());
        assert!(map
            .insert_item(u64::MAX - 10, &chunk_item(4096, 1, 0, &[(1, 0)]))
            .is_err());
    }

    #[test]
    fn bad_items() {
        assert!(ChunkMap::from_sys_array(&[]).is_err());
        assert!(ChunkMap::from_sys_array(&[0u8; 30]).is_err());
        let mut item = chunk_item(4096, 2, 0, &[(1, 0)]);
        item[44] = 0;
        assert!(ChunkMap::from_sys_array(&sys_entry(0, &item)).is_err());
        let item = chunk_item(4096, 2 | RAID10, 3, &[(1, 0), (1, 0)]);
        assert!(ChunkMap::from_sys_array(&sys_entry(0, &item)).is_err());
    }
}
