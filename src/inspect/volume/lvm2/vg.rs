//! A volume group as its metadata text describes it: the PVs (by UUID, with where their
//! extents start), the LVs and each LV's segments (which extents of which PVs or
//! sub-LVs back which extents of the LV).
//!
//! Only the model: reading through it is `map`. Every count taken from the text is
//! bounded here so the mapper never sees an absurd one.

use super::super::error::VolumeError;
use super::text::{Section, Value};

const SECTOR: u64 = 512;
/// Most PVs, LVs, segments per LV and areas per segment accepted.
const MAX_PVS: usize = 1024;
const MAX_LVS: usize = 4096;
const MAX_SEGMENTS: usize = 10_000;
const MAX_AREAS: usize = 256;

/// One volume group's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct VgMeta {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    /// Extent size in bytes.
    pub extent_size: u64,
    pub pvs: Vec<PvMeta>,
    pub lvs: Vec<LvMeta>,
}

/// A PV of the VG.
#[derive(Debug, Clone, PartialEq)]
pub struct PvMeta {
    /// The metadata's own name for it (`pv0`), which segments refer to.
    pub key: String,
    /// PV UUID (dashed), matched against the labels found on the disks.
    pub id: String,
    /// Where the first extent starts, in bytes from the start of the PV.
    pub pe_start: u64,
    pub pe_count: u64,
}

/// A logical volume, visible or internal (`_rimage_`, `_tmeta`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct LvMeta {
    pub name: String,
    pub id: String,
    /// Shown to users (`lvs` without `-a`); internal LVs are not.
    pub visible: bool,
    pub segments: Vec<Segment>,
}

/// One segment of an LV.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    /// The metadata's `type`: `striped`, `mirror`, `raid1`, `raid5_ls`, `thin`, ...
    pub seg_type: String,
    /// Chunk (stripe) size in bytes; 0 when the type has none.
    pub stripe_size: u64,
    /// The data areas in order: stripes, mirror legs, raid data images.
    pub areas: Vec<AreaRef>,
    /// raid: the metadata sub-LVs, one per image (`None` for raid0).
    pub meta_areas: Vec<Option<String>>,
    /// raid10: copies of each chunk (2 unless the metadata says otherwise).
    pub data_copies: u64,
    /// snapshot, cache, writecache: the LV whose data this one presents.
    pub origin: Option<String>,
    /// snapshot: the LV holding the exceptions (the snapshot users see).
    pub cow_store: Option<String>,
    /// thin: the pool LV.
    pub thin_pool: Option<String>,
    /// thin: the device's id in the pool's metadata.
    pub device_id: Option<u64>,
    /// thin-pool: its metadata LV and its data LV.
    pub pool_metadata: Option<String>,
    pub pool_data: Option<String>,
}

/// Where a segment's area lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AreaRef {
    /// A range of a PV, from extent `extent`.
    Pv { pv: String, extent: u64 },
    /// Another LV, from its extent `extent`.
    Lv { lv: String, extent: u64 },
}

impl LvMeta {
    /// Extents of the LV (sum of its segments).
    pub fn extents(&self) -> u64 {
        self.segments
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.extent_count))
    }
}

fn bad(message: impl Into<String>) -> VolumeError {
    VolumeError::Metadata(message.into())
}

fn uint(s: &Section, key: &str, what: &str) -> Result<u64, VolumeError> {
    let v = s
        .int(key)
        .ok_or_else(|| bad(format!("{what}: {key} missing")))?;
    u64::try_from(v).map_err(|_| bad(format!("{what}: {key} is negative")))
}

