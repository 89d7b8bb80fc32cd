//! Fuzzes superblock probing (every format, plus the LVM2 metadata reader): any bytes
//! must give a result, "nothing" or a typed error, never a panic or unbounded work.

#![no_main]

use guestkit_worker::inspect::fs::probe::probe;
use guestkit_worker::inspect::source::MemSource;
use guestkit_worker::inspect::volume::lvm2;
use libfuzzer_sys::fuzz_target;

/// Larger inputs add nothing (the deepest fixed structure, btrfs, ends at 68 KiB; FAT
/// and NTFS point further) and slow the fuzzer down.
const MAX_INPUT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let src = MemSource(data.to_vec());
    let _ = probe(&src);
    if let Ok(Some(pv)) = lvm2::detect(&src) {
        let _ = lvm2::read_metadata(&src, &pv);
    }
});
