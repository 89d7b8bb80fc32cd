//! Paravirtual drivers of a Linux guest, for the migration question "will it boot on
//! the target hypervisor": the known virtio, VMware, Hyper-V and Xen modules shipped
//! for each installed kernel (`/lib/modules/<v>/**/<name>.ko{,.xz,.zst,.gz}`, or built
//! in: `modules.builtin`), and whether the default kernel's initramfs carries them
//! (a storage driver the initramfs lacks cannot find the root disk).
//!
//! The default kernel is the newest one (by version, numbers compared as numbers):
//! what grub's generated menu boots first.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::inspect::fs::FileKind;
use crate::inspect::report::{Driver, Kernel};

use super::context::Ctx;
use super::initramfs;

/// Module names (`-` and `_` are the same to modprobe; listed as the file is named) and
/// their hypervisor.
const KNOWN: &[(&str, &str)] = &[
    ("virtio", "virtio"),
    ("virtio_ring", "virtio"),
    ("virtio_pci", "virtio"),
    ("virtio_mmio", "virtio"),
    ("virtio_blk", "virtio"),
    ("virtio_scsi", "virtio"),
    ("virtio_net", "virtio"),
    ("virtio_balloon", "virtio"),
    ("virtio_rng", "virtio"),
    ("virtio_console", "virtio"),
    ("virtio_input", "virtio"),
    ("virtio_gpu", "virtio"),
    ("virtiofs", "virtio"),
    ("vmxnet3", "vmware"),
    ("vmw_pvscsi", "vmware"),
    ("vmw_balloon", "vmware"),
    ("vmw_vmci", "vmware"),
    ("vmwgfx", "vmware"),
    ("hv_vmbus", "hyperv"),
    ("hv_storvsc", "hyperv"),
    ("hv_netvsc", "hyperv"),
    ("hv_balloon", "hyperv"),
    ("hv_utils", "hyperv"),
    ("hyperv_keyboard", "hyperv"),
    ("xen-blkfront", "xen"),
    ("xen-netfront", "xen"),
    ("xen-kbdfront", "xen"),
    ("xen-fbfront", "xen"),
];

/// Deepest directory walked in a module tree (real ones: `kernel/drivers/net/ethernet/x`).
const MAX_DEPTH: usize = 12;
/// Most directories walked in one module tree (a real one has ~500).
const MAX_DIRS: usize = 20_000;
/// Most kernels whose trees are walked.
const MAX_TREES: usize = 32;

/// `virtio_blk` for `.../virtio_blk.ko.zst`, normalised (`xen-blkfront` -> `xen_blkfront`).
fn module_of(file_name: &str) -> Option<String> {
    let base = file_name.rsplit('/').next()?;
    let stem = base.strip_suffix(".ko").or_else(|| {
        ["xz", "zst", "gz"]
            .iter()
            .find_map(|c| base.strip_suffix(&format!(".ko.{c}")))
    })?;
    Some(stem.replace('-', "_"))
}

fn known(module: &str) -> Option<(&'static str, &'static str)> {
    KNOWN
        .iter()
        .copied()
        .find(|(name, _)| name.replace('-', "_") == module)
}

/// Versions compared with runs of digits as numbers (`6.1.0-18` after `6.1.0-9`).
pub(crate) fn version_cmp(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 {
                let n = rest[..digits].parse().unwrap_or(u64::MAX);
                out.push((n, String::new()));
                rest = &rest[digits..];
            } else {
                let text = rest
                    .chars()
                    .take_while(|c| !c.is_ascii_digit())
                    .collect::<String>();
                rest = &rest[text.len()..];
                out.push((0, text));
            }
        }
        out
    }
    parts(a).cmp(&parts(b))
}

/// The known modules of the tree of `version`: shipped as files, and built in.
fn tree_modules(ctx: &mut Ctx, version: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let root = format!("/lib/modules/{version}");
    let mut files = BTreeSet::new();
    let mut dirs = vec![(root.clone(), 0usize)];
    let mut walked = 0;
    while let Some((dir, depth)) = dirs.pop() {
        walked += 1;
        if walked > MAX_DIRS {
            ctx.warn(format_args!(
                "{root}: more than {MAX_DIRS} directories, the rest not searched for drivers"
            ));
            break;
        }
        for e in ctx.list_dir(&dir) {
            match e.kind {
                // `build` and `source` are links to headers elsewhere: not followed.
                FileKind::Dir if depth < MAX_DEPTH => {
                    dirs.push((format!("{dir}/{}", e.name), depth + 1))
                }
                FileKind::File => {
                    if let Some(m) = module_of(&e.name).filter(|m| known(m).is_some()) {
                        files.insert(m);
                    }
                }
                _ => {}
            }
        }
    }
    let builtin = ctx
        .read_text(&format!("{root}/modules.builtin"))
        .map(|t| {
            t.lines()
                .filter_map(|l| module_of(l.trim()))
                .filter(|m| known(m).is_some())
                .collect()
        })
        .unwrap_or_default();
    (files, builtin)
}

/// The initramfs of the kernel `version` (booted from `image`), if there is one.
fn initramfs_path(ctx: &mut Ctx, version: &str, image: Option<&str>) -> Option<String> {
    let mut names = vec![
        format!("initramfs-{version}.img"),
        format!("initrd.img-{version}"),
        format!("initramfs-{version}"),
        format!("initrd-{version}"),
    ];
    // A flavour-named image (`vmlinuz-linux`, `vmlinuz-lts`) has a flavour-named initramfs.
    if let Some(flavour) = image
        .and_then(|p| p.rsplit('/').next())
        .and_then(|n| n.split_once('-').map(|(_, f)| f))
        .filter(|f| *f != version)
    {
        names.push(format!("initramfs-{flavour}.img"));
        names.push(format!("initramfs-{flavour}"));
    }
    names
        .into_iter()
        .map(|n| format!("/boot/{n}"))
        .find(|p| ctx.guest.is_file(p))
}

