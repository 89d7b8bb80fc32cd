//! VHDX, read-only: fixed, dynamic and differencing disks. The headers, region table and
//! metadata are in `vhdx/meta.rs`; this file is the block allocation table (payload
//! entries, and for differencing disks sector-bitmap entries: one after every
//! `chunk_ratio` payload entries) and the read path.
//!
//! A disk whose log holds valid entries has writes that were never applied to the BAT or
//! the blocks. We never write the file: the log is replayed in memory (`vhdx/log.rs`) and
//! every read of the file goes through the replayed pages; a log that cannot be replayed
//! is refused with [`ReadError::NeedsLogReplay`], never read around.

mod log;
mod meta;

use std::path::Path;
use std::sync::Arc;

use super::read_map::{self, check_no_overlap, same_run, BlockMap, Parent, Run};
use super::{Chain, Identity, RawImage};
use crate::inspect::bytes::le64;
use crate::inspect::cache::BoundedCache;
use crate::inspect::source::ReadError;
use crate::inspect::source::{read_vec, ReadAt};
use meta::{corrupt, Metadata, Regions, VhdxHeader};

const MIB: u64 = 1 << 20;
/// The BAT is loaded whole and checked for overlaps: 4 Mi entries (4 TiB with 1 MiB
/// blocks, the 64 TiB maximum with 16 MiB blocks).
const MAX_BAT_BYTES: u64 = 32 * MIB;
const BITMAP_CACHE: usize = 64;

/// Payload block states (low 3 bits of a BAT entry).
const NOT_PRESENT: u64 = 0;
const UNDEFINED: u64 = 1;
const ZERO: u64 = 2;
const UNMAPPED: u64 = 3;
const FULLY_PRESENT: u64 = 6;
const PARTIALLY_PRESENT: u64 = 7;
/// Sector bitmap block state.
const BITMAP_PRESENT: u64 = 6;

/// An opened VHDX presenting the guest's disk.
pub struct Vhdx {
    file: Arc<dyn ReadAt>,
    header: VhdxHeader,
    meta: Metadata,
    bat: Vec<u64>,
    chunk_ratio: u64,
    /// Log entries replayed in memory at open (0 for a clean image).
    replayed: usize,
    bitmaps: BoundedCache<u64, Arc<[u8]>>,
    parent: Parent,
}

impl Vhdx {
    /// Parses headers, regions, metadata and the BAT. A log that may hold unapplied writes
    /// is an error (see the module documentation).
    pub fn from_source(file: Arc<dyn ReadAt>) -> Result<Vhdx, ReadError> {
        let mut ident = [0u8; 8];
        if file.size() < 8 {
            return Err(corrupt(0, "file too short"));
        }
        file.read_exact_at(0, &mut ident)?;
        if &ident != b"vhdxfile" {
            return Err(corrupt(0, "no vhdxfile identifier"));
        }
        let header = VhdxHeader::read(file.as_ref())?;
        let mut replayed = 0;
        let file: Arc<dyn ReadAt> = match log::replay(file.as_ref(), &header)? {
            None => file,
            Some(Ok(log)) => {
                replayed = log.entries;
                Arc::new(log::Overlay::new(file, log))
            }
            Some(Err(message)) => {
                return Err(ReadError::NeedsLogReplay {
                    path: Default::default(),
                    message,
                })
            }
        };
        let regions = Regions::read(file.as_ref())?;
        let meta = Metadata::read(file.as_ref(), regions.metadata)?;
        let bs = u64::from(meta.block_size);
        let chunk_ratio = (1u64 << 23) * u64::from(meta.logical_sector) / bs;
        let data_blocks = meta.virtual_size.div_ceil(bs);
        let entries = if meta.has_parent {
            data_blocks.div_ceil(chunk_ratio) * (chunk_ratio + 1)
        } else {
            data_blocks + (data_blocks - 1) / chunk_ratio
        };
        let (bat_at, bat_len) = regions.bat;
        let needed = entries * 8;
        if needed > bat_len {
            return Err(corrupt(
                bat_at,
                format!("BAT region of {bat_len} bytes cannot hold {entries} entries"),
            ));
        }
        if needed > MAX_BAT_BYTES {
            return Err(ReadError::TooLarge {
                what: "vhdx BAT",
                size: needed,
                limit: MAX_BAT_BYTES,
            });
        }
        if bat_at.checked_add(needed).is_none_or(|e| e > file.size()) {
            return Err(corrupt(bat_at, "BAT runs past the end of the file"));
        }
        let raw = read_vec(file.as_ref(), bat_at, needed, MAX_BAT_BYTES)?;
        let bat: Vec<u64> = raw.chunks_exact(8).map(|c| le64(c, 0)).collect();
        let v = Vhdx {
            bitmaps: BoundedCache::new(BITMAP_CACHE),
            parent: if meta.has_parent {
                Parent::NotAttached(None)
            } else {
                Parent::None
            },
            file,
            header,
            meta,
            bat,
            chunk_ratio,
            replayed,
        };
        v.check_bat(regions)?;
        Ok(v)
    }

