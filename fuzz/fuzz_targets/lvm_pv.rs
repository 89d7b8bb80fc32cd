//! Fuzzes a whole LVM2 physical volume: label, metadata area header, ring buffer, text,
//! then the VG assembled from it and every LV read at both ends. Any bytes must end in
//! LVs, warnings or typed errors, never a panic, a hang or an unbounded allocation.

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::source::{MemSource, ReadAt};
use guestkit_worker::inspect::volume::{assemble, BlockDevice};
use libfuzzer_sys::fuzz_target;

/// The label, the area header and a default 1 MiB metadata area fit.
const MAX_INPUT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let src: Arc<dyn ReadAt> = Arc::new(MemSource(data.to_vec()));
    let a = assemble(&[BlockDevice {
        name: "/dev/sda1".into(),
        src,
    }]);
    for d in &a.devices {
        let mut buf = vec![0u8; 512.min(d.src.size() as usize)];
        let _ = d.src.read_exact_at(0, &mut buf);
        let _ = d.src.read_exact_at(d.src.size() - buf.len() as u64, &mut buf);
    }
});