/// The VG section of a parsed text: the one top-level section with an `id` and a
/// `seqno` (the rest of the top level is `contents`, `version`, `description`, ...).
pub fn from_text(root: &Section) -> Result<VgMeta, VolumeError> {
    let (name, vg) = root
        .sections()
        .find(|(_, s)| s.str("id").is_some() && s.int("seqno").is_some())
        .ok_or_else(|| bad("no volume group section"))?;
    let extent_sectors = uint(vg, "extent_size", name)?;
    if extent_sectors == 0 || extent_sectors > (1 << 32) {
        return Err(bad(format!(
            "{name}: extent_size {extent_sectors} out of range"
        )));
    }
    let mut pvs = Vec::new();
    for (key, pv) in vg
        .section("physical_volumes")
        .map(|s| s.sections().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if pvs.len() >= MAX_PVS {
            return Err(bad(format!("{name}: more than {MAX_PVS} physical volumes")));
        }
        let what = format!("{name}/{key}");
        pvs.push(PvMeta {
            key: key.to_string(),
            id: pv
                .str("id")
                .ok_or_else(|| bad(format!("{what}: id missing")))?
                .to_string(),
            pe_start: uint(pv, "pe_start", &what)?
                .checked_mul(SECTOR)
                .ok_or_else(|| bad(format!("{what}: pe_start overflows")))?,
            pe_count: uint(pv, "pe_count", &what)?,
        });
    }
    let mut lvs = Vec::new();
    for (lv_name, lv) in vg
        .section("logical_volumes")
        .map(|s| s.sections().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if lvs.len() >= MAX_LVS {
            return Err(bad(format!("{name}: more than {MAX_LVS} logical volumes")));
        }
        lvs.push(lv_from(lv_name, lv, extent_sectors * SECTOR)?);
    }
    Ok(VgMeta {
        name: name.to_string(),
        id: vg.str("id").unwrap_or_default().to_string(),
        seqno: uint(vg, "seqno", name)?,
        extent_size: extent_sectors * SECTOR,
        pvs,
        lvs,
    })
}

fn lv_from(name: &str, lv: &Section, extent_size: u64) -> Result<LvMeta, VolumeError> {
    let mut segments = Vec::new();
    for (key, seg) in lv.sections() {
        if !key.starts_with("segment") {
            continue;
        }
        if segments.len() >= MAX_SEGMENTS {
            return Err(bad(format!("{name}: more than {MAX_SEGMENTS} segments")));
        }
        segments.push(segment_from(name, key, seg, extent_size)?);
    }
    segments.sort_by_key(|s: &Segment| s.start_extent);
    // Segments must tile the LV: each starts where the previous ended.
    let mut next = 0u64;
    for s in &segments {
        if s.start_extent != next {
            return Err(bad(format!(
                "{name}: segment at extent {} overlaps or leaves a gap (expected {next})",
                s.start_extent
            )));
        }
        next = s
            .start_extent
            .checked_add(s.extent_count)
            .filter(|&n| n.checked_mul(extent_size).is_some())
            .ok_or_else(|| bad(format!("{name}: extent count overflows")))?;
    }
    Ok(LvMeta {
        name: name.to_string(),
        id: lv.str("id").unwrap_or_default().to_string(),
        visible: lv.strings("status").contains(&"VISIBLE"),
        segments,
    })
}

fn segment_from(
    lv: &str,
    key: &str,
    seg: &Section,
    extent_size: u64,
) -> Result<Segment, VolumeError> {
    let what = format!("{lv}/{key}");
    let seg_type = seg
        .str("type")
        .ok_or_else(|| bad(format!("{what}: type missing")))?
        .to_string();
    let sectors = |k: &str| -> Result<u64, VolumeError> {
        match seg.int(k) {
            None => Ok(0),
            Some(v) => u64::try_from(v)
                .ok()
                .and_then(|v| v.checked_mul(SECTOR))
                .filter(|&b| b <= extent_size.max(1 << 30))
                .ok_or_else(|| bad(format!("{what}: {k} {v} out of range"))),
        }
    };
    let mut s = Segment {
        start_extent: uint(seg, "start_extent", &what)?,
        extent_count: uint(seg, "extent_count", &what)?,
        seg_type: seg_type.clone(),
        stripe_size: sectors("stripe_size")?,
        areas: Vec::new(),
        meta_areas: Vec::new(),
        data_copies: seg.int("data_copies").unwrap_or(2).clamp(1, 64) as u64,
        origin: seg.str("origin").map(str::to_string),
        cow_store: seg.str("cow_store").map(str::to_string),
        thin_pool: seg.str("thin_pool").map(str::to_string),
        device_id: seg.int("device_id").and_then(|i| u64::try_from(i).ok()),
        pool_metadata: seg.str("metadata").map(str::to_string),
        pool_data: seg.str("pool").map(str::to_string),
    };
    let list = |k: &str| seg.array(k).unwrap_or(&[]);
    if seg.get("stripes").is_some() {
        s.areas = pairs(list("stripes"), &what, |pv, extent| AreaRef::Pv {
            pv,
            extent,
        })?;
    } else if seg.get("mirrors").is_some() {
        s.areas = pairs(list("mirrors"), &what, |lv, extent| AreaRef::Lv {
            lv,
            extent,
        })?;
    } else if let Some(raids) = seg.array("raids") {
        let names: Vec<String> = raids
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if names.len() > 2 * MAX_AREAS {
            return Err(bad(format!("{what}: too many raid images")));
        }
        if seg_type == "raid0" {
            s.meta_areas = vec![None; names.len()];
            s.areas = names
                .into_iter()
                .map(|lv| AreaRef::Lv { lv, extent: 0 })
                .collect();
        } else {
            if !names.len().is_multiple_of(2) {
                return Err(bad(format!("{what}: raids list is not meta/image pairs")));
            }
            for pair in names.chunks(2) {
                s.meta_areas.push(Some(pair[0].clone()));
                s.areas.push(AreaRef::Lv {
                    lv: pair[1].clone(),
                    extent: 0,
                });
            }
        }
    }
    if s.areas.len() > MAX_AREAS {
        return Err(bad(format!("{what}: more than {MAX_AREAS} areas")));
    }
    Ok(s)
}

