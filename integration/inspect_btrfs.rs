//! The btrfs oracle. `mkfs.btrfs --rootdir` images (single and DUP metadata, with and
//! without no-holes) are walked through our reader and compared with the source tree:
//! paths, kinds, sizes, bytes, symlink targets, mode/uid/gid as `stat` sees them, and the
//! probe's uuid/label against `blkid -p`. A kernel-written image (guestfish: RAID1 over
//! two disks, zlib/lzo/zstd compress-force, subvolumes with a default, a snapshot,
//! prealloc and sparse files) is checked against the tar input and guestfish's own
//! listings. A Fedora-like guest (root and home subvolumes, zstd) is fully inspected.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use guestkit_worker::inspect::fs::btrfs::BtrfsFs;
use guestkit_worker::inspect::fs::probe::probe;
use guestkit_worker::inspect::fs::{FileKind, FileSystem, FsError};
use guestkit_worker::inspect::pipeline::{inspect_with_stats, InspectOptions};
use guestkit_worker::inspect::report::Application;
use guestkit_worker::inspect::source::{MemSource, ReadAt};

use crate::common::tree::{assert_same, open_raw, walk_ours, walk_source, Facts, Node, Tree};
use crate::common::{guestfish_disks, run, tempdir, Rng};

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Text-like bytes that compress well.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = ["alpha ", "beta ", "gamma\n", "delta ", "epsilon ", "zeta\n"];
    let mut r = Rng(seed | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(words[r.below(6) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

fn write(path: &Path, data: &[u8], mode: u32) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The source tree: small (inline) and large files, text and random, a sparse file,
/// symlinks (short and long), hard links, a directory of 3000 entries, long names,
/// odd modes and owners.
fn build_tree(root: &Path) {
    let mkdir = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    mkdir("a/b/c/d/e/f/g");
    write(
        &root.join("a/b/c/d/e/f/g/deep.txt"),
        b"seven levels down\n",
        0o644,
    );
    write(&root.join("empty"), b"", 0o600);
    write(&root.join("inline.txt"), &text(1, 1500), 0o644);
    write(
        &root.join("small-random.bin"),
        &pseudo_random(2, 3000),
        0o640,
    );
    write(&root.join("text-1m.txt"), &text(3, 1 << 20), 0o644);
    write(
        &root.join("random-3m.bin"),
        &pseudo_random(4, 3 << 20 | 123),
        0o755,
    );
    write(&root.join("setuid"), b"#!/bin/sh\n", 0o4755);
    // Sparse: a hole, some data, a hole to the end.
    let f = std::fs::File::create(root.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&pseudo_random(5, 10000), 3 << 20).unwrap();
    drop(f);
    std::fs::hard_link(root.join("text-1m.txt"), root.join("a/hardlink.txt")).unwrap();
    std::fs::hard_link(root.join("inline.txt"), root.join("a/b/inline-link")).unwrap();
    mkdir("big");
    for i in 0..3000 {
        write(
            &root.join(format!("big/entry-{i:05}")),
            format!("{i}\n").as_bytes(),
            0o644,
        );
    }
    let long = "L".repeat(255);
    write(&root.join(&long), b"long name\n", 0o644);
    mkdir(&format!("a/{}", "d".repeat(200)));
    write(&root.join("ünïcödé ☃.txt"), "snow\n".as_bytes(), 0o644);
    mkdir("private");
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(root.join("private"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::lchown(root.join("empty"), Some(42), Some(43)).unwrap();
    symlink("a/b/c", root.join("rel_link")).unwrap();
    symlink("/etc/passwd", root.join("abs_link")).unwrap();
    symlink(format!("/{}", "t".repeat(300)), root.join("a/long_link")).unwrap();
}

/// `blkid -p` value of one tag.
fn blkid(img: &Path, tag: &str) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag])
        .arg(img)
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!v.is_empty()).then_some(v)
}

fn source_tree() -> (tempfile::TempDir, PathBuf, Tree) {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src);
    let mut tree = Tree::new();
    walk_source(&src, "", MODE_OWNER_MTIME, &mut tree);
    (dir, src, tree)
}

