//! Fuzzes the NTFS reader: open a volume and walk it (bounded), reading every file
//! and link. Any bytes must give data or a typed error, never a panic or unbounded work.

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::fs::ntfs::NtfsFs;
use guestkit_worker::inspect::fs::{FileKind, FileSystem};
use guestkit_worker::inspect::source::MemSource;
use libfuzzer_sys::fuzz_target;

/// The smallest volume mkntfs makes is 1.1 MiB.
const MAX_INPUT: usize = 2 << 20;

fn walk(fs: &NtfsFs, dir: &str, depth: usize) {
    let Ok(entries) = fs.read_dir(dir) else { return };
    for e in entries.iter().take(64) {
        let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
        let _ = fs.metadata(&path);
        match e.kind {
            FileKind::Dir if depth < 4 => walk(fs, &path, depth + 1),
            FileKind::Symlink => {
                let _ = fs.read_link(&path);
            }
            _ => {
                let _ = fs.read_file(&path, 1 << 20);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(fs) = NtfsFs::open(Arc::new(MemSource(data.to_vec()))) {
        walk(&fs, "/", 0);
        let _ = fs.read_file("/WINDOWS/system32/CONFIG/software", 1 << 20);
    }
});
