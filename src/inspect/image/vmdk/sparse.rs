//! A hosted sparse VMDK extent (magic `KDMV`): the header, a grain directory (GD) of grain
//! table (GT) sector offsets, and grains. monolithicSparse and twoGbMaxExtentSparse store
//! grains as they are; streamOptimized stores each grain deflated behind a marker
//! (`lba`, `size`), with the real header (and its GD offset) in a footer at the end of
//! the file.
//!
//! Everything is little endian and counted in 512-byte sectors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::super::read_map::{self, BlockMap, Parent, Run};
use crate::inspect::bytes::{le16, le32, le64};
use crate::inspect::cache::BoundedCache;
use crate::inspect::source::ReadError;
use crate::inspect::source::{read_vec, ReadAt};

const MAGIC: &[u8; 4] = b"KDMV";
const SECTOR: u64 = 512;
/// `gdOffset` of a streamOptimized header whose GD is found through the footer.
const GD_AT_END: u64 = u64::MAX;
const FLAG_RGD: u32 = 1 << 1;
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
/// A GT entry meaning "this grain reads as zeros" (with `FLAG_ZERO_GRAIN`).
const GTE_ZEROED: u32 = 1;
/// Grains up to 1 MiB (VMware and qemu use 64 KiB); bounds the inflate buffer.
const MAX_GRAIN_SECTORS: u64 = 2048;
/// Grain tables up to 64 Ki entries (the format fixes 512).
const MAX_GTES: u32 = 65536;
/// The grain directory is loaded whole: 8 MiB of entries is a 256 TiB disk with the
/// usual 64 KiB grains and 512-entry tables.
const MAX_GD_ENTRIES: u64 = 2 << 20;
/// Memory for decompressed grains per extent.
const GRAIN_CACHE_BYTES: u64 = 8 << 20;
/// Memory for loaded grain tables per extent (2 KiB each with the usual 512 entries).
const GT_CACHE_BYTES: u64 = 8 << 20;

pub(crate) fn corrupt(offset: u64, message: impl Into<String>) -> ReadError {
    ReadError::Corrupt {
        format: "vmdk",
        offset,
        message: message.into(),
    }
}

/// The header fields the reader uses (sizes in sectors, as stored).
#[derive(Debug, Clone)]
pub struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_sectors: u64,
    pub descriptor_offset: u64,
    pub descriptor_sectors: u64,
    pub gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    pub overhead: u64,
    pub compress_algorithm: u16,
}

impl SparseHeader {
    pub fn parse(b: &[u8], at: u64) -> Result<SparseHeader, ReadError> {
        if b.get(0..4) != Some(&MAGIC[..]) {
            return Err(corrupt(at, "no sparse extent magic KDMV"));
        }
        let h = SparseHeader {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le64(b, 12),
            grain_sectors: le64(b, 20),
            descriptor_offset: le64(b, 28),
            descriptor_sectors: le64(b, 36),
            gtes_per_gt: le32(b, 44),
            rgd_offset: le64(b, 48),
            gd_offset: le64(b, 56),
            overhead: le64(b, 64),
            compress_algorithm: le16(b, 77),
        };
        if !(1..=3).contains(&h.version) {
            return Err(ReadError::Unsupported {
                format: "vmdk",
                message: format!("sparse extent version {}", h.version),
            });
        }
        if h.grain_sectors == 0
            || h.grain_sectors > MAX_GRAIN_SECTORS
            || !h.grain_sectors.is_power_of_two()
        {
            return Err(corrupt(
                at + 20,
                format!("grain size of {} sectors", h.grain_sectors),
            ));
        }
        if h.gtes_per_gt == 0 || h.gtes_per_gt > MAX_GTES {
            return Err(corrupt(
                at + 44,
                format!("{} entries per grain table", h.gtes_per_gt),
            ));
        }
        if h.flags & FLAG_COMPRESSED != 0 && h.compress_algorithm != 1 {
            return Err(ReadError::Unsupported {
                format: "vmdk",
                message: format!("compression algorithm {}", h.compress_algorithm),
            });
        }
        Ok(h)
    }

    pub fn grain_bytes(&self) -> u64 {
        self.grain_sectors * SECTOR
    }

    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// Guest bytes covered by one grain table.
    fn gt_span(&self) -> u64 {
        self.grain_bytes() * u64::from(self.gtes_per_gt)
    }
}

/// An opened sparse extent of `len` guest bytes.
pub struct SparseExtent {
    file: Arc<dyn ReadAt>,
    header: SparseHeader,
    len: u64,
    gd: Vec<u32>,
    gts: BoundedCache<u64, Arc<[u8]>>,
    grains: BoundedCache<u64, Arc<[u8]>>,
    parent: Parent,
    /// Bytes inflated so far (see [`ReadAt::inflated`]): a grain is inflated whole for
    /// a read of one byte of it.
    inflated: AtomicU64,
}

