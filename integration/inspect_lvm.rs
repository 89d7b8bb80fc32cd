//! The LVM oracle: volume groups written by the real LVM2 tools, read through our volume
//! layer and compared with what LVM itself says.
//!
//! - `layouts`: guestfish's kernel builds one VG over four PVs on three disks with an LV
//!   of every segment type we map (`lvm-layouts.gf`), fills each with random bytes and
//!   downloads every LV from the activated device-mapper device: our bytes must equal
//!   those (sha256 by coreutils); the LV list, sizes and types equal `lvs --reportformat
//!   json`. With a disk left out, exactly the LVs that need it are unreadable.
//! - `debian_on_lvm`: the Debian tree on LVM across two disks (`debian-lvm.gf`) gives the
//!   same OS report as the same tree on plain partitions (`debian-plain.gf`), devices
//!   renamed.
//! - `loop_*`: metadata written by pvcreate/vgcreate/lvcreate on loop devices (no
//!   device-mapper needed): LV lists against `lvs`, the ring-buffer fallback against the
//!   list LVM had one change earlier.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use guestkit_worker::inspect::fs::probe::probe;
use guestkit_worker::inspect::image::RawImage;
use guestkit_worker::inspect::partition;
use guestkit_worker::inspect::pipeline;
use guestkit_worker::inspect::report::Report;
use guestkit_worker::inspect::source::{ReadAt, Slice};
use guestkit_worker::inspect::volume::{self, lvm2, Assembled, BlockDevice};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::guests::{debian_tarball, inspect_disks as inspect, renamed};
use crate::common::{guestfish_disks, run, sha256sum, tempdir};

const LAYOUTS: &str = include_str!("fixtures/lvm-layouts.gf");
const DEBIAN_LVM: &str = include_str!("fixtures/debian-lvm.gf");
const DEBIAN_PLAIN: &str = include_str!("fixtures/debian-plain.gf");

fn layouts() -> Vec<PathBuf> {
    guestfish_disks(LAYOUTS, &[96, 48, 48], &[])
}

