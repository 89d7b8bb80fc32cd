//! VHD (Virtual PC / Hyper-V v1, qemu's `vpc`), read-only: fixed disks (the data, then a
//! 512-byte footer), dynamic disks (a dynamic header, a block allocation table of sector
//! offsets, and per block a sector bitmap then the data) and differencing disks (a dynamic
//! disk whose clear bitmap bits read from a parent named by the header's locators).
//!
//! Everything is big endian. The footer and the dynamic header carry one's-complement
//! checksums, verified here: a damaged footer is an error, not a guess.

use std::path::Path;
use std::sync::Arc;

use super::read_map::{self, check_no_overlap, same_run, BlockMap, Parent, Run};
use super::{Chain, Identity, RawImage};
use crate::inspect::bytes::{array, be16, be32, be64, field};
use crate::inspect::cache::BoundedCache;
use crate::inspect::source::ReadError;
use crate::inspect::source::{read_vec, ReadAt};

const FOOTER_LEN: u64 = 512;
const DYN_HEADER_LEN: u64 = 1024;
const SECTOR: u64 = 512;
const TYPE_FIXED: u32 = 2;
const TYPE_DYNAMIC: u32 = 3;
const TYPE_DIFF: u32 = 4;
const UNALLOCATED: u32 = 0xffff_ffff;
/// 16 Mi entries (64 MiB of table) cover 32 TiB with 2 MiB blocks.
const MAX_BAT_ENTRIES: u64 = 16 << 20;
/// Blocks of 512 bytes up to 256 MiB (the format's default is 2 MiB).
const MAX_BLOCK: u32 = 256 << 20;
/// Sector bitmaps kept in memory.
const BITMAP_CACHE: usize = 256;
/// Largest parent locator read (a path in UTF-16).
const MAX_LOCATOR: u32 = 64 << 10;

fn corrupt(offset: u64, message: impl Into<String>) -> ReadError {
    ReadError::Corrupt {
        format: "vpc",
        offset,
        message: message.into(),
    }
}

/// One's complement of the byte sum, skipping the 4-byte checksum field at `skip`.
fn checksum(b: &[u8], skip: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(skip..skip + 4).contains(i))
        .fold(0u32, |acc, (_, &x)| acc.wrapping_add(u32::from(x)));
    !sum
}

/// The footer's fields the reader uses.
#[derive(Debug, Clone)]
pub struct VhdFooter {
    pub data_offset: u64,
    pub creator_app: [u8; 4],
    pub current_size: u64,
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
    pub disk_type: u32,
    pub unique_id: [u8; 16],
}

impl VhdFooter {
    pub fn parse(b: &[u8], offset: u64) -> Result<VhdFooter, ReadError> {
        if field(b, 0, 8) != b"conectix" {
            return Err(corrupt(offset, "no VHD footer cookie"));
        }
        let stored = be32(b, 64);
        let computed = checksum(field(b, 0, FOOTER_LEN as usize), 64);
        if stored != computed {
            return Err(corrupt(
                offset + 64,
                format!("footer checksum {stored:#x}, computed {computed:#x}"),
            ));
        }
        let geometry = be32(b, 56);
        Ok(VhdFooter {
            data_offset: be64(b, 16),
            creator_app: array(b, 28),
            current_size: be64(b, 48),
            cylinders: (geometry >> 16) as u16,
            heads: (geometry >> 8) as u8,
            sectors_per_track: geometry as u8,
            disk_type: be32(b, 60),
            unique_id: array(b, 68),
        })
    }

