//! Reading a logical volume: its segments mapped onto PV extents and sub-LVs, as
//! device-mapper would map them, but in userspace and read-only.
//!
//! `linear`/`striped` map extents to PV ranges in chunk-sized rounds; `mirror` and
//! `raid1` read one copy; `raid0`, `raid10` and `raid4/5/6` are md arrays over their
//! images ([`RaidSource`], shared with MD), which rebuild one missing image from parity
//! or read a raid10 chunk from its other copy; `cache`/`writecache` read their origin. Every LV opened is a
//! [`ReadAt`], so filesystems and further volume layers read it like a partition.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::error::VolumeError;
use super::super::raid::{algo, Kind, RaidSource};
use super::thin::ThinSource;
use super::vg::{AreaRef, LvMeta, Segment, VgMeta};
use crate::inspect::bytes::{le32, le64, read_array};
use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, ReadAt, Slice};

/// Deepest stacking of LVs on LVs (a cached raid1 on ... is 3).
const MAX_STACK: usize = 8;
/// dm-raid's superblock magic ("DmRd") at the start of each `_rmeta_` LV.
const DM_RAID_MAGIC: u32 = 0x6452_6d44;

/// Opens the LVs of one VG over the PVs that are present.
pub struct VgReader<'a> {
    vg: &'a VgMeta,
    /// PV key (`pv0`) -> the PV's whole device.
    pvs: HashMap<&'a str, Arc<dyn ReadAt>>,
    lvs: HashMap<&'a str, &'a LvMeta>,
}

/// An opened LV and what the reader should know about how it was read.
pub struct OpenedLv {
    pub src: Arc<dyn ReadAt>,
    pub warnings: Vec<String>,
}