/// The PVs among the partitions (or whole disks) of `disks`, named as the pipeline
/// names them, found by the label probe.
fn pv_devices(disks: &[PathBuf]) -> Vec<BlockDevice> {
    let mut out = Vec::new();
    for (i, path) in disks.iter().enumerate() {
        let disk: Arc<dyn ReadAt> = Arc::new(RawImage::open(path).unwrap());
        let name = pipeline::disk_name(i);
        let mut devs = Vec::new();
        match partition::read_table(disk.as_ref()).unwrap() {
            Some(t) if !t.partitions.is_empty() => {
                for p in t.partitions {
                    let s = Slice::new(disk.clone(), p.start, p.size).unwrap();
                    devs.push(BlockDevice {
                        name: format!("{name}{}", p.number),
                        src: Arc::new(s),
                    });
                }
            }
            _ => devs.push(BlockDevice {
                name,
                src: disk.clone(),
            }),
        }
        out.extend(
            devs.into_iter()
                .filter(|d| lvm2::detect(d.src.as_ref()).unwrap().is_some()),
        );
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

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `lvs --reportformat json`'s rows.
fn lvs_rows(v: &Value) -> Vec<BTreeMap<String, String>> {
    v["report"][0]["lv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .collect()
}

fn device_of<'a>(a: &'a Assembled, name: &str) -> Option<&'a BlockDevice> {
    a.devices.iter().find(|d| d.name == name)
}

#[test]
fn layouts_bytes_and_lv_list_match_lvm() {
    let disks = layouts();
    let dir = disks[0].parent().unwrap();
    let t = Instant::now();
    let a = volume::assemble(&pv_devices(&disks));
    eprintln!("assembled in {:?}", t.elapsed());
    assert_eq!(a.volume_groups.len(), 1, "{:?}", a.warnings);
    let vg = &a.volume_groups[0];
    assert_eq!(vg.name, "vgdata");
    assert_eq!(
        vg.physical_volumes,
        vec!["/dev/sda1", "/dev/sda2", "/dev/sdb", "/dev/sdc1"]
    );
    assert!(vg.missing_physical_volumes.is_empty());

    // The LV list against lvs: names, sizes, types; snapshots by their origin.
    let rows = lvs_rows(&json(&dir.join("lvs.json")));
    let ours: BTreeMap<&str, _> = vg
        .logical_volumes
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect();
    assert_eq!(
        ours.keys().copied().collect::<BTreeSet<_>>(),
        rows.iter().map(|r| r["lv_name"].as_str()).collect(),
    );
    for r in &rows {
        let lv = ours[r["lv_name"].as_str()];
        assert_eq!(lv.size.to_string(), r["lv_size"], "{}", lv.name);
        assert_eq!(lv.device, format!("/dev/vgdata/{}", lv.name));
        if r["origin"].is_empty() {
            assert_eq!(lv.segment_type, r["segtype"], "{}", lv.name);
            assert!(lv.readable, "{}: {:?}", lv.name, a.warnings);
        } else {
            assert_eq!(lv.segment_type, "snapshot");
            assert!(!lv.readable);
        }
    }

    // Every LV's bytes against the device-mapper device's.
    let mut compared = 0u64;
    for lv in [
        "lin", "gap", "str", "str4", "mir", "r1", "r10", "r5", "r4", "fs", "lv-dash",
    ] {
        let ours = device_of(&a, &format!("/dev/vgdata/{lv}"))
            .unwrap_or_else(|| panic!("{lv} not assembled: {:?}", a.warnings));
        let oracle = dir.join(format!("{lv}.bin"));
        assert_eq!(
            ours.src.size(),
            std::fs::metadata(&oracle).unwrap().len(),
            "{lv}"
        );
        assert_eq!(sha256_of(ours.src.as_ref()), sha256sum(&oracle), "{lv}");
        compared += ours.src.size();
    }
    eprintln!("{compared} LV bytes equal the kernel's");

    // The probe runs on LVs like on partitions: blkid on the downloaded LV agrees.
    let fs = probe(device_of(&a, "/dev/vgdata/fs").unwrap().src.as_ref())
        .unwrap()
        .unwrap();
    let blkid = String::from_utf8(run(Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(dir.join("fs.bin"))))
    .unwrap();
    assert!(blkid.contains(&format!("TYPE={}", fs.fs_type)), "{blkid}");
    assert!(
        blkid.contains(&format!("UUID={}", fs.uuid.unwrap())),
        "{blkid}"
    );
    assert!(blkid.contains("LABEL=lvfs"), "{blkid}");
}

/// The PV devices each visible LV needs, through its sub-LVs, from `lvs -a -o devices`
/// (`/dev/sda1(0),/dev/sdb(3)` or `r1_rimage_0(0),...`).
fn needed_devices(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut by_lv: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        let name = r["lv_name"].trim_matches(['[', ']']).to_string();
        let devs = r["devices"]
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.split('(').next().unwrap().to_string());
        by_lv.entry(name).or_default().extend(devs);
    }
    // Each LV's alternatives: one list of PVs per image for mirrors, one list otherwise.
    fn flatten(lv: &str, by_lv: &BTreeMap<String, Vec<String>>, depth: usize) -> Vec<String> {
        let mut out = Vec::new();
        for d in by_lv.get(lv).into_iter().flatten() {
            if d.starts_with("/dev/") {
                out.push(d.clone());
            } else if depth < 8 {
                out.extend(flatten(d, by_lv, depth + 1));
            }
        }
        out
    }
    by_lv
        .keys()
        .map(|lv| {
            let parts = &by_lv[lv];
            let images: Vec<Vec<String>> = parts
                .iter()
                .filter(|p| !p.starts_with("/dev/"))
                .map(|p| flatten(p, &by_lv, 0))
                .collect();
            let alternatives = if images.is_empty() {
                vec![flatten(lv, &by_lv, 0)]
            } else {
                images
            };
            (lv.clone(), alternatives)
        })
        .collect()
}

