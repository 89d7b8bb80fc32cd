//! The XFS oracle: a source tree with real variety (files of many sizes with random
//! bytes, deep paths, short and remote symlinks, directories of 0 to 5,000 entries,
//! long names, set-id bits, several owners) is put into XFS images by `mkfs.xfs -p`
//! (a protofile, no mount) in every on-disk variant (v5 with and without bigtime and
//! nrext64, v4 with and without ftype, small blocks with 16 KiB directory blocks), then
//! walked through our reader and compared with the tree itself: paths, kinds, bytes,
//! symlink targets, and mode/uid/gid/size from `stat`. `xfs_db -r` confirms which
//! directory and fork layouts each image really has; `blkid -p` is the probe's oracle.
//!
//! What needs a kernel (unwritten extents, holes, a B+tree data fork, hard links, a
//! dirty log) is built once with guestfish and checked against guestfish's own reads
//! and `xfs_db`.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use guestkit_worker::inspect::fs::probe::probe;
use guestkit_worker::inspect::fs::xfs::XfsFs;
use guestkit_worker::inspect::fs::{FileSystem, FsError, Timestamp};

use crate::common::tree::{assert_same, open_raw, walk_ours, walk_source, Facts, Node, Tree};
use crate::common::{guestfish_disks, run, tempdir, Rng};

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn write(path: &Path, data: &[u8], mode: u32, owner: Option<(u32, u32)>) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(path, Some(u), Some(g)).unwrap();
    }
}

/// The source tree (no spaces in names: the protofile format splits on whitespace).
fn build_tree(root: &Path) {
    let mkdir = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    mkdir("a/b/c/d/e/f/g/h/i/j");
    write(
        &root.join("a/b/c/d/e/f/g/h/i/j/deep.txt"),
        b"ten levels down\n",
        0o644,
        None,
    );
    write(&root.join("empty.txt"), b"", 0o644, None);
    for (i, size) in [1usize, 100, 4095, 4096, 4097, 65536 + 7, (3 << 20) + 11]
        .into_iter()
        .enumerate()
    {
        write(
            &root.join(format!("size_{size}.bin")),
            &random_bytes(i as u64 + 1, size),
            0o644,
            Some((1000 + i as u32, 2000 + i as u32)),
        );
    }
    write(&root.join("suid"), b"#!/bin/sh\n", 0o4755, None);
    write(&root.join("sgid"), b"#!/bin/sh\n", 0o2750, Some((0, 5)));
    write(&root.join("secret"), b"x\n", 0o600, Some((65534, 65534)));
    // 0, 5, 50, 200 and 5,000 entries: short form, short form, block, leaf, node.
    for (dir, n) in [
        ("d0", 0),
        ("d5", 5),
        ("d50", 50),
        ("d200", 200),
        ("d5000", 5000),
    ] {
        mkdir(dir);
        for i in 0..n {
            write(
                &root.join(format!("{dir}/entry_number_{i:05}")),
                format!("{dir} {i}\n").as_bytes(),
                0o644,
                None,
            );
        }
    }
    std::fs::set_permissions(root.join("d0"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // Names of the maximum length, in a block and in a node directory.
    write(
        &root.join("d5000").join("n".repeat(255)),
        b"long\n",
        0o644,
        None,
    );
    write(
        &root.join("d50").join("m".repeat(255)),
        b"long\n",
        0o644,
        None,
    );
    write(
        &root.join("café_日本.txt"),
        "utf-8 ✓\n".as_bytes(),
        0o640,
        Some((7, 8)),
    );
    symlink("a/b/c", root.join("rel_link")).unwrap();
    symlink("/etc/passwd", root.join("abs_link")).unwrap();
    symlink("../nowhere", root.join("a/dangling")).unwrap();
    // Too long for the inode's literal area: stored in remote blocks.
    symlink(format!("/{}", "t".repeat(1000)), root.join("a/long_link")).unwrap();
    symlink(format!("/{}", "u".repeat(300)), root.join("a/medium_link")).unwrap();
}

/// A protofile (mkfs.xfs -p) describing the source tree, owners and modes from lstat.
fn protofile(root: &Path) -> String {
    fn mode_string(kind: char, mode: u32) -> String {
        format!(
            "{kind}{}{}{:03o}",
            if mode & 0o4000 != 0 { 'u' } else { '-' },
            if mode & 0o2000 != 0 { 'g' } else { '-' },
            mode & 0o777
        )
    }
    fn dir(path: &Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let name = e.file_name().into_string().unwrap();
            let (u, g) = (m.uid(), m.gid());
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.push_str(&format!("{name} l--777 {u} {g} {}\n", t.display()));
            } else if m.is_dir() {
                out.push_str(&format!("{name} {} {u} {g}\n", mode_string('d', m.mode())));
                dir(&e.path(), out);
                out.push_str("$\n");
            } else {
                out.push_str(&format!(
                    "{name} {} {u} {g} {}\n",
                    mode_string('-', m.mode()),
                    e.path().display()
                ));
            }
        }
    }
    let m = std::fs::metadata(root).unwrap();
    let mut out = format!(
        "/dev/null\n0 0\n{} {} {}\n",
        mode_string('d', m.mode()),
        m.uid(),
        m.gid()
    );
    dir(root, &mut out);
    out.push_str("$\n");
    out
}

