//! Volume layer: turns block devices (partitions, whole disks) into more block devices
//! (LVM2 logical volumes today; MD arrays and unlocked LUKS volumes stack on the same
//! interface later), each a [`ReadAt`] the filesystem probe runs on like on a partition.
//!
//! The probe only recognises a container's signature; this layer owns assembling
//! containers, which may need several devices (a VG over PVs on several disks). The
//! pipeline calls [`assemble`] with every device the probe marked as a container and
//! probes what comes back, round after round, so LVM on MD or on LUKS works by
//! construction once those containers exist.

pub mod error;
pub mod luks;
pub mod lvm2;
pub mod md;
pub mod raid;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::inspect::report::{LogicalVolumeInfo, VolumeGroupInfo};
use crate::inspect::source::ReadAt;
pub use error::VolumeError;
use lvm2::vg::VgMeta;

/// A named block device: what the layer takes and what it gives.
#[derive(Clone)]
pub struct BlockDevice {
    /// The guest's name for it (`/dev/sda2`, `/dev/vg/root`).
    pub name: String,
    pub src: Arc<dyn ReadAt>,
}

/// What one round of assembly produced.
#[derive(Default)]
pub struct Assembled {
    /// The new devices (readable LVs), in report order.
    pub devices: Vec<BlockDevice>,
    pub volume_groups: Vec<VolumeGroupInfo>,
    pub md_arrays: Vec<crate::inspect::report::MdArrayInfo>,
    pub warnings: Vec<String>,
}

/// One PV found on a device, with its parsed metadata candidates.
struct FoundPv {
    device: String,
    uuid: String,
    src: Arc<dyn ReadAt>,
    /// (metadata, verified by checksum)
    metas: Vec<(VgMeta, bool)>,
}

/// Assembles the LVM2 volume groups whose PVs are among `members` (devices the probe
/// identified as `LVM2_member`). Never fails as a whole: what cannot be read becomes a
/// warning (and an LV with `readable: false`).
pub fn assemble(members: &[BlockDevice]) -> Assembled {
    let mut out = Assembled::default();
    let (md_members, members) = md::split(members);
    let md = md::assemble(&md_members);
    out.devices.extend(md.devices);
    out.md_arrays.extend(md.arrays);
    out.warnings.extend(md.warnings);
    let mut found = Vec::new();
    for m in &members {
        match read_pv(m) {
            Ok(Some(pv)) => found.push(pv),
            Ok(None) => out.warnings.push(format!(
                "{}: LVM2 physical volume in no volume group",
                m.name
            )),
            Err(e) => out
                .warnings
                .push(format!("{}: cannot read LVM2 metadata: {e}", m.name)),
        }
    }
    // Group by VG UUID; a PV's metadata names its VG.
    let mut groups: BTreeMap<String, Vec<&FoundPv>> = BTreeMap::new();
    for pv in &found {
        if let Some((vg, _)) = pv.metas.first() {
            groups.entry(vg.id.clone()).or_default().push(pv);
        }
    }
    for pvs in groups.values() {
        assemble_vg(pvs, &mut out);
    }
    out
}

fn read_pv(m: &BlockDevice) -> Result<Option<FoundPv>, VolumeError> {
    let Some(label) = lvm2::detect(m.src.as_ref())? else {
        return Ok(None);
    };
    let mut metas = Vec::new();
    let mut last_err = None;
    for copy in lvm2::read_metadata(m.src.as_ref(), &label)? {
        match lvm2::text::parse(&copy.text).and_then(|root| lvm2::vg::from_text(&root)) {
            Ok(vg) => metas.push((vg, copy.verified)),
            Err(e) => last_err = Some(e),
        }
    }
    if metas.is_empty() {
        return match last_err {
            Some(e) => Err(e),
            None => Ok(None),
        };
    }
    // Newest first: verified copies before unverified ones, then by seqno.
    metas.sort_by_key(|(vg, verified)| std::cmp::Reverse((*verified, vg.seqno)));
    Ok(Some(FoundPv {
        device: m.name.clone(),
        uuid: label.uuid,
        src: m.src.clone(),
        metas,
    }))
}