#[test]
fn layouts_with_a_missing_disk_read_the_lvs_that_do_not_need_it() {
    let disks = layouts();
    let dir = disks[0].parent().unwrap();
    // The third disk (its one partition /dev/sdc1 is a PV) is left out of the job.
    let a = volume::assemble(&pv_devices(&disks[..2]));
    let vg = &a.volume_groups[0];
    let pvs = json(&dir.join("pvs.json"));
    let sdc1_uuid = pvs["report"][0]["pv"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pv_name"] == "/dev/sdc1")
        .unwrap()["pv_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(vg.missing_physical_volumes, vec![sdc1_uuid]);
    assert!(
        a.warnings.iter().any(|w| w.contains("missing")),
        "{:?}",
        a.warnings
    );

    let types: BTreeMap<String, String> = lvs_rows(&json(&dir.join("lvs.json")))
        .into_iter()
        .map(|r| (r["lv_name"].clone(), r["segtype"].clone()))
        .collect();
    let needs = needed_devices(&lvs_rows(&json(&dir.join("lvs-all.json"))));
    let mut readable_seen = 0;
    for lv in &vg.logical_volumes {
        let alternatives = &needs[&lv.name];
        let complete = |devs: &Vec<String>| !devs.iter().any(|d| d == "/dev/sdc1");
        let lost: Vec<usize> = (0..alternatives.len())
            .filter(|i| !complete(&alternatives[*i]))
            .collect();
        // One complete copy is enough for a mirror; a parity array rebuilds one lost
        // image; raid10 (near 2) needs one image of each pair; the rest need all.
        let expected = match types[&lv.name].as_str() {
            "mirror" | "raid1" => alternatives.iter().any(complete),
            _ if lv.segment_type == "snapshot" => false,
            t if t.starts_with("raid4") || t.starts_with("raid5") || t.starts_with("raid6") => {
                lost.len() <= 1
            }
            "raid10" => !lost.iter().any(|i| i % 2 == 0 && lost.contains(&(i + 1))),
            _ => alternatives.iter().all(complete),
        };
        assert_eq!(
            lv.readable, expected,
            "{}: {alternatives:?} {:?}",
            lv.name, a.warnings
        );
        if lv.readable {
            let ours = device_of(&a, &lv.device).unwrap();
            let oracle = dir.join(format!("{}.bin", lv.name));
            assert_eq!(
                sha256_of(ours.src.as_ref()),
                sha256sum(&oracle),
                "{}",
                lv.name
            );
            readable_seen += 1;
        }
    }
    assert!(readable_seen >= 3, "{:?}", vg.logical_volumes);
    assert!(vg
        .logical_volumes
        .iter()
        .any(|l| !l.readable && l.segment_type != "snapshot"));
}

#[test]
fn debian_on_lvm_across_two_disks_is_the_plain_partition_guest() {
    let tar = debian_tarball();
    let lvm = guestfish_disks(DEBIAN_LVM, &[320, 192], &[&tar]);
    let plain = guestfish_disks(DEBIAN_PLAIN, &[448], &[&tar]);
    let (lvm_report, lvm_bytes, lvm_time) = inspect(&lvm);
    let (plain_report, plain_bytes, plain_time) = inspect(&plain);
    eprintln!(
        "debian on LVM: {lvm_time:?}, {lvm_bytes} bytes; on partitions: {plain_time:?}, {plain_bytes} bytes"
    );
    assert_eq!(lvm_report.warnings, Vec::<String>::new());
    assert_eq!(
        lvm_report
            .disks
            .iter()
            .map(|d| d.device.as_str())
            .collect::<Vec<_>>(),
        vec!["/dev/sda", "/dev/sdb"]
    );
    let vg = &lvm_report.volume_groups[0];
    assert_eq!(vg.physical_volumes, vec!["/dev/sda2", "/dev/sdb"]);
    let rename: BTreeMap<&str, &str> = [
        ("/dev/sda2", "/dev/guest-vg/root"),
        ("/dev/sda3", "/dev/guest-vg/usr"),
        ("/dev/sda4", "/dev/guest-vg/var"),
        ("/dev/sda5", "/dev/guest-vg/home"),
    ]
    .into();
    assert_eq!(lvm_report.operating_systems.len(), 1);
    assert_eq!(plain_report.operating_systems.len(), 1);
    let lvm_os = &lvm_report.operating_systems[0];
    assert_eq!(
        lvm_os,
        &renamed(&plain_report.operating_systems[0], &rename)
    );
    assert_eq!(lvm_os.mountpoints.len(), 5, "{:?}", lvm_os.mountpoints);
    assert!(lvm_os.applications.len() > 50);
    assert_eq!(lvm_os.hostname.as_deref(), Some("guestkit-lvm-test"));
    let theirs = virt_inspector_of_volume_guest(&lvm, None);
    let n = assert_agrees_with_virt_inspector(&lvm_report, &theirs);
    eprintln!(
        "virt-inspector agrees: root, {} mountpoints, {n} filesystems",
        theirs.mountpoints.len()
    );

    // The CLI takes the second disk with --disk and says the same.
    let out = run(Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .arg("inspect")
        .arg(&lvm[0])
        .arg("--disk")
        .arg(&lvm[1]));
    let cli: Report = serde_json::from_slice(&out).unwrap();
    assert_eq!(cli.operating_systems, lvm_report.operating_systems);
}

// ------------------------------------------------------------------ loop devices

/// Loop devices backed by files of `dir`, detached on drop.
struct Loops(Vec<String>);

impl Drop for Loops {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("losetup").arg("-d").arg(l).status();
        }
    }
}

fn loops(files: &[PathBuf]) -> Loops {
    Loops(
        files
            .iter()
            .map(|f| {
                let out = run(Command::new("losetup").args(["-f", "--show"]).arg(f));
                String::from_utf8(out).unwrap().trim().to_string()
            })
            .collect(),
    )
}

