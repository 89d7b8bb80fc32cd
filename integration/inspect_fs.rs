//! The filesystem oracle: a source tree with real variety is put into ext2/3/4 images by
//! `mkfs -d` and into FAT12/16/32 images by mtools, then walked through our
//! `FileSystem` readers and compared with the tree itself: same paths, kinds, sizes,
//! bytes, symlink targets, and (ext) mode bits. Plus journal replay (a transaction
//! written by `debugfs`, checked against `e2fsck`'s replay) and the typed errors.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use guestkit_worker::inspect::fs::ext4::Ext4Fs;
use guestkit_worker::inspect::fs::probe::probe;
use guestkit_worker::inspect::fs::vfat::VfatFs;
use guestkit_worker::inspect::fs::{FileKind, FileSystem, FsError};
use guestkit_worker::inspect::source::MemSource;

use crate::common::tree::{assert_same, open_raw, walk_ours, walk_source, Facts, Node, Tree};
use crate::common::{run, tempdir};

/// Deterministic bytes (xorshift), so a failure reproduces.
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

fn write(path: &Path, data: &[u8], mode: u32) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds the source tree. `fat` leaves out what FAT cannot hold (symlinks, names
/// differing only by case) and shortens the long name to FAT's limit.
fn build_tree(root: &Path, fat: bool) {
    let mkdir = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    mkdir("a/b/c/d/e/f/g");
    write(
        &root.join("a/b/c/d/e/f/g/deep.txt"),
        b"seven levels down\n",
        0o644,
    );
    write(&root.join("a/b/c/d/e/f/empty"), b"", 0o600);
    write(&root.join("empty.txt"), b"", 0o644);
    for (i, size) in [1usize, 4095, 4096, 4097, (1 << 20) + 3]
        .into_iter()
        .enumerate()
    {
        write(
            &root.join(format!("size_{size}.bin")),
            &pseudo_random(i as u64 + 7, size),
            0o644,
        );
    }
    mkdir("many");
    for i in 0..600 {
        let body = format!("file number {i}\n").repeat(i % 7 + 1);
        write(
            &root.join(format!("many/entry_{i:04}.txt")),
            body.as_bytes(),
            0o644,
        );
    }
    let long = if fat {
        "L".repeat(110)
    } else {
        "L".repeat(200)
    };
    write(&root.join(format!("{long}.txt")), b"long name\n", 0o644);
    write(&root.join("café.txt"), "accent é\n".as_bytes(), 0o644);
    mkdir("日本");
    write(
        &root.join("日本/ファイル.txt"),
        "日本語\n".as_bytes(),
        0o640,
    );
    mkdir("Mixed Case Dir");
    write(&root.join("Mixed Case Dir/ReadMe.TXT"), b"mixed\n", 0o644);
    write(&root.join("a/script.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    std::fs::hard_link(root.join("size_4097.bin"), root.join("a/hardlink.bin")).unwrap();
    if !fat {
        write(&root.join("a/suid"), b"suid\n", 0o4755);
        mkdir("private");
        std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        symlink("a/b/c", root.join("rel_link")).unwrap();
        symlink("/etc/passwd", root.join("abs_link")).unwrap();
        symlink("../nowhere", root.join("a/dangling")).unwrap();
        // A target longer than the 60 bytes that fit inside the inode.
        symlink(format!("/{}", "t".repeat(100)), root.join("a/long_link")).unwrap();
    }
}

/// Walks and reads the whole filesystem, returning the tree and the time it took.
fn read_all(fs: &dyn FileSystem, with_modes: bool) -> (Tree, std::time::Duration) {
    let start = Instant::now();
    let mut tree = Tree::new();
    walk_ours(fs, "", modes(with_modes), &[], &mut tree);
    (tree, start.elapsed())
}

/// Modes are compared except on FAT, which stores none.
fn modes(on: bool) -> Facts {
    if on {
        Facts::MODE
    } else {
        Facts::NONE
    }
}

fn source_tree(fat: bool) -> (tempfile::TempDir, Tree) {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src, fat);
    let mut tree = Tree::new();
    walk_source(&src, "", modes(!fat), &mut tree);
    (dir, tree)
}

fn mkfs_ext(kind: &str, src: &Path, img: &Path) {
    run(Command::new(format!("mkfs.{kind}"))
        .args(["-q", "-F", "-d"])
        .arg(src)
        .arg(img)
        .arg("64M"));
}

#[test]
fn inspect_fs_ext_oracle() {
    let (dir, want) = source_tree(false);
    let src = dir.path().join("src");
    // mkfs -d writes linear directories; `e2fsck -D` then indexes the big ones (htree),
    // so both lookup paths of the reader are compared.
    for (kind, htree) in [
        ("ext4", false),
        ("ext4", true),
        ("ext3", true),
        ("ext2", false),
    ] {
        let img = dir.path().join(format!("{kind}-{htree}.img"));
        mkfs_ext(kind, &src, &img);
        if htree {
            let out = Command::new("e2fsck")
                .arg("-fyD")
                .arg(&img)
                .output()
                .unwrap();
            assert!(
                out.status.code().is_some_and(|c| c <= 1),
                "e2fsck -D: {out:?}"
            );
        }
        let stat = run(Command::new("debugfs").args(["-R", "stat /many"]).arg(&img));
        let flags = String::from_utf8_lossy(&stat)
            .split("Flags: 0x")
            .nth(1)
            .and_then(|rest| u32::from_str_radix(rest.split_whitespace().next()?, 16).ok())
            .expect("debugfs stat flags");
        assert_eq!(
            flags & 0x1000 != 0,
            htree,
            "{kind}: /many indexed flag 0x{flags:x}"
        );
        let kind_label = format!("{kind}{}", if htree { " (htree)" } else { "" });
        let raw = open_raw(&img);
        assert_eq!(probe(raw.as_ref()).unwrap().unwrap().fs_type, kind);
        let fs = Ext4Fs::open(raw).unwrap();
        let (mut ours, took) = read_all(&fs, true);
        assert!(
            matches!(ours.remove("/lost+found"), Some(Node::Dir { .. })),
            "{kind}: lost+found"
        );
        assert_same(&kind_label, &ours, &want);
        let bytes: usize = ours
            .values()
            .map(|n| {
                if let Node::File { data, .. } = n {
                    data.len()
                } else {
                    0
                }
            })
            .sum();
        let start = Instant::now();
        for _ in 0..1000 {
            fs.metadata("/").unwrap();
        }
        let per_call = start.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "{kind_label}: walked and read {} paths ({bytes} bytes) in {:.1} ms; metadata(\"/\") {per_call:.1} µs per call",
            ours.len(),
            took.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn inspect_fs_ext4_errors_and_lstat() {
    let (dir, _) = source_tree(false);
    let img = dir.path().join("e.img");
    mkfs_ext("ext4", &dir.path().join("src"), &img);
    let fs = Ext4Fs::open(open_raw(&img)).unwrap();

    let big = "/size_1048579.bin";
    assert!(matches!(
        fs.read_file(big, 1 << 20),
        Err(FsError::TooLarge {
            size: 1048579,
            limit: 1048576,
            ..
        })
    ));
    assert_eq!(fs.read_file(big, 1048579).unwrap().len(), 1048579);
    assert!(matches!(
        fs.read_file("/missing", 10),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.metadata("/a/missing/x"),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.read_file("/a", 10),
        Err(FsError::IsADirectory(_))
    ));
    assert!(matches!(
        fs.read_dir("/empty.txt"),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(
        fs.metadata("/empty.txt/x"),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(
        fs.read_link("/empty.txt"),
        Err(FsError::NotASymlink(_))
    ));
    // The final symlink is never followed; an intermediate one is not a directory
    // (the caller resolves links itself).
    let m = fs.metadata("/rel_link").unwrap();
    assert_eq!((m.kind, m.size), (FileKind::Symlink, 5));
    assert!(matches!(
        fs.read_file("/rel_link", 10),
        Err(FsError::SymlinkLoop(_))
    ));
    assert!(matches!(
        fs.read_dir("/rel_link"),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(
        fs.metadata("/rel_link/d"),
        Err(FsError::NotADirectory(_))
    ));
    // Answers are the same once a directory was listed (lookups then use the listing).
    let before = fs.metadata("/a/script.sh").unwrap();
    assert!(fs.read_dir("/").unwrap().iter().any(|e| e.name == "a"));
    assert!(fs
        .read_dir("/a")
        .unwrap()
        .iter()
        .any(|e| e.name == "script.sh"));
    assert_eq!(fs.metadata("/a/script.sh").unwrap(), before);
    assert_eq!(fs.metadata("/").unwrap().kind, FileKind::Dir);
    assert!(matches!(
        fs.metadata("/a/missing"),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.metadata("/rel_link").map(|m| m.kind),
        Ok(FileKind::Symlink)
    ));
    // Paths are normalised.
    assert_eq!(
        fs.read_file("//a/./b/../script.sh", 100).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert!(matches!(fs.metadata("relative"), Err(FsError::NotFound(_))));
}

/// Sizes a hostile image could claim are checked before ext4-view allocates or walks
/// anything: a 1 TiB symlink, directory and file (set with debugfs, which also fixes
/// the inode checksums).
#[test]
fn inspect_fs_ext4_hostile_sizes() {
    let (dir, _) = source_tree(false);
    let img = dir.path().join("h.img");
    mkfs_ext("ext4", &dir.path().join("src"), &img);
    let script = dir.path().join("cmds");
    let tib = 1u64 << 40;
    std::fs::write(
        &script,
        format!(
            "sif /a/long_link size {tib}\nsif /many size {tib}\nsif /size_4096.bin size {tib}\n"
        ),
    )
    .unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(&img));

    let fs = Ext4Fs::open(open_raw(&img)).unwrap();
    let corrupt = |r: Result<(), FsError>, needle: &str| match r {
        Err(FsError::Corrupt {
            fs: "ext4",
            message,
        }) => {
            assert!(message.contains(needle), "{message}")
        }
        other => panic!("expected a corrupt error with {needle:?}, got {other:?}"),
    };
    corrupt(fs.read_link("/a/long_link").map(|_| ()), "symlink target");
    corrupt(fs.read_dir("/many").map(|_| ()), "directory of");
    corrupt(
        fs.metadata("/many/entry_0001.txt").map(|_| ()),
        "directory of",
    );
    assert_eq!(fs.metadata("/size_4096.bin").unwrap().size, tib);
    assert!(matches!(
        fs.read_file("/size_4096.bin", 1 << 20),
        Err(FsError::TooLarge { size, .. }) if size == tib
    ));
    // The rest of the filesystem still reads.
    assert_eq!(fs.read_file("/size_1.bin", 10).unwrap().len(), 1);
}

/// Makes an ext4 image whose journal holds one committed, unreplayed transaction that
/// rewrites the first block of `/victim` (debugfs `jo`/`jw`/`jc`; `-c` makes it a
/// checksummed v3 journal, as the kernel writes on metadata_csum filesystems).
/// Returns the image, the original bytes of `/victim`, and the bytes e2fsck's replay
/// gives it.
fn dirty_journal_image(dir: &Path, checksummed: bool) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let original = pseudo_random(1, 8192);
    write(&src.join("victim"), &original, 0o644);
    let img = dir.join("j.img");
    mkfs_ext("ext4", &src, &img);

    let blocks = run(Command::new("debugfs")
        .args(["-R", "blocks /victim"])
        .arg(&img));
    let first: u64 = String::from_utf8_lossy(&blocks)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let new_block = dir.join("new_block");
    std::fs::write(&new_block, pseudo_random(2, 4096)).unwrap();
    let open = if checksummed { "jo -c" } else { "jo" };
    let script = format!("{open}\njw -b {first} {}\njc\n", new_block.display());
    let script_path = dir.join("debugfs.cmds");
    std::fs::write(&script_path, script).unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(&img));
    let header =
        String::from_utf8_lossy(&run(Command::new("dumpe2fs").arg("-h").arg(&img))).to_string();
    assert!(header.contains("needs_recovery"), "journal not left dirty");
    assert_eq!(
        header.contains("journal_checksum_v3"),
        checksummed,
        "{header}"
    );

    // Oracle: e2fsck replays a copy, debugfs dumps the file from it.
    let fixed = dir.join("fixed.img");
    std::fs::copy(&img, &fixed).unwrap();
    let status = Command::new("e2fsck")
        .args(["-fy"])
        .arg(&fixed)
        .output()
        .unwrap()
        .status;
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "e2fsck failed: {status}"
    );
    let dumped = dir.join("dumped");
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /victim {}", dumped.display()))
        .arg(&fixed));
    let replayed = std::fs::read(&dumped).unwrap();
    assert_ne!(
        replayed, original,
        "the replay changed nothing: the test would prove nothing"
    );
    (img, original, replayed)
}

/// A checksummed journal is replayed in memory, exactly as e2fsck replays it.
#[test]
fn inspect_fs_ext4_journal_replay() {
    let dir = tempdir();
    let (img, _, replayed) = dirty_journal_image(dir.path(), true);
    let fs = Ext4Fs::open(open_raw(&img)).unwrap();
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    assert_eq!(fs.read_file("/victim", 1 << 20).unwrap(), replayed);
}

/// A journal ext4-view cannot replay (no v3 checksums) is skipped like `mount -o
/// noload`: the filesystem opens with a warning and shows the checkpointed data.
#[test]
fn inspect_fs_ext4_journal_not_replayable() {
    let dir = tempdir();
    let (img, original, _) = dirty_journal_image(dir.path(), false);
    let fs = Ext4Fs::open(open_raw(&img)).unwrap();
    assert_eq!(fs.warnings().len(), 1, "{:?}", fs.warnings());
    assert!(
        fs.warnings()[0].contains("journal not replayed"),
        "{:?}",
        fs.warnings()
    );
    assert_eq!(fs.read_file("/victim", 1 << 20).unwrap(), original);
}

/// Flipped bytes in the metadata of a small ext4 image: every open and read ends in a
/// result or a typed error (a panic inside ext4-view is caught and counted).
#[test]
fn inspect_fs_ext4_mutations() {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir_all(src.join("etc/dir")).unwrap();
    write(&src.join("etc/os-release"), b"ID=debian\n", 0o644);
    write(&src.join("etc/dir/big"), &pseudo_random(3, 100_000), 0o644);
    for i in 0..40 {
        write(&src.join(format!("etc/dir/f{i}")), b"x", 0o644);
    }
    symlink("dir/big", src.join("etc/link")).unwrap();
    let img = dir.path().join("m.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "1024", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("4M"));
    let base = std::fs::read(&img).unwrap();
    // Superblock, group descriptors, bitmaps and the start of the inode table, and the
    // first data blocks (directories, extent nodes) of a 1 KiB-block filesystem.
    let hot = 1024..300 * 1024;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let (mut opened, mut panics) = (0, 0);
    for _ in 0..300 {
        let mut bytes = base.clone();
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = hot.start + (x as usize) % (hot.end - hot.start);
            bytes[at] = (x >> 40) as u8;
        }
        let fs = match Ext4Fs::open(Arc::new(MemSource(bytes))) {
            Ok(fs) => fs,
            Err(e) => {
                panics += e.to_string().contains("panicked") as usize;
                continue;
            }
        };
        opened += 1;
        let results = [
            fs.read_dir("/etc/dir").map(|_| ()),
            fs.read_file("/etc/os-release", 1 << 20).map(|_| ()),
            fs.read_file("/etc/dir/big", 1 << 20).map(|_| ()),
            fs.read_link("/etc/link").map(|_| ()),
            fs.metadata("/etc/dir/f7").map(|_| ()),
        ];
        panics += results
            .iter()
            .filter(|r| matches!(r, Err(e) if e.to_string().contains("panicked")))
            .count();
    }
    eprintln!("ext4 mutations: 300 images, {opened} opened, {panics} ext4-view panics caught");
    assert!(
        opened > 0,
        "no mutated image opened: the mutations test nothing past the superblock"
    );
}

/// The vfat oracle for one FAT type: mkfs.fat + mcopy, then the same comparison
/// (without modes or symlinks, which FAT does not store).
fn vfat_case(fat_bits: &str, size_kib: &str, extra: &[&str]) {
    let (dir, want) = source_tree(true);
    let src = dir.path().join("src");
    let img = dir.path().join(format!("fat{fat_bits}.img"));
    run(Command::new("mkfs.fat")
        .args(["-F", fat_bits])
        .args(extra)
        .arg("-C")
        .arg(&img)
        .arg(size_kib)
        .stdout(std::process::Stdio::null()));
    let mut mcopy = Command::new("mcopy");
    mcopy
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8");
    mcopy.arg("-s").arg("-i").arg(&img);
    for entry in std::fs::read_dir(&src).unwrap() {
        mcopy.arg(entry.unwrap().path());
    }
    run(mcopy.arg("::/"));

    let raw = open_raw(&img);
    assert_eq!(probe(raw.as_ref()).unwrap().unwrap().fs_type, "vfat");
    let fs = VfatFs::open(raw).unwrap();
    let (ours, took) = read_all(&fs, false);
    assert_same(&format!("FAT{fat_bits}"), &ours, &want);
    eprintln!(
        "FAT{fat_bits}: walked and read {} paths in {:.1} ms",
        ours.len(),
        took.as_secs_f64() * 1e3
    );

    // Lookups are case-insensitive; names are reported as stored.
    assert_eq!(
        fs.read_file("/mixed case dir/README.txt", 100).unwrap(),
        b"mixed\n"
    );
    assert!(fs
        .read_dir("/MIXED CASE DIR")
        .unwrap()
        .iter()
        .any(|e| e.name == "ReadMe.TXT"));
    assert!(matches!(
        fs.read_file("/size_1048579.bin", 1 << 20),
        Err(FsError::TooLarge {
            size: 1048579,
            limit: 1048576,
            ..
        })
    ));
    assert!(matches!(
        fs.read_file("/missing", 10),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.read_file("/many", 10),
        Err(FsError::IsADirectory(_))
    ));
    assert!(matches!(
        fs.read_dir("/empty.txt"),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(
        fs.read_link("/empty.txt"),
        Err(FsError::NotASymlink(_))
    ));
    let m = fs.metadata("/a/script.sh").unwrap();
    assert_eq!(
        (m.kind, m.size, m.mode, m.uid),
        (FileKind::File, 18, 0o644, 0)
    );
}

#[test]
fn inspect_fs_vfat12_oracle() {
    vfat_case("12", "8192", &["-s", "8"]);
}

#[test]
fn inspect_fs_vfat16_oracle() {
    vfat_case("16", "32768", &[]);
}

/// Sets the boot sector's total sector count (the 16-bit field, or the 32-bit one when
/// that is 0) to `add` sectors more, growing the data region by `add` clusters of one
/// sector; returns the data clusters the volume now has, by the specification's formula.
fn grow_fat(img: &Path, add: u64) -> u64 {
    let mut bytes = std::fs::read(img).unwrap();
    let le16 = |b: &[u8], at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let le32 =
        |b: &[u8], at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
    let total = match le16(&bytes, 0x13) {
        0 => le32(&bytes, 0x20) + add,
        n => n + add,
    };
    if le16(&bytes, 0x13) != 0 && total <= 0xffff {
        bytes[0x13..0x15].copy_from_slice(&(total as u16).to_le_bytes());
    } else {
        bytes[0x13..0x15].fill(0);
        bytes[0x20..0x24].copy_from_slice(&(total as u32).to_le_bytes());
    }
    bytes.resize(bytes.len().max(total as usize * 512), 0);
    std::fs::write(img, &bytes).unwrap();
    let (spc, reserved, fats, root) = (
        u64::from(bytes[0x0d]),
        le16(&bytes, 0x0e),
        u64::from(bytes[0x10]),
        le16(&bytes, 0x11),
    );
    let first_data = reserved + fats * le16(&bytes, 0x16) + (root * 32).div_ceil(512);
    (total - first_data) / spc
}

/// FAT12 or FAT16 is decided by the cluster count; at the boundaries (4084/4085 and
/// 65524/65525 clusters) our reader accepts exactly the volumes `fsck.fat -n` accepts,
/// reads the file mkfs + mcopy put there, and our probe calls vfat exactly what
/// `blkid -p` does. mkfs.vfat stops short of the limits, so its volumes are grown by
/// patching the sector count (the FAT it wrote keeps its width).
#[test]
fn inspect_fs_vfat_cluster_count_boundaries() {
    let dir = tempdir();
    let mut seen = Vec::new();
    for (bits, kib, adds) in [("12", 2056, [1, 2, 3]), ("16", 32768, [245, 246, 247])] {
        for add in adds {
            let img = dir.path().join(format!("fat{bits}-{add}.img"));
            std::fs::File::create(&img)
                .unwrap()
                .set_len(kib * 1024)
                .unwrap();
            run(Command::new("mkfs.vfat")
                .args([
                    "-F", bits, "-s", "1", "-S", "512", "-f", "1", "-r", "16", "-R", "1",
                ])
                .arg(&img)
                .stdout(std::process::Stdio::null()));
            let hello = dir.path().join("HELLO.TXT");
            std::fs::write(&hello, format!("fat{bits} +{add}\n")).unwrap();
            run(Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&img)
                .arg(&hello)
                .arg("::/"));
            let clusters = grow_fat(&img, add);

            let fsck_ok = Command::new("fsck.vfat")
                .arg("-n")
                .arg(&img)
                .output()
                .unwrap()
                .status
                .success();
            let ours = VfatFs::open(open_raw(&img));
            assert_eq!(ours.is_ok(), fsck_ok, "FAT{bits} with {clusters} clusters");
            if let Ok(fs) = ours {
                let got = fs.read_file("/HELLO.TXT", 100).unwrap();
                assert_eq!(got, format!("fat{bits} +{add}\n").as_bytes());
            }
            let blkid = Command::new("blkid")
                .args(["-p", "-o", "value", "-s", "TYPE"])
                .arg(&img)
                .output()
                .unwrap();
            let blkid_vfat = String::from_utf8_lossy(&blkid.stdout).trim() == "vfat";
            let probed = probe(open_raw(&img).as_ref()).unwrap().map(|p| p.fs_type);
            assert_eq!(
                probed == Some("vfat"),
                blkid_vfat,
                "FAT{bits}: {clusters} clusters"
            );
            seen.push((clusters, fsck_ok, blkid_vfat));
        }
    }
    // The cases do sit on both sides of both limits.
    let accepted = |n: u64| seen.iter().find(|s| s.0 == n).map(|s| s.1);
    assert_eq!(accepted(4084), Some(true), "{seen:?}");
    assert_eq!(accepted(4085), Some(false), "{seen:?}");
    assert_eq!(accepted(65524), Some(true), "{seen:?}");
    assert_eq!(accepted(65525), Some(false), "{seen:?}");
}

#[test]
fn inspect_fs_vfat32_oracle() {
    vfat_case("32", "65536", &[]);
}

/// A preallocated (fallocate) file reads as zeros, as the kernel and debugfs show it.
/// ext4-view 1.0 ignores the "unwritten" flag of extents and returns the stale blocks
/// instead (here: the bytes of a deleted file); ignored until that is fixed upstream or
/// worked around. Run with `--ignored` to see it fail.
#[test]
#[ignore = "known gap: ext4-view 1.0 reads unwritten extents as data"]
fn inspect_fs_ext4_unwritten_extents_read_as_zeros() {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    write(&src.join("junk"), &pseudo_random(5, 400_000), 0o644);
    let img = dir.path().join("u.img");
    mkfs_ext("ext4", &src, &img);
    let script = dir.path().join("cmds");
    std::fs::write(
        &script,
        "rm /junk\nwrite /dev/null pre\nfallocate /pre 0 99\nsif /pre size 409600\n",
    )
    .unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(&img));
    let dumped = dir.path().join("pre.out");
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /pre {}", dumped.display()))
        .arg(&img));
    let want = std::fs::read(&dumped).unwrap();
    assert_eq!(want, vec![0u8; 409_600], "debugfs oracle");

    let fs = Ext4Fs::open(open_raw(&img)).unwrap();
    let got = fs.read_file("/pre", 1 << 20).unwrap();
    let stale = got.iter().filter(|&&b| b != 0).count();
    assert_eq!(stale, 0, "{stale} stale bytes read from unwritten extents");
}