fn assemble_vg(pvs: &[&FoundPv], out: &mut Assembled) {
    // The newest metadata any PV holds, verified copies first.
    let Some((vg, verified)) = pvs
        .iter()
        .flat_map(|p| p.metas.iter())
        .max_by_key(|(vg, verified)| (*verified, vg.seqno))
    else {
        return;
    };
    if !verified {
        out.warnings.push(format!(
            "volume group {}: no metadata copy passed its checksum; an older copy (seqno {}) \
             from the metadata ring buffer is used",
            vg.name, vg.seqno
        ));
    }
    let mut info = VolumeGroupInfo {
        name: vg.name.clone(),
        uuid: vg.id.clone(),
        ..VolumeGroupInfo::default()
    };
    let mut present: HashMap<&str, Arc<dyn ReadAt>> = HashMap::new();
    for pv in &vg.pvs {
        match pvs.iter().find(|p| p.uuid == pv.id) {
            Some(p) => {
                info.physical_volumes.push(p.device.clone());
                present.insert(pv.key.as_str(), p.src.clone());
            }
            None => info.missing_physical_volumes.push(pv.id.clone()),
        }
    }
    if !info.missing_physical_volumes.is_empty() {
        out.warnings.push(format!(
            "volume group {}: physical volume(s) {} missing; logical volumes that need them are not read",
            vg.name,
            info.missing_physical_volumes.join(", ")
        ));
    }
    out.warnings.extend(overlaps(vg));
    let reader = lvm2::map::VgReader::new(vg, present);
    let snapshots = snapshot_origins(vg);
    let mut reported = std::collections::HashSet::new();
    for lv in vg.lvs.iter().filter(|l| l.visible) {
        // A snapshot is shown under its exception store's name (the hidden `snapN` LV
        // of type `snapshot` is what the metadata marks visible).
        let lv = match lv.segments.as_slice() {
            [seg] if seg.seg_type == "snapshot" => {
                match seg
                    .cow_store
                    .as_deref()
                    .and_then(|c| vg.lvs.iter().find(|l| l.name == c))
                {
                    Some(cow) => cow,
                    None => continue,
                }
            }
            _ => lv,
        };
        if !reported.insert(lv.name.as_str()) {
            continue;
        }
        let device = format!("/dev/{}/{}", vg.name, lv.name);
        let mut lv_info = LogicalVolumeInfo {
            name: lv.name.clone(),
            device: device.clone(),
            size: lv.extents().saturating_mul(vg.extent_size),
            segment_type: segment_type(lv),
            readable: false,
        };
        if let Some(origin) = snapshots.get(lv.name.as_str()) {
            // The visible LV is the exception store: its contents are the origin's with
            // the exceptions applied, which is not done here.
            lv_info.segment_type = "snapshot".into();
            out.warnings.push(format!(
                "{device}: snapshot of {origin}: its contents are not read (the origin is)"
            ));
        } else {
            match reader.open(&lv.name) {
                Ok(opened) => {
                    lv_info.readable = true;
                    out.warnings.extend(
                        opened
                            .warnings
                            .into_iter()
                            .map(|w| format!("volume group {}: {w}", vg.name)),
                    );
                    out.devices.push(BlockDevice {
                        name: device,
                        src: opened.src,
                    });
                }
                Err(e) => out.warnings.push(format!("{device}: not read: {e}")),
            }
        }
        info.logical_volumes.push(lv_info);
    }
    out.volume_groups.push(info);
}

/// The type `lvs -o segtype` shows: the first segment's, with one-stripe `striped`
/// shown as `linear`, and raid5's default layout by its short name.
fn segment_type(lv: &lvm2::vg::LvMeta) -> String {
    match lv.segments.first() {
        None => "linear".into(),
        Some(s) if s.seg_type == "striped" && s.areas.len() <= 1 => "linear".into(),
        Some(s) if s.seg_type == "raid5_ls" => "raid5".into(),
        Some(s) => s.seg_type.clone(),
    }
}

/// Snapshot exception-store LV name -> origin LV name, from the hidden `snapshot`
/// segments.
fn snapshot_origins(vg: &VgMeta) -> HashMap<&str, &str> {
    vg.lvs
        .iter()
        .flat_map(|l| l.segments.iter())
        .filter(|s| s.seg_type == "snapshot")
        .filter_map(|s| Some((s.cow_store.as_deref()?, s.origin.as_deref()?)))
        .collect()
}

