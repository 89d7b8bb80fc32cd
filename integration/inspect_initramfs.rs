//! Linux paravirtual drivers and initramfs images. Initramfs files are built here the
//! way dracut and initramfs-tools build them (`cpio -o -H newc`, then gzip, zstd, xz or
//! lzma, optionally after an uncompressed early-microcode archive) and our listing is
//! compared with `lsinitramfs` (initramfs-tools) on the same file. A small Linux tree
//! with two kernels' module trees (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`,
//! `modules.builtin`) and the default kernel's initramfs is then inspected end to end,
//! and `drivers` is checked against `find` on the tree and `lsinitramfs` on the image.

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use guestkit_worker::inspect::os::initramfs::{scan, InitramfsError};
use guestkit_worker::inspect::pipeline::{inspect_with_stats, InspectOptions};
use guestkit_worker::inspect::work::Work;

use crate::common::{fixtures, run, sh, tempdir, Rng};

const NEW: &str = "6.1.0-18-amd64";
const OLD: &str = "6.1.0-9-amd64";

fn write(root: &Path, path: &str, data: &[u8]) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// The main archive's tree: modules (drivers and others), directories, a symlink, a
/// non-ASCII name and a file large enough to span many compressed blocks.
fn main_tree(root: &Path) {
    let m = format!("usr/lib/modules/{NEW}/kernel");
    let mut rng = Rng(0x696e_6974);
    let noise: Vec<u8> = (0..300_000).map(|_| rng.byte() % 16).collect();
    for (path, data) in [
        (
            format!("{m}/drivers/block/virtio_blk.ko"),
            &b"\x7fELF blk"[..],
        ),
        (format!("{m}/drivers/scsi/virtio_scsi.ko"), b"\x7fELF scsi"),
        (format!("{m}/drivers/scsi/hv_storvsc.ko"), b"\x7fELF hv"),
        (format!("{m}/fs/ext4/ext4.ko"), b"\x7fELF ext4"),
        (format!("usr/lib/modules/{NEW}/modules.dep"), b""),
        ("usr/bin/busybox".into(), &noise[..]),
        ("etc/fstab".into(), b""),
        ("init".into(), b"#!/bin/sh\nexec /sbin/init\n"),
        ("usr/share/dänish-ñame.txt".into(), b"x"),
    ] {
        write(root, &path, data);
    }
    symlink("usr/lib", root.join("lib")).unwrap();
}

/// `dir` as a newc archive (names without `./`, as dracut writes them).
fn cpio(dir: &Path, out: &Path) {
    sh(&format!(
        "cd '{}' && find . -mindepth 1 -printf '%P\\n' | LC_ALL=C sort | cpio -o -H newc --quiet > '{}'",
        dir.display(),
        out.display()
    ));
}

fn our_names(image: &Path) -> Result<(Vec<String>, Vec<&'static str>), InitramfsError> {
    let data = std::fs::read(image).unwrap();
    let mut names = Vec::new();
    let s = scan(&data, &Work::unlimited(), &mut |n, _| {
        names.push(n.to_string());
        Ok(())
    })?;
    Ok((names, s.segments))
}

/// initramfs-tools' listing of an image.
fn lsinitramfs(image: &Path) -> Vec<String> {
    lines(run(Command::new("lsinitramfs").arg(image)))
}

/// GNU cpio's listing of one archive.
fn cpio_t(archive: &Path) -> Vec<String> {
    lines(run(Command::new("cpio")
        .args(["-i", "-t", "--quiet", "-F"])
        .arg(archive)))
}

