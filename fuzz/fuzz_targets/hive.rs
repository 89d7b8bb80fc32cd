//! Fuzzes the registry hive reader: parse (with the input also offered as its own
//! transaction log) and walk every key and value within a bounded depth.

#![no_main]

use guestkit_worker::inspect::os::windows::hive::{Hive, Key};
use libfuzzer_sys::fuzz_target;

const MAX_INPUT: usize = 1 << 20;

fn walk(h: &Hive, k: &Key, depth: usize) {
    let _ = h.values(k);
    let _ = h.value(k, "DisplayName");
    if depth >= 6 {
        return;
    }
    if let Ok(subs) = h.subkeys(k) {
        for s in subs.iter().take(64) {
            walk(h, s, depth + 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    for logs in [vec![], vec![data.to_vec()]] {
        if let Ok(h) = Hive::parse(data.to_vec(), &logs) {
            if let Ok(root) = h.root() {
                walk(&h, &root, 0);
            }
            let _ = h.key("Microsoft\\Windows NT\\CurrentVersion");
        }
    }
});
