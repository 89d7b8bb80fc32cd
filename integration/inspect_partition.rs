//! The partition and probe oracles.
//!
//! Tables are written by `sfdisk` and read back through our parser, compared with
//! `sfdisk --json` (start, size, type, name, attributes, partition UUID) and `partx`
//! (Linux numbering, PARTUUID), including after the primary GPT is damaged (libfdisk
//! falls back to the backup as we must). Filesystems and containers are made by their
//! own tools (mkfs.*, mkswap, mkntfs, xorriso, cryptsetup, pvcreate) and probed; type,
//! UUID and label must equal `blkid -p` of the same bytes, and the size must equal what
//! the filesystem's own tool reports (dumpe2fs, xfs_db, btrfs, minfo, ntfsinfo, xorriso,
//! mkswap, pvck).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use guestkit_worker::inspect::fs::probe::{probe, Probed};
use guestkit_worker::inspect::image::RawImage;
use guestkit_worker::inspect::partition::{read_table, PartitionTable, TableKind};
use guestkit_worker::inspect::source::{ReadAt, Slice};
use guestkit_worker::inspect::volume::lvm2;

use crate::common::{run, sh, tempdir, Rng};

fn open(path: &Path) -> Arc<dyn ReadAt> {
    Arc::new(RawImage::open(path).expect("open raw image"))
}

fn table(path: &Path) -> Option<PartitionTable> {
    read_table(open(path).as_ref()).expect("read_table")
}

fn sfdisk_json(path: &Path) -> serde_json::Value {
    let out = run(Command::new("sfdisk").arg("--json").arg(path));
    serde_json::from_slice(&out).expect("sfdisk --json output")
}

/// `partx --pairs` rows as (NR, UUID): libblkid's view of numbering and PARTUUID.
fn partx_uuids(path: &Path) -> Vec<(u32, String)> {
    let out = run(Command::new("partx")
        .args(["-o", "NR,UUID", "--pairs"])
        .arg(path));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Vec<&str> = l.split('"').collect();
            (v[1].parse().unwrap(), v[3].to_string())
        })
        .collect()
}

/// Compares our table with `sfdisk --json` of the same file, entry by entry.
fn assert_matches_sfdisk(path: &Path, ours: &PartitionTable) {
    let json = sfdisk_json(path);
    let pt = &json["partitiontable"];
    let expected_kind = match pt["label"].as_str().unwrap() {
        "gpt" => TableKind::Gpt,
        "dos" => TableKind::Mbr,
        other => panic!("unexpected label {other}"),
    };
    assert_eq!(ours.kind, expected_kind);
    let theirs = pt["partitions"].as_array().unwrap();
    assert_eq!(
        ours.partitions.len(),
        theirs.len(),
        "ours: {:#?}\nsfdisk: {json:#}",
        ours.partitions
    );
    let prefix = path.to_str().unwrap();
    for t in theirs {
        let node = t["node"].as_str().unwrap();
        let number: u32 = node.strip_prefix(prefix).unwrap().parse().unwrap();
        let p = ours
            .partitions
            .iter()
            .find(|p| p.number == number)
            .unwrap_or_else(|| panic!("no partition {number}"));
        assert_eq!(
            p.start,
            t["start"].as_u64().unwrap() * 512,
            "start of {number}"
        );
        assert_eq!(
            p.size,
            t["size"].as_u64().unwrap() * 512,
            "size of {number}"
        );
        let ty = t["type"].as_str().unwrap();
        match expected_kind {
            TableKind::Gpt => {
                assert_eq!(p.part_type, ty, "type of {number}");
                let uuid = t["uuid"].as_str().unwrap();
                assert_eq!(
                    p.part_uuid.as_deref(),
                    Some(uuid.to_lowercase().as_str()),
                    "uuid of {number}"
                );
                assert_eq!(p.name.as_deref(), t["name"].as_str(), "name of {number}");
                let attrs = t["attrs"].as_str().unwrap_or("");
                assert_eq!(
                    p.bootable,
                    attrs.contains("LegacyBIOSBootable"),
                    "attrs of {number}"
                );
            }
            TableKind::Mbr => {
                assert_eq!(
                    p.part_type,
                    format!("{:#x}", u8::from_str_radix(ty, 16).unwrap()),
                    "type of {number}"
                );
                assert_eq!(
                    p.bootable,
                    t["bootable"].as_bool().unwrap_or(false),
                    "bootable {number}"
                );
                assert_eq!(p.name, None);
            }
        }
    }
    // PARTUUIDs as libblkid derives them (MBR: disk signature + number).
    for (nr, uuid) in partx_uuids(path) {
        let p = ours.partitions.iter().find(|p| p.number == nr).unwrap();
        assert_eq!(
            p.part_uuid.as_deref(),
            Some(uuid.as_str()),
            "PARTUUID of {nr}"
        );
    }
}