    /// Every present block and bitmap lies after the headers, inside the file, clear of
    /// the regions and of each other.
    fn check_bat(&self, regions: Regions) -> Result<(), ReadError> {
        let bs = u64::from(self.meta.block_size);
        let mut payload = Vec::new();
        let mut reserved = vec![(0, MIB), regions.bat, regions.metadata];
        if self.header.log_length > 0 {
            reserved.push((self.header.log_offset, u64::from(self.header.log_length)));
        }
        let bat_at = regions.bat.0;
        for (i, &e) in self.bat.iter().enumerate() {
            let i = i as u64;
            let state = e & 7;
            let host = e >> 20 << 20;
            let is_bitmap = (i + 1).is_multiple_of(self.chunk_ratio + 1);
            let present = if is_bitmap {
                state == BITMAP_PRESENT
            } else {
                match state {
                    FULLY_PRESENT => true,
                    PARTIALLY_PRESENT if self.meta.has_parent => true,
                    NOT_PRESENT | UNDEFINED | ZERO | UNMAPPED => false,
                    _ => {
                        return Err(corrupt(
                            bat_at + 8 * i,
                            format!("BAT entry {i} has state {state}"),
                        ))
                    }
                }
            };
            if !present {
                continue;
            }
            if host >= self.file.size() || host < MIB {
                return Err(corrupt(
                    bat_at + 8 * i,
                    format!("BAT entry {i} points to {host:#x}, outside the file's data"),
                ));
            }
            if is_bitmap {
                reserved.push((host, MIB));
            } else {
                payload.push((host, i));
            }
        }
        check_no_overlap("vhdx", bat_at, payload, bs, &reserved)
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    pub fn attach_parent(&mut self, parent: Arc<dyn ReadAt>) {
        self.parent = Parent::Attached(parent);
    }

    /// What a block whose data is absent reads: the parent, or zeros.
    fn absent(&self) -> Run {
        if self.meta.has_parent {
            Run::Parent
        } else {
            Run::Zero
        }
    }
}

impl BlockMap for Vhdx {
    type Cursor = ();
    const FORMAT: &'static str = "vhdx";