#[test]
fn inspect_btrfs_mkfs_rootdir_oracle() {
    let (dir, src, want) = source_tree();
    let cases: [(&str, &[&str]); 4] = [
        ("single", &["-m", "single", "-O", "no-holes"]),
        ("dup", &["-m", "dup", "-O", "^no-holes"]),
        ("dup-nodesize-4k", &["-m", "dup", "-n", "4096"]),
        (
            "single-64k-nodes",
            &["-m", "single", "-n", "65536", "-O", "^no-holes"],
        ),
    ];
    for (name, args) in cases {
        let img = dir.path().join(format!("{name}.img"));
        run(Command::new("truncate").arg("-s").arg("300M").arg(&img));
        run(Command::new("mkfs.btrfs")
            .args(["-q", "-f", "-L", name, "--rootdir"])
            .arg(&src)
            .args(args)
            .arg(&img));
        let src_dev = open_raw(&img);
        let p = probe(src_dev.as_ref()).unwrap().unwrap();
        assert_eq!(p.fs_type, "btrfs");
        assert_eq!(p.uuid, blkid(&img, "UUID"), "{name}: uuid");
        assert_eq!(p.label, blkid(&img, "LABEL"), "{name}: label");
        let fs = BtrfsFs::open(&[src_dev]).unwrap();
        assert_eq!(fs.default_subvolume(), 5);
        let mut ours = Tree::new();
        walk_ours(&fs, "", MODE_OWNER_MTIME, &[], &mut ours);
        assert_same(name, &ours, &want);
        let files = want
            .values()
            .filter(|n| matches!(n, Node::File { .. }))
            .count();
        let bytes: usize = want
            .values()
            .map(|n| match n {
                Node::File { data, .. } => data.len(),
                _ => 0,
            })
            .sum();
        eprintln!(
            "btrfs {name}: {} paths, {files} files, {bytes} bytes equal",
            want.len()
        );
    }
}

#[test]
fn inspect_btrfs_typed_errors() {
    let (dir, src, _) = source_tree();
    let img = dir.path().join("e.img");
    run(Command::new("truncate").arg("-s").arg("300M").arg(&img));
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "--rootdir"])
        .arg(&src)
        .arg(&img));
    let fs = BtrfsFs::open(&[open_raw(&img)]).unwrap();
    assert!(matches!(
        fs.read_file("/missing", 10),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.read_file("/a", 10),
        Err(FsError::IsADirectory(_))
    ));
    assert!(matches!(
        fs.read_dir("/empty"),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(
        fs.read_file("/empty/x", 10),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(
        fs.read_file("/text-1m.txt", 1000),
        Err(FsError::TooLarge {
            size: 1048576,
            limit: 1000,
            ..
        })
    ));
    assert!(matches!(fs.read_link("/a"), Err(FsError::NotASymlink(_))));
    let m = fs.metadata("/rel_link").unwrap();
    assert_eq!(m.kind, FileKind::Symlink);
    assert_eq!(
        fs.read_file("/a/../inline.txt", 1 << 20).unwrap().len(),
        1500
    );
    // A damaged primary superblock: the 64 MiB mirror is used.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[0x10000 + 0x200] ^= 0xff;
    let fs = BtrfsFs::open(&[Arc::new(MemSource(bytes.clone())) as Arc<dyn ReadAt>]).unwrap();
    assert!(
        fs.warnings()[0].contains("0x4000000"),
        "{:?}",
        fs.warnings()
    );
    assert_eq!(fs.read_file("/inline.txt", 1 << 20).unwrap(), text(1, 1500));
    // No good superblock at all: a typed error.
    bytes[0x400_0000 + 0x200] ^= 0xff;
    let err = BtrfsFs::open(&[Arc::new(MemSource(bytes)) as Arc<dyn ReadAt>])
        .err()
        .unwrap();
    assert!(matches!(err, FsError::Corrupt { fs: "btrfs", .. }), "{err}");
}

/// `mkfs.btrfs --rootdir` copies mode, owner and mtime (whole seconds; ctime is the
/// mkfs run's).
const MODE_OWNER_MTIME: Facts = Facts {
    mtime: true,
    ..Facts::MODE_OWNER
};

/// A deterministic tarball of `src` (the guestfish cache is keyed by its bytes).
fn tarball(src: &Path, out: &Path) {
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(src)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

/// The guestfish-made filesystem: RAID1 data and metadata over two disks, the tree
/// written three times under compress-force=zstd, zlib and lzo, subvolumes (one nested,
/// one under a directory), a snapshot, vol1 as the default, a preallocated file with a
/// write in its middle, a sparse file. The script prints its oracle listings
/// (subvolume list, default, checksums) into the build log.
const KERNEL_SCRIPT: &str = r#"mkfs-btrfs "/dev/sda /dev/sdb" datatype:raid1 metadata:raid1 label:gkraid
mount-options "compress-force=zstd" /dev/sda /
mkdir /zstd
tar-in tree.tar /zstd
umount /
mount-options "compress-force=zlib" /dev/sda /
mkdir /zlib
tar-in tree.tar /zlib
umount /
mount-options "compress-force=lzo" /dev/sda /
mkdir /lzo
tar-in tree.tar /lzo
btrfs-subvolume-create /vol1
btrfs-subvolume-create /vol1/nested
mkdir /dir
btrfs-subvolume-create /dir/vol2
write /vol1/a.txt "in vol1\n"
write /vol1/nested/b.txt "nested\n"
write /dir/vol2/c.txt "vol2\n"
fallocate64 /prealloc 1048576
pwrite /prealloc "abc" 100000
touch /sparse
truncate-size /sparse 10485760
pwrite /sparse "X" 5000000
btrfs-subvolume-snapshot /vol1 /snap1
sync
echo ==subvolumes==
btrfs-subvolume-list /
echo ==checksums==
checksum sha256 /prealloc
checksum sha256 /sparse
checksum sha256 /zstd/text-1m.txt
echo ==end==
umount /
mount /dev/sda /
btrfs-subvolume-set-default 256 /
echo ==default==
btrfs-subvolume-get-default /
umount /
"#;

fn kernel_image() -> (Vec<PathBuf>, String, Tree) {
    let (dir, src, tree) = source_tree();
    let tar = dir.path().join("tree.tar");
    tarball(&src, &tar);
    let disks = guestfish_disks(KERNEL_SCRIPT, &[300, 300], &[&tar]);
    let log = std::fs::read_to_string(disks[0].parent().unwrap().join("log")).unwrap();
    // tar keeps modes but not owners here: compare bytes, kinds and targets only.
    let mut plain = Tree::new();
    walk_source(&src, "", Facts::NONE, &mut plain);
    let _ = tree;
    (disks, log, plain)
}

/// The lines of the build log between `==name==` and the next marker.
fn section<'a>(log: &'a str, name: &str) -> Vec<&'a str> {
    log.lines()
        .skip_while(|l| l.trim() != format!("=={name}=="))
        .skip(1)
        .take_while(|l| !l.starts_with("=="))
        .collect()
}

