//! The hostile images of a red-team pass (issue 9), each rebuilt here the way it was
//! made (mkfs.ext4 -d, debugfs, qemu-img, a few lines of Rust), and run through the real
//! binary's `inspect`: every one must end with a report carrying the warning that names
//! what was refused (or a typed error), under 1 GiB of peak RSS (`/usr/bin/time`), with
//! a hang detector (`timeout`) far above a normal run. No wall-clock assertion.
//!
//! `hostile_images_for_measurement` (ignored) writes every image to
//! `$GUESTKIT_HOSTILE_DIR`, to time old and new binaries by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{run, sh, tempdir};

/// Hang detector per run (not a speed assertion: a fixed image takes well under 10 s).
const RUN_TIMEOUT_S: u64 = 120;
/// Address-space bound per run (KiB): an unbounded allocation aborts instead of
/// swapping the machine.
const RUN_MEMORY_KB: u64 = 3 * 1024 * 1024;
/// The bound on peak resident memory (KiB).
const MAX_RSS_KB: u64 = 1024 * 1024;

/// What one `guestkit-worker inspect` run gave.
struct Ran {
    /// The report, or `None` for a typed error (exit 3 or 4 with a message).
    report: Option<Value>,
    stderr: String,
}

impl Ran {
    fn warnings(&self) -> Vec<String> {
        self.report.as_ref().expect("a report")["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect()
    }

    fn warned(&self, needle: &str) -> bool {
        self.warnings().iter().any(|w| w.contains(needle))
    }
}

/// Runs the binary's `inspect` on `image` with `args`, bounded, and checks the outcome
/// is a report or a typed error within [`MAX_RSS_KB`].
fn inspect(image: &Path, args: &[&str]) -> Ran {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v {RUN_MEMORY_KB}; exec /usr/bin/time -f 'peak-rss-kb %M' timeout {RUN_TIMEOUT_S} \"$@\""
        ))
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_guestkit-worker"))
        .args(["--log-level", "error", "inspect"])
        .args(args)
        .arg(image)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let peak_rss_kb = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kb "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX);
    let code = out.status.code();
    assert_ne!(
        code,
        Some(124),
        "{image:?}: no answer within {RUN_TIMEOUT_S} s"
    );
    assert!(!stderr.contains("panicked"), "{image:?}: {stderr}");
    let report = match code {
        Some(0) => Some(serde_json::from_slice(&out.stdout).expect("report is JSON")),
        // 3: the image cannot be read; 4: a limit stopped it (see `inspect --help`).
        Some(3 | 4) if stderr.contains("guestkit-worker: ") => None,
        _ => panic!("{image:?}: exit {code:?}: {stderr}"),
    };
    assert!(
        peak_rss_kb < MAX_RSS_KB,
        "{image:?}: peak RSS {peak_rss_kb} KiB over {MAX_RSS_KB}"
    );
    eprintln!("{}: peak RSS {peak_rss_kb} KiB", image.display());
    Ran { report, stderr }
}

/// A small Debian-looking root: what `roots::classify` and the release reader need.
fn linux_tree(dir: &Path) {
    for d in ["etc", "bin", "usr/bin"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/fstab"), "# empty\n").unwrap();
    std::fs::write(dir.join("etc/hostname"), "hostile\n").unwrap();
}

/// `mkfs.ext4 -d tree` into a new raw file of `mib` MiB (no metadata checksums, so a
/// test can patch metadata bytes directly, as the red team did with debugfs).
fn mkfs_ext4(tree: &Path, out: &Path, mib: u64) {
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-O",
            "^metadata_csum",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(tree)
        .arg(out)
        .arg(format!("{mib}M")));
}

/// Byte offset of the inode of `path` in the ext4 image, from `debugfs imap`.
fn inode_offset(image: &Path, path: &str) -> u64 {
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("imap {path}"))
        .arg(image));
    let text = String::from_utf8_lossy(&out);
    let block: u64 = text
        .split("located at block ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or_else(|| panic!("debugfs imap: {text}"));
    let offset = text
        .split("offset 0x")
        .nth(1)
        .and_then(|r| u64::from_str_radix(r.trim(), 16).ok())
        .unwrap_or_else(|| panic!("debugfs imap: {text}"));
    block * block_size(image) + offset
}

fn block_size(image: &Path) -> u64 {
    let mut sb = [0u8; 1024];
    read_at(image, 1024, &mut sb);
    1024 << u32::from_le_bytes(sb[0x18..0x1c].try_into().unwrap())
}