    /// The virtual size as qemu computes it: images made by Virtual PC (and old qemu) are
    /// sized by their CHS geometry, everything else (Hyper-V, qemu 2+, disk2vhd...) by the
    /// current size field; the maximal geometry also means "use the size field".
    pub fn virtual_size(&self) -> u64 {
        let chs = u64::from(self.cylinders)
            * u64::from(self.heads)
            * u64::from(self.sectors_per_track)
            * SECTOR;
        let chs_authoritative = matches!(&self.creator_app, b"vpc " | b"qemu");
        let max_geometry = (self.cylinders, self.heads, self.sectors_per_track) == (65535, 16, 255);
        if chs_authoritative && !max_geometry {
            chs
        } else {
            self.current_size
        }
    }
}

/// A parent locator entry of the dynamic header.
#[derive(Debug, Clone)]
struct Locator {
    code: [u8; 4],
    len: u32,
    offset: u64,
}

/// The dynamic header's fields the reader uses.
#[derive(Debug, Clone)]
pub struct VhdDynamicHeader {
    pub table_offset: u64,
    pub max_entries: u32,
    pub block_size: u32,
    pub parent_unique_id: [u8; 16],
    /// The parent's file name (UTF-16 big endian in the header).
    pub parent_name: String,
    locators: Vec<Locator>,
}

impl VhdDynamicHeader {
    pub fn parse(b: &[u8], offset: u64) -> Result<VhdDynamicHeader, ReadError> {
        if field(b, 0, 8) != b"cxsparse" {
            return Err(corrupt(offset, "no dynamic header cookie"));
        }
        let stored = be32(b, 36);
        let computed = checksum(field(b, 0, DYN_HEADER_LEN as usize), 36);
        if stored != computed {
            return Err(corrupt(
                offset + 36,
                format!("dynamic header checksum {stored:#x}, computed {computed:#x}"),
            ));
        }
        let block_size = be32(b, 32);
        if !(SECTOR as u32..=MAX_BLOCK).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(corrupt(offset + 32, format!("block size {block_size}")));
        }
        let name: Vec<u16> = (0..256)
            .map(|i| be16(b, 64 + 2 * i))
            .take_while(|&c| c != 0)
            .collect();
        let locators = (0..8)
            .map(|i| 576 + 24 * i)
            .map(|at| Locator {
                code: array(b, at),
                len: be32(b, at + 8),
                offset: be64(b, at + 16),
            })
            .filter(|l| l.code != [0; 4] && l.len > 0)
            .collect();
        Ok(VhdDynamicHeader {
            table_offset: be64(b, 16),
            max_entries: be32(b, 28),
            block_size,
            parent_unique_id: array(b, 40),
            parent_name: String::from_utf16_lossy(&name),
            locators,
        })
    }
}

/// An opened VHD presenting the guest's disk.
pub struct Vhd {
    file: Arc<dyn ReadAt>,
    footer: VhdFooter,
    size: u64,
    dynamic: Option<Dynamic>,
    parent: Parent,
}

struct Dynamic {
    header: VhdDynamicHeader,
    bat: Vec<u32>,
    /// Bytes of the sector bitmap in front of each block (whole sectors).
    bitmap_len: u64,
    bitmaps: BoundedCache<u64, Arc<[u8]>>,
}