#[test]
fn inspect_btrfs_kernel_raid1_compression_subvolumes() {
    let (disks, log, want) = kernel_image();
    let devs: Vec<Arc<dyn ReadAt>> = disks.iter().map(|d| open_raw(d)).collect();
    let fs = BtrfsFs::open(&devs).unwrap();
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    let p = probe(devs[0].as_ref()).unwrap().unwrap();
    assert_eq!(p.uuid, blkid(&disks[0], "UUID"));
    assert_eq!(p.label.as_deref(), Some("gkraid"));

    // Subvolumes as guestfish listed them: "id <n> ... path <p>" lines.
    let mut listed: Vec<(u64, String)> = Vec::new();
    for l in section(&log, "subvolumes") {
        if let Some(v) = l.trim().strip_prefix("btrfssubvolume_id:") {
            listed.push((v.trim().parse().unwrap(), String::new()));
        }
        if let Some(v) = l.trim().strip_prefix("btrfssubvolume_path:") {
            listed.last_mut().unwrap().1 = v.trim().to_string();
        }
    }
    let ours: Vec<(u64, String)> = fs
        .subvolumes()
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.path))
        .collect();
    assert_eq!(
        ours,
        listed,
        "subvolumes vs guestfish; log section: {:?}",
        section(&log, "subvolumes")
    );
    assert!(ours.iter().any(|(_, p)| p == "dir/vol2"));
    let default: u64 = section(&log, "default")[0].trim().parse().unwrap();
    assert_eq!(fs.default_subvolume(), default);
    assert_eq!(fs.subvolume_id(), 256);
    assert_eq!(fs.read_file("/a.txt", 100).unwrap(), b"in vol1\n");
    assert_eq!(fs.read_file("/nested/b.txt", 100).unwrap(), b"nested\n");

    let top = fs.view(5).unwrap();
    // Each compression's copy of the tree equals the tar input.
    for algo in ["zstd", "zlib", "lzo"] {
        let mut ours = Tree::new();
        walk_ours(&top, &format!("/{algo}"), Facts::NONE, &[], &mut ours);
        let ours: Tree = ours
            .into_iter()
            .map(|(k, v)| (k[algo.len() + 1..].to_string(), v))
            .collect();
        assert_same(algo, &ours, &want);
    }
    // Snapshot and the subvolume under a directory, entered through the top level.
    assert_eq!(top.read_file("/snap1/a.txt", 100).unwrap(), b"in vol1\n");
    assert_eq!(top.read_file("/dir/vol2/c.txt", 100).unwrap(), b"vol2\n");
    assert_eq!(
        top.read_file("/vol1/nested/b.txt", 100).unwrap(),
        b"nested\n"
    );

    // Prealloc and sparse files against guestfish's checksums.
    let sums: Vec<&str> = section(&log, "checksums");
    let sha = |data: &[u8]| {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(data))
    };
    let prealloc = top.read_file("/prealloc", 1 << 30).unwrap();
    let mut expect = vec![0u8; 1 << 20];
    expect[100000..100003].copy_from_slice(b"abc");
    assert_eq!(prealloc, expect);
    assert_eq!(sha(&prealloc), sums[0].trim());
    let sparse = top.read_file("/sparse", 1 << 30).unwrap();
    assert_eq!(sparse.len(), 10 << 20);
    assert_eq!(sha(&sparse), sums[1].trim());
    assert_eq!(
        sha(&top.read_file("/zstd/text-1m.txt", 1 << 30).unwrap()),
        sums[2].trim()
    );

    // RAID1 degraded: either disk alone still reads everything.
    for one in &devs {
        let fs = BtrfsFs::open(std::slice::from_ref(one)).unwrap();
        assert!(fs
            .warnings()
            .iter()
            .any(|w| w.contains("2 devices, 1 present")));
        let top = fs.view(5).unwrap();
        let mut ours = Tree::new();
        walk_ours(&top, "/zstd", Facts::NONE, &[], &mut ours);
        assert_eq!(ours.len(), want.len());
        assert_eq!(
            top.read_file("/zlib/random-3m.bin", 1 << 30).unwrap(),
            pseudo_random(4, 3 << 20 | 123)
        );
    }
}

