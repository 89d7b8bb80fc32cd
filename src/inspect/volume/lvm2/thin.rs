//! Thin provisioning: the pool's metadata LV holds dm-persistent-data structures (a
//! superblock and copy-on-write btrees of 4 KiB nodes) mapping each thin device's
//! virtual blocks to blocks of the pool's data LV. A thin LV is read by looking its
//! blocks up in those btrees; an unmapped block reads as zeros, as dm-thin returns.
//!
//! Hostile metadata cannot loop: every lookup descends at most [`MAX_DEPTH`] levels,
//! each node must name its own block number and have a sane geometry. The superblock
//! and every node carry a CRC-32C salted per block type (so a node can't pass for a
//! superblock): both are verified, and a damaged block is an error, not wrong bytes.

use std::sync::Arc;

use super::super::error::VolumeError;
use crate::inspect::bytes::{le32, le64};
use crate::inspect::cache::BoundedCache;
use crate::inspect::crc32c;
use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, ReadAt};

const BLOCK: u64 = 4096;
const SUPERBLOCK_MAGIC: u64 = 27_022_010;
const INTERNAL_NODE: u32 = 1;
const LEAF_NODE: u32 = 2;
const NODE_HEADER: usize = 32;
/// dm-persistent-data's checksum salts (`SUPERBLOCK_CSUM_XOR`, `BTREE_CSUM_XOR`).
const SUPERBLOCK_CSUM_XOR: u32 = 160_774;
const BTREE_CSUM_XOR: u32 = 121_107;
/// Deepest btree walked (a 16 TiB device of 64 KiB blocks needs 4-5 levels).
const MAX_DEPTH: usize = 16;
/// Metadata nodes kept in memory per thin device.
const CACHE_NODES: usize = 256;

/// A thin device of a pool, as a byte source.
pub struct ThinSource {
    meta: Arc<dyn ReadAt>,
    data: Arc<dyn ReadAt>,
    /// Root of this device's block mapping btree.
    root: u64,
    /// Data block size in bytes.
    block_size: u64,
    size: u64,
    cache: BoundedCache<u64, Arc<Vec<u8>>>,
}

fn corrupt(message: impl Into<String>) -> VolumeError {
    VolumeError::Metadata(format!("thin pool metadata: {}", message.into()))
}

impl ThinSource {
    /// Opens thin device `device_id` of the pool whose metadata and data LVs are given;
    /// `size` is the thin LV's size from the VG metadata.
    pub fn open(
        meta: Arc<dyn ReadAt>,
        data: Arc<dyn ReadAt>,
        device_id: u64,
        size: u64,
    ) -> Result<ThinSource, VolumeError> {
        let mut sb = vec![0u8; BLOCK as usize];
        meta.read_exact_at(0, &mut sb)?;
        if le64(&sb, 32) != SUPERBLOCK_MAGIC {
            return Err(corrupt("bad superblock magic"));
        }
        if !checksum_ok(&sb, SUPERBLOCK_CSUM_XOR) {
            return Err(corrupt("superblock checksum mismatch"));
        }
        let sectors = u64::from(le32(&sb, 336));
        // dm-thin allows 64 KiB to 1 GiB data blocks (multiples of 64 KiB).
        if !(128..=2 << 20).contains(&sectors) {
            return Err(corrupt(format!("data block size of {sectors} sectors")));
        }
        if le32(&sb, 340) != 8 {
            return Err(corrupt("metadata block size is not 4 KiB"));
        }
        let mut thin = ThinSource {
            meta,
            data,
            root: 0,
            block_size: sectors * 512,
            size,
            cache: BoundedCache::new(CACHE_NODES),
        };
        // The top-level tree maps device ids to the roots of their mapping trees.
        thin.root = thin
            .lookup(le64(&sb, 320), device_id)?
            .ok_or_else(|| corrupt(format!("thin device {device_id} is not in the pool")))?;
        Ok(thin)
    }