const GPT_SCRIPT: &str = r#"label: gpt
start=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System", attrs="LegacyBIOSBootable"
size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root ä ✓"
size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
size=20480, type=933AC7E1-2EB4-4F13-B844-0E14E2AEF915, name="home"
"#;

fn gpt_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("gpt.img");
    sh(&format!(
        "truncate -s 64M '{0}' && sfdisk -q '{0}' <<'EOF'\n{GPT_SCRIPT}EOF",
        disk.display()
    ));
    disk
}

#[test]
fn gpt_matches_sfdisk() {
    let dir = tempdir();
    let disk = gpt_disk(dir.path());
    let t = table(&disk).expect("a table");
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(t.partitions.len(), 4);
    assert_matches_sfdisk(&disk, &t);
}

/// Flips one byte of `path` at `offset`.
fn corrupt(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], offset).unwrap();
}

#[test]
fn gpt_backup_is_used_when_the_primary_is_damaged() {
    let dir = tempdir();
    // Primary header CRC broken (first usable LBA changed).
    let disk = gpt_disk(dir.path());
    corrupt(&disk, 512 + 40);
    let t = table(&disk).expect("a table");
    assert!(
        t.warnings.iter().any(|w| w.contains("header CRC mismatch")),
        "{:?}",
        t.warnings
    );
    assert_matches_sfdisk(&disk, &t);

    // Primary entry array broken (first entry's name).
    let disk2 = dir.path().join("gpt2.img");
    std::fs::rename(gpt_disk(dir.path()), &disk2).unwrap();
    corrupt(&disk2, 1024 + 56);
    let t = table(&disk2).expect("a table");
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("entry array CRC mismatch")),
        "{:?}",
        t.warnings
    );
    assert_matches_sfdisk(&disk2, &t);
    assert_eq!(t.partitions[0].name.as_deref(), Some("EFI System"));
}

#[test]
fn gpt_with_both_copies_damaged_is_an_error() {
    let dir = tempdir();
    let disk = gpt_disk(dir.path());
    corrupt(&disk, 512 + 40);
    corrupt(&disk, (64 << 20) - 512 + 40);
    let err = read_table(open(&disk).as_ref()).unwrap_err().to_string();
    assert!(
        err.contains("corrupt gpt partition table") && err.contains("backup GPT at LBA 131071"),
        "{err}"
    );
}

#[test]
fn mbr_with_three_logical_partitions_matches_sfdisk() {
    let dir = tempdir();
    let disk = dir.path().join("mbr.img");
    let d = disk.display();
    sh(&format!(
        "truncate -s 64M '{d}' && sfdisk -q '{d}' <<'EOF'\n\
         label: dos\n\
         label-id: 0x1234abcd\n\
         {d}1 : start=2048, size=8192, type=83, bootable\n\
         {d}2 : start=10240, size=81920, type=5\n\
         {d}5 : start=12288, size=8192, type=83\n\
         {d}6 : start=22528, size=16384, type=82\n\
         {d}7 : start=40960, size=20480, type=c\n\
         EOF"
    ));
    let t = table(&disk).expect("a table");
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![1, 2, 5, 6, 7]);
    assert!(t.partitions[1].is_extended_container());
    assert_eq!(t.partitions[4].part_uuid.as_deref(), Some("1234abcd-07"));
    assert_matches_sfdisk(&disk, &t);
}