const FEDORA_BTRFS_UUID: &str = "5e3a1c2b-7d4f-4a6b-9c8d-0e1f2a3b4c5d";
const FEDORA_BOOT_UUID: &str = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";

/// A Fedora-like guest as the installer lays it out: GPT, /boot ext4, btrfs with `root`
/// and `home` subvolumes under zstd, fstab naming them with `subvol=`, and an rpm sqlite
/// database in `/usr/lib/sysimage/rpm` (written by `fixtures/rpm-db.sh`, the same bytes
/// every run, so the guestfish cache keyed by the tarball still hits). Returns the disk
/// and the oracle's package list (`rpm -qa --dbpath` on the database the script wrote).
pub(crate) fn fedora_image() -> (PathBuf, Vec<Application>) {
    let dir = tempdir();
    let root = dir.path().join("root");
    let put = |rel: &str, content: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    put(
        "usr/lib/os-release",
        "NAME=\"Fedora Linux\"\nVERSION=\"39 (Workstation Edition)\"\nID=fedora\nVERSION_ID=39\n\
         PRETTY_NAME=\"Fedora Linux 39 (Workstation Edition)\"\nVARIANT=\"Workstation Edition\"\n\
         VARIANT_ID=workstation\n",
    );
    put("usr/bin/bash", &String::from_utf8_lossy(&text(9, 200_000)));
    put("etc/hostname", "fedora-btrfs.example.com\n");
    symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    put("etc/hosts", "127.0.0.1 localhost\n");
    put(
        "etc/fstab",
        &format!(
            "UUID={FEDORA_BTRFS_UUID} /     btrfs subvol=root,compress=zstd:1 0 0\n\
             UUID={FEDORA_BOOT_UUID} /boot ext4  defaults 1 2\n\
             UUID={FEDORA_BTRFS_UUID} /home btrfs subvol=home,compress=zstd:1 0 0\n"
        ),
    );
    put(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nfedora:x:1000:1000::/home/fedora:/bin/bash\n",
    );
    put("etc/machine-id", "5f3a9c1e7b2d4e6f8a0b1c2d3e4f5a6b\n");
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    let packages = crate::inspect_os::rpm_database(&root, &dir.path().join("rpmbuild"));
    assert_eq!(packages.len(), 3, "{packages:?}");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("fedora")).unwrap();
    std::fs::write(home.join("fedora/.bashrc"), "# user rc\n").unwrap();
    let root_tar = dir.path().join("fedora-root.tar");
    let home_tar = dir.path().join("fedora-home.tar");
    tarball(&root, &root_tar);
    tarball(&home, &home_tar);
    let script = format!(
        r##"part-init /dev/sda gpt
part-add /dev/sda p 2048 206847
part-add /dev/sda p 206848 -34
mkfs ext4 /dev/sda1 label:boot
set-uuid /dev/sda1 {FEDORA_BOOT_UUID}
mkfs-btrfs /dev/sda2 label:fedora
set-uuid /dev/sda2 {FEDORA_BTRFS_UUID}
mount /dev/sda2 /
btrfs-subvolume-create /root
btrfs-subvolume-create /home
umount /
mount-options "compress-force=zstd,subvol=root" /dev/sda2 /
tar-in fedora-root.tar /
mount-options "compress-force=zstd,subvol=home" /dev/sda2 /home
tar-in fedora-home.tar /home
mount /dev/sda1 /boot
write /boot/config-6.5.6-300.fc39.x86_64 "# kernel config\n"
sync
echo ==subvolumes==
btrfs-subvolume-list /
echo ==end==
umount-all
"##
    );
    let disk = guestfish_disks(&script, &[512], &[&root_tar, &home_tar]).remove(0);
    (disk, packages)
}