fn read_at(path: &Path, at: u64, buf: &mut [u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(buf, at)
        .unwrap();
}

fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, at)
        .unwrap();
}

fn extent_header(entries: u16, max: u16, depth: u16) -> Vec<u8> {
    [
        &0xf30au16.to_le_bytes()[..],
        &entries.to_le_bytes(),
        &max.to_le_bytes(),
        &depth.to_le_bytes(),
        &[0u8; 4],
    ]
    .concat()
}

/// The red team's ext4: `/etc/os-release`'s extent tree is a DAG of depth 5 (every
/// index entry of a level points at the one node of the next level) over a leaf of
/// zero-length extents, in the last blocks of the filesystem.
fn ext4_dag(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    let img = dir.join("dag.ext4");
    mkfs_ext4(&tree, &img, 16);
    make_dag(&img, "/etc/os-release");
    img
}

/// Replaces the extent tree of `path` in the ext4 `img` with the red team's DAG, whose
/// nodes go to the last five blocks of the filesystem (free in a 16 MiB one).
fn make_dag(img: &Path, path: &str) {
    let bs = block_size(img);
    let per_node = ((bs - 12) / 12) as u16;
    let blocks = std::fs::metadata(img).unwrap().len() / bs;
    // Node of depth d at block `blocks - 1 - d` (d = 0 is the leaf).
    let node_block = |d: u64| blocks - 1 - d;
    for depth in 0..5u64 {
        let mut node = extent_header(per_node, per_node, depth as u16);
        for _ in 0..per_node {
            let mut e = [0u8; 12];
            if depth > 0 {
                e[4..8].copy_from_slice(&(node_block(depth - 1) as u32).to_le_bytes());
            } else {
                // ee_block 0, ee_len 0: a zero-length extent.
                e[8..12].copy_from_slice(&(node_block(0) as u32).to_le_bytes());
            }
            node.extend(e);
        }
        write_at(img, node_block(depth) * bs, &node);
    }
    let mut root = extent_header(4, 4, 5);
    for _ in 0..4 {
        let mut e = [0u8; 12];
        e[4..8].copy_from_slice(&(node_block(4) as u32).to_le_bytes());
        root.extend(e);
    }
    write_at(img, inode_offset(img, path) + 0x28, &root);
}

/// The DAG in the extent tree of `what`: a directory (`/etc`) or a symlink long enough
/// to be stored in blocks (`/etc/hostname`, pointing at a file of a 100-byte name).
/// `None` leaves the filesystem sound (the control).
fn ext4_dag_in(dir: &Path, what: Option<&str>) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    let long = format!("{}.txt", "h".repeat(96));
    std::fs::rename(tree.join("etc/hostname"), tree.join("etc").join(&long)).unwrap();
    std::os::unix::fs::symlink(format!("/etc/{long}"), tree.join("etc/hostname")).unwrap();
    let img = dir.join("dag-in.ext4");
    mkfs_ext4(&tree, &img, 16);
    if let Some(what) = what {
        make_dag(&img, what);
    }
    img
}