/// LVM commands confined to the given devices, with no device-mapper activation.
fn lvm(devices: &[String], cmd: &str) -> String {
    let filter = devices
        .iter()
        .map(|d| format!("\"a|^{d}$|\""))
        .collect::<Vec<_>>()
        .join(",");
    let config = format!(
        "devices {{ use_devicesfile=0 obtain_device_list_from_udev=0 filter=[ {filter}, \"r|.*|\" ] }} \
         backup {{ backup=0 archive=0 }} activation {{ udev_sync=0 udev_rules=0 }}"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} --config '{config}'"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn loop_metadata_lv_list_and_ring_fallback() {
    let dir = tempdir();
    let files: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("pv{i}.img")))
        .collect();
    for f in &files {
        std::fs::File::create(f).unwrap().set_len(32 << 20).unwrap();
    }
    let vgname = format!("gkloop{}", std::process::id());
    let before;
    let after;
    {
        let l = loops(&files);
        let d = &l.0;
        lvm(d, &format!("pvcreate -y {} {}", d[0], d[1]));
        lvm(d, &format!("vgcreate -s 1m {vgname} {} {}", d[0], d[1]));
        let create = |args: &str| {
            lvm(
                d,
                &format!("lvcreate --driverloaded n -an -Zn -y {args} {vgname}"),
            )
        };
        create("-L 3m -n one");
        create("--type striped -i 2 -I 16k -L 4m -n two");
        create("-L 2m -n three_with.dots+plus");
        let report = |d: &Vec<String>| {
            lvm(
                d,
                &format!("lvs --reportformat json --units b --nosuffix -o lv_name,lv_size,segtype {vgname}"),
            )
        };
        before = report(d);
        create("-L 5m -n last");
        after = report(d);
    }
    let list = |text: &str| -> BTreeSet<(String, String, String)> {
        lvs_rows(&serde_json::from_str(text).unwrap())
            .into_iter()
            .map(|r| {
                (
                    r["lv_name"].clone(),
                    r["lv_size"].clone(),
                    r["segtype"].clone(),
                )
            })
            .collect()
    };
    let ours = |files: &[PathBuf]| -> (BTreeSet<(String, String, String)>, Vec<String>) {
        let a = volume::assemble(&pv_devices(files));
        let vg = &a.volume_groups[0];
        (
            vg.logical_volumes
                .iter()
                .map(|l| (l.name.clone(), l.size.to_string(), l.segment_type.clone()))
                .collect(),
            a.warnings,
        )
    };
    assert_eq!(ours(&files).0, list(&after));

    // Damage the committed metadata text on both PVs (its offset from the area header):
    // the previous version, still in the ring, is read, with a warning.
    for f in &files {
        let mut data = std::fs::read(f).unwrap();
        let mda = 4096usize;
        let off = u64::from_le_bytes(data[mda + 40..mda + 48].try_into().unwrap()) as usize;
        data[mda + off + 20] ^= 0x55;
        std::fs::File::create(f).unwrap().write_all(&data).unwrap();
    }
    let (lvs, warnings) = ours(&files);
    assert_eq!(lvs, list(&before));
    assert!(
        warnings.iter().any(|w| w.contains("older copy")),
        "{warnings:?}"
    );
}

// ------------------------------------------------------------------ hostile metadata

/// A PV whose first MiB (label, metadata area) is replaced by a mutated copy.
struct Patched {
    base: Arc<dyn ReadAt>,
    head: Vec<u8>,
}

impl ReadAt for Patched {
    fn size(&self) -> u64 {
        self.base.size()
    }
    fn read_exact_at(
        &self,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), guestkit_worker::inspect::source::ReadError> {
        self.base.read_exact_at(offset, buf)?;
        for (i, b) in buf.iter_mut().enumerate() {
            if let Some(h) = self.head.get(offset as usize + i) {
                *b = *h;
            }
        }
        Ok(())
    }
}

/// LVM's CRC (CRC-32 from seed 0xf597a6cf, not inverted at the end).
fn lvm_crc(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!0xf597_a6cf);
    h.update(data);
    !h.finalize()
}