#[test]
fn inspect_btrfs_fedora_like_guest() {
    let (img, oracle) = fedora_image();
    let (report, stats) = inspect_with_stats(&img, &InspectOptions::default()).unwrap();
    eprintln!("fedora btrfs: {} bytes read", stats.bytes_read);
    assert_eq!(report.warnings, Vec::<String>::new());
    assert_eq!(
        report.operating_systems.len(),
        1,
        "{:?}",
        report.operating_systems
    );
    let os = &report.operating_systems[0];
    assert_eq!(os.root, "btrfsvol:/dev/sda2/root");
    assert_eq!(
        (os.distro.as_deref(), os.major_version, os.minor_version),
        (Some("fedora"), Some(39), Some(0))
    );
    assert_eq!(os.hostname.as_deref(), Some("fedora-btrfs.example.com"));
    // The package list is rpm's own reading of the database on the root subvolume
    // (written under compress-force=zstd by the kernel).
    let mut packages = os.applications.clone();
    packages.sort();
    assert_eq!(packages, oracle);
    let mps: Vec<(&str, &str)> = os
        .mountpoints
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        mps,
        vec![
            ("/", "btrfsvol:/dev/sda2/root"),
            ("/boot", "/dev/sda1"),
            ("/home", "btrfsvol:/dev/sda2/home")
        ]
    );
    // The report's filesystem entry: uuid from blkid, subvolumes as guestfish listed.
    let fs = report
        .filesystems
        .iter()
        .find(|f| f.device == "/dev/sda2")
        .unwrap();
    assert_eq!(fs.fs_type, "btrfs");
    let log = std::fs::read_to_string(img.parent().unwrap().join("log")).unwrap();
    let listed: Vec<String> = section(&log, "subvolumes")
        .iter()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("btrfssubvolume_path:")
                .map(|p| p.trim().to_string())
        })
        .collect();
    let ours: Vec<String> = fs.subvolumes.iter().map(|s| s.path.clone()).collect();
    assert_eq!(ours, listed);
    assert_eq!(ours, vec!["root", "home"]);
    assert!(report
        .filesystems
        .iter()
        .filter(|f| f.device != "/dev/sda2")
        .all(|f| f.subvolumes.is_empty()));
    // Files of /home are read through the subvolume fstab names.
    let inspection =
        guestkit_worker::inspect::pipeline::inspect_full(&img, &InspectOptions::default()).unwrap();
    let guest = inspection
        .guest(&inspection.report.operating_systems[0])
        .unwrap();
    assert_eq!(
        guest.read_file("/home/fedora/.bashrc", 100).unwrap(),
        b"# user rc\n"
    );
    assert_eq!(
        guest.read_file("/usr/bin/bash", 1 << 20).unwrap(),
        text(9, 200_000)
    );
}

/// CRC-32C, written here so the test does not trust the code under test to re-seal.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn reseal(block: &mut [u8]) {
    let c = crc32c(&block[0x20..]);
    block[..4].copy_from_slice(&c.to_le_bytes());
}

/// Physical offsets of every valid tree block of a single-device image (nodesize 4096).
fn tree_blocks(img: &[u8]) -> Vec<usize> {
    let fsid = &img[0x10020..0x10030];
    (0..img.len() / 4096)
        .map(|i| i * 4096)
        .filter(|&o| {
            let b = &img[o..o + 4096];
            &b[0x20..0x30] == fsid
                && &b[0x40..0x48] != b"_BHRfS_M"
                && u32::from_le_bytes(b[..4].try_into().unwrap()) == crc32c(&b[0x20..])
        })
        .collect()
}

/// Reads everything reachable, never unwrapping: returns how many errors were met.
/// Depth-capped, since a hostile directory may contain itself.
fn walk_tolerant(fs: &dyn FileSystem, dir: &str, depth: usize, errors: &mut usize) {
    if depth > 20 {
        return;
    }
    let Ok(entries) = fs.read_dir(if dir.is_empty() { "/" } else { dir }) else {
        *errors += 1;
        return;
    };
    for e in entries {
        let path = format!("{dir}/{}", e.name);
        match fs.metadata(&path) {
            Ok(m) if m.kind == FileKind::Dir => walk_tolerant(fs, &path, depth + 1, errors),
            Ok(m) if m.kind == FileKind::Symlink => {
                *errors += fs.read_link(&path).is_err() as usize
            }
            Ok(_) => *errors += fs.read_file(&path, 64 << 20).is_err() as usize,
            Err(_) => *errors += 1,
        }
    }
}