impl SparseExtent {
    /// Reads the header (the footer's copy for streamOptimized) and the grain directory.
    /// `len` is the extent's size in the descriptor (the capacity when there is none).
    pub fn open(file: Arc<dyn ReadAt>, len: Option<u64>) -> Result<SparseExtent, ReadError> {
        Self::open_shared(file, len, 1)
    }

    /// Like [`SparseExtent::open`] for one of `extents` extents of a disk, which share the
    /// cache memory of one (a descriptor may list thousands of extents).
    pub fn open_shared(
        file: Arc<dyn ReadAt>,
        len: Option<u64>,
        extents: usize,
    ) -> Result<SparseExtent, ReadError> {
        let share = extents.max(1) as u64;
        let raw = read_vec(file.as_ref(), 0, SECTOR, SECTOR)?;
        let mut header = SparseHeader::parse(&raw, 0)?;
        if header.gd_offset == GD_AT_END {
            // streamOptimized: footer marker, footer header, end-of-stream marker.
            let size = file.size();
            if size < 3 * SECTOR {
                return Err(corrupt(0, "streamOptimized file too short for a footer"));
            }
            let raw = read_vec(file.as_ref(), size - 2 * SECTOR, SECTOR, SECTOR)?;
            header = SparseHeader::parse(&raw, size - 2 * SECTOR)?;
            if header.gd_offset == GD_AT_END {
                return Err(corrupt(
                    size - 2 * SECTOR + 56,
                    "footer has no grain directory offset",
                ));
            }
        }
        let capacity = header
            .capacity
            .checked_mul(SECTOR)
            .ok_or_else(|| corrupt(12, "capacity overflows"))?;
        let len = len.unwrap_or(capacity);
        if len > capacity {
            return Err(corrupt(
                12,
                format!("extent of {len} bytes is larger than its capacity of {capacity}"),
            ));
        }
        let entries = capacity.div_ceil(header.gt_span());
        if entries > MAX_GD_ENTRIES {
            return Err(ReadError::TooLarge {
                what: "vmdk grain directory",
                size: entries * 4,
                limit: MAX_GD_ENTRIES * 4,
            });
        }
        let gd = match Self::load_gd(file.as_ref(), header.gd_offset, entries) {
            Ok(gd) => gd,
            // A damaged primary directory: the redundant one, when the header has it.
            Err(e) if header.flags & FLAG_RGD != 0 && header.rgd_offset != 0 => {
                Self::load_gd(file.as_ref(), header.rgd_offset, entries).map_err(|_| e)?
            }
            Err(e) => return Err(e),
        };
        let grain_slots = (GRAIN_CACHE_BYTES / share / header.grain_bytes()).max(1) as usize;
        let gt_slots = GT_CACHE_BYTES / share / (u64::from(header.gtes_per_gt) * 4);
        Ok(SparseExtent {
            file,
            len,
            gd,
            gts: BoundedCache::new(gt_slots as usize),
            grains: BoundedCache::new(grain_slots),
            parent: Parent::None,
            header,
            inflated: AtomicU64::new(0),
        })
    }

    fn load_gd(file: &dyn ReadAt, sector: u64, entries: u64) -> Result<Vec<u32>, ReadError> {
        let at = sector.checked_mul(SECTOR).filter(|&a| a > 0);
        let Some(at) = at.filter(|a| a.checked_add(entries * 4).is_some_and(|e| e <= file.size()))
        else {
            return Err(corrupt(
                56,
                format!("grain directory at sector {sector} is outside the file"),
            ));
        };
        let raw = read_vec(file, at, entries * 4, MAX_GD_ENTRIES * 4)?;
        Ok(raw.chunks_exact(4).map(|c| le32(c, 0)).collect())
    }

    /// Bytes of the loaded grain directory.
    pub fn gd_bytes(&self) -> u64 {
        self.gd.len() as u64 * 4
    }

    /// Sets what unallocated grains read (the parent at this extent's guest offset).
    pub fn attach_parent(&mut self, parent: Arc<dyn ReadAt>) {
        self.parent = Parent::Attached(parent);
    }

    /// A descriptor embedded in this extent, if any (bounded by the caller's cap).
    pub fn embedded_descriptor(&self, max: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let (at, len) = (
            self.header.descriptor_offset,
            self.header.descriptor_sectors,
        );
        if at == 0 || len == 0 {
            return Ok(None);
        }
        let len = len.saturating_mul(SECTOR).min(max);
        let at = at.saturating_mul(SECTOR);
        if at.checked_add(len).is_none_or(|e| e > self.file.size()) {
            return Err(corrupt(28, "embedded descriptor is outside the file"));
        }
        read_vec(self.file.as_ref(), at, len, max).map(Some)
    }

