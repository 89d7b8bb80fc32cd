//! Fuzzes the qcow2 reader: any input must parse to an image or a typed error, and reads
//! of any range must return bytes or a typed error, never panic or allocate without bound.
//! No backing file is attached, so unallocated clusters of images that name one are errors.

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::image::Qcow2;
use guestkit_worker::inspect::source::{MemSource, ReadAt};
use libfuzzer_sys::fuzz_target;

/// Larger inputs add nothing a small image cannot express and slow the fuzzer down.
const MAX_INPUT: usize = 1 << 20;
/// Largest single read (spans several clusters of the usual sizes).
const MAX_READ: u64 = 256 << 10;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(image) = Qcow2::from_source(Arc::new(MemSource(data.to_vec()))) else {
        return;
    };
    let size = image.size();
    if size == 0 {
        return;
    }
    // Fixed ranges (start, a cluster-crossing span, the end), then ranges chosen by the
    // input's last bytes so the fuzzer can steer reads to the clusters it built.
    let mut ranges = vec![
        (0, 4096),
        (65536 - 100, 200),
        (size.saturating_sub(MAX_READ), MAX_READ),
    ];
    for chunk in data.rchunks(8).take(4) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        ranges.push((v % size, (v >> 40) % MAX_READ + 1));
    }
    let mut buf = vec![0u8; MAX_READ as usize];
    for (offset, len) in ranges {
        let offset = offset.min(size - 1);
        let len = len.min(size - offset) as usize;
        let _ = image.read_exact_at(offset, &mut buf[..len]);
        // The same range twice: the second read may come from the caches.
        let _ = image.read_exact_at(offset, &mut buf[..len]);
    }
});