fn xfs_db(img: &Path, cmds: &[&str]) -> String {
    let mut c = Command::new("xfs_db");
    c.arg("-r");
    for cmd in cmds {
        c.arg("-c").arg(cmd);
    }
    String::from_utf8(run(c.arg(img))).unwrap()
}

/// `key = value` from xfs_db's print output.
fn db_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("xfs_db printed no {key}: {out}"))
        .to_string()
}

/// Inode `field` (`mtime`, ...) of `path` as xfs_db prints it (a UTC date and the
/// nanoseconds), turned into seconds by `date`.
fn db_time(img: &Path, path: &str, field: &str) -> Timestamp {
    let out = String::from_utf8(run(Command::new("xfs_db")
        .env("TZ", "UTC")
        .arg("-r")
        .arg("-c")
        .arg(format!("path {path}"))
        .arg("-c")
        .arg(format!("print core.{field}"))
        .arg(img)))
    .unwrap();
    let date = db_field(&out, &format!("core.{field}.sec"));
    let secs = String::from_utf8(run(Command::new("date")
        .env("TZ", "UTC")
        .args(["-d", &date, "+%s"])))
    .unwrap();
    Timestamp {
        secs: secs.trim().parse().unwrap(),
        nsecs: db_field(&out, &format!("core.{field}.nsec"))
            .parse()
            .unwrap(),
    }
}