    fn node(&self, block: u64) -> Result<Arc<Vec<u8>>, VolumeError> {
        if let Some(n) = self.cache.get(&block) {
            return Ok(n);
        }
        let offset = block
            .checked_mul(BLOCK)
            .ok_or_else(|| corrupt(format!("node block {block} out of range")))?;
        let mut buf = vec![0u8; BLOCK as usize];
        self.meta
            .read_exact_at(offset, &mut buf)
            .map_err(|e| match e {
                ReadError::OutOfRange { .. } => {
                    corrupt(format!("node block {block} past the metadata volume"))
                }
                e => VolumeError::Image(e),
            })?;
        if !checksum_ok(&buf, BTREE_CSUM_XOR) {
            return Err(corrupt(format!("btree node {block}: checksum mismatch")));
        }
        if le64(&buf, 8) != block {
            return Err(corrupt(format!(
                "node at block {block} names block {}",
                le64(&buf, 8)
            )));
        }
        let node = Arc::new(buf);
        self.cache.insert(block, node.clone());
        Ok(node)
    }

    /// The value stored under `key` in the btree at `root`, `None` when absent.
    fn lookup(&self, root: u64, key: u64) -> Result<Option<u64>, VolumeError> {
        let mut block = root;
        for _ in 0..MAX_DEPTH {
            let n = self.node(block)?;
            let flags = le32(&n, 4);
            let count = le32(&n, 16) as usize;
            let max = le32(&n, 20) as usize;
            let value_size = le32(&n, 24) as usize;
            let fits = max
                .checked_mul(8 + value_size)
                .and_then(|b| b.checked_add(NODE_HEADER))
                .is_some_and(|end| end <= BLOCK as usize);
            if count > max || value_size != 8 || !fits {
                return Err(corrupt(format!("btree node {block} has a bad geometry")));
            }
            let key_at = |i: usize| le64(&n, NODE_HEADER + 8 * i);
            let value_at = |i: usize| le64(&n, NODE_HEADER + 8 * max + 8 * i);
            // Index of the last key <= `key`.
            let (mut i, mut hi) = (0, count);
            while i < hi {
                let mid = (i + hi) / 2;
                if key_at(mid) <= key {
                    i = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if flags & LEAF_NODE != 0 {
                return Ok((i > 0 && key_at(i - 1) == key).then(|| value_at(i - 1)));
            }
            if flags & INTERNAL_NODE == 0 || i == 0 {
                return if flags & INTERNAL_NODE == 0 {
                    Err(corrupt(format!(
                        "btree node {block} is neither internal nor leaf"
                    )))
                } else {
                    Ok(None)
                };
            }
            block = value_at(i - 1);
        }
        Err(corrupt(format!(
            "btree deeper than {MAX_DEPTH} levels (a loop?)"
        )))
    }
}

/// The checksum dm-persistent-data stores in a block's first 4 bytes: CRC-32C of the
/// rest, seeded with !0, not inverted, xored with the block type's salt.
fn checksum(block: &[u8], salt: u32) -> u32 {
    crc32c::update(!0, &block[4..]) ^ salt
}

fn checksum_ok(block: &[u8], salt: u32) -> bool {
    le32(block, 0) == checksum(block, salt)
}

impl ReadAt for ThinSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (vblock, within) = (pos / self.block_size, pos % self.block_size);
            let run = (self.block_size - within).min((buf.len() - done) as u64) as usize;
            let out = &mut buf[done..done + run];
            let mapped = self.lookup(self.root, vblock).map_err(|e| match e {
                VolumeError::Image(e) => e,
                e => ReadError::Corrupt {
                    format: "lvm2-thin",
                    offset: pos,
                    message: e.to_string(),
                },
            })?;
            match mapped {
                // Leaf values pack the data block above a 24-bit time stamp.
                Some(v) => {
                    let at = (v >> 24)
                        .checked_mul(self.block_size)
                        .and_then(|b| b.checked_add(within))
                        .ok_or(ReadError::OutOfRange {
                            offset: u64::MAX,
                            len: run as u64,
                            size: self.data.size(),
                        })?;
                    self.data.read_exact_at(at, out)?;
                }
                None => out.fill(0),
            }
            done += run;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// Pool metadata of `blocks` 4 KiB blocks: a superblock with 64 KiB data blocks whose
    /// top-level tree is at block 1, then the nodes given as (block, flags, [(key,
    /// value)]).
    /// A test node: its block, flags and (key, value) entries.
    type Node<'a> = (u64, u32, &'a [(u64, u64)]);