impl<'a> VgReader<'a> {
    /// `present`: PV key -> device, for the PVs found on the disks.
    pub fn new(vg: &'a VgMeta, present: HashMap<&'a str, Arc<dyn ReadAt>>) -> VgReader<'a> {
        VgReader {
            vg,
            pvs: present,
            lvs: vg.lvs.iter().map(|l| (l.name.as_str(), l)).collect(),
        }
    }

    /// Opens the LV named `name`.
    pub fn open(&self, name: &str) -> Result<OpenedLv, VolumeError> {
        let mut warnings = Vec::new();
        let src = self.open_lv(name, &mut Vec::new(), &mut warnings)?;
        Ok(OpenedLv { src, warnings })
    }

    fn open_lv(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Arc<dyn ReadAt>, VolumeError> {
        if stack.iter().any(|s| s == name) || stack.len() >= MAX_STACK {
            return Err(VolumeError::Recursive(name.to_string()));
        }
        let lv = *self
            .lvs
            .get(name)
            .ok_or_else(|| VolumeError::Metadata(format!("{name}: no such logical volume")))?;
        stack.push(name.to_string());
        let result = self.map_lv(lv, stack, warnings);
        stack.pop();
        result
    }

    fn map_lv(
        &self,
        lv: &LvMeta,
        stack: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Arc<dyn ReadAt>, VolumeError> {
        let es = self.vg.extent_size;
        // A cache or writecache LV presents its origin (whole-LV segment types).
        if let [seg] = lv.segments.as_slice() {
            if matches!(seg.seg_type.as_str(), "cache" | "writecache") {
                let origin = seg.origin.as_deref().ok_or_else(|| {
                    VolumeError::Metadata(format!("{}: {} without origin", lv.name, seg.seg_type))
                })?;
                warnings.push(format!(
                    "{}: {} volume: its origin is read, the cache may hold newer data",
                    lv.name, seg.seg_type
                ));
                return self.open_lv(origin, stack, warnings);
            }
        }
        if let [seg] = lv.segments.as_slice() {
            if seg.seg_type == "thin" {
                return self.open_thin(lv, seg, stack, warnings);
            }
        }
        let mut mapped = Vec::with_capacity(lv.segments.len());
        for seg in &lv.segments {
            let start = seg.start_extent * es;
            let len = seg.extent_count * es;
            let map = self.map_segment(lv, seg, len, stack, warnings)?;
            mapped.push(Mapped { start, len, map });
        }
        Ok(Arc::new(LvSource {
            size: lv.extents() * es,
            segments: mapped,
        }))
    }

    fn map_segment(
        &self,
        lv: &LvMeta,
        seg: &Segment,
        len: u64,
        stack: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Map, VolumeError> {
        let unsupported = |message: String| VolumeError::Unsupported {
            lv: lv.name.clone(),
            message,
        };
        let n = seg.areas.len() as u64;
        let ty = seg.seg_type.as_str();
        match ty {
            "striped" | "linear" => {
                if n == 0 || !seg.extent_count.is_multiple_of(n) {
                    return Err(VolumeError::Metadata(format!(
                        "{}: {} extents do not divide into {n} stripes",
                        lv.name, seg.extent_count
                    )));
                }
                let part_len = len / n;
                let parts = seg
                    .areas
                    .iter()
                    .map(|a| self.area(lv, a, part_len, stack, warnings))
                    .collect::<Result<Vec<_>, _>>()?;
                let chunk = if n == 1 { len.max(1) } else { seg.stripe_size };
                if chunk == 0 {
                    return Err(VolumeError::Metadata(format!(
                        "{}: striped segment without stripe_size",
                        lv.name
                    )));
                }
                Ok(Map::Stripes { parts, chunk })
            }
            "mirror" | "raid1" => {
                // Any complete copy will do; prefer one the raid metadata says is in sync.
                let (mut in_sync, mut fallback, mut last_err) = (None, None, None);
                let mut lost = Vec::new();
                for (i, a) in seg.areas.iter().enumerate() {
                    match self.area(lv, a, len, stack, warnings) {
                        Ok(src) => {
                            let meta = seg.meta_areas.get(i).cloned().flatten();
                            if in_sync.is_none()
                                && self.image_in_sync(meta.as_deref(), i, stack) != Some(false)
                            {
                                in_sync = Some(src);
                            } else {
                                fallback.get_or_insert(src);
                            }
                        }
                        Err(e) => {
                            if let VolumeError::MissingPv { .. } = e {
                                lost.push(i.to_string());
                            }
                            last_err = Some(e)
                        }
                    }
                }
                if in_sync.is_none() && fallback.is_some() {
                    warnings.push(format!(
                        "{}: no {ty} image is marked in sync; an out-of-sync image is read",
                        lv.name
                    ));
                }
                let src = in_sync.or(fallback).ok_or_else(|| {
                    last_err.unwrap_or_else(|| unsupported(format!("{ty} without images")))
                })?;
                if !lost.is_empty() {
                    warnings.push(format!(
                        "{}: {ty} is degraded (image(s) {} missing); another copy is read",
                        lv.name,
                        lost.join(", ")
                    ));
                }
                Ok(Map::Stripes {
                    parts: vec![src],
                    chunk: len.max(1),
                })
            }
            "raid0" | "raid0_meta" | "raid10" | "raid4" | "raid5" | "raid5_ls" | "raid5_la"
            | "raid5_rs" | "raid5_ra" | "raid5_n" | "raid6" | "raid6_zr" | "raid6_nr"
            | "raid6_nc" | "raid6_n_6" => {
                // dm-raid's names for md's levels and layout algorithms.
                let kind = match ty {
                    "raid0" | "raid0_meta" => Kind::Stripe,
                    "raid10" => Kind::Near(seg.data_copies),
                    _ => {
                        let q = ty.starts_with("raid6");
                        let algo = match ty {
                            "raid4" => algo::PARITY_0,
                            "raid5_n" | "raid6_n_6" => algo::PARITY_N,
                            "raid5" | "raid5_ls" => algo::LEFT_SYMMETRIC,
                            "raid5_la" => algo::LEFT_ASYMMETRIC,
                            "raid5_rs" => algo::RIGHT_SYMMETRIC,
                            "raid5_ra" => algo::RIGHT_ASYMMETRIC,
                            "raid6" | "raid6_zr" => algo::ROTATING_ZERO_RESTART,
                            "raid6_nr" => algo::ROTATING_N_RESTART,
                            _ => algo::ROTATING_N_CONTINUE,
                        };
                        Kind::Parity { algo, q }
                    }
                };
                if seg.start_extent != 0 {
                    return Err(unsupported(format!(
                        "{ty} segment not at the start of the LV"
                    )));
                }
                let data = match kind {
                    Kind::Near(copies) if copies >= 1 && copies <= n => n,
                    Kind::Parity { q, .. } if n > 1 + u64::from(q) => n - 1 - u64::from(q),
                    Kind::Stripe if n >= 1 => n,
                    _ => return Err(unsupported(format!("{ty} with {n} images"))),
                };
                if seg.stripe_size == 0 {
                    return Err(VolumeError::Metadata(format!(
                        "{}: {ty} segment without stripe_size",
                        lv.name
                    )));
                }
                // Each image holds its share of the data (times the copies, for raid10).
                let copies = if let Kind::Near(c) = kind { c } else { 1 };
                let image_len = len
                    .checked_mul(copies)
                    .map(|l| l.div_ceil(data))
                    .ok_or_else(|| VolumeError::Metadata(format!("{}: size overflows", lv.name)))?;
                // An image on a missing PV is left out; the array says whether the rest
                // still hold (or rebuild) every chunk.
                let mut images = Vec::new();
                let mut lost = Vec::new();
                for (i, a) in seg.areas.iter().enumerate() {
                    match self.area(lv, a, image_len, stack, warnings) {
                        Ok(src) => images.push(Some(src)),
                        Err(e @ VolumeError::MissingPv { .. }) => {
                            lost.push(format!("{i} ({e})"));
                            images.push(None);
                        }
                        Err(e) => return Err(e),
                    }
                }
                let raid =
                    RaidSource::new(images, seg.stripe_size, len, kind).ok_or_else(|| {
                        unsupported(format!(
                            "{ty} array cannot be read without image(s) {}",
                            lost.join(", ")
                        ))
                    })?;
                if !lost.is_empty() {
                    warnings.push(format!(
                        "{}: {ty} array is degraded (image(s) {} missing); missing chunks are rebuilt from parity or read from another copy",
                        lv.name,
                        lost.join(", ")
                    ));
                }
                Ok(Map::Stripes {
                    parts: vec![Arc::new(raid)],
                    chunk: len.max(1),
                })
            }
            "zero" => Ok(Map::Zero),
            "thin" => Err(unsupported(
                "a thin segment must be the LV's only one".into(),
            )),
            "thin-pool" => Err(unsupported(
                "a thin pool holds thin volumes; it is not read itself".into(),
            )),
            other => Err(unsupported(format!("segment type {other} is not read"))),
        }
    }

    /// A thin LV: its blocks looked up in its pool's metadata btrees.
    fn open_thin(
        &self,
        lv: &LvMeta,
        seg: &Segment,
        stack: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Arc<dyn ReadAt>, VolumeError> {
        let bad = |m: &str| VolumeError::Metadata(format!("{}: {m}", lv.name));
        let pool_name = seg
            .thin_pool
            .as_deref()
            .ok_or_else(|| bad("thin without thin_pool"))?;
        let device_id = seg.device_id.ok_or_else(|| bad("thin without device_id"))?;
        if stack.iter().any(|s| s == pool_name) {
            return Err(VolumeError::Recursive(pool_name.to_string()));
        }
        let pool = *self
            .lvs
            .get(pool_name)
            .ok_or_else(|| bad("thin pool not found"))?;
        let [pseg] = pool.segments.as_slice() else {
            return Err(bad("thin pool is not one thin-pool segment"));
        };
        if pseg.seg_type != "thin-pool" {
            return Err(bad("thin_pool names an LV that is not a thin pool"));
        }
        let meta_name = pseg
            .pool_metadata
            .as_deref()
            .ok_or_else(|| bad("pool without metadata LV"))?;
        let data_name = pseg
            .pool_data
            .as_deref()
            .ok_or_else(|| bad("pool without data LV"))?;
        stack.push(pool_name.to_string());
        let opened = self
            .open_lv(meta_name, stack, warnings)
            .and_then(|meta| Ok((meta, self.open_lv(data_name, stack, warnings)?)));
        stack.pop();
        let (meta, data) = opened?;
        let thin = ThinSource::open(meta, data, device_id, lv.extents() * self.vg.extent_size)?;
        Ok(Arc::new(thin))
    }

    /// The bytes behind one area of a segment: `len` bytes of a PV from an extent, or
    /// of a sub-LV from an extent.
    fn area(
        &self,
        lv: &LvMeta,
        area: &AreaRef,
        len: u64,
        stack: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Arc<dyn ReadAt>, VolumeError> {
        let es = self.vg.extent_size;
        match area {
            AreaRef::Pv { pv, extent } => {
                let meta = self.vg.pvs.iter().find(|p| &p.key == pv).ok_or_else(|| {
                    VolumeError::Metadata(format!("{}: unknown physical volume {pv}", lv.name))
                })?;
                let src = self
                    .pvs
                    .get(pv.as_str())
                    .ok_or_else(|| VolumeError::MissingPv {
                        lv: lv.name.clone(),
                        pv: meta.id.clone(),
                    })?;
                let extents = len.div_ceil(es);
                let end = extent.checked_add(extents).unwrap_or(u64::MAX);
                let past = |count: u64| VolumeError::PastPv {
                    lv: lv.name.clone(),
                    pv: meta.id.clone(),
                    start: *extent,
                    end,
                    count,
                };
                if end > meta.pe_count {
                    return Err(past(meta.pe_count));
                }
                let offset = extent
                    .checked_mul(es)
                    .and_then(|o| o.checked_add(meta.pe_start))
                    .ok_or_else(|| past(meta.pe_count))?;
                Slice::new(src.clone(), offset, len)
                    .map_err(|_| past(src.size().saturating_sub(meta.pe_start) / es))
                    .map(|s| Arc::new(s) as Arc<dyn ReadAt>)
            }
            AreaRef::Lv { lv: sub, extent } => {
                let src = self.open_lv(sub, stack, warnings)?;
                let offset = extent.checked_mul(es).ok_or_else(|| {
                    VolumeError::Metadata(format!("{}: area offset overflows", lv.name))
                })?;
                Slice::new(src, offset, len)
                    .map(|s| Arc::new(s) as Arc<dyn ReadAt>)
                    .map_err(|_| {
                        VolumeError::Metadata(format!(
                            "{}: sub-volume {sub} is smaller than its segment needs",
                            lv.name
                        ))
                    })
            }
        }
    }

    /// Whether the raid image at `position` is in sync according to its dm-raid
    /// superblock (`None`: no readable superblock, so no opinion).
    fn image_in_sync(
        &self,
        meta: Option<&str>,
        position: usize,
        stack: &mut Vec<String>,
    ) -> Option<bool> {
        let src = self.open_lv(meta?, stack, &mut Vec::new()).ok()?;
        let sb = read_array::<64>(src.as_ref(), 0).ok()??;
        if le32(&sb, 0) != DM_RAID_MAGIC {
            return None;
        }
        let failed = le64(&sb, 24);
        let failed_bit = position < 64 && failed & (1 << position) != 0;
        // disk_recovery_offset is MaxSector once the image is fully recovered.
        Some(!failed_bit && le64(&sb, 32) == u64::MAX)
    }
}

/// One segment's bytes, by kind.
enum Map {
    /// Chunks of `chunk` bytes round-robin over `parts` (one part: a plain range).
    Stripes {
        parts: Vec<Arc<dyn ReadAt>>,
        chunk: u64,
    },
    Zero,
}

struct Mapped {
    start: u64,
    len: u64,
    map: Map,
}

/// A logical volume as a byte source.
struct LvSource {
    size: u64,
    /// Sorted, contiguous from 0 (checked when the model was built).
    segments: Vec<Mapped>,
}

impl ReadAt for LvSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let i = self.segments.partition_point(|s| s.start + s.len <= pos);
            let seg = self.segments.get(i).ok_or(ReadError::OutOfRange {
                offset: pos,
                len: (buf.len() - done) as u64,
                size: self.size,
            })?;
            let o = pos - seg.start;
            let left = (seg.len - o).min((buf.len() - done) as u64);
            let n = match &seg.map {
                Map::Zero => {
                    buf[done..done + left as usize].fill(0);
                    left
                }
                Map::Stripes { parts, chunk } => {
                    let c = o / chunk;
                    let within = o % chunk;
                    let count = parts.len() as u64;
                    let run = (chunk - within).min(left);
                    let part = &parts[(c % count) as usize];
                    let at = (c / count) * chunk + within;
                    part.read_exact_at(at, &mut buf[done..done + run as usize])?;
                    run
                }
            };
            done += n as usize;
        }
        Ok(())
    }
}