/// Remembers where 4 KiB reads went.
struct Recording {
    inner: MemSource,
    seen: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl ReadAt for Recording {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_exact_at(
        &self,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), guestkit_worker::inspect::source::ReadError> {
        if buf.len() == 4096 {
            self.seen.lock().unwrap().insert(offset);
        }
        self.inner.read_exact_at(offset, buf)
    }
}

fn open_mem(img: Vec<u8>) -> Result<BtrfsFs, FsError> {
    BtrfsFs::open(&[Arc::new(MemSource(img)) as Arc<dyn ReadAt>])
}

/// A small image with a multi-level FS tree (4 KiB nodes, 400 entries in one directory).
fn small_image(dir: &Path) -> Vec<u8> {
    let src = dir.join("small");
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..400 {
        std::fs::write(
            src.join(format!("many/file-{i:04}")),
            text(i, 100 + i as usize * 7),
        )
        .unwrap();
    }
    std::fs::write(src.join("big.bin"), pseudo_random(7, 300_000)).unwrap();
    symlink("many/file-0001", src.join("link")).unwrap();
    let img = dir.join("small.img");
    run(Command::new("truncate").arg("-s").arg("120M").arg(&img));
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-n", "4096", "-m", "single", "--rootdir"])
        .arg(&src)
        .arg(&img));
    std::fs::read(&img).unwrap()
}