    fn meta(nodes: &[Node]) -> Arc<dyn ReadAt> {
        let mut m = vec![0u8; 8 * BLOCK as usize];
        m[32..40].copy_from_slice(&SUPERBLOCK_MAGIC.to_le_bytes());
        m[320..328].copy_from_slice(&1u64.to_le_bytes());
        m[336..340].copy_from_slice(&128u32.to_le_bytes());
        m[340..344].copy_from_slice(&8u32.to_le_bytes());
        for (block, flags, entries) in nodes {
            let n = &mut m[(*block * BLOCK) as usize..][..BLOCK as usize];
            let max = 16usize;
            n[4..8].copy_from_slice(&flags.to_le_bytes());
            n[8..16].copy_from_slice(&block.to_le_bytes());
            n[16..20].copy_from_slice(&(entries.len() as u32).to_le_bytes());
            n[20..24].copy_from_slice(&(max as u32).to_le_bytes());
            n[24..28].copy_from_slice(&8u32.to_le_bytes());
            for (i, (k, v)) in entries.iter().enumerate() {
                n[32 + 8 * i..40 + 8 * i].copy_from_slice(&k.to_le_bytes());
                let at = 32 + 8 * max + 8 * i;
                n[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            let sum = checksum(n, BTREE_CSUM_XOR);
            n[..4].copy_from_slice(&sum.to_le_bytes());
        }
        let sum = checksum(&m[..BLOCK as usize], SUPERBLOCK_CSUM_XOR);
        m[..4].copy_from_slice(&sum.to_le_bytes());
        Arc::new(MemSource(m))
    }

    fn data() -> Arc<dyn ReadAt> {
        Arc::new(MemSource(
            (0..8u64 << 16).map(|i| (i / 65536) as u8 + 1).collect(),
        ))
    }

    #[test]
    fn mapped_blocks_read_from_the_pool_and_holes_are_zeros() {
        // Device 7's tree at block 2: virtual block 1 -> data block 5 (time 3).
        let m = meta(&[
            (1, LEAF_NODE, &[(7, 2)]),
            (2, LEAF_NODE, &[(1, (5 << 24) | 3)]),
        ]);
        let thin = ThinSource::open(m, data(), 7, 4 << 16).unwrap();
        let mut buf = vec![0xaau8; 8];
        thin.read_exact_at((2 << 16) - 4, &mut buf).unwrap();
        assert_eq!(buf, [6, 6, 6, 6, 0, 0, 0, 0]);
        assert!(thin.read_exact_at(4 << 16, &mut buf[..1]).is_err());
    }

    #[test]
    fn loops_and_misplaced_nodes_are_errors() {
        // An internal node pointing at itself: bounded by the depth limit.
        let m = meta(&[(1, INTERNAL_NODE, &[(0, 1)])]);
        let err = ThinSource::open(m, data(), 0, 1 << 16).err().unwrap();
        assert!(err.to_string().contains("deeper"), "{err}");
        // A node found at another block than the one it names.
        let m = meta(&[(1, INTERNAL_NODE, &[(0, 3)]), (2, LEAF_NODE, &[(0, 2)])]);
        let m2: Arc<dyn ReadAt> = {
            let mut bytes = vec![0u8; 8 * BLOCK as usize];
            m.read_exact_at(0, &mut bytes).unwrap();
            let (a, b) = bytes.split_at_mut(3 * BLOCK as usize);
            b[..BLOCK as usize].copy_from_slice(&a[2 * BLOCK as usize..]);
            Arc::new(MemSource(bytes))
        };
        let err = ThinSource::open(m2, data(), 0, 1 << 16).err().unwrap();
        assert!(err.to_string().contains("names block 2"), "{err}");
        // One flipped bit in a node or in the superblock.
        for at in [2 * BLOCK as usize + 40, 330] {
            let m = meta(&[(1, LEAF_NODE, &[(7, 2)]), (2, LEAF_NODE, &[(1, 5 << 24)])]);
            let mut bytes = vec![0u8; 8 * BLOCK as usize];
            m.read_exact_at(0, &mut bytes).unwrap();
            bytes[at] ^= 0x10;
            let m: Arc<dyn ReadAt> = Arc::new(MemSource(bytes));
            let err = ThinSource::open(m, data(), 7, 4 << 16)
                .and_then(|t| Ok(t.read_exact_at(1 << 16, &mut [0u8; 4])?))
                .err()
                .unwrap();
            assert!(err.to_string().contains("checksum mismatch"), "{err}");
        }
        // An unknown device.
        let m = meta(&[(1, LEAF_NODE, &[(7, 2)])]);
        assert!(ThinSource::open(m, data(), 8, 1 << 16).is_err());
    }
}