/// The layout of a directory as xfs_db shows it: `local`, `block`, `leaf` or `node`
/// (from its fork format and which address spaces of the fork are mapped).
fn dir_layout(img: &Path, path: &str) -> String {
    let out = xfs_db(img, &[&format!("path {path}"), "print core.format", "bmap"]);
    if db_field(&out, "core.format").starts_with("1 ") {
        return "local".into();
    }
    let blksize: u64 = db_field(&xfs_db(img, &["sb 0", "print blocksize"]), "blocksize")
        .parse()
        .unwrap();
    let leaf = (1u64 << 35) / blksize;
    let offsets: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("data offset "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    if offsets.iter().any(|&o| o >= 2 * leaf) {
        "node".into()
    } else if offsets.iter().any(|&o| o >= leaf) {
        "leaf".into()
    } else {
        "block".into()
    }
}

/// `blkid -p` as (UUID, LABEL).
fn blkid(img: &Path) -> (Option<String>, Option<String>) {
    let out = String::from_utf8(run(Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(img)))
    .unwrap();
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    (get("UUID"), get("LABEL"))
}

/// Layouts of /d0, /d5, /d50, /d200 and /d5000 with 4 KiB directory blocks.
const LAYOUTS: &[&str] = &["local", "local", "block", "leaf", "node"];

/// Every on-disk variant mkfs.xfs 6.1 writes, each with the same tree, and the
/// directory layouts xfs_db must find in it.
const VARIANTS: &[(&str, &[&str], &[&str])] = &[
    ("v5", &[], LAYOUTS),
    (
        "v5-bigtime-nrext64",
        &["-m", "bigtime=1", "-i", "nrext64=1"],
        LAYOUTS,
    ),
    ("v5-nobigtime", &["-m", "bigtime=0"], LAYOUTS),
    // 200 entries fit one 16 KiB directory block.
    (
        "v5-1k-blocks-16k-dirs",
        &["-b", "size=1024", "-n", "size=16384"],
        &["local", "local", "block", "block", "node"],
    ),
    ("v4", &["-m", "crc=0"], LAYOUTS),
    (
        "v4-noftype-256b-inodes",
        &["-m", "crc=0", "-n", "ftype=0", "-i", "size=256"],
        LAYOUTS,
    ),
];

#[test]
fn xfs_protofile_variants_match_the_source_tree() {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src);
    let mut want = Tree::new();
    walk_source(&src, "", Facts::ALL, &mut want);
    let proto = dir.path().join("proto");
    std::fs::write(&proto, protofile(&src)).unwrap();
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

    for (name, args, layouts_want) in VARIANTS {
        let img = dir.path().join(format!("{name}.img"));
        run(Command::new("truncate").args(["-s", "320M"]).arg(&img));
        run(Command::new("mkfs.xfs")
            .args(["-q", "-f", "-L", "xfs-oracle"])
            .args(*args)
            .arg("-p")
            .arg(&proto)
            .arg(&img));

        // The layouts this variant really has, from xfs_db.
        let layouts: Vec<String> = ["/d0", "/d5", "/d50", "/d200", "/d5000"]
            .iter()
            .map(|d| dir_layout(&img, d))
            .collect();
        assert_eq!(&layouts, layouts_want, "{name}: directory layouts");
        for link in ["/a/long_link", "/a/medium_link"] {
            let out = xfs_db(&img, &[&format!("path {link}"), "print core.format"]);
            let remote = db_field(&out, "core.format").starts_with("2 ");
            // 300 bytes stay inside a 512-byte v5 inode, not a 256-byte v4 one.
            let want_remote = link.contains("long") || name.starts_with("v4");
            assert_eq!(remote, want_remote, "{name}: {link} remote");
        }

        let fs = XfsFs::open(open_raw(&img)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(fs.warnings().is_empty(), "{name}: {:?}", fs.warnings());
        let mut ours = Tree::new();
        walk_ours(&fs, "", Facts::ALL, &[], &mut ours);
        if !name.starts_with("v4") {
            // mkfs.xfs 6.1's protofile code writes remote symlink blocks without the v5
            // header, which xfs_repair (and the kernel's verifier) reject: so do we.
            // Remote symlinks of v5 are compared on the kernel-made image instead.
            let repair = Command::new("xfs_repair")
                .arg("-n")
                .arg(&img)
                .output()
                .unwrap();
            let verdict = String::from_utf8_lossy(&repair.stderr).to_string()
                + &String::from_utf8_lossy(&repair.stdout);
            assert!(verdict.contains("bad symlink header"), "{name}: {verdict}");
            let Some(Node::Symlink { target }) = ours.get_mut("/a/long_link") else {
                panic!("{name}: no /a/long_link");
            };
            assert!(
                target.starts_with("<error: corrupt xfs filesystem: symlink")
                    && target.contains("bad magic"),
                "{name}: {target}"
            );
            *target = format!("/{}", "t".repeat(1000));
        }
        assert_same(name, &ours, &want);

        // Directory sizes and the root's metadata, from xfs_db.
        for d in ["/d5", "/d50", "/d5000"] {
            let size = db_field(
                &xfs_db(&img, &[&format!("path {d}"), "print core.size"]),
                "core.size",
            );
            assert_eq!(
                fs.metadata(d).unwrap().size.to_string(),
                size,
                "{name}: {d} size"
            );
        }
        // Times (mkfs stamps its own run's), legacy and bigtime encodings, from xfs_db.
        for p in ["/", "/d5", "/a/long_link", "/suid"] {
            let times = fs.metadata(p).unwrap().times;
            for (field, ours) in [
                ("atime", times.atime),
                ("mtime", times.mtime),
                ("ctime", times.ctime),
            ] {
                assert_eq!(ours, Some(db_time(&img, p, field)), "{name}: {p} {field}");
            }
        }

        // The probe agrees with blkid.
        let found = probe(open_raw(&img).as_ref()).unwrap().unwrap();
        assert_eq!(
            (found.uuid, found.label),
            blkid(&img),
            "{name}: probe vs blkid"
        );
        eprintln!(
            "{name}: {files} files, {bytes} bytes and {} paths equal the source",
            want.len()
        );
    }
}

#[test]
fn xfs_typed_errors() {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    write(&src.join("f"), b"data", 0o644, None);
    std::fs::create_dir(src.join("d")).unwrap();
    symlink("f", src.join("l")).unwrap();
    let proto = dir.path().join("proto");
    std::fs::write(&proto, protofile(&src)).unwrap();
    let img = dir.path().join("x.img");
    run(Command::new("truncate").args(["-s", "300M"]).arg(&img));
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-p"])
        .arg(&proto)
        .arg(&img));
    let fs = XfsFs::open(open_raw(&img)).unwrap();
    assert!(matches!(
        fs.read_file("/missing", 10),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.read_file("/d", 10),
        Err(FsError::IsADirectory(_))
    ));
    assert!(matches!(fs.read_dir("/f"), Err(FsError::NotADirectory(_))));
    assert!(matches!(
        fs.read_file("/f/x", 10),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(fs.read_link("/f"), Err(FsError::NotASymlink(_))));
    assert!(matches!(
        fs.read_file("/f", 3),
        Err(FsError::TooLarge {
            size: 4,
            limit: 3,
            ..
        })
    ));
    assert_eq!(fs.read_link("/l").unwrap(), "f");
    assert_eq!(fs.read_file("/d/../f", 10).unwrap(), b"data");

    // A file flagged realtime (its data would be on the realtime device, which one
    // partition never includes): refused, not read from the data device.
    let rt = dir.path().join("rt.img");
    let rtdev = dir.path().join("rtdev.img");
    run(Command::new("truncate").args(["-s", "300M"]).arg(&rt));
    run(Command::new("truncate").args(["-s", "64M"]).arg(&rtdev));
    let mut rtdev_opt = std::ffi::OsString::from("rtdev=");
    rtdev_opt.push(&rtdev);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-r"])
        .arg(&rtdev_opt)
        .arg("-p")
        .arg(&proto)
        .arg(&rt));
    run(Command::new("xfs_db")
        .args(["-x", "-c", "path /f", "-c", "write core.realtime 1"])
        .arg(&rt));
    assert!(
        db_field(
            &xfs_db(&rt, &["path /f", "print core.realtime"]),
            "core.realtime"
        ) == "1"
    );
    let fs_rt = XfsFs::open(open_raw(&rt)).unwrap();
    let err = fs_rt.read_file("/f", 10).unwrap_err();
    assert!(
        matches!(&err, FsError::Unsupported { fs: "xfs", message } if message.contains("realtime")),
        "{err}"
    );

    // An external log: whether it is dirty cannot be known from this device.
    let ext = dir.path().join("extlog.img");
    let logdev = dir.path().join("logdev.img");
    run(Command::new("truncate").args(["-s", "300M"]).arg(&ext));
    run(Command::new("truncate").args(["-s", "80M"]).arg(&logdev));
    let mut log_opt = std::ffi::OsString::from("size=64m,logdev=");
    log_opt.push(&logdev);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-l"])
        .arg(&log_opt)
        .arg("-p")
        .arg(&proto)
        .arg(&ext));
    let err = XfsFs::open(open_raw(&ext)).err().unwrap();
    assert!(
        matches!(&err, FsError::Unsupported { fs: "xfs", message } if message.contains("external log")),
        "{err}"
    );

    // A flipped bit in the root inode: its CRC no longer matches.
    let root = db_field(&xfs_db(&img, &["sb 0", "print rootino"]), "rootino");
    let mut bytes = std::fs::read(&img).unwrap();
    let blk: u64 = 4096;
    let ino: u64 = root.parse().unwrap();
    // AG 0, inopblog 3: block = ino >> 3, index = ino & 7 (512-byte inodes).
    let at = ((ino >> 3) * blk + (ino & 7) * 512 + 8) as usize;
    bytes[at] ^= 1;
    let bad = dir.path().join("bad.img");
    std::fs::write(&bad, &bytes).unwrap();
    let err = XfsFs::open(open_raw(&bad)).err().unwrap();
    assert!(
        matches!(&err, FsError::Corrupt { fs: "xfs", message } if message.contains("checksum")),
        "{err}"
    );
}

