//! Fuzzes the VMDK, VHD, VHDX and VDI readers (and detection): any input must open to an
//! image or a typed error, and reads of any range must return bytes or a typed error,
//! never panic or allocate without bound. Inputs are dispatched by their magic bytes, as
//! jobs are; extent files and parents are never opened (from memory there are none).

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::image::open_source;
use guestkit_worker::inspect::source::MemSource;
use libfuzzer_sys::fuzz_target;

const MAX_INPUT: usize = 1 << 20;
const MAX_READ: u64 = 256 << 10;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok((_, image)) = open_source(Arc::new(MemSource(data.to_vec()))) else {
        return;
    };
    let size = image.size();
    if size == 0 {
        return;
    }
    let mut ranges = vec![(0, 4096), (65536 - 100, 200), (size.saturating_sub(MAX_READ), MAX_READ)];
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
        let _ = image.read_exact_at(offset, &mut buf[..len]);
    }
});
