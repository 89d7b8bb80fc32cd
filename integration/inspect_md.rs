//! The MD oracle: arrays created by mdadm and the md driver of guestfish's kernel
//! (`md-layouts.gf`: every superblock version, raid0/1/4/5/6/10 and the raid5/6 layouts
//! mdadm offers, over partitions of four disks, filled with random bytes), read through
//! our volume layer and compared with what the kernel read and mdadm said:
//!
//! - every array's bytes equal the sha256 the appliance computed of `/dev/mdN`;
//!   level, UUID, members and device name equal `mdadm --detail --export`'s; LVM on a
//!   raid1 reads the LV's bytes the kernel read;
//! - a Debian guest on LVM on an MD raid1 across two disks (`debian-md.gf`) gives the
//!   same OS report as on plain partitions, also with one disk of the mirror left out;
//! - with a disk left out, degraded arrays still give the same bytes (raid1/4/5/6/10)
//!   or are reported `unreadable` with a warning (raid0);
//! - mutated superblocks (checksums fixed up so the parser goes past them) give
//!   arrays, warnings or errors, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use guestkit_worker::inspect::image::RawImage;
use guestkit_worker::inspect::partition;
use guestkit_worker::inspect::pipeline;
use guestkit_worker::inspect::source::{MemSource, ReadAt, Slice};
use guestkit_worker::inspect::volume::{self, md::superblock, BlockDevice};
use sha2::{Digest, Sha256};

use crate::common::guests::{debian_tarball, inspect_disks as inspect, renamed};
use crate::common::{guestfish_disks, run, tempdir, Rng};
use crate::inspect_lvm::{assert_agrees_with_virt_inspector, virt_inspector_of_volume_guest};

const LAYOUTS: &str = include_str!("fixtures/md-layouts.gf");

fn layouts() -> Vec<PathBuf> {
    guestfish_disks(LAYOUTS, &[80, 80, 80, 96], &[])
}

/// The md members among the partitions of `disks` (`None`: a disk left out of the
/// job; the others keep their names).
fn members(disks: &[Option<&PathBuf>]) -> Vec<BlockDevice> {
    let mut out = Vec::new();
    for (i, path) in disks.iter().enumerate() {
        let Some(path) = path else { continue };
        let disk: Arc<dyn ReadAt> = Arc::new(RawImage::open(path).unwrap());
        let name = pipeline::disk_name(i);
        let table = partition::read_table(disk.as_ref()).unwrap().unwrap();
        for p in table.partitions {
            let src: Arc<dyn ReadAt> = Arc::new(Slice::new(disk.clone(), p.start, p.size).unwrap());
            if superblock::detect(src.as_ref()).unwrap().is_some() {
                out.push(BlockDevice {
                    name: format!("{name}{}", p.number),
                    src,
                });
            }
        }
    }
    out
}

