//! Installed kernels: images in `/boot` (`vmlinuz-<version>`, `vmlinux-<version>` on
//! ppc, `Image-`/`zImage-` on arm) and module trees in `/lib/modules/<version>` that carry
//! their own image (`vmlinuz` inside the tree: Fedora, Arch). A `/boot` image named by
//! flavour rather than version takes its version from the one module tree that belongs
//! to that flavour: Arch writes the package name (`linux`, `linux-lts`) in the tree's
//! `pkgbase` file; Alpine's trees end in the flavour (`6.6.14-0-lts` for `vmlinuz-lts`).

use crate::inspect::fs::FileKind;
use crate::inspect::report::Kernel;

use super::context::Ctx;

const IMAGE_PREFIXES: &[&str] = &["vmlinuz-", "vmlinux-", "Image-", "zImage-", "kernel-"];
/// Most kernels reported.
const MAX_KERNELS: usize = 256;

pub fn detect(ctx: &mut Ctx) -> Vec<Kernel> {
    let modules: Vec<String> = ctx
        .list_dir("/lib/modules")
        .into_iter()
        .filter(|e| e.kind == FileKind::Dir)
        .map(|e| e.name)
        .collect();
    let mut kernels: Vec<Kernel> = Vec::new();
    for e in ctx.list_dir("/boot") {
        if e.kind == FileKind::Dir {
            continue;
        }
        let Some(suffix) = IMAGE_PREFIXES.iter().find_map(|p| e.name.strip_prefix(p)) else {
            continue;
        };
        // Distro backups and the rescue image are not separate kernels to report.
        if suffix.is_empty()
            || suffix.ends_with(".old")
            || suffix.ends_with(".bak")
            || suffix.contains("rescue")
        {
            continue;
        }
        let version = if modules.iter().any(|m| m == suffix) {
            suffix.to_string()
        } else {
            flavour_version(ctx, &modules, suffix).unwrap_or_else(|| suffix.to_string())
        };
        push(&mut kernels, version, format!("/boot/{}", e.name));
    }
    for m in &modules {
        if kernels.iter().any(|k| &k.version == m) {
            continue;
        }
        let image = format!("/lib/modules/{m}/vmlinuz");
        if ctx.guest.is_file(&image) {
            push(&mut kernels, m.clone(), image);
        }
    }
    kernels.sort_by(|a, b| a.version.cmp(&b.version).then(a.path.cmp(&b.path)));
    kernels
}

/// The one module tree of flavour `flavour`, by Arch's `pkgbase` file or Alpine's
/// `-<flavour>` suffix.
fn flavour_version(ctx: &mut Ctx, modules: &[String], flavour: &str) -> Option<String> {
    let by_pkgbase: Vec<&String> = modules
        .iter()
        .filter(|m| {
            let path = format!("/lib/modules/{m}/pkgbase");
            ctx.guest.is_file(&path) && ctx.read_text(&path).is_some_and(|t| t.trim() == flavour)
        })
        .collect();
    if let [one] = by_pkgbase.as_slice() {
        return Some(one.to_string());
    }
    let by_suffix: Vec<&String> = modules
        .iter()
        .filter(|m| m.ends_with(&format!("-{flavour}")))
        .collect();
    match by_suffix.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    }
}

fn push(kernels: &mut Vec<Kernel>, version: String, path: String) {
    if kernels.len() < MAX_KERNELS {
        kernels.push(Kernel { version, path });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    fn kernels(fs: MemFs) -> Vec<(String, String)> {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        detect(&mut ctx)
            .into_iter()
            .map(|k| (k.version, k.path))
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn debian_fedora_alpine() {
        assert_eq!(
            kernels(
                MemFs::new()
                    .file("/boot/vmlinuz-6.1.0-18-amd64", "k")
                    .file("/boot/vmlinuz-6.1.0-17-amd64", "k")
                    .file("/boot/config-6.1.0-18-amd64", "")
                    .dir("/lib/modules/6.1.0-18-amd64")
            ),
            pairs(&[
                ("6.1.0-17-amd64", "/boot/vmlinuz-6.1.0-17-amd64"),
                ("6.1.0-18-amd64", "/boot/vmlinuz-6.1.0-18-amd64")
            ])
        );
        assert_eq!(
            kernels(
                MemFs::new()
                    .symlink("/lib", "usr/lib")
                    .file("/usr/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz", "k")
                    .file("/boot/vmlinuz-0-rescue-abc", "k")
            ),
            pairs(&[(
                "6.5.6-300.fc39.x86_64",
                "/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz"
            )])
        );
        assert_eq!(
            kernels(
                MemFs::new()
                    .file("/boot/vmlinuz-lts", "k")
                    .dir("/lib/modules/6.6.14-0-lts")
            ),
            pairs(&[("6.6.14-0-lts", "/boot/vmlinuz-lts")])
        );
        assert_eq!(
            kernels(
                MemFs::new()
                    .file("/boot/vmlinuz-linux", "k")
                    .file("/boot/vmlinuz-linux-lts", "k")
                    .file("/lib/modules/6.7.4-arch1-1/pkgbase", "linux\n")
                    .file("/lib/modules/6.6.16-1-lts/pkgbase", "linux-lts\n")
            ),
            pairs(&[
                ("6.6.16-1-lts", "/boot/vmlinuz-linux-lts"),
                ("6.7.4-arch1-1", "/boot/vmlinuz-linux")
            ])
        );
        assert_eq!(kernels(MemFs::new()), vec![]);
    }
}