impl Vhd {
    /// Parses the footer (the last 512 bytes, or the copy at the start when the end is
    /// damaged), and for dynamic and differencing disks the dynamic header and the BAT.
    pub fn from_source(file: Arc<dyn ReadAt>) -> Result<Vhd, ReadError> {
        let size = file.size();
        if size < FOOTER_LEN {
            return Err(corrupt(0, "file is smaller than a VHD footer"));
        }
        let tail = read_vec(file.as_ref(), size - FOOTER_LEN, FOOTER_LEN, FOOTER_LEN)?;
        let footer = match VhdFooter::parse(&tail, size - FOOTER_LEN) {
            Ok(f) => f,
            // Dynamic disks keep a copy of the footer at offset 0 (qemu falls back to it too).
            Err(e) => {
                let head = read_vec(file.as_ref(), 0, FOOTER_LEN, FOOTER_LEN)?;
                match VhdFooter::parse(&head, 0) {
                    Ok(f) if f.disk_type != TYPE_FIXED => f,
                    _ => return Err(e),
                }
            }
        };
        let virtual_size = footer.virtual_size();
        let (dynamic, parent) = match footer.disk_type {
            TYPE_FIXED => {
                if virtual_size > size - FOOTER_LEN {
                    return Err(corrupt(
                        size - FOOTER_LEN + 48,
                        format!("fixed disk of {virtual_size} bytes in a file of {size} bytes"),
                    ));
                }
                (None, Parent::None)
            }
            TYPE_DYNAMIC | TYPE_DIFF => {
                let d = Self::load_dynamic(file.as_ref(), &footer, virtual_size)?;
                let parent = if footer.disk_type == TYPE_DIFF {
                    Parent::NotAttached(None)
                } else {
                    Parent::None
                };
                (Some(d), parent)
            }
            other => {
                return Err(ReadError::Unsupported {
                    format: "vpc",
                    message: format!("disk type {other}"),
                })
            }
        };
        Ok(Vhd {
            file,
            footer,
            size: virtual_size,
            dynamic,
            parent,
        })
    }

    fn load_dynamic(
        file: &dyn ReadAt,
        footer: &VhdFooter,
        virtual_size: u64,
    ) -> Result<Dynamic, ReadError> {
        let at = footer.data_offset;
        if at
            .checked_add(DYN_HEADER_LEN)
            .is_none_or(|e| e > file.size())
        {
            return Err(corrupt(
                16,
                format!("dynamic header offset {at:#x} is past the end"),
            ));
        }
        let raw = read_vec(file, at, DYN_HEADER_LEN, DYN_HEADER_LEN)?;
        let header = VhdDynamicHeader::parse(&raw, at)?;
        let bs = u64::from(header.block_size);
        let entries = u64::from(header.max_entries);
        if entries > MAX_BAT_ENTRIES {
            return Err(ReadError::TooLarge {
                what: "vhd block allocation table",
                size: entries * 4,
                limit: MAX_BAT_ENTRIES * 4,
            });
        }
        if entries * bs < virtual_size {
            return Err(corrupt(
                at + 28,
                format!("{entries} blocks of {bs} bytes cannot hold {virtual_size} bytes"),
            ));
        }
        let bat_len = entries * 4;
        let bat_at = header.table_offset;
        if bat_at.checked_add(bat_len).is_none_or(|e| e > file.size()) {
            return Err(corrupt(at + 16, "block allocation table runs past the end"));
        }
        let raw = read_vec(file, bat_at, bat_len, MAX_BAT_ENTRIES * 4)?;
        let bat: Vec<u32> = raw.chunks_exact(4).map(|c| be32(c, 0)).collect();
        let bitmap_len = (bs / SECTOR).div_ceil(8).div_ceil(SECTOR) * SECTOR;
        let span = bitmap_len + bs;
        let mut blocks = Vec::new();
        for (i, &e) in bat.iter().enumerate() {
            if e == UNALLOCATED {
                continue;
            }
            let host = u64::from(e) * SECTOR;
            // The last block may be cut short by the footer only in broken images; qemu
            // still needs the whole block inside the file.
            if host + span > file.size() {
                return Err(corrupt(
                    bat_at + 4 * i as u64,
                    format!("block {i} at {host:#x} runs past the end of the file"),
                ));
            }
            blocks.push((host, i as u64));
        }
        let reserved = [
            (0, FOOTER_LEN),
            (at, DYN_HEADER_LEN),
            (bat_at, bat_len),
            (file.size() - FOOTER_LEN, FOOTER_LEN),
        ];
        check_no_overlap("vpc", bat_at, blocks, span, &reserved)?;
        Ok(Dynamic {
            header,
            bat,
            bitmap_len,
            bitmaps: BoundedCache::new(BITMAP_CACHE),
        })
    }

    pub fn footer(&self) -> &VhdFooter {
        &self.footer
    }