    /// The grain table `gd_index`, or `None` when it is unallocated.
    fn table(&self, gd_index: usize) -> Result<Option<Arc<[u8]>>, ReadError> {
        let sector = u64::from(self.gd.get(gd_index).copied().unwrap_or(0));
        if sector == 0 {
            return Ok(None);
        }
        let len = u64::from(self.header.gtes_per_gt) * 4;
        let at = sector * SECTOR;
        if at.checked_add(len).is_none_or(|e| e > self.file.size()) {
            return Err(corrupt(
                at,
                format!("grain table {gd_index} at sector {sector} is past the end of the file"),
            ));
        }
        self.gts
            .get_or_load(at, || {
                read_vec(self.file.as_ref(), at, len, u64::from(MAX_GTES) * 4).map(Arc::from)
            })
            .map(Some)
    }

    /// Inflates the grain whose marker is at `sector` into `out` (one grain).
    fn inflate_grain(
        &self,
        sector: u64,
        grain_start: u64,
        out: &mut [u8],
    ) -> Result<(), ReadError> {
        let at = sector * SECTOR;
        let size = self.file.size();
        let grain = self.header.grain_bytes();
        let (data_at, data_len) = if self.header.flags & FLAG_MARKERS != 0 {
            let mut marker = [0u8; 12];
            if at.checked_add(12).is_none_or(|e| e > size) {
                return Err(corrupt(at, "grain marker past the end of the file"));
            }
            self.file.read_exact_at(at, &mut marker)?;
            let lba = le64(&marker, 0);
            if lba != grain_start / SECTOR {
                return Err(corrupt(
                    at,
                    format!(
                        "grain marker says sector {lba}, the grain table says {}",
                        grain_start / SECTOR
                    ),
                ));
            }
            (at + 12, u64::from(le32(&marker, 8)))
        } else {
            (at, (size - at.min(size)).min(2 * grain))
        };
        if data_len > 2 * grain || data_at.checked_add(data_len).is_none_or(|e| e > size) {
            return Err(corrupt(
                at,
                format!("compressed grain of {data_len} bytes is impossible here"),
            ));
        }
        let input = read_vec(self.file.as_ref(), data_at, data_len, 2 * grain)?;
        self.inflated.fetch_add(out.len() as u64, Ordering::Relaxed);
        let mut state = Box::<DecompressorOxide>::default();
        let flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER
            | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        let (status, _, written) = decompress(&mut state, &input, out, 0, flags);
        match status {
            // A grain shorter than the grain size (the last one of a disk) ends in zeros.
            TINFLStatus::Done => {
                out[written..].fill(0);
                Ok(())
            }
            TINFLStatus::HasMoreOutput => {
                Err(corrupt(at, "compressed grain inflates past the grain size"))
            }
            other => Err(corrupt(
                at,
                format!("deflate error {other:?} after {written} bytes"),
            )),
        }
    }
}

impl BlockMap for SparseExtent {
    type Cursor = ();
    const FORMAT: &'static str = "vmdk";

    fn map(&self, guest: u64, _: &mut ()) -> Result<(Run, u64), ReadError> {
        let grain = self.header.grain_bytes();
        let span = self.header.gt_span();
        let rest = grain - guest % grain;
        let Some(table) = self.table((guest / span) as usize)? else {
            return Ok((Run::Parent, span - guest % span));
        };
        let index = ((guest % span) / grain) as usize;
        let entry = le32(&table, index * 4);
        if entry == 0 {
            return Ok((Run::Parent, rest));
        }
        if entry == GTE_ZEROED && self.header.flags & FLAG_ZERO_GRAIN != 0 {
            return Ok((Run::Zero, rest));
        }
        let sector = u64::from(entry);
        if sector < self.header.overhead || sector == 0 {
            return Err(corrupt(
                sector * SECTOR,
                format!("grain of guest offset {guest:#x} at sector {sector} points into the metadata (first {} sectors)", self.header.overhead),
            ));
        }
        if self.header.compressed() {
            return Ok((Run::Compressed(sector), rest));
        }
        Ok((Run::Host(sector * SECTOR + guest % grain), rest))
    }