/// The known modules in the initramfs at `path`, and whether it was read to its end.
fn initramfs_modules(ctx: &mut Ctx, path: &str) -> Option<(BTreeSet<String>, bool)> {
    let data = ctx.read_bytes(path, initramfs::MAX_IMAGE_BYTES)?;
    let mut found = BTreeSet::new();
    let work = ctx.work().clone();
    let r = initramfs::scan(&data, &work, &mut |name, _| {
        if let Some(m) = module_of(name).filter(|m| known(m).is_some()) {
            found.insert(m);
        }
        Ok(())
    });
    let complete = match r {
        Ok(_) => true,
        Err(e) => {
            ctx.warn(format_args!("{path}: {e} (drivers listed up to there)"));
            false
        }
    };
    Some((found, complete))
}

/// Known drivers shipped for any installed kernel. `present`: the default kernel has
/// it (file or built in); `in_initramfs`: built into the default kernel or in its
/// initramfs (`None` when no initramfs was read to its end and the module was not seen).
pub fn detect(ctx: &mut Ctx, kernels: &[Kernel]) -> Vec<Driver> {
    let mut trees: Vec<String> = ctx
        .list_dir("/lib/modules")
        .into_iter()
        .filter(|e| e.kind == FileKind::Dir)
        .map(|e| e.name)
        .collect();
    trees.sort_by(|a, b| version_cmp(b, a));
    trees.truncate(MAX_TREES);
    let Some(default) = kernels
        .iter()
        .filter(|k| trees.contains(&k.version))
        .max_by(|a, b| version_cmp(&a.version, &b.version))
        .map(|k| k.version.clone())
        .or_else(|| trees.first().cloned())
    else {
        return Vec::new();
    };
    // Module -> (in the default kernel, built into it).
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for v in &trees {
        let (files, builtin) = tree_modules(ctx, v);
        let is_default = *v == default;
        for m in &files {
            seen.entry(m.clone()).or_default().0 |= is_default;
        }
        for m in &builtin {
            let e = seen.entry(m.clone()).or_default();
            e.0 |= is_default;
            e.1 |= is_default;
        }
    }
    let image = kernels
        .iter()
        .find(|k| k.version == default)
        .map(|k| k.path.as_str());
    let initramfs = initramfs_path(ctx, &default, image).and_then(|p| initramfs_modules(ctx, &p));
    KNOWN
        .iter()
        .filter_map(|&(name, kind)| {
            let module = name.replace('-', "_");
            let &(present, builtin) = seen.get(&module)?;
            let in_initramfs = match &initramfs {
                _ if builtin => Some(true),
                Some((found, _)) if found.contains(&module) => Some(true),
                Some((_, true)) => Some(false),
                _ => None,
            };
            Some(Driver {
                name: name.to_string(),
                kind: kind.to_string(),
                present,
                in_initramfs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::initramfs::decompress_tests_gzip as gzip;
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            version_cmp("6.1.0-18-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            version_cmp("5.14.0-362.el9", "5.14.0-70.el9"),
            Ordering::Greater
        );
        assert_eq!(version_cmp("6.1", "6.1"), Ordering::Equal);
        assert_eq!(
            module_of("a/xen-blkfront.ko.zst").as_deref(),
            Some("xen_blkfront")
        );
        assert_eq!(module_of("virtio_net.ko.bz2"), None);
    }

    #[test]
    fn default_kernel_modules_builtins_and_initramfs() {
        let old = "6.1.0-9-amd64";
        let new = "6.1.0-18-amd64";
        let cpio = crate::inspect::os::initramfs::newc_for_tests(&[
            (
                "usr/lib/modules/6.1.0-18-amd64/kernel/drivers/block/virtio_blk.ko",
                b"m",
            ),
            ("init", b"#!/bin/sh"),
        ]);
        let fs = MemFs::new()
            .file(
                &format!("/lib/modules/{new}/kernel/drivers/block/virtio_blk.ko"),
                "m",
            )
            .file(
                &format!("/lib/modules/{new}/kernel/drivers/net/virtio_net.ko.xz"),
                "m",
            )
            .file(
                &format!("/lib/modules/{new}/kernel/drivers/net/xen-netfront.ko.zst"),
                "m",
            )
            .file(
                &format!("/lib/modules/{new}/modules.builtin"),
                "kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/ext4/ext4.ko\n",
            )
            .file(
                &format!("/lib/modules/{old}/kernel/drivers/scsi/vmw_pvscsi.ko"),
                "m",
            )
            .file(&format!("/boot/vmlinuz-{new}"), "k")
            .file(&format!("/boot/vmlinuz-{old}"), "k")
            .file(&format!("/boot/initrd.img-{new}"), gzip(&cpio));
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let kernels = crate::inspect::os::kernels::detect(&mut ctx);
        let got: Vec<(String, bool, Option<bool>)> = detect(&mut ctx, &kernels)
            .into_iter()
            .map(|d| (d.name, d.present, d.in_initramfs))
            .collect();
        assert!(ctx.into_warnings().is_empty());
        let s = |n: &str, p, i| (n.to_string(), p, i);
        assert_eq!(
            got,
            [
                s("virtio_pci", true, Some(true)),
                s("virtio_blk", true, Some(true)),
                s("virtio_net", true, Some(false)),
                s("vmw_pvscsi", false, Some(false)),
                s("xen-netfront", true, Some(false)),
            ]
        );
    }
}