fn sha256_of(src: &dyn ReadAt) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < src.size() {
        let n = buf.len().min((src.size() - off) as usize);
        src.read_exact_at(off, &mut buf[..n]).unwrap();
        h.update(&buf[..n]);
        off += n as u64;
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The appliance's oracle: array name (`md127`) -> (`--detail --export` keys, sha256).
struct Oracle {
    arrays: BTreeMap<String, (BTreeMap<String, String>, String)>,
    lv_sha: String,
}

fn oracle(dir: &Path) -> Oracle {
    let tmp = tempdir();
    run(Command::new("tar")
        .arg("xf")
        .arg(dir.join("oracle.tar"))
        .arg("-C")
        .arg(tmp.path()));
    let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).unwrap();
    let sha = |f: &str| read(f).split_whitespace().next().unwrap().to_string();
    let mut arrays = BTreeMap::new();
    for name in std::fs::read_to_string(dir.join("arrays")).unwrap().lines() {
        let detail = read(&format!("{name}.detail"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        arrays.insert(name.to_string(), (detail, sha(&format!("{name}.sha256"))));
    }
    Oracle {
        arrays,
        lv_sha: sha("lv.sha256"),
    }
}

/// mdadm's member list: the `MD_DEVICE_*_DEV` values.
fn detail_members(detail: &BTreeMap<String, String>) -> BTreeSet<String> {
    detail
        .iter()
        .filter(|(k, _)| k.starts_with("MD_DEVICE_") && k.ends_with("_DEV"))
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn layouts_bytes_members_and_names_match_mdadm() {
    let disks = layouts();
    let o = oracle(disks[0].parent().unwrap());
    assert_eq!(o.arrays.len(), 14);
    let all: Vec<Option<&PathBuf>> = disks.iter().map(Some).collect();
    let a = volume::assemble(&members(&all));
    assert_eq!(a.warnings, Vec::<String>::new());
    assert_eq!(a.md_arrays.len(), 14);
    let mut bytes = 0u64;
    for (name, (detail, sha)) in &o.arrays {
        let device = format!("/dev/{name}");
        // Arrays without a number of their own are numbered by the kernel in the order
        // they were started, which a guest's boot does not reproduce: matched by UUID;
        // the numbered ones (0.90 preferred minor, 1.x name `3`) by name too.
        let info = a
            .md_arrays
            .iter()
            .find(|m| m.uuid == detail["MD_UUID"])
            .unwrap_or_else(|| panic!("{device} not assembled: {:?}", a.md_arrays));
        if name == "md0" || name == "md3" {
            assert_eq!(info.device, device);
        }
        let device = info.device.clone();
        assert_eq!(info.level, detail["MD_LEVEL"], "{device}");
        assert_eq!(info.uuid, detail["MD_UUID"], "{device}");
        assert_eq!(info.state, "clean", "{device}");
        assert_eq!(
            info.members.iter().cloned().collect::<BTreeSet<_>>(),
            detail_members(detail),
            "{device}"
        );
        let src = &a.devices.iter().find(|d| d.name == device).unwrap().src;
        // The PV array was written through device-mapper after the appliance's page
        // cache of /dev/mdN had been filled by dd, so its sha256 there is stale: its
        // bytes are checked through the LV's instead.
        if info.name.as_deref() != Some("guest:pv") {
            assert_eq!(&sha256_of(src.as_ref()), sha, "{device} ({})", info.level);
        }
        bytes += src.size();
    }
    // LVM on the raid1: the next round of the volume layer.
    let round2 = volume::assemble(&a.devices);
    let lv = round2
        .devices
        .iter()
        .find(|d| d.name == "/dev/mdvg/lv")
        .expect("LV on MD");
    assert_eq!(sha256_of(lv.src.as_ref()), o.lv_sha);
    eprintln!("14 arrays, {bytes} bytes assembled, all but the PV's compared");

    // The whole pipeline reports the arrays, the members' type and the LV.
    let (report, _, _) = inspect(&disks);
    assert_eq!(report.md_arrays, a.md_arrays);
    let pv = &a
        .md_arrays
        .iter()
        .find(|m| m.name.as_deref() == Some("guest:pv"))
        .unwrap()
        .device;
    assert_eq!(report.volume_groups[0].physical_volumes, vec![pv.clone()]);
    let raid_members = report
        .filesystems
        .iter()
        .filter(|f| f.fs_type == "linux_raid_member")
        .count();
    assert_eq!(
        raid_members,
        a.md_arrays.iter().map(|m| m.members.len()).sum::<usize>()
    );
}

#[test]
fn degraded_arrays_read_through_parity_or_say_why_not() {
    let disks = layouts();
    let o = oracle(disks[0].parent().unwrap());
    for left_out in [1usize, 3] {
        let job: Vec<Option<&PathBuf>> = disks
            .iter()
            .enumerate()
            .map(|(i, p)| (i != left_out).then_some(p))
            .collect();
        let a = volume::assemble(&members(&job));
        let gone = pipeline::disk_name(left_out);
        let mut degraded = 0;
        for (detail, sha) in o.arrays.values() {
            let info = a
                .md_arrays
                .iter()
                .find(|m| m.uuid == detail["MD_UUID"])
                .unwrap();
            let device = info.device.clone();
            let lost = detail_members(detail)
                .iter()
                .filter(|m| m.starts_with(&gone))
                .count();
            let level = detail["MD_LEVEL"].as_str();
            // Stale in the oracle (see above); its degraded state is still checked.
            let sha = if info.name.as_deref() == Some("guest:pv") {
                &sha256_of(
                    a.devices
                        .iter()
                        .find(|d| d.name == device)
                        .unwrap()
                        .src
                        .as_ref(),
                )
            } else {
                sha
            };
            let src = a.devices.iter().find(|d| d.name == device);
            match (lost, level) {
                (0, _) => {
                    assert_eq!(info.state, "clean", "{device}");
                    assert_eq!(&sha256_of(src.unwrap().src.as_ref()), sha, "{device}");
                }
                (_, "raid0") => {
                    assert_eq!(info.state, "unreadable", "{device}");
                    assert!(src.is_none());
                    assert!(
                        a.warnings
                            .iter()
                            .any(|w| w.starts_with(&format!("{device}: array not read"))),
                        "{:?}",
                        a.warnings
                    );
                }
                (1, _) => {
                    degraded += 1;
                    assert_eq!(info.state, "degraded", "{device}");
                    let src = src
                        .unwrap_or_else(|| panic!("{device} ({level}) not read: {:?}", a.warnings));
                    assert_eq!(
                        &sha256_of(src.src.as_ref()),
                        sha,
                        "{device} ({level}) degraded"
                    );
                }
                _ => unreachable!(),
            }
        }
        assert!(degraded >= 5, "{degraded}");
        eprintln!("without {gone}: {degraded} degraded arrays read");
    }
}

/// mdadm's 1.x superblock checksum, so mutations reach past it.
fn fix_v1(sb: &mut [u8]) {
    let max_dev = u32::from_le_bytes(sb[220..224].try_into().unwrap()) as usize;
    let len = (256 + 2 * max_dev).min(sb.len());
    sb[216..220].fill(0);
    let mut sum: u64 = 0;
    for w in sb[..len].chunks(4) {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        sum += u64::from(u32::from_le_bytes(b));
    }
    let c = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    sb[216..220].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn mutated_superblocks_give_warnings_never_a_panic() {
    let disks = layouts();
    let all: Vec<Option<&PathBuf>> = disks.iter().map(Some).collect();
    // The three members of the 1.2 raid5 (partition 3), as memory copies.
    let originals: Vec<(String, Vec<u8>)> = members(&all)
        .into_iter()
        .filter(|m| m.name.ends_with('3') && !m.name.ends_with("13"))
        .map(|m| {
            let mut v = vec![0u8; m.src.size() as usize];
            m.src.read_exact_at(0, &mut v).unwrap();
            (m.name, v)
        })
        .collect();
    assert_eq!(originals.len(), 3);
    let mut rng = Rng(0x6d64_5241_4944);
    let mut read = 0;
    for _ in 0..400 {
        let mut devs = Vec::new();
        for (name, data) in &originals {
            let mut d = data.clone();
            for _ in 0..1 + rng.below(6) {
                // Superblock fields (0..256) and the role table.
                let at = 4096 + rng.below(264) as usize;
                d[at] = rng.byte();
            }
            fix_v1(&mut d[4096..5120]);
            devs.push(BlockDevice {
                name: name.clone(),
                src: Arc::new(MemSource(d)),
            });
        }
        let a = volume::assemble(&devs);
        for d in &a.devices {
            let mut buf = vec![0u8; 65536.min(d.src.size() as usize)];
            if d.src.read_exact_at(0, &mut buf).is_ok() {
                read += 1;
            }
            let _ = d
                .src
                .read_exact_at(d.src.size() - buf.len() as u64, &mut buf);
        }
    }
    assert!(read > 0);
}

const DEBIAN_MD: &str = include_str!("fixtures/debian-md.gf");
const DEBIAN_PLAIN: &str = include_str!("fixtures/debian-plain.gf");

#[test]
fn debian_on_lvm_on_md_raid1_is_the_plain_partition_guest() {
    let tar = debian_tarball();
    let md = guestfish_disks(DEBIAN_MD, &[480, 448], &[&tar]);
    let plain = guestfish_disks(DEBIAN_PLAIN, &[448], &[&tar]);
    let (md_report, md_bytes, md_time) = inspect(&md);
    let (plain_report, plain_bytes, plain_time) = inspect(&plain);
    eprintln!(
        "debian on LVM on MD raid1 (debug build): {md_time:?}, {md_bytes} bytes; \
         on partitions: {plain_time:?}, {plain_bytes} bytes"
    );
    assert_eq!(md_report.warnings, Vec::<String>::new());
    assert_eq!(md_report.md_arrays.len(), 1);
    let array = &md_report.md_arrays[0];
    assert_eq!(array.device, "/dev/md0");
    assert_eq!(array.level, "raid1");
    assert_eq!(array.state, "clean");
    assert_eq!(array.members, vec!["/dev/sda2", "/dev/sdb1"]);
    // mdadm on the host reads the member's superblock from the image file.
    let tmp = tempdir();
    let examine = String::from_utf8_lossy(&run(Command::new("sh").arg("-c").arg(format!(
        "dd if={} bs=512 skip=133120 count=16384 status=none > {dir}/m.img && mdadm --examine {dir}/m.img",
        md[0].display(),
        dir = tmp.path().display()
    ))))
    .to_string();
    assert!(
        examine.contains(&format!("Array UUID : {}", array.uuid)),
        "{examine}"
    );
    assert!(examine.contains("Raid Level : raid1"), "{examine}");
    // blkid names the member's type and UUID as the probe does.
    let blkid = String::from_utf8_lossy(&run(Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(tmp.path().join("m.img"))))
    .to_string();
    let member = md_report
        .filesystems
        .iter()
        .find(|f| f.device == "/dev/sda2")
        .unwrap();
    assert!(blkid.contains("TYPE=linux_raid_member"), "{blkid}");
    assert!(
        blkid.contains(&format!("\nUUID={}\n", member.uuid.as_deref().unwrap())),
        "{blkid} vs {member:?}"
    );
    assert_eq!(
        md_report.volume_groups[0].physical_volumes,
        vec!["/dev/md0"]
    );
    let rename: BTreeMap<&str, &str> = [
        ("/dev/sda2", "/dev/guest-vg/root"),
        ("/dev/sda3", "/dev/guest-vg/usr"),
        ("/dev/sda4", "/dev/guest-vg/var"),
        ("/dev/sda5", "/dev/guest-vg/home"),
    ]
    .into();
    assert_eq!(md_report.operating_systems.len(), 1);
    let os = &md_report.operating_systems[0];
    assert_eq!(os, &renamed(&plain_report.operating_systems[0], &rename));
    assert_eq!(os.mountpoints.len(), 5, "{:?}", os.mountpoints);
    assert!(os.applications.len() > 50);
    let theirs = virt_inspector_of_volume_guest(&md, None);
    let n = assert_agrees_with_virt_inspector(&md_report, &theirs);
    eprintln!(
        "virt-inspector agrees: root, {} mountpoints, {n} filesystems",
        theirs.mountpoints.len()
    );

    // One disk of the mirror left out: the same OS, the array degraded.
    let (one, _, _) = inspect(&md[..1]);
    assert_eq!(one.md_arrays[0].state, "degraded");
    assert_eq!(one.operating_systems, md_report.operating_systems);
}