/// Warnings for PV extents claimed by more than one LV segment (hostile or corrupt
/// metadata: both LVs would see each other's writes).
fn overlaps(vg: &VgMeta) -> Vec<String> {
    let mut used: Vec<(&str, u64, u64, &str)> = Vec::new();
    for lv in &vg.lvs {
        for seg in &lv.segments {
            let n = seg.areas.len().max(1) as u64;
            let per_area = if seg.seg_type == "striped" {
                seg.extent_count / n
            } else {
                seg.extent_count
            };
            for a in &seg.areas {
                if let lvm2::vg::AreaRef::Pv { pv, extent } = a {
                    used.push((pv, *extent, extent.saturating_add(per_area), &lv.name));
                }
            }
        }
    }
    used.sort();
    let mut out = Vec::new();
    for w in used.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.0 == b.0 && b.1 < a.2 && out.len() < 16 {
            out.push(format!(
                "volume group {}: {} and {} both map extents {}..{} of {}",
                vg.name,
                a.3,
                b.3,
                b.1,
                a.2.min(b.2),
                a.0
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;
    use crate::inspect::volume::lvm2::lvm_crc;
    use crate::inspect::volume::lvm2::mda::MDA_MAGIC;

    const PV_UUID: &[u8; 32] = b"3lPhiIHt2NZM0INaHkyiiLP3JZvHH7lA";
    const PV_ID: &str = "3lPhiI-Ht2N-ZM0I-NaHk-yiiL-P3JZ-vHH7lA";

    /// A 4 MiB PV (label in sector 1, one metadata area at 4 KiB holding `text`, data
    /// from 1 MiB) whose data bytes are their own offset mod 251.
    fn pv(text: &str) -> Vec<u8> {
        let mut d: Vec<u8> = (0..4u64 << 20).map(|i| (i % 251) as u8).collect();
        d[..1 << 20].fill(0);
        let s = 512;
        d[s..s + 8].copy_from_slice(b"LABELONE");
        d[s + 8..s + 16].copy_from_slice(&1u64.to_le_bytes());
        d[s + 20..s + 24].copy_from_slice(&32u32.to_le_bytes());
        d[s + 24..s + 32].copy_from_slice(b"LVM2 001");
        d[s + 32..s + 64].copy_from_slice(PV_UUID);
        d[s + 64..s + 72].copy_from_slice(&(4u64 << 20).to_le_bytes());
        d[s + 72..s + 80].copy_from_slice(&(1u64 << 20).to_le_bytes());
        d[s + 104..s + 112].copy_from_slice(&4096u64.to_le_bytes());
        d[s + 112..s + 120].copy_from_slice(&(64u64 << 10).to_le_bytes());
        let crc = lvm_crc(&d[s + 20..s + 512]);
        d[s + 16..s + 20].copy_from_slice(&crc.to_le_bytes());
        let m = 4096;
        d[m + 4..m + 20].copy_from_slice(MDA_MAGIC);
        d[m + 20..m + 24].copy_from_slice(&1u32.to_le_bytes());
        d[m + 24..m + 32].copy_from_slice(&4096u64.to_le_bytes());
        d[m + 32..m + 40].copy_from_slice(&(64u64 << 10).to_le_bytes());
        d[m + 40..m + 48].copy_from_slice(&512u64.to_le_bytes());
        d[m + 48..m + 56].copy_from_slice(&(text.len() as u64).to_le_bytes());
        d[m + 56..m + 60].copy_from_slice(&lvm_crc(text.as_bytes()).to_le_bytes());
        let crc = lvm_crc(&d[m + 4..m + 512]);
        d[m..m + 4].copy_from_slice(&crc.to_le_bytes());
        d[m + 512..m + 512 + text.len()].copy_from_slice(text.as_bytes());
        d
    }

    fn vg_text(lvs: &str, pe_count: u64) -> String {
        format!(
            "vg0 {{\nid = \"VGID\"\nseqno = 1\nextent_size = 2048\nphysical_volumes {{\n\
             pv0 {{ id = \"{PV_ID}\" pe_start = 2048 pe_count = {pe_count} }}\n}}\n\
             logical_volumes {{\n{lvs}\n}}\n}}\n"
        )
    }

    fn linear(name: &str, extent: u64, count: u64) -> String {
        format!(
            "{name} {{ id = \"{name}\" status = [\"VISIBLE\"] segment1 {{ start_extent = 0 \
             extent_count = {count} type = \"striped\" stripe_count = 1 stripes = [\"pv0\", {extent}] }} }}"
        )
    }

    fn assemble_one(text: &str) -> Assembled {
        let src: Arc<dyn ReadAt> = Arc::new(MemSource(pv(text)));
        assemble(&[BlockDevice {
            name: "/dev/sda1".into(),
            src,
        }])
    }

    #[test]
    fn linear_lv_reads_its_extents() {
        let a = assemble_one(&vg_text(&linear("a", 1, 2), 3));
        assert_eq!(a.warnings, Vec::<String>::new());
        let lv = &a.devices[0];
        assert_eq!(lv.name, "/dev/vg0/a");
        assert_eq!(lv.src.size(), 2 << 20);
        let mut buf = [0u8; 8];
        lv.src.read_exact_at((1 << 20) - 4, &mut buf).unwrap();
        let pv_off = (2u64 << 20) + (1 << 20) - 4;
        let want: Vec<u8> = (pv_off..pv_off + 8).map(|i| (i % 251) as u8).collect();
        assert_eq!(buf.to_vec(), want);
    }

    #[test]
    fn overlapping_segments_are_a_warning() {
        let lvs = format!("{}\n{}", linear("a", 0, 2), linear("b", 1, 2));
        let a = assemble_one(&vg_text(&lvs, 3));
        assert!(
            a.warnings
                .iter()
                .any(|w| w.contains("a and b both map extents 1..2 of pv0")),
            "{:?}",
            a.warnings
        );
        assert_eq!(a.devices.len(), 2);
    }

    #[test]
    fn extents_past_the_pv_are_not_read() {
        // Past the metadata's own pe_count, and past the device (pe_count lies).
        for (lvs, pe_count) in [(linear("a", 2, 2), 3), (linear("a", 2, 5), 10)] {
            let a = assemble_one(&vg_text(&lvs, pe_count));
            assert!(a.devices.is_empty());
            let lv = &a.volume_groups[0].logical_volumes[0];
            assert!(!lv.readable);
            assert!(
                a.warnings.iter().any(|w| w.contains("past the end")),
                "{:?}",
                a.warnings
            );
        }
    }

    #[test]
    fn lvs_stacked_on_themselves_are_refused() {
        let lvs = "x { id = \"x\" status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 \
                   type = \"mirror\" mirror_count = 1 mirrors = [\"y\", 0] } }\n\
                   y { id = \"y\" status = [] segment1 { start_extent = 0 extent_count = 1 \
                   type = \"raid0\" stripe_size = 128 raids = [\"x\"] } }\n\
                   z { id = \"z\" status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 \
                   type = \"cache\" origin = \"z\" } }";
        let a = assemble_one(&vg_text(lvs, 3));
        assert!(a.devices.is_empty());
        let stacked = a
            .warnings
            .iter()
            .filter(|w| w.contains("stacked on itself"))
            .count();
        assert_eq!(stacked, 2, "{:?}", a.warnings);
    }

    #[test]
    fn unsupported_types_are_unreadable_lvs_not_failures() {
        let lvs = format!(
            "{}\nt {{ id = \"t\" status = [\"VISIBLE\"] segment1 {{ start_extent = 0 extent_count = 1 \
             type = \"thin\" thin_pool = \"p\" }} }}",
            linear("a", 0, 1)
        );
        let a = assemble_one(&vg_text(&lvs, 3));
        let lvs = &a.volume_groups[0].logical_volumes;
        assert_eq!(
            lvs.iter()
                .map(|l| (l.name.as_str(), l.segment_type.as_str(), l.readable))
                .collect::<Vec<_>>(),
            vec![("a", "linear", true), ("t", "thin", false)]
        );
    }
}
