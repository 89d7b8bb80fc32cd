//! Fuzzes the XFS reader. An XFS filesystem is tens of MiB with its metadata spread
//! over it, so the input is a sparse device: records of (offset: u64 BE, length: u32
//! BE, bytes), zeros elsewhere, sized by its superblock (bounded). Seeds are the
//! non-zero blocks of real images (`integration/fuzz-seeds.sh`), so open, the log check,
//! directory walks and file reads all run on mutated real metadata: any input must end
//! in data or a typed error.

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::fs::xfs::XfsFs;
use guestkit_worker::inspect::fs::{FileKind, FileSystem};
use guestkit_worker::inspect::source::ReadError;
use guestkit_worker::inspect::source::{check_range, ReadAt};
use libfuzzer_sys::fuzz_target;

const MAX_INPUT: usize = 1 << 20;
/// Largest device the zero extension pretends to be.
const MAX_DEVICE: u64 = 1 << 34;
/// Calls per input, so one input cannot walk a huge generated tree.
const MAX_CALLS: usize = 400;

/// Records of bytes at offsets, zeros elsewhere, up to `size`.
struct Sparse {
    chunks: Vec<(u64, Vec<u8>)>,
    size: u64,
}

impl Sparse {
    fn parse(mut data: &[u8]) -> Sparse {
        let mut chunks = Vec::new();
        while data.len() >= 12 {
            let offset = u64::from_be_bytes(data[..8].try_into().unwrap()) % MAX_DEVICE;
            let len = (u32::from_be_bytes(data[8..12].try_into().unwrap()) as usize)
                .min(data.len() - 12);
            chunks.push((offset, data[12..12 + len].to_vec()));
            data = &data[12 + len..];
        }
        // The device size the superblock states (dblocks x blocksize).
        let sb = chunks.iter().find(|(o, c)| *o == 0 && c.len() >= 16);
        let stated = sb.map_or(0, |(_, c)| {
            let block = u64::from(u32::from_be_bytes(c[4..8].try_into().unwrap()));
            u64::from_be_bytes(c[8..16].try_into().unwrap()).saturating_mul(block)
        });
        let end = chunks
            .iter()
            .map(|(o, c)| o + c.len() as u64)
            .max()
            .unwrap_or(0);
        Sparse {
            chunks,
            size: stated.max(end).min(MAX_DEVICE),
        }
    }
}

impl ReadAt for Sparse {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        buf.fill(0);
        let end = offset + buf.len() as u64;
        for (at, bytes) in &self.chunks {
            let (lo, hi) = (offset.max(*at), end.min(at + bytes.len() as u64));
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&bytes[(lo - at) as usize..(hi - at) as usize]);
            }
        }
        Ok(())
    }
}

fn walk(fs: &XfsFs, dir: &str, calls: &mut usize) {
    let Ok(entries) = fs.read_dir(dir) else {
        return;
    };
    for e in entries {
        *calls += 1;
        if *calls > MAX_CALLS {
            return;
        }
        let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
        let _ = fs.metadata(&path);
        match e.kind {
            FileKind::Dir => walk(fs, &path, calls),
            FileKind::File => {
                let _ = fs.read_file(&path, 1 << 20);
            }
            FileKind::Symlink => {
                let _ = fs.read_link(&path);
            }
            FileKind::Other => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(fs) = XfsFs::open(Arc::new(Sparse::parse(data))) {
        let mut calls = 0;
        walk(&fs, "/", &mut calls);
    }
});
