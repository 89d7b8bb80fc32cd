//! Fuzzes the LVM2 metadata text parser and the VG model built from it: any bytes must
//! give a tree or a typed error within the parser's size, depth and count bounds.

#![no_main]

use guestkit_worker::inspect::volume::{lvm2_text, lvm2_vg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = lvm2_text::parse(data) {
        let _ = lvm2_vg::from_text(&root);
    }
});