/// The kernel-made image: disk 0 is a clean v5 XFS with preallocated (unwritten)
/// extents, holes, a file fragmented past the inode (B+tree data fork), hard links and
/// a remote symlink; every file is also downloaded by guestfish (the oracle). Disk 1 is
/// shut down with `xfs_io -x -c shutdown` after synced writes: its log is dirty.
fn kernel_disks() -> (Vec<std::path::PathBuf>, String) {
    let long_target = format!("/{}", "r".repeat(900));
    let mut script = format!(
        r#"mkfs xfs /dev/sda
mkfs xfs /dev/sdb label:dirtylog
mount /dev/sda /
write /small.txt "hello from the kernel\n"
mkdir /dir
ln /small.txt /hardlink
ln /small.txt /dir/hardlink2
fallocate64 /prealloc 1048576
fallocate64 /mixed 1048576
pwrite /mixed "written into a preallocated range" 500000
touch /sparse
truncate-size /sparse 10485760
pwrite /sparse "start of the sparse file" 0
pwrite /sparse "five MiB in" 5242880
pwrite /sparse "end" 10485757
ln-s {long_target} /remote_link
ln-s small.txt /short_link
touch /frag
"#
    );
    for i in 0..150u64 {
        script.push_str(&format!("pwrite /frag \"fragment {i:03}\" {}\n", i * 8192));
    }
    script.push_str(
        r#"sync
download /small.txt small.out
download /hardlink hardlink.out
download /prealloc prealloc.out
download /mixed mixed.out
download /sparse sparse.out
download /frag frag.out
find0 / find0.out
mkdir /dirty
mount /dev/sdb /dirty
write /dirty/committed "written and synced before the crash\n"
mkdir /dirty/newdir
sync
write /dirty/late "written after the last sync\n"
debug sh "xfs_io -x -r -c shutdown /sysroot/dirty"
"#,
    );
    (guestfish_disks(&script, &[320, 320], &[]), long_target)
}

