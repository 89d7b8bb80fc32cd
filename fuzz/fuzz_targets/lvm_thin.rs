//! Fuzzes the thin pool metadata reader (dm-persistent-data superblock and mapping
//! btrees): the input's first byte picks the thin device, the rest is the pool's
//! metadata LV. Every 4 KiB block's checksum is recomputed first (block 0 as the
//! superblock, the others as btree nodes), so the fuzzer explores the structure behind
//! the checksums instead of stopping at them; the reader's checksum refusal itself is
//! covered by `inspect_lvm`. Any bytes must end in data, zeros or typed errors, never a
//! panic, a hang or an unbounded allocation.

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::crc32c;
use guestkit_worker::inspect::source::{MemSource, ReadAt};
use guestkit_worker::inspect::volume::lvm2::thin::ThinSource;
use libfuzzer_sys::fuzz_target;

/// dm-persistent-data's salts (`SUPERBLOCK_CSUM_XOR`, `BTREE_CSUM_XOR`), as the reader
/// expects them.
const SUPERBLOCK_SALT: u32 = 160_774;
const BTREE_SALT: u32 = 121_107;
const BLOCK: usize = 4096;
/// 64 metadata blocks: a superblock, device details and a few btree levels.
const MAX_INPUT: usize = 1 + 64 * BLOCK;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() || data.len() > MAX_INPUT {
        return;
    }
    let device_id = u64::from(data[0]);
    let mut meta = data[1..].to_vec();
    meta.resize(meta.len().div_ceil(BLOCK).max(1) * BLOCK, 0);
    for (i, block) in meta.chunks_mut(BLOCK).enumerate() {
        let salt = if i == 0 { SUPERBLOCK_SALT } else { BTREE_SALT };
        let sum = crc32c::update(!0, &block[4..]) ^ salt;
        block[..4].copy_from_slice(&sum.to_le_bytes());
    }
    let meta: Arc<dyn ReadAt> = Arc::new(MemSource(meta));
    let pool: Arc<dyn ReadAt> = Arc::new(MemSource(vec![0x5a; 1 << 20]));
    let Ok(thin) = ThinSource::open(meta, pool, device_id, 16 << 20) else {
        return;
    };
    let mut buf = vec![0u8; BLOCK];
    for offset in [0, 1 << 20, (16 << 20) - BLOCK as u64] {
        let _ = thin.read_exact_at(offset, &mut buf);
    }
});
