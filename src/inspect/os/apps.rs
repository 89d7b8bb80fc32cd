//! Installed applications: the package database's bytes read out of the guest and
//! handed to the parsers in `packages/`.
//!
//! The database is the one of the distro's package format (libguestfs does the same),
//! so a stray `/var/lib/rpm` on a Debian guest is not reported; with no known format
//! every database present is read.
//!
//! Read caps (each read also counts against the job's read budget):
//! - rpm databases: 512 MiB (`rpmdb.sqlite` and its `-wal` together). `rpmdb.sqlite` of a large RHEL/Fedora install is 100-300
//!   MiB and the old Berkeley DB `Packages` can be as big; the parser needs the whole file.
//! - dpkg `status`, apk `installed`: 64 MiB (a desktop with 5000 packages has ~10 MiB).
//! - pacman `desc`: 1 MiB each.

use crate::inspect::fs::{FileKind, FsError};
use crate::inspect::report::Application;

use super::context::Ctx;
use super::packages::{self, PackageError, PackageList};

pub const RPMDB_LIMIT: u64 = 512 * 1024 * 1024;
pub const TEXT_DB_LIMIT: u64 = 64 * 1024 * 1024;
pub const PACMAN_DESC_LIMIT: u64 = 1024 * 1024;

const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const RPMDB_SQLITE: &[&str] = &[
    "/var/lib/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
];
const RPMDB_BDB: &[&str] = &["/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages"];
const RPMDB_NDB: &[&str] = &[
    "/var/lib/rpm/Packages.db",
    "/usr/lib/sysimage/rpm/Packages.db",
];
const APK_INSTALLED: &[&str] = &["/lib/apk/db/installed", "/usr/lib/apk/db/installed"];
const PACMAN_LOCAL: &str = "/var/lib/pacman/local";

/// Applications of the root behind `ctx`, for `package_format` (`deb`, `rpm`, `apk`,
/// `pacman`) or, when it is unknown, from every database found.
pub fn detect(ctx: &mut Ctx, package_format: Option<&str>) -> Vec<Application> {
    let mut apps = match package_format {
        Some("deb") => dpkg(ctx, true),
        Some("rpm") => rpm(ctx, true),
        Some("apk") => apk(ctx, true),
        Some("pacman") => pacman(ctx, true),
        Some(_) => Vec::new(),
        None => {
            let mut all = dpkg(ctx, false);
            all.extend(rpm(ctx, false));
            all.extend(apk(ctx, false));
            all.extend(pacman(ctx, false));
            all
        }
    };
    if apps.len() > packages::MAX_PACKAGES {
        apps.truncate(packages::MAX_PACKAGES);
        ctx.warn(format_args!(
            "only the first {} applications are reported",
            packages::MAX_PACKAGES
        ));
    }
    apps
}

fn missing(ctx: &mut Ctx, expected: bool, what: &str) {
    if expected {
        ctx.warn(format_args!("no {what} found: applications not listed"));
    }
}

fn dpkg(ctx: &mut Ctx, expected: bool) -> Vec<Application> {
    if !ctx.guest.exists(DPKG_STATUS) {
        missing(ctx, expected, DPKG_STATUS);
        return Vec::new();
    }
    let Some(bytes) = ctx.read_bytes(DPKG_STATUS, TEXT_DB_LIMIT) else {
        return Vec::new();
    };
    listed(ctx, DPKG_STATUS, packages::parse_dpkg_status_list(&bytes))
}

fn apk(ctx: &mut Ctx, expected: bool) -> Vec<Application> {
    let Some(path) = first_existing(ctx, APK_INSTALLED) else {
        missing(ctx, expected, "apk database (/lib/apk/db/installed)");
        return Vec::new();
    };
    let Some(bytes) = ctx.read_bytes(path, TEXT_DB_LIMIT) else {
        return Vec::new();
    };
    parsed(ctx, path, packages::parse_apk_installed(&bytes))
}

fn rpm(ctx: &mut Ctx, expected: bool) -> Vec<Application> {
    if let Some(path) = first_existing(ctx, RPMDB_SQLITE) {
        let Some(db) = ctx.read_bytes(path, RPMDB_LIMIT) else {
            return Vec::new();
        };
        // Committed transactions still in the write-ahead log are part of the database.
        // Both are held at once, so they share one cap.
        let wal_path = format!("{path}-wal");
        let left = RPMDB_LIMIT - db.len() as u64;
        let wal = match ctx.guest.metadata(&wal_path) {
            Ok(m) if m.size > left => {
                ctx.warn(format_args!(
                    "{wal_path} not read: with {path} it is over {RPMDB_LIMIT} bytes; \
                     transactions still in it are missing"
                ));
                None
            }
            Ok(m) if m.size > 0 => ctx.read_bytes(&wal_path, left),
            _ => None,
        };
        return listed(
            ctx,
            path,
            packages::parse_rpmdb_sqlite_with_wal(&db, wal.as_deref()),
        );
    }
    if let Some(path) = first_existing(ctx, RPMDB_NDB) {
        let Some(db) = ctx.read_bytes(path, RPMDB_LIMIT) else {
            return Vec::new();
        };
        return listed(ctx, path, packages::parse_rpmdb_ndb(&db));
    }
    if let Some(path) = first_existing(ctx, RPMDB_BDB) {
        let Some(db) = ctx.read_bytes(path, RPMDB_LIMIT) else {
            return Vec::new();
        };
        return listed(ctx, path, packages::parse_rpmdb_bdb(&db));
    }
    missing(
        ctx,
        expected,
        "rpm database (rpmdb.sqlite, Packages.db or Packages)",
    );
    Vec::new()
}