#[test]
fn xfs_kernel_made_unwritten_holes_btree_hardlinks_and_dirty_log() {
    let (disks, long_target) = kernel_disks();
    let out = disks[0].parent().unwrap();
    let img = &disks[0];

    // xfs_db confirms the layouts under test.
    let format = |p: &str| {
        db_field(
            &xfs_db(img, &[&format!("path {p}"), "print core.format"]),
            "core.format",
        )
    };
    assert!(
        format("/frag").starts_with("3 "),
        "/frag is not a B+tree fork"
    );
    assert!(
        format("/remote_link").starts_with("2 "),
        "/remote_link is not remote"
    );
    let prealloc = xfs_db(img, &["path /prealloc", "bmap"]);
    assert!(
        prealloc.contains("flag 1"),
        "no unwritten extent: {prealloc}"
    );
    let sparse = xfs_db(img, &["path /sparse", "bmap"]);
    assert!(
        sparse.lines().count() >= 2,
        "sparse file not sparse: {sparse}"
    );

    let fs = XfsFs::open(open_raw(img)).unwrap();
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    for (path, oracle) in [
        ("/small.txt", "small.out"),
        ("/hardlink", "hardlink.out"),
        ("/dir/hardlink2", "small.out"),
        ("/prealloc", "prealloc.out"),
        ("/mixed", "mixed.out"),
        ("/sparse", "sparse.out"),
        ("/frag", "frag.out"),
    ] {
        let want = std::fs::read(out.join(oracle)).unwrap();
        let got = fs.read_file(path, 1 << 30).unwrap();
        assert!(
            got == want,
            "{path}: {} bytes vs guestfish's {}",
            got.len(),
            want.len()
        );
        assert_eq!(fs.metadata(path).unwrap().size, want.len() as u64, "{path}");
    }
    assert!(fs
        .read_file("/prealloc", 1 << 30)
        .unwrap()
        .iter()
        .all(|&b| b == 0));
    assert_eq!(fs.read_link("/remote_link").unwrap(), long_target);
    assert_eq!(fs.read_link("/short_link").unwrap(), "small.txt");

    // Every path guestfish's find0 lists, and no other.
    let listed = std::fs::read(out.join("find0.out")).unwrap();
    let mut want: Vec<String> = listed
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", String::from_utf8_lossy(s)))
        .collect();
    want.sort();
    let mut ours = Tree::new();
    walk_ours(&fs, "", Facts::ALL, &[], &mut ours);
    let mut got: Vec<String> = ours.keys().cloned().collect();
    got.sort();
    // find0 ran before /dirty was made.
    got.retain(|p| p != "/dirty");
    assert_eq!(got, want);

    // Disk 1: the dirty log. xfs_repair agrees it is dirty; we warn, and read what is on
    // disk, which xfs_db (it never replays the log either) lists.
    let dirty = &disks[1];
    let repair = Command::new("xfs_repair")
        .arg("-n")
        .arg(dirty)
        .output()
        .unwrap();
    let verdict = String::from_utf8_lossy(&repair.stderr);
    assert!(
        verdict.contains("changes in a log"),
        "xfs_repair: {verdict}"
    );
    let fs = XfsFs::open(open_raw(dirty)).unwrap();
    assert!(
        fs.warnings()
            .iter()
            .any(|w| w.contains("log is dirty") && w.contains("not replayed")),
        "{:?}",
        fs.warnings()
    );
    let mut ours: Vec<String> = fs
        .read_dir("/")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    ours.sort();
    let db = xfs_db(dirty, &["ls /"]);
    let mut on_disk: Vec<String> = db
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect();
    on_disk.sort();
    assert_eq!(ours, on_disk, "root of the dirty filesystem vs xfs_db");
    // The clean disk's log is clean by xfs_repair's verdict too.
    let clean = Command::new("xfs_repair")
        .arg("-n")
        .arg(img)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&clean.stderr).contains("changes in a log"));
}

