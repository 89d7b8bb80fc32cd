//! Fuzzes the initramfs reader: segment detection, the cpio newc scanner and the
//! decompressors (gzip, zstd, xz, lzma), within a small work budget.

#![no_main]

use guestkit_worker::inspect::os::initramfs::scan;
use guestkit_worker::inspect::work::Work;
use libfuzzer_sys::fuzz_target;

const MAX_INPUT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let work = Work::new(200_000, None);
    let mut names = 0usize;
    let _ = scan(data, &work, &mut |name, _| {
        names += name.len();
        Ok(())
    });
});