fn pacman(ctx: &mut Ctx, expected: bool) -> Vec<Application> {
    if !ctx.guest.is_dir(PACMAN_LOCAL) {
        missing(ctx, expected, PACMAN_LOCAL);
        return Vec::new();
    }
    let mut apps = Vec::new();
    for entry in ctx.list_dir(PACMAN_LOCAL) {
        if entry.kind != FileKind::Dir {
            continue; // ALPM_DB_VERSION and friends
        }
        let path = format!("{PACMAN_LOCAL}/{}/desc", entry.name);
        let bytes = match ctx.guest.read_file(&path, PACMAN_DESC_LIMIT) {
            Ok(b) => b,
            Err(FsError::NotFound(_)) => {
                ctx.warn(format_args!(
                    "{PACMAN_LOCAL}/{}: package without a desc file",
                    entry.name
                ));
                continue;
            }
            Err(e) => {
                ctx.warn(format_args!("cannot read {path}: {e}"));
                continue;
            }
        };
        match packages::parse_pacman_desc(&bytes) {
            Ok(app) => apps.push(app),
            Err(e) => ctx.warn(format_args!("{path}: {e}")),
        }
    }
    packages::sort_applications(&mut apps);
    apps
}

fn first_existing<'p>(ctx: &Ctx, paths: &[&'p str]) -> Option<&'p str> {
    paths.iter().copied().find(|p| ctx.guest.is_file(p))
}

fn parsed(
    ctx: &mut Ctx,
    path: &str,
    r: Result<Vec<Application>, PackageError>,
) -> Vec<Application> {
    match r {
        Ok(apps) => apps,
        Err(e) => {
            ctx.warn(format_args!("{path}: {e}"));
            Vec::new()
        }
    }
}

fn listed(ctx: &mut Ctx, path: &str, r: Result<PackageList, PackageError>) -> Vec<Application> {
    match r {
        Ok(list) => {
            for w in list.warnings {
                ctx.warn(format_args!("{path}: {w}"));
            }
            list.applications
        }
        Err(e) => {
            ctx.warn(format_args!("{path}: {e}"));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    fn apps(fs: MemFs, format: Option<&str>) -> (Vec<(String, String)>, Vec<String>) {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let a = detect(&mut ctx, format)
            .into_iter()
            .map(|a| (a.name, a.version))
            .collect();
        (a, ctx.into_warnings())
    }

    #[test]
    fn pacman_db_with_a_broken_package() {
        let desc = |n: &str, v: &str| format!("%NAME%\n{n}\n\n%VERSION%\n{v}\n\n%ARCH%\nx86_64\n");
        let (a, w) = apps(
            MemFs::new()
                .file("/var/lib/pacman/local/ALPM_DB_VERSION", "9\n")
                .file(
                    "/var/lib/pacman/local/zlib-1:1.3-1/desc",
                    desc("zlib", "1:1.3-1"),
                )
                .file(
                    "/var/lib/pacman/local/bash-5.2.026-2/desc",
                    desc("bash", "5.2.026-2"),
                )
                .dir("/var/lib/pacman/local/nodesc-1-1"),
            Some("pacman"),
        );
        assert_eq!(
            a.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            vec!["bash", "zlib"]
        );
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn dpkg_status_that_is_not_a_triple_is_counted_with_a_warning() {
        let status = "Package: a\nStatus: install ok installed\nVersion: 1\n\n\
                      Package: b\nStatus: installed\nVersion: 2\n\n\
                      Package: c\nStatus: install ok config-files\nVersion: 3\n";
        let (a, w) = apps(
            MemFs::new().file("/var/lib/dpkg/status", status),
            Some("deb"),
        );
        assert_eq!(
            a.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("/var/lib/dpkg/status") && w[0].contains("line 6"),
            "{w:?}"
        );
    }

    #[test]
    fn missing_database_is_a_warning_only_when_expected() {
        let (a, w) = apps(MemFs::new(), Some("deb"));
        assert!(a.is_empty());
        assert_eq!(w.len(), 1);
        let (_, w) = apps(MemFs::new(), None);
        assert!(w.is_empty());
    }
}
