//! Fuzzes MD RAID member superblocks (0.90 and 1.x) and array assembly: the input is
//! one member, also assembled with its own copy as a second member, and every array
//! produced is read at both ends. Any bytes must end in arrays, warnings or typed
//! errors, never a panic, a hang or an unbounded allocation.

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::source::{MemSource, ReadAt};
use guestkit_worker::inspect::volume::{assemble, md::superblock, BlockDevice};
use libfuzzer_sys::fuzz_target;

/// A 5 MiB member (the seeds' size) fits.
const MAX_INPUT: usize = 6 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let src: Arc<dyn ReadAt> = Arc::new(MemSource(data.to_vec()));
    let _ = superblock::detect(src.as_ref());
    let members: Vec<BlockDevice> = ["/dev/sda1", "/dev/sdb1"]
        .iter()
        .map(|n| BlockDevice {
            name: n.to_string(),
            src: src.clone(),
        })
        .collect();
    let a = assemble(&members);
    for d in &a.devices {
        let mut buf = vec![0u8; 4096.min(d.src.size() as usize)];
        let _ = d.src.read_exact_at(0, &mut buf);
        let _ = d.src.read_exact_at(d.src.size() - buf.len() as u64, &mut buf);
    }
});