/// Rewrites the checksums a mutation broke, so the mutant reaches the parser and the
/// mapper instead of stopping at a CRC check: label, area header, committed text.
fn fix_checksums(head: &mut [u8]) {
    let label = 512;
    let crc = lvm_crc(&head[label + 20..label + 512]);
    head[label + 16..label + 20].copy_from_slice(&crc.to_le_bytes());
    let m = 4096;
    let off = u64::from_le_bytes(head[m + 40..m + 48].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(head[m + 48..m + 56].try_into().unwrap()) as usize;
    if let Some(text) = m
        .checked_add(off)
        .and_then(|s| head.get(s..s.checked_add(len)?))
    {
        let crc = lvm_crc(text);
        head[m + 56..m + 60].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = lvm_crc(&head[m + 4..m + 512]);
    head[m..m + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Text-level edits that keep the syntax but make the VG hostile: overlapping and
/// out-of-range extents, LVs naming themselves or each other, huge counts.
const TEXT_EDITS: &[(&str, &str)] = &[
    ("\"pv1\"", "\"pv0\""),
    ("\"pv2\"", "\"pv3\""),
    ("extent_count = 4", "extent_count = 4000000000"),
    ("extent_count = 1", "extent_count = 9223372036854775807"),
    ("start_extent = 0", "start_extent = 1"),
    ("stripe_size = 128", "stripe_size = 0"),
    ("stripe_size = 16", "stripe_size = 3"),
    ("\"r1_rimage_0\"", "\"r1\""),
    ("\"mir_mimage_1\"", "\"mir\""),
    ("\"r5_rimage_1\"", "\"r5_rimage_2\""),
    ("stripe_count = 1", "stripe_count = 1000"),
    ("pe_count = ", "pe_count = 9"),
    ("pe_start = 2048", "pe_start = 99999999999"),
    ("extent_size = 2048", "extent_size = 1"),
    ("type = \"raid5_ls\"", "type = \"raid5_ra\""),
    ("type = \"striped\"", "type = \"raid10\""),
    ("seqno = ", "seqno = 9"),
    ("\n}\n", "\n"),
    ("[", "[["),
];

#[test]
fn mutated_lvm_metadata_gives_warnings_never_a_panic() {
    let disks = layouts();
    let pvs = pv_devices(&disks);
    let heads: Vec<Vec<u8>> = pvs
        .iter()
        .map(|p| {
            let mut h = vec![0u8; 1 << 20];
            p.src.read_exact_at(0, &mut h).unwrap();
            h
        })
        .collect();
    let mut rng = crate::common::Rng(0x4c56_4d32);
    let mut unreadable = 0;
    let rounds = 400;
    for round in 0..rounds {
        let victim = rng.below(pvs.len() as u64) as usize;
        let mut head = heads[victim].clone();
        let m = 4096;
        let off = u64::from_le_bytes(head[m + 40..m + 48].try_into().unwrap()) as usize;
        let len = u64::from_le_bytes(head[m + 48..m + 56].try_into().unwrap()) as usize;
        match round % 3 {
            // Bytes of the label and the area header.
            0 => {
                for _ in 0..1 + rng.below(3) {
                    let at = if rng.below(2) == 0 {
                        512 + rng.below(512) as usize
                    } else {
                        m + rng.below(512) as usize
                    };
                    head[at] = rng.byte();
                }
            }
            // Bytes of the metadata text.
            1 => {
                for _ in 0..1 + rng.below(4) {
                    head[m + off + rng.below(len as u64) as usize] = rng.byte();
                }
            }
            // A hostile but well-formed edit of the text (rewritten in place, padded).
            _ => {
                let text = String::from_utf8_lossy(&head[m + off..m + off + len]).into_owned();
                let (from, to) = TEXT_EDITS[rng.below(TEXT_EDITS.len() as u64) as usize];
                let edited = text.replacen(from, to, 1 + rng.below(3) as usize);
                let room = (1 << 20) - (m + off);
                let mut bytes = edited.into_bytes();
                bytes.truncate(room - 1);
                head[m + off..m + off + bytes.len()].copy_from_slice(&bytes);
                head[m + 48..m + 56].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            }
        }
        if rng.below(4) != 0 {
            fix_checksums(&mut head);
        }
        let mut devices = pvs.clone();
        devices[victim].src = Arc::new(Patched {
            base: pvs[victim].src.clone(),
            head,
        });
        let a = volume::assemble(&devices);
        // Whatever was assembled reads (or fails with an error) at both ends.
        for d in &a.devices {
            let mut buf = vec![0u8; 4096.min(d.src.size() as usize)];
            let _ = d.src.read_exact_at(0, &mut buf);
            let _ = d
                .src
                .read_exact_at(d.src.size() - buf.len() as u64, &mut buf);
            let _ = probe(d.src.as_ref());
        }
        unreadable += a
            .volume_groups
            .iter()
            .flat_map(|g| &g.logical_volumes)
            .filter(|l| !l.readable)
            .count();
    }
    eprintln!("{rounds} mutants, {unreadable} unreadable LVs reported");
}

// ------------------------------------------------------------------ thin provisioning

const THIN: &str = include_str!("fixtures/lvm-thin.gf");

#[test]
fn thin_volumes_read_through_the_pool_btrees() {
    let disks = guestfish_disks(THIN, &[64], &[]);
    let dir = disks[0].parent().unwrap();
    let a = volume::assemble(&pv_devices(&disks));
    let vg = &a.volume_groups[0];
    let rows = lvs_rows(&json(&dir.join("lvs.json")));
    let ours: BTreeSet<(String, String, String)> = vg
        .logical_volumes
        .iter()
        .map(|l| (l.name.clone(), l.size.to_string(), l.segment_type.clone()))
        .collect();
    let theirs: BTreeSet<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["lv_name"].clone(),
                r["lv_size"].clone(),
                r["segtype"].clone(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    for lv in &vg.logical_volumes {
        assert_eq!(
            lv.readable,
            lv.segment_type == "thin",
            "{}: {:?}",
            lv.name,
            a.warnings
        );
    }
    for lv in ["thin1", "thin2"] {
        let ours = device_of(&a, &format!("/dev/vgthin/{lv}")).unwrap();
        let oracle = dir.join(format!("{lv}.bin"));
        assert_eq!(ours.src.size(), std::fs::metadata(&oracle).unwrap().len());
        assert_eq!(sha256_of(ours.src.as_ref()), sha256sum(&oracle), "{lv}");
    }
    let fs = probe(device_of(&a, "/dev/vgthin/thin1").unwrap().src.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!((fs.fs_type, fs.label.as_deref()), ("ext4", Some("thinfs")));
}

/// A thin pool whose btree nodes are damaged on disk: each node's checksum catches it,
/// so the thin LVs are reported unreadable with the reason, never read as wrong bytes.
#[test]
fn thin_pool_with_a_corrupted_node_is_refused_by_its_checksum() {
    let disks = guestfish_disks(THIN, &[64], &[]);
    let tmp = tempdir();
    let copy = tmp.path().join("disk0.img");
    std::fs::copy(&disks[0], &copy).unwrap();
    let mut img = std::fs::read(&copy).unwrap();
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    // The metadata LV starts at the block holding the thin superblock's magic; its
    // nodes name their own block number and say leaf (2) or internal (1).
    let start = (0..img.len() / 4096)
        .map(|b| b * 4096)
        .find(|&o| le64(&img, o + 32) == 27_022_010)
        .expect("thin superblock on the PV");
    let mut leaves = 0;
    for k in 1..(img.len() - start) / 4096 {
        let o = start + k * 4096;
        if le64(&img, o + 8) == k as u64 && le32(&img, o + 4) == 2 && le32(&img, o + 20) > 0 {
            img[o + 40] ^= 0x01; // a key or value byte; the node still parses
            leaves += 1;
        }
    }
    assert!(leaves >= 2, "found {leaves} leaf nodes");
    std::fs::write(&copy, &img).unwrap();

    let a = volume::assemble(&pv_devices(&[copy]));
    let vg = &a.volume_groups[0];
    for lv in vg
        .logical_volumes
        .iter()
        .filter(|l| l.segment_type == "thin")
    {
        assert!(!lv.readable, "{} read despite damaged nodes", lv.name);
        assert!(
            a.warnings
                .iter()
                .any(|w| w.contains(&lv.name) && w.contains("checksum mismatch")),
            "{}: {:?}",
            lv.name,
            a.warnings
        );
    }
    eprintln!("{leaves} damaged leaf nodes refused");
}

// ------------------------------------------------------------ raid6, degraded raid

const RAID: &str = include_str!("fixtures/lvm-raid.gf");
const RAID_LVS: [&str; 8] = ["r6", "r6nr", "r6nc", "r5", "r5ra", "r4", "r10", "r1"];

/// The raid fixture's five disks and, from its build log, each LV's sha256 as the
/// kernel read it and which disks hold each LV's images (`lvs -a -o devices`).
/// The raid disks, the sha256 of each LV, `lvs -a` as JSON, and the appliance's name
/// (`/dev/sdX`) of each disk file: under load the appliance's kernel may name the disks
/// in another order than they were added, so the names come from the PV uuids.
fn raid_fixture() -> (Vec<PathBuf>, BTreeMap<String, String>, Value, Vec<String>) {
    let disks = guestfish_disks(RAID, &[48, 48, 48, 48, 48], &[]);
    let log = std::fs::read_to_string(disks[0].parent().unwrap().join("log")).unwrap();
    let section = |name: &str| -> Vec<&str> {
        log.lines()
            .skip_while(|l| l.trim() != format!("=={name}=="))
            .skip(1)
            .take_while(|l| !l.starts_with("=="))
            .collect()
    };
    // Every array finished its initial sync before the bytes were taken.
    for l in section("sync") {
        assert!(l.trim().ends_with("100.00"), "not in sync: {l}");
    }
    let sums = section("sha256")
        .iter()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, n)| (n.trim().to_string(), h.trim().to_string()))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(sums.len(), RAID_LVS.len(), "{log}");
    let lvs = serde_json::from_str(&section("lvs").join("\n")).unwrap();
    // `pvs`: "/dev/sdb  QWtR6g-pEOV-..." -> uuid without dashes -> name.
    let by_uuid: BTreeMap<String, String> = section("pvs")
        .iter()
        .filter_map(|l| l.trim().split_once(char::is_whitespace))
        .map(|(name, uuid)| (uuid.trim().replace('-', ""), name.to_string()))
        .collect();
    let names = disks
        .iter()
        .map(|d| {
            // The PV label: "LVM2 001" then the 32-character uuid, in the second sector.
            let head = std::fs::read(d).unwrap()[..4096].to_vec();
            let at = head.windows(8).position(|w| w == b"LVM2 001").unwrap() + 8;
            let uuid = String::from_utf8_lossy(&head[at..at + 32]).into_owned();
            by_uuid
                .get(&uuid)
                .cloned()
                .unwrap_or_else(|| panic!("{}: PV {uuid} not in pvs {by_uuid:?}", d.display()))
        })
        .collect();
    (disks, sums, lvs, names)
}

/// For each LV, the set of disks (`/dev/sdX`) holding each of its images, in order.
fn images_by_disk(lvs: &Value) -> BTreeMap<String, Vec<BTreeSet<String>>> {
    let rows = lvs_rows(lvs);
    let needs = needed_devices(&rows);
    needs
        .into_iter()
        .map(|(lv, images)| {
            let sets = images
                .into_iter()
                .map(|i| i.into_iter().collect())
                .collect();
            (lv, sets)
        })
        .collect()
}

#[test]
fn raid6_and_degraded_raid_lvs_match_the_kernel() {
    let (disks, sums, lvs, names) = raid_fixture();
    let images = images_by_disk(&lvs);
    let mut compared = 0u64;
    // All five disks, then each one left out: every LV loses at most one image (or one
    // copy of a raid10 pair), which parity or the other copy makes up for.
    for dropped in std::iter::once(None).chain((0..disks.len()).map(Some)) {
        let present: Vec<PathBuf> = disks
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != dropped)
            .map(|(_, d)| d.clone())
            .collect();
        let mut devices = pv_devices(&present);
        // pv_devices names by position; keep the real disk letters for the report.
        if let Some(d) = dropped {
            for dev in &mut devices {
                let i = dev.name.as_bytes()[7] - b'a';
                if usize::from(i) >= d {
                    dev.name = format!("/dev/sd{}", char::from(b'a' + i + 1));
                }
            }
        }
        let a = volume::assemble(&devices);
        let vg = &a.volume_groups[0];
        assert_eq!(
            vg.missing_physical_volumes.len(),
            usize::from(dropped.is_some())
        );
        for lv in RAID_LVS {
            let info = vg.logical_volumes.iter().find(|l| l.name == lv).unwrap();
            assert!(
                info.readable,
                "{lv} with disk {dropped:?} out: {:?}",
                a.warnings
            );
            let ours = device_of(&a, &format!("/dev/vgraid/{lv}")).unwrap();
            assert_eq!(
                sha256_of(ours.src.as_ref()),
                sums[lv],
                "{lv}, disk {dropped:?} out"
            );
            compared += ours.src.size();
            if let Some(d) = dropped {
                let disk = &names[d];
                let degraded = images[lv].iter().any(|i| i.contains(disk));
                let warned = a
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!(": {lv}: ")) && w.contains("degraded"));
                assert_eq!(warned, degraded, "{lv} with {disk} out: {:?}", a.warnings);
            }
        }
    }
    eprintln!("{compared} raid LV bytes equal the kernel's");

    // Two disks out: an LV that lost two images (or both copies of a raid10 chunk) is
    // unreadable and says why; the others still read right.
    let a = volume::assemble(&pv_devices(&disks[..3]));
    let vg = &a.volume_groups[0];
    for lv in RAID_LVS {
        let info = vg.logical_volumes.iter().find(|l| l.name == lv).unwrap();
        let lost: Vec<usize> = images[lv]
            .iter()
            .enumerate()
            .filter(|(_, i)| i.contains(&names[3]) || i.contains(&names[4]))
            .map(|(k, _)| k)
            .collect();
        let n = images[lv].len();
        let expected = match lv {
            "r1" => lost.len() < n,
            // raid10 near-2: images (0,1) and (2,3) are the pairs.
            "r10" => [(0, 1), (2, 3)]
                .iter()
                .all(|(a, b)| !(lost.contains(a) && lost.contains(b))),
            _ => lost.len() <= 1,
        };
        assert_eq!(
            info.readable, expected,
            "{lv}: lost images {lost:?} {:?}",
            a.warnings
        );
        if info.readable {
            let ours = device_of(&a, &format!("/dev/vgraid/{lv}")).unwrap();
            assert_eq!(sha256_of(ours.src.as_ref()), sums[lv], "{lv}");
        } else {
            assert!(
                a.warnings
                    .iter()
                    .any(|w| w.contains(&format!(": {lv}: ")) && w.contains("cannot be read")),
                "{lv}: {:?}",
                a.warnings
            );
        }
    }
}

// ------------------------------------------------------------ virt-inspector oracle
//
// The volume guests (LVM, MD, LUKS) against libguestfs' own inspection. Kept here, used
// by inspect_md and inspect_luks too (a common helper may replace it).

/// What virt-inspector says about a guest's one OS: root, mountpoints (mountpoint ->
/// device) and filesystems (device -> type and uuid).
#[derive(Debug)]
pub struct VirtInspection {
    pub root: String,
    pub mountpoints: BTreeMap<String, String>,
    pub filesystems: BTreeMap<String, (String, Option<String>)>,
}

/// Runs `virt-inspector` (a real kernel assembling LVM, MD, dm-crypt) on `disks`, with
/// `key` given on stdin when set (`--keys-from-stdin`); the XML is cached by the disks'
/// and key's hash, as a TCG launch takes a minute or two.
pub fn virt_inspector_of_volume_guest(disks: &[PathBuf], key: Option<&str>) -> VirtInspection {
    let mut h = Sha256::new();
    for d in disks {
        h.update(sha256sum(d));
    }
    h.update(key.unwrap_or(""));
    let hash: String = h
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let cached = crate::common::fixture_cache().join(format!("virt-inspector-volumes-{hash}.xml"));
    let xml = match std::fs::read_to_string(&cached) {
        Ok(xml) => xml,
        Err(_) => {
            let mut cmd = Command::new("virt-inspector");
            cmd.env("LIBGUESTFS_BACKEND", "direct")
                .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
                .args(["--no-applications", "--no-icon", "--format=raw"]);
            for d in disks {
                cmd.arg("-a").arg(d);
            }
            if key.is_some() {
                cmd.arg("--keys-from-stdin");
            }
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().expect("virt-inspector");
            let mut stdin = child.stdin.take().unwrap();
            if let Some(k) = key {
                writeln!(stdin, "{k}").unwrap();
            }
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "virt-inspector: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let xml = String::from_utf8(out.stdout).unwrap();
            std::fs::write(&cached, &xml).unwrap();
            xml
        }
    };
    let between = |s: &str, open: &str, close: &str| -> Option<String> {
        let (_, rest) = s.split_once(open)?;
        rest.split_once(close).map(|(t, _)| t.to_string())
    };
    assert_eq!(xml.matches("<operatingsystem>").count(), 1, "{xml}");
    let mountpoints = xml
        .split("<mountpoint dev=\"")
        .skip(1)
        .filter_map(|s| {
            let (dev, rest) = s.split_once("\">")?;
            Some((between(rest, "", "</mountpoint>")?, dev.to_string()))
        })
        .collect();
    let filesystems = xml
        .split("<filesystem dev=\"")
        .skip(1)
        .filter_map(|s| {
            let (dev, rest) = s.split_once("\">")?;
            let body = rest.split("</filesystem>").next()?;
            let ty = between(body, "<type>", "</type>")?;
            Some((dev.to_string(), (ty, between(body, "<uuid>", "</uuid>"))))
        })
        .collect();
    VirtInspection {
        root: between(&xml, "<root>", "</root>").expect("root in virt-inspector's XML"),
        mountpoints,
        filesystems,
    }
}

/// Our report's OS agrees with virt-inspector on root and mountpoints, and on the type
/// and uuid of every filesystem virt-inspector lists (swap included); returns how many
/// filesystems were compared.
pub fn assert_agrees_with_virt_inspector(report: &Report, theirs: &VirtInspection) -> usize {
    let os = &report.operating_systems[0];
    assert_eq!(os.root, theirs.root);
    assert_eq!(os.mountpoints, theirs.mountpoints);
    for (dev, (ty, uuid)) in &theirs.filesystems {
        let f = report
            .filesystems
            .iter()
            .find(|f| &f.device == dev)
            .unwrap_or_else(|| {
                panic!(
                    "{dev} ({ty}) not in our filesystems: {:?}",
                    report.filesystems
                )
            });
        assert_eq!((&f.fs_type, &f.uuid), (ty, uuid), "{dev}");
    }
    theirs.filesystems.len()
}