    pub fn is_differencing(&self) -> bool {
        self.footer.disk_type == TYPE_DIFF
    }

    pub fn attach_parent(&mut self, parent: Arc<dyn ReadAt>) {
        self.parent = Parent::Attached(parent);
    }

    /// Candidate parent paths, most portable first: the relative Windows path (W2ru), the
    /// absolute ones (W2ku, MacX as a file URL), then the bare file name of the header.
    /// Windows paths are turned into `/` paths; drive-letter paths cannot mean anything
    /// here and are skipped.
    pub fn parent_candidates(&self) -> Result<Vec<Vec<u8>>, ReadError> {
        let Some(d) = &self.dynamic else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for code in [b"W2ru", b"W2ku", b"MacX"] {
            for l in d.header.locators.iter().filter(|l| &l.code == code) {
                if l.len > MAX_LOCATOR
                    || l.offset
                        .checked_add(u64::from(l.len))
                        .is_none_or(|e| e > self.file.size())
                {
                    return Err(corrupt(l.offset, "parent locator runs past the end"));
                }
                let raw = read_vec(
                    self.file.as_ref(),
                    l.offset,
                    u64::from(l.len),
                    u64::from(MAX_LOCATOR),
                )?;
                let text = if code == b"MacX" {
                    let s = String::from_utf8_lossy(&raw)
                        .trim_end_matches('\0')
                        .to_string();
                    match s.strip_prefix("file://") {
                        Some(p) => p.to_string(),
                        None => continue,
                    }
                } else {
                    let units: Vec<u16> = raw
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    String::from_utf16_lossy(&units)
                        .trim_end_matches('\0')
                        .replace('\\', "/")
                };
                let text = text.strip_prefix("./").unwrap_or(&text).to_string();
                let drive = text.as_bytes().get(1) == Some(&b':');
                if !text.is_empty() && !drive {
                    out.push(text.into_bytes());
                }
            }
        }
        if !d.header.parent_name.is_empty() && !d.header.parent_name.contains(['/', '\\']) {
            out.push(d.header.parent_name.clone().into_bytes());
        }
        Ok(out)
    }
}

impl BlockMap for Vhd {
    type Cursor = ();
    const FORMAT: &'static str = "vpc";

    fn map(&self, guest: u64, _: &mut ()) -> Result<(Run, u64), ReadError> {
        let Some(d) = &self.dynamic else {
            return Ok((Run::Host(guest), self.size - guest));
        };
        let bs = u64::from(d.header.block_size);
        let index = (guest / bs) as usize;
        let within = guest % bs;
        let entry = d.bat.get(index).copied().unwrap_or(UNALLOCATED);
        if entry == UNALLOCATED {
            return Ok((Run::Parent, bs - within));
        }
        let block = u64::from(entry) * SECTOR;
        let data = block + d.bitmap_len + within;
        if !self.is_differencing() {
            // Like qemu: a dynamic disk's allocated block is read whole (writers fill
            // unwritten sectors with zeros and set every bitmap bit).
            return Ok((Run::Host(data), bs - within));
        }
        let bitmap = d.bitmaps.get_or_load(block, || {
            read_vec(self.file.as_ref(), block, d.bitmap_len, d.bitmap_len).map(Arc::from)
        })?;
        // Bit set (most significant first): this block has the sector; clear: the parent.
        let bit = |sector: u64| {
            bitmap
                .get((sector / 8) as usize)
                .is_some_and(|b| b >> (7 - sector % 8) & 1 == 1)
        };
        let (state, end) = same_run(within / SECTOR, bs / SECTOR, bit);
        let len = end * SECTOR - within;
        Ok((if state { Run::Host(data) } else { Run::Parent }, len))
    }
}

impl ReadAt for Vhd {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        read_map::read(self, self.file.as_ref(), &self.parent, offset, buf)
    }
}