/// A GPT disk holding `fs` at LBA 2048, with one entry per `(first_lba, last_lba)` of
/// `parts` (overlaps allowed, which sfdisk refuses to write), primary and backup.
fn gpt_disk(out: &Path, fs: Option<&Path>, parts: &[(u64, u64)], total_sectors: u64) {
    let entries = parts.len().max(128) as u64;
    let entry_sectors = (entries * 128).div_ceil(512);
    let f = std::fs::File::create(out).unwrap();
    f.set_len(total_sectors * 512).unwrap();
    drop(f);
    if let Some(fs) = fs {
        let bytes = std::fs::read(fs).unwrap();
        write_at(out, 2048 * 512, &bytes);
    }
    let mut mbr = [0u8; 512];
    mbr[446 + 4] = 0xee;
    mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    let size = (total_sectors - 1).min(u64::from(u32::MAX)) as u32;
    mbr[446 + 12..446 + 16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    write_at(out, 0, &mbr);
    let linux: [u8; 16] = [
        0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d,
        0xe4,
    ];
    let mut array = vec![0u8; (entries * 128) as usize];
    for (i, (first, last)) in parts.iter().enumerate() {
        let e = &mut array[i * 128..(i + 1) * 128];
        e[..16].copy_from_slice(&linux);
        e[16..24].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        e[24] = 0x42;
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
    }
    let array_crc = crc32fast::hash(&array);
    let header = |current: u64, backup: u64, array_lba: u64| {
        let mut h = vec![0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + entry_sectors).to_le_bytes());
        h[48..56].copy_from_slice(&(total_sectors - 2 - entry_sectors).to_le_bytes());
        h[56] = 0x17;
        h[72..80].copy_from_slice(&array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(entries as u32).to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let last = total_sectors - 1;
    write_at(out, 512, &header(1, last, 2));
    write_at(out, 2 * 512, &array);
    let backup_array = last - entry_sectors;
    write_at(out, backup_array * 512, &array);
    write_at(out, last * 512, &header(last, 1, backup_array));
}

fn sshd_glob_bomb(dir: &Path, mib: usize) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    let d = tree.join("etc/ssh/d");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..2000 {
        std::fs::write(d.join(format!("{i:04}.conf")), "Port 22\n").unwrap();
    }
    let line = format!("Include {}\n", "d/* ".repeat(100));
    let mut text = line.repeat(mib * 1024 * 1024 / line.len());
    text.push_str("PermitRootLogin no\n");
    std::fs::write(tree.join("etc/ssh/sshd_config"), text).unwrap();
    let img = dir.join("sshd.ext4");
    mkfs_ext4(&tree, &img, 32 + 2 * mib as u64);
    img
}

fn networkd_quadratic(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    let net = tree.join("etc/systemd/network");
    std::fs::create_dir_all(&net).unwrap();
    let mut text = String::from("[Match]\n");
    for i in 0..5000 {
        text.push_str(&format!("Name=eth{i}\n"));
    }
    text.push_str("[Network]\n");
    text.push_str(&"Address=10.0.0.1/24\n".repeat(100_000));
    std::fs::write(net.join("10-bomb.network"), text).unwrap();
    let img = dir.join("networkd.ext4");
    mkfs_ext4(&tree, &img, 16);
    img
}

fn netplan_aliases(dir: &Path, items: usize) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    std::fs::create_dir_all(tree.join("etc/netplan")).unwrap();
    let yaml = format!(
        "network:\n  version: 2\na: &a [{}]\nb: [{}]\n",
        vec!["x"; items].join(","),
        vec!["*a"; items].join(",")
    );
    std::fs::write(tree.join("etc/netplan/01-bomb.yaml"), yaml).unwrap();
    let img = dir.join("netplan.ext4");
    mkfs_ext4(&tree, &img, 16);
    img
}

fn keyfile_section(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    let nm = tree.join("etc/NetworkManager/system-connections");
    std::fs::create_dir_all(&nm).unwrap();
    let mut text = format!("[{}]\n", "s".repeat(1 << 20));
    for i in 0..2500 {
        text.push_str(&format!("key{i}=value\n"));
    }
    text.push_str("[connection]\nid=eth0\n[ipv4]\nmethod=auto\n");
    std::fs::write(nm.join("bomb.nmconnection"), text).unwrap();
    let img = dir.join("keyfile.ext4");
    mkfs_ext4(&tree, &img, 16);
    img
}

/// One 16 MiB ext4 (a whole Linux root) under `n` GPT entries that all cover it.
fn gpt_overlapping(dir: &Path, n: usize) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    let fs = dir.join("fs.ext4");
    mkfs_ext4(&tree, &fs, 16);
    let img = dir.join("overlap.raw");
    let last = 2048 + 16 * 2048 - 1;
    gpt_disk(
        &img,
        Some(&fs),
        &vec![(2048, last); n],
        2048 + 16 * 2048 + 2048,
    );
    img
}

/// A raw GPT disk of `n` small partitions, each alone in its own 2 MiB with a little data
/// at its start (so an image format stores its cluster or grain).
fn partitions_raw(dir: &Path, n: u64) -> PathBuf {
    let raw = dir.join("parts.raw");
    let cluster_sectors = 4096;
    let parts: Vec<(u64, u64)> = (1..=n)
        .map(|i| {
            (
                i * cluster_sectors,
                i * cluster_sectors + cluster_sectors - 1,
            )
        })
        .collect();
    let total = (n + 2) * cluster_sectors;
    gpt_disk(&raw, None, &parts, total);
    let filler = b"hostile ".repeat(512);
    for (first, _) in &parts {
        write_at(&raw, first * 512, &filler);
    }
    raw
}

/// Converts `raw` with `qemu-img convert` and these options into `out`, then removes it.
fn convert(raw: &Path, args: &[&str], out: &Path) {
    run(Command::new("qemu-img")
        .args(["convert", "-q"])
        .args(args)
        .arg(raw)
        .arg(out));
    std::fs::remove_file(raw).unwrap();
}

