//! Fuzzes the btrfs reader: any image must open to a filesystem or a typed error, and
//! every walk, file read and subvolume listing must end with bytes or a typed error,
//! never a panic, an endless tree walk or an unbounded allocation.
//!
//! A btrfs image spans megabytes (chunks start past 1 MiB, a superblock mirror sits at
//! 64 MiB), so the input is a sparse image: records of a little-endian u32 block number
//! and up to 4096 bytes for that block, on a 128 MiB device of zeros.
//! `integration/fuzz-seeds.sh` turns real mkfs.btrfs images into this form.

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use guestkit_worker::inspect::fs::btrfs::BtrfsFs;
use guestkit_worker::inspect::fs::{FileKind, FileSystem};
use guestkit_worker::inspect::source::ReadError;
use guestkit_worker::inspect::source::{check_range, ReadAt};
use libfuzzer_sys::fuzz_target;

const MAX_INPUT: usize = 1 << 20;
const BLOCK: u64 = 4096;
const DEVICE: u64 = 128 << 20;

/// Zeros except for the blocks the input sets.
struct Sparse(BTreeMap<u64, Vec<u8>>);

impl ReadAt for Sparse {
    fn size(&self) -> u64 {
        DEVICE
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), DEVICE)?;
        buf.fill(0);
        let first = offset / BLOCK;
        let last = (offset + buf.len() as u64).div_ceil(BLOCK);
        for (&b, data) in self.0.range(first..last) {
            let start = b * BLOCK;
            for (i, &byte) in data.iter().enumerate() {
                let at = start + i as u64;
                if at >= offset && at < offset + buf.len() as u64 {
                    buf[(at - offset) as usize] = byte;
                }
            }
        }
        Ok(())
    }
}

fn walk(fs: &dyn FileSystem, dir: &str, depth: usize, budget: &mut usize) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = fs.read_dir(if dir.is_empty() { "/" } else { dir }) else {
        return;
    };
    for e in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = format!("{dir}/{}", e.name);
        match fs.metadata(&path).map(|m| m.kind) {
            Ok(FileKind::Dir) => walk(fs, &path, depth + 1, budget),
            Ok(FileKind::Symlink) => drop(fs.read_link(&path)),
            Ok(_) => drop(fs.read_file(&path, 16 << 20)),
            Err(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut blocks = BTreeMap::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let b = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        let n = rest.len().min(4 + BLOCK as usize);
        if b < DEVICE / BLOCK {
            blocks.insert(b, rest[4..n].to_vec());
        }
        rest = &rest[n..];
    }
    let dev: Arc<dyn ReadAt> = Arc::new(Sparse(blocks));
    let Ok(fs) = BtrfsFs::open(&[dev]) else {
        return;
    };
    let mut budget = 2000;
    walk(&fs, "", 0, &mut budget);
    if let Ok(subvolumes) = fs.subvolumes() {
        for s in subvolumes.iter().take(8) {
            if let Ok(view) = fs.view(s.id) {
                let mut budget = 200;
                walk(&view, "", 0, &mut budget);
            }
        }
    }
});