/// Opens the VHD at `path`, and a differencing disk's parent: the first locator that
/// names an existing file, confined to the roots, whose unique id is the one recorded.
pub(crate) fn open(
    chain: &mut Chain,
    path: &Path,
    file: RawImage,
    depth: usize,
) -> Result<(Arc<dyn ReadAt>, Identity), ReadError> {
    let mut vhd = Vhd::from_source(Arc::new(file))?;
    let identity = Identity::Vhd(vhd.footer.unique_id);
    if vhd.is_differencing() {
        let expected = vhd
            .dynamic
            .as_ref()
            .map(|d| d.header.parent_unique_id)
            .unwrap_or_default();
        let names = vhd.parent_candidates()?;
        let parent =
            chain.open_first_parent(path, "vpc", &names, depth + 1, Identity::Vhd(expected))?;
        vhd.attach_parent(parent);
    }
    Ok((Arc::new(vhd), identity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    pub(crate) fn footer(kind: u32, size: u64, data_offset: u64) -> Vec<u8> {
        let mut f = vec![0u8; 512];
        f[0..8].copy_from_slice(b"conectix");
        f[16..24].copy_from_slice(&data_offset.to_be_bytes());
        f[28..32].copy_from_slice(b"test");
        f[48..56].copy_from_slice(&size.to_be_bytes());
        f[60..64].copy_from_slice(&kind.to_be_bytes());
        let c = checksum(&f, 64);
        f[64..68].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn fixed_and_checksum() {
        let mut img = vec![0x5au8; 4096];
        img.extend(footer(TYPE_FIXED, 4096, u64::MAX));
        let v = Vhd::from_source(Arc::new(MemSource(img.clone()))).unwrap();
        assert_eq!(v.size(), 4096);
        let mut b = [0u8; 16];
        v.read_exact_at(4080, &mut b).unwrap();
        assert_eq!(b, [0x5a; 16]);
        let n = img.len();
        img[n - 512 + 50] ^= 1;
        let e = Vhd::from_source(Arc::new(MemSource(img))).err().unwrap();
        assert!(e.to_string().contains("checksum"), "{e}");
        let mut big = vec![0u8; 512];
        big.extend(footer(TYPE_FIXED, 1 << 40, u64::MAX));
        assert!(Vhd::from_source(Arc::new(MemSource(big))).is_err());
    }

    #[test]
    fn dynamic_blocks_and_overlaps() {
        // Footer copy, dynamic header at 512, BAT at 1536 (2 entries), block at 2048.
        let bs = 4096u32;
        let mut img = footer(TYPE_DYNAMIC, 8192, 512);
        let mut h = vec![0u8; 1024];
        h[0..8].copy_from_slice(b"cxsparse");
        h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        h[16..24].copy_from_slice(&1536u64.to_be_bytes());
        h[28..32].copy_from_slice(&2u32.to_be_bytes());
        h[32..36].copy_from_slice(&bs.to_be_bytes());
        let c = checksum(&h, 36);
        h[36..40].copy_from_slice(&c.to_be_bytes());
        img.extend(&h);
        let mut bat = vec![0xffu8; 512];
        bat[4..8].copy_from_slice(&4u32.to_be_bytes());
        img.extend(&bat);
        img.extend(vec![0xff; 512]); // bitmap
        img.extend(vec![0x42; 4096]);
        img.extend(footer(TYPE_DYNAMIC, 8192, 512));
        let v = Vhd::from_source(Arc::new(MemSource(img.clone()))).unwrap();
        let mut b = vec![1u8; 8192];
        v.read_exact_at(0, &mut b).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0));
        assert!(b[4096..].iter().all(|&x| x == 0x42));
        // A block placed over the BAT.
        let mut bad = img.clone();
        bad[1536 + 4..1536 + 8].copy_from_slice(&3u32.to_be_bytes());
        assert!(Vhd::from_source(Arc::new(MemSource(bad))).is_err());
    }
}