/// A qcow2 of 2 MiB clusters with `n` small partitions, each alone in its own
/// compressed cluster.
fn qcow2_compressed_partitions(dir: &Path, n: u64) -> PathBuf {
    let img = dir.join("parts.qcow2");
    let args = ["-c", "-O", "qcow2", "-o", "cluster_size=2M"];
    convert(&partitions_raw(dir, n), &args, &img);
    img
}

/// The same partitions in a streamOptimized VMDK: every grain deflated on its own.
fn vmdk_stream_partitions(dir: &Path, n: u64) -> PathBuf {
    let img = dir.join("parts.vmdk");
    let args = ["-O", "vmdk", "-o", "subformat=streamOptimized"];
    convert(&partitions_raw(dir, n), &args, &img);
    img
}

/// An rpm root whose sparse `rpmdb.sqlite` and `-wal` are 512 MiB each.
fn rpmdb_and_wal(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    std::fs::write(
        tree.join("etc/os-release"),
        "ID=fedora\nVERSION_ID=40\nNAME=Fedora\n",
    )
    .unwrap();
    let rpm = tree.join("var/lib/rpm");
    std::fs::create_dir_all(&rpm).unwrap();
    for name in ["rpmdb.sqlite", "rpmdb.sqlite-wal"] {
        let f = std::fs::File::create(rpm.join(name)).unwrap();
        f.set_len(512 << 20).unwrap();
    }
    std::fs::write(rpm.join("rpmdb.sqlite"), {
        let mut head = b"SQLite format 3\0".to_vec();
        head.resize(100, 0);
        head
    })
    .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(rpm.join("rpmdb.sqlite"))
        .unwrap();
    f.set_len(512 << 20).unwrap();
    let img = dir.join("rpm.ext4");
    mkfs_ext4(&tree, &img, 64);
    img
}