#[test]
fn whole_disk_filesystems_have_no_table() {
    let dir = tempdir();
    for (name, mkfs) in [
        ("ext4", "mkfs.ext4 -q -F"),
        ("vfat", "mkfs.vfat -F 16"),
        ("ntfs", "mkntfs -F -Q"),
    ] {
        let disk = dir.path().join(format!("{name}.img"));
        sh(&format!(
            "truncate -s 64M '{0}' && {mkfs} '{0}' >/dev/null 2>&1",
            disk.display()
        ));
        assert!(table(&disk).is_none(), "{name}: a table was found");
        // blkid agrees that there is no partition table, and sees the filesystem. (sfdisk
        // shows an empty "dos" label for the FAT and NTFS boot sectors, since they end in
        // 0x55AA, but it fails on ext4.)
        assert_eq!(
            blkid_tag(&disk, "PTTYPE", None),
            None,
            "{name}: blkid found a table"
        );
        assert_eq!(probe_of(&disk).fs_type, name);
        assert_eq!(blkid_tag(&disk, "TYPE", None).as_deref(), Some(name));
        if name == "ext4" {
            let out = Command::new("sfdisk")
                .arg("--json")
                .arg(&disk)
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "sfdisk found a table on whole-disk {name}"
            );
        }
    }
}

fn probe_of(path: &Path) -> Probed {
    probe(open(path).as_ref())
        .expect("probe")
        .expect("something recognised")
}