/// `["name", extent, "name", extent, ...]`.
fn pairs(
    list: &[Value],
    what: &str,
    make: impl Fn(String, u64) -> AreaRef,
) -> Result<Vec<AreaRef>, VolumeError> {
    if !list.len().is_multiple_of(2) || list.len() > 2 * MAX_AREAS {
        return Err(bad(format!("{what}: malformed area list")));
    }
    list.chunks(2)
        .map(|p| match (&p[0], &p[1]) {
            (Value::Str(name), Value::Int(e)) if *e >= 0 => Ok(make(name.clone(), *e as u64)),
            _ => Err(bad(format!("{what}: malformed area list"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::volume::lvm2::text::parse;

    const TEXT: &str = r#"vg0 {
id = "abc"
seqno = 7
extent_size = 8192
physical_volumes {
pv0 { id = "p0" device = "/dev/sda2" pe_start = 2048 pe_count = 100 }
}
logical_volumes {
root { id = "r" status = ["READ", "WRITE", "VISIBLE"]
segment_count = 2
segment2 { start_extent = 5 extent_count = 3 type = "striped" stripe_count = 1 stripes = ["pv0", 50] }
segment1 { start_extent = 0 extent_count = 5 type = "striped" stripe_count = 1 stripes = ["pv0", 0] }
}
r1_rimage_0 { id = "i" status = ["READ"] segment1 { start_extent = 0 extent_count = 1 type = "striped" stripes = ["pv0", 9] } }
r1 { id = "x" status = ["VISIBLE"] segment1 { start_extent = 0 extent_count = 1 type = "raid1" raids = ["r1_rmeta_0", "r1_rimage_0"] } }
}
}
contents = "Text Format Volume Group"
"#;

    #[test]
    fn model_of_a_vg() {
        let vg = from_text(&parse(TEXT.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            (vg.name.as_str(), vg.seqno, vg.extent_size),
            ("vg0", 7, 4 << 20)
        );
        assert_eq!(vg.pvs[0].pe_start, 1 << 20);
        let root = &vg.lvs[0];
        assert!(root.visible);
        assert_eq!(root.extents(), 8);
        assert_eq!(
            root.segments[1].areas,
            vec![AreaRef::Pv {
                pv: "pv0".into(),
                extent: 50
            }]
        );
        assert!(!vg.lvs[1].visible);
        assert_eq!(
            vg.lvs[2].segments[0].meta_areas,
            vec![Some("r1_rmeta_0".to_string())]
        );
    }

    #[test]
    fn gaps_and_overlaps_between_segments_are_errors() {
        let t = TEXT.replace("start_extent = 5", "start_extent = 4");
        assert!(from_text(&parse(t.as_bytes()).unwrap()).is_err());
        let t = TEXT.replace("extent_size = 8192", "extent_size = 0");
        assert!(from_text(&parse(t.as_bytes()).unwrap()).is_err());
        let t = TEXT.replace("[\"pv0\", 50]", "[\"pv0\"]");
        assert!(from_text(&parse(t.as_bytes()).unwrap()).is_err());
    }
}