#[test]
fn inspect_btrfs_hostile_trees() {
    let dir = tempdir();
    let base = small_image(dir.path());
    // The tree blocks a full walk reads (stale copies mkfs left behind and trees a
    // reader never needs, like the extent tree, are left alone).
    let recorder = Arc::new(Recording {
        inner: MemSource(base.clone()),
        seen: std::sync::Mutex::new(std::collections::BTreeSet::new()),
    });
    let fs = BtrfsFs::open(&[recorder.clone() as Arc<dyn ReadAt>]).unwrap();
    walk_tolerant(&fs, "", 0, &mut 0);
    let seen = recorder.seen.lock().unwrap().clone();
    let blocks: Vec<usize> = tree_blocks(&base)
        .into_iter()
        .filter(|o| seen.contains(&(*o as u64)))
        .collect();
    let internal: Vec<usize> = blocks
        .iter()
        .copied()
        .filter(|&o| base[o + 0x64] > 0)
        .collect();
    assert!(!internal.is_empty(), "the image should have internal nodes");
    let mut clean = 0;
    walk_tolerant(&open_mem(base.clone()).unwrap(), "", 0, &mut clean);
    assert_eq!(clean, 0);

    // A node whose first child is itself (a cycle), and one whose child is a block of
    // the wrong level: typed errors, no hang.
    for &o in &internal {
        let mut img = base.clone();
        let own = img[o + 0x30..o + 0x38].to_vec();
        img[o + 101 + 17..o + 101 + 25].copy_from_slice(&own);
        reseal(&mut img[o..o + 4096]);
        let mut errors = 0;
        match open_mem(img) {
            Ok(fs) => walk_tolerant(&fs, "", 0, &mut errors),
            Err(e) => {
                assert!(matches!(e, FsError::Corrupt { fs: "btrfs", .. }), "{e}");
                errors += 1;
            }
        }
        assert!(errors > 0, "a self-pointing node at {o:#x} went unnoticed");
    }
    for &o in blocks.iter().filter(|&&o| base[o + 0x64] == 0).take(5) {
        let mut img = base.clone();
        img[o + 0x64] = 3; // a leaf claiming to be a level-3 node
        reseal(&mut img[o..o + 4096]);
        let mut errors = 0;
        match open_mem(img) {
            Ok(fs) => walk_tolerant(&fs, "", 0, &mut errors),
            Err(_) => errors += 1,
        }
        assert!(
            errors > 0,
            "a leaf at {o:#x} with a wrong level went unnoticed"
        );
    }

    // The bootstrap chunk pointing past the end of the device.
    let mut img = base.clone();
    let stripe_off = 0x10000 + 0x32b + 17 + 48 + 8;
    img[stripe_off..stripe_off + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    reseal(&mut img[0x10000..0x11000]);
    let err = open_mem(img)
        .err()
        .expect("a chunk outside the device must fail");
    assert!(err.to_string().contains("past the end"), "{err}");

    // Random damage inside re-sealed tree blocks (so it reaches the item parsers):
    // every outcome is a result or a typed error, never a panic or a hang.
    let mut rng = Rng(0xb7f5_0001);
    let mut opened = 0;
    for round in 0..120 {
        let mut img = base.clone();
        let o = blocks[rng.below(blocks.len() as u64) as usize];
        for _ in 0..1 + rng.below(4) {
            let at = o + 0x30 + rng.below(4096 - 0x30) as usize;
            img[at] = rng.byte();
        }
        reseal(&mut img[o..o + 4096]);
        let start = std::time::Instant::now();
        if let Ok(fs) = open_mem(img) {
            opened += 1;
            let mut errors = 0;
            walk_tolerant(&fs, "", 0, &mut errors);
            let _ = fs.subvolumes();
        }
        // Not a timing assertion: a guard so a hang shows which round caused it.
        if start.elapsed().as_secs() > 60 {
            panic!("round {round} took over a minute");
        }
    }
    eprintln!("btrfs mutations: 120 rounds, {opened} opened");
}

/// Striped profiles, written by the kernel: one GPT disk with four partitions holding one
/// btrfs filesystem, data RAID10 and metadata RAID0 over them.
const STRIPED_SCRIPT: &str = r#"part-init /dev/sda gpt
part-add /dev/sda p 2048 411647
part-add /dev/sda p 411648 821247
part-add /dev/sda p 821248 1230847
part-add /dev/sda p 1230848 1640447
mkfs-btrfs "/dev/sda1 /dev/sda2 /dev/sda3 /dev/sda4" datatype:raid10 metadata:raid0 label:striped
mount /dev/sda1 /
tar-in tree.tar /
sync
umount /
"#;

#[test]
fn inspect_btrfs_kernel_raid10_raid0_across_partitions() {
    let (dir, src, _) = source_tree();
    let tar = dir.path().join("tree.tar");
    tarball(&src, &tar);
    let disk = guestfish_disks(STRIPED_SCRIPT, &[820], &[&tar]).remove(0);
    let mut want = Tree::new();
    walk_source(&src, "", Facts::NONE, &mut want);

    // Through the pipeline: the four members are found, grouped by uuid and opened
    // once, on the first member.
    let inspection =
        guestkit_worker::inspect::pipeline::inspect_full(&disk, &InspectOptions::default())
            .unwrap();
    let r = &inspection.report;
    let members: Vec<&str> = r
        .filesystems
        .iter()
        .filter(|f| f.fs_type == "btrfs")
        .map(|f| f.device.as_str())
        .collect();
    assert_eq!(
        members,
        ["/dev/sda1", "/dev/sda2", "/dev/sda3", "/dev/sda4"]
    );
    assert!(
        !r.warnings.iter().any(|w| w.contains("btrfs")),
        "{:?}",
        r.warnings
    );
    let fs = inspection.devices[0]
        .fs
        .clone()
        .expect("first member readable");
    assert!(inspection.devices[1..].iter().all(|m| m.fs.is_none()));
    let mut ours = Tree::new();
    walk_ours(fs.as_ref(), "", Facts::NONE, &[], &mut ours);
    assert_same("raid10/raid0", &ours, &want);

    // With a member missing, RAID0 metadata cannot be read whole: typed errors (at
    // open or while walking), never a wrong tree.
    let whole = open_raw(&disk);
    let parts: Vec<Arc<dyn ReadAt>> = r
        .partitions
        .iter()
        .map(|p| {
            Arc::new(
                guestkit_worker::inspect::source::Slice::new(whole.clone(), p.start, p.size)
                    .unwrap(),
            ) as Arc<dyn ReadAt>
        })
        .collect();
    match BtrfsFs::open(&parts[..3]) {
        Err(err) => assert!(matches!(err, FsError::Corrupt { fs: "btrfs", .. }), "{err}"),
        Ok(fs) => {
            assert!(fs
                .warnings()
                .iter()
                .any(|w| w.contains("4 devices, 3 present")));
            let mut errors = 0;
            walk_tolerant(&fs, "", 0, &mut errors);
            assert!(
                errors > 0,
                "a RAID0 filesystem missing a member read without error"
            );
        }
    }
}

/// Parity and 3/4-copy profiles, written by the kernel: four disks of four 130 MiB
/// partitions, one filesystem per partition number, the tree tarred into each.
/// `btrfs filesystem df` of each goes into the build log, so the test can check that
/// the profiles are really the ones asked for.
const PROFILES_SCRIPT: &str = r#"part-init /dev/sda gpt
part-init /dev/sdb gpt
part-init /dev/sdc gpt
part-init /dev/sdd gpt
part-add /dev/sda p 2048 268287
part-add /dev/sda p 268288 534527
part-add /dev/sda p 534528 800767
part-add /dev/sda p 800768 1067007
part-add /dev/sdb p 2048 268287
part-add /dev/sdb p 268288 534527
part-add /dev/sdb p 534528 800767
part-add /dev/sdb p 800768 1067007
part-add /dev/sdc p 2048 268287
part-add /dev/sdc p 268288 534527
part-add /dev/sdc p 534528 800767
part-add /dev/sdc p 800768 1067007
part-add /dev/sdd p 2048 268287
part-add /dev/sdd p 268288 534527
part-add /dev/sdd p 534528 800767
part-add /dev/sdd p 800768 1067007
debug sh "mkfs.btrfs -f -L gkr5 -d raid5 -m raid1c3 /dev/sda1 /dev/sdb1 /dev/sdc1 >/dev/null"
debug sh "mkfs.btrfs -f -L gkr6 -d raid6 -m raid6 /dev/sda2 /dev/sdb2 /dev/sdc2 /dev/sdd2 >/dev/null"
debug sh "mkfs.btrfs -f -L gkc3 -d raid1c3 -m raid1c3 /dev/sdb3 /dev/sdc3 /dev/sdd3 >/dev/null"
debug sh "mkfs.btrfs -f -L gkc4 -d raid1c4 -m raid1c4 /dev/sda4 /dev/sdb4 /dev/sdc4 /dev/sdd4 >/dev/null"
debug sh "btrfs device scan >/dev/null"
mount /dev/sda1 /
tar-in tree.tar /
echo ==df1==
debug sh "sync; btrfs filesystem df /sysroot"
umount /
mount /dev/sda2 /
tar-in tree.tar /
echo ==df2==
debug sh "sync; btrfs filesystem df /sysroot"
umount /
mount /dev/sdb3 /
tar-in tree.tar /
echo ==df3==
debug sh "sync; btrfs filesystem df /sysroot"
umount /
mount /dev/sda4 /
tar-in tree.tar /
echo ==df4==
debug sh "sync; btrfs filesystem df /sysroot"
umount /
echo ==end==
"#;

/// RAID5, RAID6, RAID1C3 and RAID1C4 as the kernel writes them: every file equals the
/// source tree with all members present, and with one member missing (two and three
/// for the 3- and 4-copy profiles) from the copies or from P. RAID6 with two missing
/// would need Q, which is not used: typed errors, never a wrong tree.
#[test]
fn inspect_btrfs_kernel_raid56_raid1c34_with_members_missing() {
    let (dir, src, _) = source_tree();
    let tar = dir.path().join("tree.tar");
    tarball(&src, &tar);
    let disks = guestfish_disks(PROFILES_SCRIPT, &[522, 522, 522, 522], &[&tar]);
    let log = std::fs::read_to_string(disks[0].parent().unwrap().join("log")).unwrap();
    let mut want = Tree::new();
    walk_source(&src, "", Facts::NONE, &mut want);
    let tree_bytes: u64 = want
        .values()
        .map(|n| match n {
            Node::File { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum();

    // Partition `p` (1-based) of disk `d`.
    let part = |d: usize, p: usize| -> Arc<dyn ReadAt> {
        let whole = open_raw(&disks[d]);
        let t = guestkit_worker::inspect::partition::read_table(whole.as_ref())
            .unwrap()
            .unwrap();
        let e = &t.partitions[p - 1];
        Arc::new(guestkit_worker::inspect::source::Slice::new(whole, e.start, e.size).unwrap())
    };
    // (fs, data profile, metadata profile, member disks, how many may be missing)
    let cases = [
        (1, "RAID5", "RAID1C3", vec![0, 1, 2], 1),
        (2, "RAID6", "RAID6", vec![0, 1, 2, 3], 1),
        (3, "RAID1C3", "RAID1C3", vec![1, 2, 3], 2),
        (4, "RAID1C4", "RAID1C4", vec![0, 1, 2, 3], 3),
    ];
    let mut compared = 0u64;
    let mut opened = 0;
    for (p, data, meta, members, tolerated) in cases {
        let df = section(&log, &format!("df{p}")).join("\n");
        assert!(df.contains(&format!("Data, {data}")), "fs {p}: {df}");
        assert!(df.contains(&format!("Metadata, {meta}")), "fs {p}: {df}");
        // Every subset of members with at most `tolerated` left out, in member order.
        let n = members.len();
        for mask in 0u32..(1 << n) {
            let out = mask.count_ones() as usize;
            if out > tolerated {
                continue;
            }
            let present: Vec<Arc<dyn ReadAt>> = members
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) == 0)
                .map(|(_, d)| part(*d, p))
                .collect();
            let label = format!("{data}/{meta}, {out} of {n} missing (mask {mask:#b})");
            let fs = BtrfsFs::open(&present).unwrap_or_else(|e| panic!("{label}: {e}"));
            if out > 0 {
                assert!(
                    fs.warnings().iter().any(|w| w.contains("present")),
                    "{label}: {:?}",
                    fs.warnings()
                );
            }
            let mut ours = Tree::new();
            walk_ours(&fs, "", Facts::NONE, &[], &mut ours);
            assert_same(&label, &ours, &want);
            compared += tree_bytes;
            opened += 1;
        }
    }
    let fs = BtrfsFs::open(&[part(2, 2), part(3, 2)]);
    match fs {
        Err(err) => assert!(matches!(err, FsError::Corrupt { fs: "btrfs", .. }), "{err}"),
        Ok(fs) => {
            let mut errors = 0;
            walk_tolerant(&fs, "", 0, &mut errors);
            assert!(errors > 0, "RAID6 missing two members read without error");
        }
    }
    eprintln!("{opened} member sets read, {compared} file bytes equal the source tree");
}