/// One tag from `blkid -p` (raw bytes, decoded as UTF-8 when possible).
fn blkid_tag(path: &Path, tag: &str, offset: Option<(u64, u64)>) -> Option<String> {
    let mut cmd = Command::new("blkid");
    cmd.args(["-p", "-o", "value", "-s", tag]);
    if let Some((off, size)) = offset {
        cmd.args(["-O", &off.to_string(), "-S", &size.to_string()]);
    }
    let out = cmd.arg(path).output().expect("run blkid (util-linux)");
    // Exit status 2: nothing recognised.
    if out.status.code() == Some(2) {
        return None;
    }
    assert!(
        out.status.success(),
        "blkid -p {path:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v = out.stdout;
    if v.last() == Some(&b'\n') {
        v.pop();
    }
    (!v.is_empty()).then(|| String::from_utf8(v.clone()).unwrap_or_else(|_| iconv_cp850(&v)))
}

/// Decodes raw FAT label bytes (code page 850) with iconv, independently of our table.
fn iconv_cp850(raw: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("iconv")
        .args(["-f", "CP850", "-t", "UTF-8"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("iconv");
    child.stdin.take().unwrap().write_all(raw).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// Asserts type, UUID and label equal blkid's for the same bytes.
fn assert_matches_blkid(path: &Path, p: &Probed, window: Option<(u64, u64)>) {
    let what = format!("{path:?} {window:?}");
    assert_eq!(
        Some(p.fs_type.to_string()),
        blkid_tag(path, "TYPE", window),
        "TYPE of {what}"
    );
    assert_eq!(p.uuid, blkid_tag(path, "UUID", window), "UUID of {what}");
    assert_eq!(p.label, blkid_tag(path, "LABEL", window), "LABEL of {what}");
}

/// `key: value` (or `key value`) from a tool's output.
fn field_of(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {output}"))
        .trim_start_matches([':', ' ', '\t', '='])
        .trim()
        .to_string()
}

fn num(s: &str) -> u64 {
    s.split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s}"))
}

fn tool(script: &str) -> String {
    String::from_utf8_lossy(&sh(script)).into_owned()
}

#[test]
fn probe_matches_blkid_for_each_filesystem() {
    let dir = tempdir();
    let d = dir.path();
    let iso_src = d.join("isosrc");
    std::fs::create_dir(&iso_src).unwrap();
    std::fs::write(iso_src.join("hello.txt"), b"hello\n").unwrap();
    let cases: Vec<(&str, &str, String)> = vec![
        ("ext2", "ext2", "mkfs.ext2 -q -L e2-label IMG".into()),
        ("ext3", "ext3", "mkfs.ext3 -q -L e3 IMG".into()),
        ("ext4", "ext4", "mkfs.ext4 -q -L 'root-é✓' IMG".into()),
        ("ext4-nojournal", "ext4", "mkfs.ext4 -q -O ^has_journal IMG".into()),
        ("xfs", "xfs", "mkfs.xfs -q -L xfs-data IMG".into()),
        ("btrfs", "btrfs", "mkfs.btrfs -q -L 'pööl' IMG".into()),
        ("fat16", "vfat", "mkfs.vfat -F 16 -n BOOT16 IMG >/dev/null".into()),
        ("fat32", "vfat", "mkfs.vfat -F 32 IMG >/dev/null && LC_ALL=C.utf8 mlabel -i IMG ::'ÉTÉ Ä'".into()),
        ("fat12", "vfat", "truncate -s 0 IMG && truncate -s 2M IMG && mkfs.vfat -F 12 -n SMALL IMG >/dev/null".into()),
        ("ntfs", "ntfs", "mkntfs -F -Q -L 'Wïndows' IMG >/dev/null 2>&1".into()),
        ("iso", "iso9660", format!("rm IMG && xorriso -as mkisofs -quiet -J -V MY_ISO -o IMG '{}'", iso_src.display())),
        ("swap", "swap", "mkswap -L swap-1 IMG 2>/dev/null".into()),
        (
            "luks1",
            "crypto_LUKS",
            "echo -n pw | cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 \
             --uuid 11111111-2222-3333-4444-555555555555 --key-file - IMG"
                .into(),
        ),
        (
            "luks2",
            "crypto_LUKS",
            "echo -n pw | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
             --label 'sécret' --key-file - IMG"
                .into(),
        ),
    ];
    for (name, fs_type, script) in &cases {
        let img = d.join(format!("{name}.img"));
        let i = img.display().to_string();
        let out = tool(&format!(
            "truncate -s 320M '{i}' && {}",
            script.replace("IMG", &format!("'{i}'"))
        ));
        let p = probe_of(&img);
        assert_eq!(p.fs_type, *fs_type, "{name}");
        assert_matches_blkid(&img, &p, None);

        // Size: from the filesystem's own tool.
        let expected = match *name {
            "ext2" | "ext3" | "ext4" | "ext4-nojournal" => {
                let o = tool(&format!("dumpe2fs -h '{i}' 2>/dev/null"));
                Some(num(&field_of(&o, "Block count:")) * num(&field_of(&o, "Block size:")))
            }
            "xfs" => {
                let o = tool(&format!(
                    "xfs_db -r -c 'sb 0' -c 'p dblocks' -c 'p blocksize' '{i}'"
                ));
                Some(num(&field_of(&o, "dblocks")) * num(&field_of(&o, "blocksize")))
            }
            "btrfs" => {
                let o = tool(&format!("btrfs inspect-internal dump-super '{i}'"));
                Some(num(&field_of(&o, "total_bytes")))
            }
            "fat12" | "fat16" | "fat32" => {
                let o = tool(&format!("minfo -i '{i}' ::"));
                let small = num(&field_of(&o, "small size:"));
                let sectors = if small != 0 {
                    small
                } else {
                    num(&field_of(&o, "big size:"))
                };
                Some(sectors * num(&field_of(&o, "sector size:")))
            }
            "ntfs" => {
                // ntfsinfo reports whole clusters; the boot sector counts sectors.
                let o = tool(&format!("ntfsinfo -m '{i}'"));
                let (clusters, cluster) = (
                    num(&field_of(&o, "Volume Size in Clusters:")),
                    num(&field_of(&o, "Cluster Size:")),
                );
                let size = p.size.unwrap();
                assert_eq!(size / cluster, clusters, "ntfs size {size}");
                Some(size)
            }
            "iso" => {
                let o = tool(&format!("xorriso -indev '{i}' -toc 2>&1"));
                let blocks = o.lines().find_map(|l| {
                    l.split("data blocks")
                        .next()
                        .filter(|_| l.contains("Media summary"))
                });
                Some(num(blocks.unwrap().rsplit(',').next().unwrap()) * 2048)
            }
            "swap" => {
                // mkswap prints "size = ... (N bytes)", the usable area.
                let bytes = out
                    .split('(')
                    .nth(1)
                    .and_then(|s| s.split(' ').next())
                    .unwrap();
                Some(num(bytes))
            }
            _ => None, // LUKS: no size
        };
        assert_eq!(p.size, expected, "size of {name}");
    }
    // Non-ASCII labels made it through (and matched blkid above).
    assert_eq!(
        probe_of(&d.join("ext4.img")).label.as_deref(),
        Some("root-é✓")
    );
    assert_eq!(
        probe_of(&d.join("fat32.img")).label.as_deref(),
        Some("ÉTÉ Ä")
    );
    let fatlabel = tool(&format!(
        "LC_ALL=C.utf8 fatlabel '{}'",
        d.join("fat32.img").display()
    ));
    assert_eq!(fatlabel.trim_end(), "ÉTÉ Ä");
    assert_eq!(
        probe_of(&d.join("luks2.img")).label.as_deref(),
        Some("sécret")
    );
}

#[test]
fn partitions_of_a_gpt_disk_probe_like_blkid() {
    let dir = tempdir();
    let disk = gpt_disk(dir.path());
    let i = disk.display();
    // Filesystems written into the partitions in place (no loop device; mkswap has no
    // offset option, so its area is made aside and copied in).
    sh(&format!(
        "mkfs.vfat -n ESP --offset 2048 '{i}' 8192 >/dev/null 2>&1 && \
         mkfs.ext4 -q -L root -E offset=$((18432*512)) '{i}' 20M && \
         truncate -s 4M '{i}.swap' && mkswap -L sw '{i}.swap' >/dev/null 2>&1 && \
         dd if='{i}.swap' of='{i}' bs=512 seek=59392 conv=notrunc status=none"
    ));
    // Count what the whole table + probe pass reads: it must stay small whatever the
    // disk size (superblocks and tables only, never file data).
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let src: Arc<dyn ReadAt> = Arc::new(guestkit_worker::inspect::source::Budgeted::new(
        open(&disk),
        read.clone(),
        u64::MAX,
    ));
    let t = read_table(src.as_ref()).unwrap().unwrap();
    let mut seen = Vec::new();
    for p in &t.partitions {
        let slice = Slice::new(src.clone(), p.start, p.size).unwrap();
        let found = probe(&slice).unwrap();
        let window = Some((p.start, p.size));
        match &found {
            Some(f) => assert_matches_blkid(&disk, f, window),
            None => assert_eq!(
                blkid_tag(&disk, "TYPE", window),
                None,
                "partition {}",
                p.number
            ),
        }
        seen.push((p.number, found.map(|f| f.fs_type)));
    }
    assert_eq!(
        seen,
        vec![
            (1, Some("vfat")),
            (2, Some("ext4")),
            (3, Some("swap")),
            (4, None)
        ]
    );
    let total = read.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("table + 4 probes read {total} bytes");
    assert!(total < 1 << 20, "table + probes read {total} bytes");
}

/// A loop device attached for the LVM fixture, detached when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// LVM2 can only write a PV to a block device: pvcreate/vgcreate run on a loop device
/// attached to the image (fixture building only; our reader then reads the plain file).
#[test]
fn lvm2_pv_matches_blkid_and_pvck() {
    let dir = tempdir();
    let img = dir.path().join("pv.img");
    sh(&format!("truncate -s 64M '{}'", img.display()));
    let dev = String::from_utf8(run(Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&img)))
    .unwrap();
    let dev = Loop(dev.trim().to_string());
    let vg = format!("gkt{}", std::process::id());
    let config = format!(
        "devices {{ use_devicesfile=0 obtain_device_list_from_udev=0 filter=[\"a|^{}$|\",\"r|.*|\"] }} \
         backup {{ backup=0 archive=0 }} activation {{ udev_sync=0 udev_rules=0 }}",
        dev.0
    );
    run(Command::new("pvcreate")
        .arg("--config")
        .arg(&config)
        .arg(&dev.0));
    run(Command::new("vgcreate")
        .arg("--config")
        .arg(&config)
        .arg(&vg)
        .arg(&dev.0));
    drop(dev);

    let p = probe_of(&img);
    assert_eq!(p.fs_type, "LVM2_member");
    assert_matches_blkid(&img, &p, None);
    let headers = tool(&format!(
        "pvck --dump headers '{}' 2>/dev/null",
        img.display()
    ));
    assert_eq!(
        p.size,
        Some(num(&field_of(&headers, "pv_header.device_size")))
    );

    let src = open(&img);
    let label = lvm2::detect(src.as_ref()).unwrap().unwrap();
    let copy = lvm2::read_metadata(src.as_ref(), &label)
        .unwrap()
        .into_iter()
        .find(|c| c.verified)
        .expect("VG metadata");
    let summary = lvm2::vg::from_text(&lvm2::text::parse(&copy.text).unwrap()).unwrap();
    let metadata = tool(&format!(
        "pvck --dump metadata '{}' 2>/dev/null",
        img.display()
    ));
    assert_eq!(summary.name, vg);
    assert_eq!(summary.id, field_of(&metadata, "id =").trim_matches('"'));
    assert_eq!(summary.seqno, num(&field_of(&metadata, "seqno =")));
}

/// Largest number of bytes one parse of a mutated fixture may read.
const MUTATION_READ_BUDGET: u64 = 32 << 20;

/// Flips 1-4 random bytes inside `regions` of `base`, `rounds` times, and hands each
/// mutant to `check` through a byte-budgeted source: every parse must return (a result
/// or a typed error) without panicking and within the read budget.
fn mutate(
    name: &str,
    base: &[u8],
    regions: &[(usize, usize)],
    rounds: u64,
    check: impl Fn(&dyn ReadAt) -> String,
) {
    use guestkit_worker::inspect::source::ReadError;
    use guestkit_worker::inspect::source::{Budgeted, MemSource};
    use std::sync::atomic::AtomicU64;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let pristine = check(&MemSource(base.to_vec()));
    let mut outcomes = std::collections::BTreeSet::from([pristine.clone()]);
    for round in 0..rounds {
        let mut data = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let (start, end) = regions[rng.below(regions.len() as u64) as usize];
            let at = start + rng.below((end - start) as u64) as usize;
            data[at] = if rng.below(4) == 0 {
                0xff
            } else {
                rng.next() as u8
            };
        }
        let read = Arc::new(AtomicU64::new(0));
        let src = Budgeted::new(Arc::new(MemSource(data)), read, MUTATION_READ_BUDGET);
        let outcome = check(&src);
        assert!(
            !outcome.contains(
                &ReadError::BudgetExceeded {
                    limit: MUTATION_READ_BUDGET
                }
                .to_string()
            ),
            "{name} round {round}: read more than {MUTATION_READ_BUDGET} bytes"
        );
        outcomes.insert(outcome);
    }
    // The mutations reached the parser: not every round gave the same answer.
    assert!(
        outcomes.len() > 1,
        "{name}: every mutant parsed the same: {outcomes:?}"
    );
}

fn table_outcome(src: &dyn ReadAt) -> String {
    match read_table(src) {
        Ok(Some(t)) => {
            for p in &t.partitions {
                assert!(
                    p.start.checked_add(p.size).is_some_and(|e| e <= src.size()),
                    "partition outside: {p:?}"
                );
            }
            format!(
                "{:?} {} partitions, {} warnings",
                t.kind,
                t.partitions.len(),
                t.warnings.len()
            )
        }
        Ok(None) => "no table".into(),
        Err(e) => e.to_string(),
    }
}

fn probe_outcome(src: &dyn ReadAt) -> String {
    match probe(src) {
        Ok(p) => format!("{p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mutated_tables_and_superblocks_give_results_or_typed_errors() {
    let dir = tempdir();
    let d = dir.path();
    // Small disks so each mutant is cheap to copy.
    let gpt = d.join("gpt.img");
    let mbr = d.join("mbr.img");
    sh(&format!(
        "truncate -s 4M '{g}' && printf 'label: gpt\\nsize=2048, name=a\\nsize=2048\\n' | sfdisk -q '{g}' && \
         truncate -s 4M '{m}' && printf 'label: dos\\nsize=1024\\ntype=5\\nsize=512\\nsize=512\\nsize=512\\n' | sfdisk -q '{m}'",
        g = gpt.display(),
        m = mbr.display()
    ));
    let gpt_bytes = std::fs::read(&gpt).unwrap();
    let end = gpt_bytes.len();
    let gpt_regions = [
        (440, 512),
        (512, 604),
        (1024, 1024 + 3 * 128),
        (end - 512, end - 420),
        (end - 33 * 512, end - 33 * 512 + 384),
    ];
    mutate("gpt", &gpt_bytes, &gpt_regions, 400, table_outcome);

    let mbr_bytes = std::fs::read(&mbr).unwrap();
    let json = sfdisk_json(&mbr);
    let ext = &json["partitiontable"]["partitions"][1];
    let (ext_start, ext_len) = (
        ext["start"].as_u64().unwrap() as usize,
        ext["size"].as_u64().unwrap() as usize,
    );
    // The MBR entries and every EBR (the sectors of the extended partition that end in
    // 0x55AA in the pristine image).
    let mut mbr_regions = vec![(440, 512)];
    for sector in ext_start..ext_start + ext_len {
        let at = sector * 512;
        if mbr_bytes[at + 510..at + 512] == [0x55, 0xaa] {
            mbr_regions.push((at + 446, at + 512));
        }
    }
    assert_eq!(mbr_regions.len(), 4, "three EBRs expected");
    mutate("mbr", &mbr_bytes, &mbr_regions, 400, table_outcome);

    // Superblocks: the first 1 MiB of each filesystem, mutated in its metadata area.
    for (name, mkfs, regions) in [
        ("ext4", "mkfs.ext4 -q", vec![(1024, 2048)]),
        (
            "ext4-nocsum",
            "mkfs.ext4 -q -O ^metadata_csum",
            vec![(1024, 2048)],
        ),
        (
            "vfat16",
            "mkfs.vfat -F 16 -n L",
            vec![(0, 512), (0x2_0000, 0x2_0100)],
        ),
        (
            "vfat32",
            "mkfs.vfat -F 32 -n L",
            vec![(0, 512), (0x200, 0x400)],
        ),
        ("xfs", "mkfs.xfs -q", vec![(0, 512)]),
        ("btrfs", "mkfs.btrfs -q", vec![(0x10000, 0x10400)]),
        ("ntfs", "mkntfs -F -Q -L L", vec![(0, 512)]),
        ("swap", "mkswap -L L", vec![(1024, 1100), (4086, 4096)]),
    ] {
        let img = d.join(format!("{name}.img"));
        sh(&format!(
            "truncate -s 320M '{0}' && {mkfs} '{0}' >/dev/null 2>&1",
            img.display()
        ));
        let mut head = vec![0u8; 1 << 20];
        use std::os::unix::fs::FileExt;
        std::fs::File::open(&img)
            .unwrap()
            .read_exact_at(&mut head, 0)
            .unwrap();
        mutate(name, &head, &regions, 300, probe_outcome);
    }
}