// ------------------------------------------------------------------ RHEL-like guest

fn put(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const ROOT_UUID: &str = "7c1f3e2a-9b8d-4c6e-a5f4-3d2c1b0a9e8f";
const BOOT_UUID: &str = "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b";

/// A Rocky-9-like guest: GPT, /boot ext4 (sda1), XFS root (sda2, protofile-made) with
/// os-release, hostname, fstab by UUID and an rpm sqlite database. Returns the disk
/// and the oracle's package list (`rpm -qa --dbpath` on the source tree).
pub fn rhel_like_disk(dir: &Path, mkfs_args: &[&str]) -> (std::path::PathBuf, Vec<String>) {
    let r = dir.join("root");
    put(
        &r,
        "/etc/os-release",
        "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n\
         VERSION_ID=\"9.3\"\nPLATFORM_ID=\"platform:el9\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n",
    );
    put(
        &r,
        "/etc/redhat-release",
        "Rocky Linux release 9.3 (Blue Onyx)\n",
    );
    put(
        &r,
        "/etc/rocky-release",
        "Rocky Linux release 9.3 (Blue Onyx)\n",
    );
    put(&r, "/etc/hostname", "rocky9.example.com\n");
    put(
        &r,
        "/etc/fstab",
        format!(
            "# /etc/fstab\nUUID={ROOT_UUID} /                       xfs     defaults        0 0\n\
             UUID={BOOT_UUID} /boot                   ext4    defaults        1 2\n"
        ),
    );
    put(
        &r,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nrocky:x:1000:1000::/home/rocky:/bin/bash\n",
    );
    put(&r, "/etc/group", "root:x:0:\nwheel:x:10:rocky\n");
    put(&r, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy("/bin/sh", r.join("usr/bin/bash")).unwrap();
    symlink("usr/bin", r.join("bin")).unwrap();
    symlink("usr/lib64", r.join("lib64")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib64")).unwrap();
    std::fs::create_dir_all(r.join("boot")).unwrap();
    for i in 0..300 {
        put(
            &r,
            &format!("/usr/share/doc/pkg{i:03}/README"),
            format!("package {i}\n"),
        );
    }
    // RHEL 9 keeps its rpm database in /var/lib/rpm.
    run(Command::new(crate::common::fixtures().join("rpm-db.sh"))
        .arg(&r)
        .arg(dir.join("rpmbuild"))
        .arg("/var/lib/rpm"));
    let out = run(Command::new("rpm").arg("--root").arg(&r).args([
        "--dbpath",
        "/var/lib/rpm",
        "-qa",
        "--qf",
        "%{NAME} %{VERSION}\\n",
    ]));
    let mut packages: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    packages.sort();

    let b = dir.join("boot");
    put(&b, "/vmlinuz-5.14.0-362.8.1.el9_3.x86_64", "not a kernel");
    put(&b, "/grub2/grub.cfg", "set default=0\n");

    let proto = dir.join("root.proto");
    std::fs::write(&proto, protofile(&r)).unwrap();
    let root_img = dir.join("root.xfs");
    let boot_img = dir.join("boot.ext4");
    run(Command::new("truncate").args(["-s", "320M"]).arg(&root_img));
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-L", "root", "-m", &format!("uuid={ROOT_UUID}")])
        .args(mkfs_args)
        .arg("-p")
        .arg(&proto)
        .arg(&root_img));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", BOOT_UUID, "-L", "boot", "-d"])
        .arg(&b)
        .arg(&boot_img)
        .arg("64M"));
    let disk = dir.join("rocky9.raw");
    crate::common::sh(&format!(
        "truncate -s 400M {d}
         printf 'label: gpt\\nstart=2048, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot\\nstart=133120, size=655360, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\\n' | sfdisk -q {d}
         dd if={b} of={d} bs=512 seek=2048 conv=notrunc,sparse status=none
         dd if={x} of={d} bs=512 seek=133120 conv=notrunc,sparse status=none",
        d = disk.display(),
        b = boot_img.display(),
        x = root_img.display()
    ));
    (disk, packages)
}

#[test]
fn xfs_rhel_like_guest_is_fully_inspected() {
    use guestkit_worker::inspect::pipeline::{inspect_with_stats, InspectOptions};
    let dir = tempdir();
    let (disk, packages) = rhel_like_disk(dir.path(), &[]);
    let opts = InspectOptions {
        image_roots: vec![dir.path().to_path_buf()],
        ..InspectOptions::default()
    };
    let (report, stats) = inspect_with_stats(&disk, &opts).unwrap();
    assert_eq!(report.warnings, Vec::<String>::new());
    let xfs = report
        .filesystems
        .iter()
        .find(|f| f.device == "/dev/sda2")
        .unwrap();
    assert_eq!(
        (xfs.fs_type.as_str(), xfs.uuid.as_deref()),
        ("xfs", Some(ROOT_UUID))
    );
    assert_eq!(
        report.operating_systems.len(),
        1,
        "{:#?}",
        report.operating_systems
    );
    let os = &report.operating_systems[0];
    assert_eq!(os.root, "/dev/sda2");
    assert_eq!(
        (os.distro.as_deref(), os.major_version, os.minor_version),
        (Some("rocky"), Some(9), Some(3))
    );
    assert_eq!(os.hostname.as_deref(), Some("rocky9.example.com"));
    let mps: Vec<(&str, &str)> = os
        .mountpoints
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(mps, [("/", "/dev/sda2"), ("/boot", "/dev/sda1")]);
    let mut ours: Vec<String> = os
        .applications
        .iter()
        .map(|a| format!("{} {}", a.name, a.version))
        .collect();
    ours.sort();
    assert_eq!(ours, packages);
    assert_eq!(os.package_format.as_deref(), Some("rpm"));
    eprintln!("rocky9 on xfs: {} bytes read", stats.bytes_read);
}

// ------------------------------------------------------------------ hostile images

/// Byte offset of the data fork blocks / inode of `path` inside the XFS image, via xfs_db.
fn db_daddr(img: &Path, what: &str) -> u64 {
    let out = xfs_db(img, &[&format!("convert {what} daddr")]);
    // "0x40 (64)"
    out.split(['(', ')'])
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("xfs_db convert {what}: {out}"))
}