    fn read_compressed(&self, sector: u64, guest: u64, out: &mut [u8]) -> Result<(), ReadError> {
        let grain = self.header.grain_bytes();
        let within = (guest % grain) as usize;
        let data = self.grains.get_or_load(sector, || {
            let mut data = vec![0u8; grain as usize];
            self.inflate_grain(sector, guest - guest % grain, &mut data)?;
            Ok::<_, ReadError>(Arc::from(data))
        })?;
        out.copy_from_slice(&data[within..within + out.len()]);
        Ok(())
    }
}

impl ReadAt for SparseExtent {
    fn size(&self) -> u64 {
        self.len
    }

    /// This extent's grains only: the parent is shared by every extent of a disk, so
    /// [`Vmdk`](super::Vmdk) counts it once.
    fn inflated(&self) -> u64 {
        self.inflated.load(Ordering::Relaxed)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        read_map::read(self, self.file.as_ref(), &self.parent, offset, buf)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// A sparse extent of 4 grains of 4 KiB (one GT of 4 entries): GD at sector 1, GT at
    /// sector 2, grains from sector 8 (overhead 8).
    pub(crate) fn extent(gt: [u32; 4], flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; 8 * 512 + 2 * 4096];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[12..20].copy_from_slice(&32u64.to_le_bytes());
        b[20..28].copy_from_slice(&8u64.to_le_bytes());
        b[44..48].copy_from_slice(&4u32.to_le_bytes());
        b[56..64].copy_from_slice(&1u64.to_le_bytes());
        b[64..72].copy_from_slice(&8u64.to_le_bytes());
        b[512..516].copy_from_slice(&2u32.to_le_bytes());
        for (i, e) in gt.iter().enumerate() {
            b[1024 + 4 * i..1028 + 4 * i].copy_from_slice(&e.to_le_bytes());
        }
        b[4096..8192].fill(0x11);
        b[8192..].fill(0x22);
        b
    }

    #[test]
    fn grains() {
        let e = SparseExtent::open(
            Arc::new(MemSource(extent([16, 0, 1, 8], FLAG_ZERO_GRAIN))),
            None,
        )
        .unwrap();
        assert_eq!(e.size(), 16384);
        let mut b = vec![9u8; 16384];
        e.read_exact_at(0, &mut b).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0x22));
        assert!(b[4096..12288].iter().all(|&x| x == 0));
        assert!(b[12288..].iter().all(|&x| x == 0x11));
    }

    #[test]
    fn hostile_grains() {
        // Into the metadata, past the end, and a zeroed-grain entry without the flag.
        for gt in [[2, 0, 0, 0], [1000, 0, 0, 0], [1, 0, 0, 0]] {
            let e = SparseExtent::open(Arc::new(MemSource(extent(gt, 0))), None).unwrap();
            assert!(e.read_exact_at(0, &mut [0u8; 512]).is_err(), "{gt:?}");
        }
        let mut b = extent([8, 0, 0, 0], 0);
        b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(SparseExtent::open(Arc::new(MemSource(b)), None).is_err());
    }

    #[test]
    fn compressed_grain_bounds() {
        let mut b = extent([8, 0, 0, 0], FLAG_COMPRESSED | FLAG_MARKERS);
        b[77..79].copy_from_slice(&1u16.to_le_bytes());
        // A grain that inflates to 8 KiB: twice the grain size.
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&[7u8; 8192], 6);
        b[4096..4104].copy_from_slice(&0u64.to_le_bytes());
        b[4104..4108].copy_from_slice(&(packed.len() as u32).to_le_bytes());
        b[4108..4108 + packed.len()].copy_from_slice(&packed);
        let e = SparseExtent::open(Arc::new(MemSource(b.clone())), None).unwrap();
        let err = e.read_exact_at(0, &mut [0u8; 512]).unwrap_err();
        assert!(err.to_string().contains("past the grain size"), "{err}");
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&[7u8; 4096], 6);
        b[4104..4108].copy_from_slice(&(packed.len() as u32).to_le_bytes());
        b[4108..4108 + packed.len()].copy_from_slice(&packed);
        let e = SparseExtent::open(Arc::new(MemSource(b.clone())), None).unwrap();
        let mut out = [0u8; 4096];
        assert_eq!(e.inflated(), 0);
        e.read_exact_at(0, &mut out[..16]).unwrap();
        // A read of 16 bytes inflated the whole grain; a second read is served cached.
        assert_eq!(e.inflated(), 4096);
        e.read_exact_at(0, &mut out).unwrap();
        assert_eq!(out, [7u8; 4096]);
        assert_eq!(e.inflated(), 4096);
        // A marker naming another sector.
        b[4096..4104].copy_from_slice(&5u64.to_le_bytes());
        let e = SparseExtent::open(Arc::new(MemSource(b)), None).unwrap();
        assert!(e.read_exact_at(0, &mut out).is_err());
    }
}