fn lines(out: Vec<u8>) -> Vec<String> {
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Builds the images of every compression, with and without a microcode prefix.
fn images(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let tree = dir.join("tree");
    main_tree(&tree);
    write(
        &dir.join("early"),
        "kernel/x86/microcode/GenuineIntel.bin",
        &[0xa5; 3000],
    );
    cpio(&tree, &dir.join("main.cpio"));
    cpio(&dir.join("early"), &dir.join("early.cpio"));
    let mut out = Vec::new();
    for (name, cmd) in [
        ("cpio", "cat"),
        ("gzip", "gzip -9 -n -c"),
        ("zstd", "zstd -q -c"),
        ("xz", "xz --check=crc32 -c"),
        ("lzma", "lzma -c"),
    ] {
        for early in [false, true] {
            let file = dir.join(format!("{name}-{early}.img"));
            let prefix = if early { "cat early.cpio; " } else { "" };
            sh(&format!(
                "cd '{}' && {{ {prefix}{cmd} < main.cpio; }} > '{}'",
                dir.display(),
                file.display()
            ));
            out.push((format!("{name}, microcode {early}"), file));
        }
    }
    out
}

#[test]
fn initramfs_listings_match_lsinitramfs() {
    let dir = tempdir();
    let mut compared = 0;
    for (what, image) in images(dir.path()) {
        let (ours, segments) = our_names(&image).unwrap_or_else(|e| panic!("{what}: {e}"));
        // lsinitramfs wants a compressed part: uncompressed images are listed by
        // `cpio -t` on the archives they were concatenated from.
        let theirs = if what.starts_with("cpio") {
            let d = dir.path();
            let early = what
                .ends_with("true")
                .then(|| cpio_t(&d.join("early.cpio")));
            early
                .unwrap_or_default()
                .into_iter()
                .chain(cpio_t(&d.join("main.cpio")))
                .collect()
        } else {
            lsinitramfs(&image)
        };
        assert_eq!(ours, theirs, "{what}");
        assert!(ours.iter().any(|n| n.ends_with("virtio_blk.ko")), "{what}");
        let want = 1 + usize::from(what.ends_with("true"));
        assert_eq!(segments.len(), want, "{what}: {segments:?}");
        compared += ours.len();
    }
    eprintln!("initramfs: {compared} names equal to lsinitramfs' over 10 images");
}

#[test]
fn damaged_initramfs_gives_typed_errors_never_a_panic() {
    let dir = tempdir();
    let imgs = images(dir.path());
    let mut rng = Rng(0x6370_696f);
    let mut errors = 0;
    for (what, image) in &imgs {
        let good = std::fs::read(image).unwrap();
        // Truncated: an error (the names before the cut are still reported).
        let cut = &good[..good.len() * 2 / 3];
        let r = scan(cut, &Work::unlimited(), &mut |_, _| Ok(()));
        assert!(r.is_err(), "{what}: truncated image read as complete");
        for _ in 0..30 {
            let mut bad = good.clone();
            for _ in 0..1 + rng.below(6) {
                let at = rng.below(bad.len() as u64) as usize;
                bad[at] = rng.byte();
            }
            if scan(&bad, &Work::unlimited(), &mut |_, _| Ok(())).is_err() {
                errors += 1;
            }
        }
    }
    eprintln!(
        "initramfs: {errors} of {} damaged images refused",
        imgs.len() * 30
    );
}

/// A Linux root with two kernels; the newest one's initramfs (zstd after microcode).
fn linux_tree(root: &Path) {
    write(root, "etc/hosts", b"127.0.0.1 localhost\n");
    write(root, "etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    let new = format!("usr/lib/modules/{NEW}");
    let old = format!("usr/lib/modules/{OLD}");
    for path in [
        format!("{new}/kernel/drivers/block/virtio_blk.ko.xz"),
        format!("{new}/kernel/drivers/net/virtio_net.ko.zst"),
        format!("{new}/kernel/drivers/scsi/virtio_scsi.ko"),
        format!("{new}/kernel/drivers/scsi/vmw_pvscsi.ko.gz"),
        format!("{new}/kernel/drivers/scsi/hv_storvsc.ko"),
        format!("{new}/kernel/drivers/block/xen-blkfront.ko"),
        format!("{new}/kernel/fs/ext4/ext4.ko"),
        format!("{old}/kernel/drivers/net/vmxnet3.ko"),
        format!("{old}/kernel/drivers/net/hyperv/hv_netvsc.ko.xz"),
    ] {
        write(root, &path, b"\x7fELF");
    }
    write(
        root,
        &format!("{new}/modules.builtin"),
        b"kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\nkernel/fs/ext4/ext4.ko\n",
    );
    symlink("/usr/src/linux-headers", root.join(format!("{new}/build"))).unwrap();
    write(root, &format!("boot/vmlinuz-{NEW}"), b"kernel");
    write(root, &format!("boot/vmlinuz-{OLD}"), b"kernel");
}

#[test]
fn linux_drivers_match_find_and_lsinitramfs() {
    let dir = tempdir();
    let d = dir.path();
    let root = d.join("root");
    linux_tree(&root);
    // The initramfs: the main tree of the other test (virtio_blk, virtio_scsi,
    // hv_storvsc), zstd after a microcode archive.
    let imgs = images(&d.join("initrd"));
    let (_, zstd) = imgs
        .iter()
        .find(|(w, _)| w == "zstd, microcode true")
        .unwrap();
    std::fs::copy(zstd, root.join(format!("boot/initrd.img-{NEW}"))).unwrap();
    let disk = d.join("linux.raw");
    run(Command::new(fixtures().join("make-disk.sh"))
        .arg(&disk)
        .arg("gpt")
        .arg(format!("L:ext4:32:{}::drivers", root.display())));
    let report = inspect_with_stats(&disk, &InspectOptions::default())
        .unwrap()
        .0;
    assert_eq!(report.operating_systems.len(), 1, "{:?}", report.warnings);
    let os = &report.operating_systems[0];
    let got: BTreeSet<(String, bool, Option<bool>)> = os
        .drivers
        .iter()
        .map(|d| (d.name.replace('-', "_"), d.present, d.in_initramfs))
        .collect();

    // The oracle: module files by `find` per kernel, built-ins by grep, initramfs
    // contents by lsinitramfs.
    let stems = |out: Vec<u8>| -> BTreeSet<String> {
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|l| {
                l.rsplit('/')
                    .next()?
                    .split(".ko")
                    .next()
                    .map(|s| s.replace('-', "_"))
            })
            .collect()
    };
    let find = |v: &str| {
        stems(run(Command::new("find")
            .arg(root.join(format!("usr/lib/modules/{v}")))
            .args(["-name", "*.ko", "-o", "-name", "*.ko.*"])))
    };
    let (new_files, old_files) = (find(NEW), find(OLD));
    let builtin =
        stems(std::fs::read(root.join(format!("usr/lib/modules/{NEW}/modules.builtin"))).unwrap());
    let initrd = stems(
        lsinitramfs(&root.join(format!("boot/initrd.img-{NEW}")))
            .into_iter()
            .filter(|n| n.contains(".ko"))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
    );
    let drivers = |s: &BTreeSet<String>| -> BTreeSet<String> {
        s.iter().filter(|m| *m != "ext4").cloned().collect()
    };
    let all: BTreeSet<String> = drivers(&new_files)
        .into_iter()
        .chain(drivers(&old_files))
        .chain(drivers(&builtin))
        .collect();
    let expected: BTreeSet<(String, bool, Option<bool>)> = all
        .iter()
        .map(|m| {
            let present = new_files.contains(m) || builtin.contains(m);
            let boot = builtin.contains(m) || initrd.contains(m);
            (m.clone(), present, Some(boot))
        })
        .collect();
    assert_eq!(got, expected, "{:?}", report.warnings);
    assert_eq!(got.len(), 10);
    let kinds: BTreeSet<&str> = os.drivers.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["hyperv", "virtio", "vmware", "xen"]));
    eprintln!(
        "linux drivers: {} modules equal to find/lsinitramfs",
        got.len()
    );
}