fn db_inode(img: &Path, path: &str) -> u64 {
    let out = xfs_db(img, &[&format!("path {path}"), "inode"]);
    out.split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("xfs_db inode of {path}: {out}"))
}

/// Byte ranges (inside the filesystem) of the blocks mapped by `path`'s data fork.
fn db_blocks(img: &Path, path: &str, blksize: u64) -> Vec<(u64, u64)> {
    xfs_db(img, &[&format!("path {path}"), "bmap"])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let fsb = w.get(4)?.parse::<u64>().ok()?;
            let count = w.get(7)?.parse::<u64>().ok()?;
            Some((
                db_daddr(img, &format!("fsb {fsb}")) * 512,
                count.min(4) * blksize,
            ))
        })
        .collect()
}

#[test]
fn xfs_mutated_metadata_never_panics_hangs_or_exhausts_memory() {
    // v5 (checksums catch most damage) and v4 (none: the parsers meet every byte).
    mutate_variant("v5", &[], 0x7f5f_0a11);
    mutate_variant("v4", &["-m", "crc=0"], 0x4c4f_4734);
}

/// Mutates the XFS metadata of a RHEL-like disk made with `mkfs_args`, 100 times.
fn mutate_variant(variant: &str, mkfs_args: &[&str], seed: u64) {
    const RUN_TIMEOUT_S: u64 = 60;
    const RUN_MEMORY_KB: u64 = 2 * 1024 * 1024;
    let dir = tempdir();
    let (disk, _) = rhel_like_disk(dir.path(), mkfs_args);
    let xfs = dir.path().join("root.xfs");
    let part = 133_120 * 512u64;

    // Metadata ranges, from xfs_db: superblock, AGF, AGI, the root's inode cluster,
    // /etc's inode, the leaf directory /usr/share/doc (inode and blocks), the rpm
    // database's inode and the log's head.
    let mut ranges: Vec<(u64, u64)> = vec![(0, 512), (512, 1024)];
    for p in ["/", "/etc", "/usr/share/doc", "/var/lib/rpm/rpmdb.sqlite"] {
        let ino = db_inode(&xfs, p);
        ranges.push((db_daddr(&xfs, &format!("inode {ino}")) * 512, 512));
    }
    ranges.extend(db_blocks(&xfs, "/usr/share/doc", 4096));
    let logstart = db_field(&xfs_db(&xfs, &["sb 0", "print logstart"]), "logstart");
    ranges.push((db_daddr(&xfs, &format!("fsb {logstart}")) * 512, 4096));
    assert!(ranges.len() >= 8, "{ranges:?}");

    let bin = env!("CARGO_BIN_EXE_guestkit-worker");
    let target = dir.path().join("mutated.raw");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&disk)
        .arg(&target));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&target)
        .unwrap();
    use std::os::unix::fs::FileExt;
    let inspect = || {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ulimit -v {RUN_MEMORY_KB}; exec timeout {RUN_TIMEOUT_S} \"$0\" --log-level error inspect \"$1\""
            ))
            .arg(bin)
            .arg(&target)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        match out.status.code() {
            Some(0) => serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map(|v| (true, v.to_string().contains("\"rocky\"")))
                .map_err(|e| format!("report is not JSON: {e}")),
            Some(3 | 4) if !stderr.contains("panicked") && stderr.contains("guestkit-worker: ") => {
                Ok((false, false))
            }
            Some(124) => Err(format!("no answer within {RUN_TIMEOUT_S} s")),
            code => Err(format!(
                "exit {code:?}: {}",
                stderr.chars().take(600).collect::<String>()
            )),
        }
    };
    assert_eq!(inspect(), Ok((true, true)), "the untouched disk");

    let mut rng = Rng(seed);
    let (mut reports, mut rocky, mut errors) = (0, 0, 0);
    let runs = 100;
    for i in 0..runs {
        let (start, len) = ranges[rng.below(ranges.len() as u64) as usize];
        let mut saved = Vec::new();
        for _ in 0..=rng.below(4) {
            let at = part + start + rng.below(len);
            let mut old = [0u8];
            file.read_exact_at(&mut old, at).unwrap();
            saved.push((at, old[0]));
            file.write_all_at(&[rng.byte()], at).unwrap();
        }
        let result = inspect();
        for (at, old) in saved.iter().rev() {
            file.write_all_at(&[*old], *at).unwrap();
        }
        match result {
            Ok((true, found)) => {
                reports += 1;
                rocky += usize::from(found);
            }
            Ok((false, _)) => errors += 1,
            Err(why) => panic!("{variant} run {i} (bytes {saved:?}): {why}"),
        }
    }
    eprintln!(
        "xfs {variant}: {runs} mutations: {reports} reports ({rocky} still found Rocky), {errors} typed errors"
    );
}
