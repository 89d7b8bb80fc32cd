//! Fuzzes the LVM2 metadata text parser and the VG model built from it: any bytes must
//! give a tree or a typed error within the parser's size, depth and count bounds.

#![no_main]

use guestkit_worker::inspect::volume::lvm2::{text, vg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = text::parse(data) {
        let _ = vg::from_text(&root);
    }
});