    fn map(&self, guest: u64, _: &mut ()) -> Result<(Run, u64), ReadError> {
        let bs = u64::from(self.meta.block_size);
        let block = guest / bs;
        let within = guest % bs;
        let rest = bs - within;
        let index = block + block / self.chunk_ratio;
        let entry = self.bat.get(index as usize).copied().unwrap_or(0);
        let host = entry >> 20 << 20;
        Ok(match entry & 7 {
            FULLY_PRESENT => (Run::Host(host + within), rest),
            PARTIALLY_PRESENT => {
                let chunk = block / self.chunk_ratio;
                let bm_index = chunk * (self.chunk_ratio + 1) + self.chunk_ratio;
                let bm = self.bat.get(bm_index as usize).copied().unwrap_or(0);
                if bm & 7 != BITMAP_PRESENT {
                    return Err(corrupt(
                        host,
                        format!("block {block} is partially present but its sector bitmap is not"),
                    ));
                }
                let sector = u64::from(self.meta.logical_sector);
                let per_block = bs / sector;
                // This block's part of the chunk's bitmap: one bit per sector, LSB first.
                let bm_at = (bm >> 20 << 20) + (block % self.chunk_ratio) * per_block / 8;
                let len = per_block / 8;
                let bits = self.bitmaps.get_or_load(bm_at, || {
                    read_vec(self.file.as_ref(), bm_at, len, MIB).map(Arc::from)
                })?;
                let bit = |s: u64| {
                    bits.get((s / 8) as usize)
                        .is_some_and(|b| b >> (s % 8) & 1 == 1)
                };
                let (state, end) = same_run(within / sector, per_block, bit);
                let run = if state {
                    Run::Host(host + within)
                } else {
                    Run::Parent
                };
                (run, end * sector - within)
            }
            ZERO | UNMAPPED => (Run::Zero, rest),
            _ => (self.absent(), rest),
        })
    }
}

impl ReadAt for Vhdx {
    fn size(&self) -> u64 {
        self.meta.virtual_size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        read_map::read(self, self.file.as_ref(), &self.parent, offset, buf)
    }
}

/// Parses `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` into the GUID's on-disk bytes.
fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.trim_matches(['{', '}']).split('-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    // The first three fields are stored little endian.
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Some(b)
}

/// Opens the VHDX at `path`, and a differencing disk's parent through its locator
/// (relative path first, then the absolute ones), confined to the roots, with its data
/// write GUID checked against `parent_linkage`.
pub(crate) fn open(
    chain: &mut Chain,
    path: &Path,
    file: RawImage,
    depth: usize,
) -> Result<(Arc<dyn ReadAt>, Identity), ReadError> {
    let mut vhdx = Vhdx::from_source(Arc::new(file)).map_err(|e| match e {
        ReadError::NeedsLogReplay { message, .. } => ReadError::NeedsLogReplay {
            path: path.to_path_buf(),
            message,
        },
        e => e,
    })?;
    let identity = Identity::Vhdx(vhdx.header.data_write_guid);
    if vhdx.replayed > 0 {
        chain.warn(format!(
            "vhdx image {} was not closed cleanly: {} log entries were replayed in memory",
            path.display(),
            vhdx.replayed
        ));
    }
    if vhdx.meta.has_parent {
        let linkage = vhdx
            .meta
            .parent_value("parent_linkage")
            .and_then(parse_guid)
            .ok_or_else(|| corrupt(0, "parent locator has no valid parent_linkage"))?;
        let candidates: Vec<Vec<u8>> = ["relative_path", "volume_path", "absolute_win32_path"]
            .iter()
            .filter_map(|k| vhdx.meta.parent_value(k))
            .map(|v| v.replace('\\', "/"))
            .map(|v| v.strip_prefix("./").unwrap_or(&v).to_string())
            .filter(|v| !v.is_empty() && v.as_bytes().get(1) != Some(&b':') && !v.starts_with("//"))
            .map(String::into_bytes)
            .collect();
        let parent = chain.open_first_parent(
            path,
            "vhdx",
            &candidates,
            depth + 1,
            Identity::Vhdx(linkage),
        )?;
        vhdx.attach_parent(parent);
    }
    Ok((Arc::new(vhdx), identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text() {
        let g = parse_guid("{2DC27766-F623-4200-9D64-115E9BFD4A08}").unwrap();
        assert_eq!(g, super::meta::BAT_REGION);
        assert!(parse_guid("{2DC27766-F623}").is_none());
        assert!(parse_guid("{zzC27766-F623-4200-9D64-115E9BFD4A08}").is_none());
    }
}
