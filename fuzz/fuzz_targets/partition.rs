//! Fuzzes the partition-table layer: any disk must give a table, "no table" or a typed
//! error, never a panic, an endless EBR walk or an unbounded allocation. Every partition
//! returned must also lie inside the disk (the contract the probe layer relies on).

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::partition::read_table;
use guestkit_worker::inspect::source::{MemSource, ReadAt, Slice};
use libfuzzer_sys::fuzz_target;

/// Larger inputs add nothing a small disk cannot express and slow the fuzzer down.
const MAX_INPUT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let disk: Arc<dyn ReadAt> = Arc::new(MemSource(data.to_vec()));
    if let Ok(Some(table)) = read_table(disk.as_ref()) {
        for p in &table.partitions {
            assert!(
                Slice::new(disk.clone(), p.start, p.size).is_ok(),
                "partition outside the disk: {p:?}"
            );
        }
    }
});