#[test]
fn ext4_extent_dag_is_refused_on_both_overlapping_partitions() {
    let dir = tempdir();
    let fs = ext4_dag(dir.path());
    let ran = inspect(&fs, &[]);
    assert!(ran.warned("/etc/os-release"), "{:?}", ran.warnings());
    assert!(ran.warned("referenced twice"), "{:?}", ran.warnings());
    // The same filesystem under two GPT entries of one byte range: probed once.
    let disk = dir.path().join("two.raw");
    let last = 2048 + 16 * 2048 - 1;
    gpt_disk(
        &disk,
        Some(&fs),
        &[(2048, last), (2048, last)],
        2048 + 16 * 2048 + 2048,
    );
    let ran = inspect(&disk, &[]);
    let report = ran.report.as_ref().unwrap();
    assert_eq!(report["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(report["filesystems"].as_array().unwrap().len(), 1);
    assert!(ran.warned("repeat the byte range"), "{:?}", ran.warnings());
    assert!(ran.warned("referenced twice"), "{:?}", ran.warnings());
}

#[test]
fn ext4_extent_dag_in_a_directory_or_a_symlink_is_refused() {
    use guestkit_worker::inspect::fs::{ext4::Ext4Fs, FileSystem};
    use guestkit_worker::inspect::image;
    let dir = tempdir();
    // The control: the long symlink reads, so the hostname comes through it.
    let tree = dir.path().join("control");
    std::fs::create_dir_all(&tree).unwrap();
    let control = ext4_dag_in(&tree, None);
    let ran = inspect(&control, &[]);
    assert_eq!(
        ran.report.as_ref().unwrap()["operating_systems"][0]["hostname"],
        "hostile"
    );
    // A DAG under the symlink: its target is never read, and the warning says why.
    let link = dir.path().join("link");
    std::fs::create_dir_all(&link).unwrap();
    let ran = inspect(&ext4_dag_in(&link, Some("/etc/hostname")), &[]);
    let os = &ran.report.as_ref().unwrap()["operating_systems"][0];
    assert_eq!(os["distro"], "debian", "{os:#}");
    assert!(os["hostname"].is_null(), "{os:#}");
    assert!(ran.warned("referenced twice"), "{:?}", ran.warnings());
    // A DAG under `/etc`: nothing below it is read, so no OS is found (the root
    // classification drops unreadable roots without a warning)...
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let img = ext4_dag_in(&etc, Some("/etc"));
    let ran = inspect(&img, &[]);
    let report = ran.report.as_ref().unwrap();
    assert_eq!(report["operating_systems"].as_array().unwrap().len(), 0);
    // ...and the filesystem says why for any path below it.
    let opened = image::open(&img, None, std::slice::from_ref(&etc)).unwrap();
    let fs = Ext4Fs::open(opened.source).unwrap();
    for path in ["/etc/os-release", "/etc"] {
        let err = fs
            .read_dir(path)
            .map(|_| ())
            .and(fs.read_file(path, 1 << 20).map(|_| ()));
        let err = err.unwrap_err().to_string();
        assert!(err.contains("referenced twice"), "{path}: {err}");
    }
    assert!(fs.read_dir("/").is_ok());
}

#[test]
fn sshd_include_glob_bomb_is_capped() {
    let dir = tempdir();
    let ran = inspect(&sshd_glob_bomb(dir.path(), 4), &[]);
    let os = &ran.report.as_ref().unwrap()["operating_systems"][0];
    // The keyword after the includes is still read.
    assert_eq!(os["security"]["ssh"]["permit_root_login"], "no");
    assert!(ran.warned("more than 16 patterns"), "{:?}", ran.warnings());
    assert!(
        ran.warned("more than 64 Include lines"),
        "{:?}",
        ran.warnings()
    );
}

#[test]
fn networkd_names_times_addresses_is_linear() {
    let dir = tempdir();
    let ran = inspect(&networkd_quadratic(dir.path()), &[]);
    let ifaces = ran.report.as_ref().unwrap()["operating_systems"][0]["network"]["interfaces"]
        .as_array()
        .unwrap()
        .clone();
    // 5,000 names capped at 1,024 interfaces, one distinct address each.
    assert_eq!(ifaces.len(), 1024);
    assert_eq!(ifaces[0]["name"], "eth0");
    assert_eq!(ifaces[0]["addresses"], serde_json::json!(["10.0.0.1/24"]));
}

#[test]
fn netplan_alias_fan_out_is_refused() {
    let dir = tempdir();
    let ran = inspect(&netplan_aliases(dir.path(), 5000), &[]);
    assert!(ran.warned("01-bomb.yaml"), "{:?}", ran.warnings());
    assert!(ran.warned("YAML nodes"), "{:?}", ran.warnings());
}

#[test]
fn keyfile_huge_section_name_is_not_copied_per_key() {
    let dir = tempdir();
    let ran = inspect(&keyfile_section(dir.path()), &[]);
    let ifaces = &ran.report.as_ref().unwrap()["operating_systems"][0]["network"]["interfaces"];
    assert_eq!(ifaces[0]["name"], "eth0");
    assert_eq!(ifaces[0]["method"], "dhcp");
}

#[test]
fn gpt_of_1024_overlapping_partitions_opens_the_filesystem_once() {
    let dir = tempdir();
    let ran = inspect(&gpt_overlapping(dir.path(), 1024), &[]);
    let report = ran.report.as_ref().unwrap();
    assert_eq!(report["partitions"].as_array().unwrap().len(), 1024);
    assert_eq!(report["filesystems"].as_array().unwrap().len(), 1);
    assert_eq!(report["operating_systems"].as_array().unwrap().len(), 1);
    assert!(
        ran.warned("1023 partitions repeat the byte range"),
        "{:?}",
        ran.warnings()
    );
}

/// One 16 MiB ext4 (a whole Linux root) under `n` GPT entries of distinct byte ranges
/// (each one sector longer than the one before), so each is probed and opened.
fn gpt_distinct(dir: &Path, n: u64) -> PathBuf {
    let tree = dir.join("tree");
    linux_tree(&tree);
    let fs = dir.join("fs.ext4");
    mkfs_ext4(&tree, &fs, 16);
    let last = 2048 + 16 * 2048 - 1;
    let parts: Vec<(u64, u64)> = (0..n).map(|i| (2048, last + i)).collect();
    let img = dir.join("distinct.raw");
    gpt_disk(&img, Some(&fs), &parts, 2048 + 16 * 2048 + 2048);
    img
}

/// Threads of `pid` named `name`, from /proc (an oracle outside the worker).
fn threads_named(pid: u32, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

#[test]
fn sixty_four_ext4_partitions_never_hold_more_than_the_live_cap_of_threads() {
    use guestkit_worker::inspect::caps::MAX_OS_ROOTS;
    use guestkit_worker::inspect::fs::ext4::MAX_LIVE;
    let dir = tempdir();
    let img = gpt_distinct(dir.path(), 64);
    let mut child = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .args(["--log-level", "error", "inspect"])
        .arg(&img)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut { stdout }, &mut out).unwrap();
        out
    });
    let (mut peak, mut samples) = (0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(RUN_TIMEOUT_S);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "no answer");
        let n = threads_named(child.id(), "ext4-reader");
        peak = peak.max(n);
        samples += usize::from(n > 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(child.wait().unwrap().success());
    let report: Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    eprintln!("peak {peak} ext4 reader threads over {samples} samples that saw one");
    // Every partition was opened and the first OS roots inspected (twice the live cap:
    // closed filesystems were loaded again).
    assert_eq!(report["filesystems"].as_array().unwrap().len(), 64);
    let oses = report["operating_systems"].as_array().unwrap();
    assert_eq!(oses.len(), MAX_OS_ROOTS);
    assert!(oses.iter().all(|o| o["hostname"] == "hostile"), "{oses:?}");
    assert!(samples > 0, "the inspection ended before a thread was seen");
    assert!(peak <= MAX_LIVE, "{peak} ext4 reader threads at once");
}

#[test]
fn qcow2_compressed_partitions_are_capped() {
    let dir = tempdir();
    let ran = inspect(&qcow2_compressed_partitions(dir.path(), 1000), &[]);
    let report = ran.report.as_ref().unwrap();
    assert_eq!(report["partitions"].as_array().unwrap().len(), 1000);
    assert!(
        ran.warned("936 partitions not probed"),
        "{:?}",
        ran.warnings()
    );
}

#[test]
fn vmdk_stream_optimized_partitions_are_capped_and_inflation_is_charged() {
    use guestkit_worker::inspect::image;
    use guestkit_worker::inspect::source::ReadAt;
    let dir = tempdir();
    let img = vmdk_stream_partitions(dir.path(), 1000);
    let ran = inspect(&img, &[]);
    let report = ran.report.as_ref().unwrap();
    assert_eq!(report["image"]["format"], "vmdk");
    assert_eq!(report["partitions"].as_array().unwrap().len(), 1000);
    assert!(
        ran.warned("936 partitions not probed"),
        "{:?}",
        ran.warnings()
    );
    // The charge itself: one byte read from each partition inflates its whole grain,
    // whose size the VMDK header states (`grainSize`, sectors, at byte 20).
    let mut header = [0u8; 28];
    read_at(&img, 0, &mut header);
    let grain = u64::from_le_bytes(header[20..28].try_into().unwrap()) * 512;
    let opened = image::open(&img, Some("vmdk"), &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(opened.source.inflated(), 0);
    let parts = 100u64;
    for i in 1..=parts {
        let mut byte = [0u8; 1];
        opened
            .source
            .read_exact_at(i * 4096 * 512, &mut byte)
            .unwrap();
        assert_eq!(byte[0], b'h', "partition {i} starts with its filler");
    }
    let inflated = opened.source.inflated();
    eprintln!("{parts} one-byte reads inflated {inflated} bytes (grain {grain})");
    assert_eq!(inflated, parts * grain);
}

#[test]
fn rpmdb_and_wal_share_one_cap() {
    let dir = tempdir();
    let ran = inspect(&rpmdb_and_wal(dir.path()), &[]);
    assert!(
        ran.warned("rpmdb.sqlite-wal not read"),
        "{:?}",
        ran.warnings()
    );
}

#[test]
fn cli_backing_files_only_next_to_the_image() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    linux_tree(&tree);
    std::fs::create_dir_all(dir.path().join("home/outside")).unwrap();
    let secret = dir.path().join("home/outside/secret.ext4");
    mkfs_ext4(&tree, &secret, 16);
    let top = dir.path().join("home/crafted.qcow2");
    let next_to = dir.path().join("home/base.ext4");
    std::fs::copy(&secret, &next_to).unwrap();
    let create = |backing: &str| {
        run(Command::new("qemu-img")
            .args([
                "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", backing,
            ])
            .arg(&top)
            .arg("16M"));
    };
    // A backing file in a subfolder of the image's folder: refused.
    create("outside/secret.ext4");
    let ran = inspect(&top, &[]);
    assert!(ran.report.is_none(), "read a backing file from a subfolder");
    assert!(ran.stderr.contains("outside"), "{}", ran.stderr);
    // ...and in a sibling folder.
    create("../home2/secret.ext4");
    std::fs::create_dir_all(dir.path().join("home2")).unwrap();
    std::fs::copy(&secret, dir.path().join("home2/secret.ext4")).unwrap();
    assert!(inspect(&top, &[]).report.is_none(), "read a sibling folder");
    // Unless --image-root names that folder.
    let root = dir.path().join("home2");
    let ran = inspect(&top, &["--image-root", root.to_str().unwrap()]);
    let report = ran.report.expect("backing file inside --image-root");
    assert_eq!(report["operating_systems"][0]["hostname"], "hostile");
    // A backing file right next to the image: read.
    create("base.ext4");
    let ran = inspect(&top, &[]);
    let report = ran.report.expect("backing file next to the image");
    assert_eq!(report["operating_systems"][0]["hostname"], "hostile");
}

/// Writes every hostile image to `$GUESTKIT_HOSTILE_DIR` (for timing binaries by hand).
#[test]
#[ignore]
fn hostile_images_for_measurement() {
    let out = PathBuf::from(std::env::var("GUESTKIT_HOSTILE_DIR").expect("GUESTKIT_HOSTILE_DIR"));
    std::fs::create_dir_all(&out).unwrap();
    type Build = Box<dyn Fn(&Path) -> PathBuf>;
    let builders: Vec<(&str, Build)> = vec![
        ("ext4-dag.raw", Box::new(ext4_dag)),
        ("sshd-16mib.raw", Box::new(|d: &Path| sshd_glob_bomb(d, 16))),
        ("networkd.raw", Box::new(networkd_quadratic)),
        (
            "netplan-25k.raw",
            Box::new(|d: &Path| netplan_aliases(d, 5000)),
        ),
        ("keyfile.raw", Box::new(keyfile_section)),
        (
            "gpt-1024.raw",
            Box::new(|d: &Path| gpt_overlapping(d, 1024)),
        ),
        (
            "qcow2-1000.qcow2",
            Box::new(|d: &Path| qcow2_compressed_partitions(d, 1000)),
        ),
        ("rpmdb-wal.raw", Box::new(rpmdb_and_wal)),
        (
            "vmdk-1000.vmdk",
            Box::new(|d: &Path| vmdk_stream_partitions(d, 1000)),
        ),
    ];
    for (name, build) in builders {
        let dir = tempdir();
        let img = build(dir.path());
        sh(&format!(
            "cp --sparse=always '{}' '{}'",
            img.display(),
            out.join(name).display()
        ));
    }
}

/// CPU time (user + system, clock ticks) `pid` used so far, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, utime 14 and stime 15 (1-based, of the whole).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The check on the daemon side: a job on each hostile image with a 5 s timeout
/// gets its result (the report with the warning that names what was refused, or
/// `failed/timeout` where a debug build under load needs longer), no inspection process
/// is left behind and the worker goes idle, and SIGTERM during a hostile job ends the
/// worker within its grace. The bounds are hang detectors, not speed assertions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_reports_every_hostile_image_and_keeps_no_child() {
    use crate::common::broker::{Pool, WorkerProcess, BROKER_LOCK};
    use crate::worker_isolation::{children_of, inspect_job, wait_for_child, wait_gone};
    use std::time::Duration;

    type Build = Box<dyn Fn(&Path) -> PathBuf>;
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let root = dir.path().join("images");
    let cases: Vec<(&str, Build, Option<&str>)> = vec![
        ("ext4-dag", Box::new(ext4_dag), Some("referenced twice")),
        (
            "ext4-dag-dir",
            Box::new(|d: &Path| ext4_dag_in(d, Some("/etc"))),
            Some("no operating system root found"),
        ),
        (
            "sshd",
            Box::new(|d: &Path| sshd_glob_bomb(d, 4)),
            Some("more than 16 patterns"),
        ),
        ("networkd", Box::new(networkd_quadratic), None),
        (
            "netplan",
            Box::new(|d: &Path| netplan_aliases(d, 5000)),
            Some("YAML nodes"),
        ),
        ("keyfile", Box::new(keyfile_section), None),
        (
            "gpt-1024",
            Box::new(|d: &Path| gpt_overlapping(d, 1024)),
            Some("1023 partitions repeat the byte range"),
        ),
        (
            "qcow2-1000",
            Box::new(|d: &Path| qcow2_compressed_partitions(d, 1000)),
            Some("936 partitions not probed"),
        ),
        (
            "vmdk-1000",
            Box::new(|d: &Path| vmdk_stream_partitions(d, 1000)),
            Some("936 partitions not probed"),
        ),
        (
            "rpmdb-wal",
            Box::new(rpmdb_and_wal),
            Some("rpmdb.sqlite-wal not read"),
        ),
    ];
    let mut images = Vec::new();
    for (name, build, _) in &cases {
        let case_dir = root.join(name);
        std::fs::create_dir_all(&case_dir).unwrap();
        images.push(build(&case_dir));
    }

    let pool = Pool::new("hostile-daemon").await;
    let mut worker = WorkerProcess::spawn(
        pool.pool(),
        &[
            "--max-concurrent",
            "2",
            "--shutdown-grace",
            "2",
            "--image-root",
            root.to_str().unwrap(),
        ],
    );
    let worker_pid = worker.child.id();
    for ((name, _, _), image) in cases.iter().zip(&images) {
        pool.publish(&inspect_job(
            &format!("hostile-{name}"),
            serde_json::json!({ "path": image }),
            5,
        ))
        .await;
    }
    let results = pool.results(cases.len(), Duration::from_secs(600)).await;
    for (name, _, needle) in &cases {
        let body = &results
            .iter()
            .find(|r| r.body["job_id"] == format!("hostile-{name}"))
            .unwrap_or_else(|| panic!("no result for {name}"))
            .body;
        let ms = body["duration_ms"].as_u64().unwrap_or(0);
        match (body["status"].as_str(), body["error"]["kind"].as_str()) {
            (Some("completed"), _) => {
                let warnings = body["output"]["warnings"].to_string();
                if let Some(needle) = needle {
                    assert!(warnings.contains(needle), "{name}: {warnings}");
                }
                eprintln!("{name}: completed in {ms} ms");
            }
            (Some("failed"), Some("timeout")) => eprintln!("{name}: timed out after {ms} ms"),
            _ => panic!("{name}: {body:#}"),
        }
    }
    // Every inspection process is gone, and the worker is idle: a thread left spinning
    // would burn a full core (100 ticks a second); heartbeats cost next to nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !children_of(worker_pid).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "children left: {:?}",
            children_of(worker_pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = cpu_ticks(worker_pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cpu_ticks(worker_pid) - before;
    eprintln!("worker used {idle} ticks in 2 s after its jobs");
    assert!(idle < 100, "worker still busy: {idle} ticks in 2 s");

    // SIGTERM while children work on hostile images again: the worker ends within its
    // grace (plus a generous margin) and its children with it.
    for ((name, _, _), image) in cases.iter().zip(&images) {
        pool.publish(&inspect_job(
            &format!("hostile-term-{name}"),
            serde_json::json!({ "path": image }),
            600,
        ))
        .await;
    }
    wait_for_child(worker_pid, Duration::from_secs(30)).await;
    let children = children_of(worker_pid);
    let sent = std::time::Instant::now();
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(15)).await;
    eprintln!(
        "worker exited {:?} after SIGTERM (grace 2 s) with {} children",
        sent.elapsed(),
        children.len()
    );
    assert!(status.success(), "{status:?}");
    for (pid, _, _) in children {
        wait_gone(pid, Duration::from_secs(10)).await;
    }
    pool.cleanup().await;
}

/// Running out of threads or memory is not a warning about one filesystem: under a
/// 4 MiB address-space limit the ext4 reader threads of eight sound filesystems (2 MiB
/// of stack each) cannot all be started, and the job fails with `resource_limit` naming
/// the limit, in the worker's child process as in the CLI. The control, under the
/// default limit, completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_under_a_small_memory_limit_fails_with_resource_limit() {
    use guestkit_worker::isolation::Isolation;
    use guestkit_worker::progress::Progress;
    let dir = tempdir();
    let img = gpt_distinct(dir.path(), 8);
    let roots = [dir.path().to_path_buf()];
    let job = serde_json::json!({"image": {"path": img}});
    let cancel = tokio_util::sync::CancellationToken::new();
    let run = |limit: u64| {
        let isolation = Isolation::new(env!("CARGO_BIN_EXE_guestkit-worker"), limit);
        let (job, roots, cancel) = (job.clone(), roots.clone(), cancel.clone());
        async move {
            isolation
                .run(
                    "guestkit.inspect",
                    &job,
                    &roots,
                    60,
                    &Progress::disabled(),
                    &cancel,
                )
                .await
        }
    };
    let err = run(4 << 20).await.unwrap_err();
    eprintln!("4 MiB: {err:?}");
    assert_eq!(err.kind, "resource_limit", "{err:?}");
    assert!(err.message.contains("ext4 reader thread"), "{err:?}");
    assert!(err.message.contains("memory limit of 4 MiB"), "{err:?}");
    let done = run(2 << 30).await.unwrap();
    assert_eq!(done.output["operating_systems"][0]["hostname"], "hostile");

    let out = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .args(["--inspect-memory-limit", "4M", "inspect"])
        .arg(&img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ext4 reader thread"), "{stderr}");
    assert!(stderr.contains("memory limit of 4 MiB"), "{stderr}");
}
