//! Services and whether they start at boot, from the init system's files.
//!
//! - systemd: every `*.service` unit file in `/etc/systemd/system`, `/usr/lib/systemd/system`
//!   and `/lib/systemd/system` (templates `foo@.service` only through their enabled
//!   instances). `enabled` means what `systemctl enable` records: a link in a
//!   `*.wants/` or `*.requires/` directory under `/etc/systemd/system`. Units the vendor
//!   pulls in statically (`/usr/lib/systemd/system/*.wants`) and presets are not counted;
//!   a unit masked (linked to `/dev/null`) is never enabled. Names keep their suffix.
//! - SysV: scripts in `/etc/init.d`, enabled when an `S??name` link exists in
//!   `/etc/rc[2-5].d`. On a systemd guest a script with a native unit of the same name
//!   is left out (systemd ignores it).
//! - OpenRC (Alpine): scripts in `/etc/init.d`, enabled when linked in
//!   `/etc/runlevels/{sysinit,boot,default}`; reported with kind `openrc`.

use std::collections::{BTreeMap, BTreeSet};

use crate::inspect::fs::FileKind;
use crate::inspect::report::Service;

use super::context::Ctx;

const SYSTEMD_ADMIN_DIR: &str = "/etc/systemd/system";
const SYSTEMD_VENDOR_DIRS: &[&str] = &["/usr/lib/systemd/system", "/lib/systemd/system"];
const SYSV_RUNLEVELS: &[&str] = &["/etc/rc2.d", "/etc/rc3.d", "/etc/rc4.d", "/etc/rc5.d"];
const OPENRC_RUNLEVELS: &[&str] = &[
    "/etc/runlevels/sysinit",
    "/etc/runlevels/boot",
    "/etc/runlevels/default",
];
/// Files in /etc/init.d that are not services.
const NOT_SCRIPTS: &[&str] = &[
    "README",
    "skeleton",
    "functions",
    "rc",
    "rcS",
    "halt",
    "killall",
    "single",
];

/// Most services reported.
pub const MAX_SERVICES: usize = 10_000;
/// Most wants/requires links and runlevel links remembered; a hostile image with
/// thousands of huge link directories cannot grow the sets past this.
const MAX_LINKS: usize = 100_000;

/// What the init system's files say.
#[derive(Debug, Default)]
pub struct Services {
    pub services: Vec<Service>,
    /// Every unit (any type: `.service`, `.socket`, `.timer`) linked in a wants/requires
    /// directory, for the other readers (firewall, AppArmor) to ask about.
    enabled_units: BTreeSet<String>,
    masked_units: BTreeSet<String>,
    /// SysV/OpenRC script names linked into a boot runlevel.
    enabled_scripts: BTreeSet<String>,
}

impl Services {
    /// Whether `name` starts at boot: the systemd unit `name.service` (or `name` if it
    /// has a suffix) is enabled and not masked, or the init script `name` is linked into
    /// a runlevel.
    pub fn is_enabled(&self, name: &str) -> bool {
        let unit = if name.contains('.') {
            name.to_string()
        } else {
            format!("{name}.service")
        };
        (self.enabled_units.contains(&unit) && !self.masked_units.contains(&unit))
            || self
                .enabled_scripts
                .contains(name.trim_end_matches(".service"))
    }
}

/// Reads the services of the root behind `ctx`.
pub fn detect(ctx: &mut Ctx) -> Services {
    let mut out = Services::default();
    let mut list: BTreeMap<String, Service> = BTreeMap::new();
    let has_systemd = systemd(ctx, &mut out, &mut list);
    sysv_or_openrc(ctx, &mut out, &mut list, has_systemd);
    out.services = list.into_values().take(MAX_SERVICES).collect();
    out
}

/// systemd units; returns whether the guest has systemd unit directories at all.
fn systemd(ctx: &mut Ctx, out: &mut Services, list: &mut BTreeMap<String, Service>) -> bool {
    let admin = ctx.list_dir(SYSTEMD_ADMIN_DIR);
    let mut found_any = !admin.is_empty();
    for entry in &admin {
        let path = format!("{SYSTEMD_ADMIN_DIR}/{}", entry.name);
        let is_dep_dir = entry.name.ends_with(".wants") || entry.name.ends_with(".requires");
        if is_dep_dir && matches!(entry.kind, FileKind::Dir | FileKind::Symlink) {
            for unit in ctx.list_dir(&path) {
                if out.enabled_units.len() >= MAX_LINKS {
                    break;
                }
                out.enabled_units.insert(unit.name);
            }
        } else if entry.kind == FileKind::Symlink {
            match ctx.read_link(&path) {
                Some(t) if t == "/dev/null" => {
                    out.masked_units.insert(entry.name.clone());
                }
                // `systemctl link`ed unit (same name elsewhere) or an alias (another
                // name): only the former is a unit of its own.
                Some(t) if t.rsplit('/').next() == Some(entry.name.as_str()) => {
                    add_unit(list, &entry.name)
                }
                _ => {}
            }
        } else if entry.kind == FileKind::File {
            add_unit(list, &entry.name);
        }
    }
    for dir in SYSTEMD_VENDOR_DIRS {
        let entries = ctx.list_dir(dir);
        found_any |= !entries.is_empty();
        for e in entries {
            if matches!(e.kind, FileKind::File | FileKind::Symlink) {
                add_unit(list, &e.name);
            }
        }
    }
    // Enabled instances of templates (getty@tty1.service), and enabled units whose file
    // we did not see, still start at boot.
    for unit in &out.enabled_units {
        if unit.ends_with(".service") && !unit.ends_with("@.service") {
            list.entry(unit.clone())
                .or_insert_with(|| service(unit, "systemd"));
        }
    }
    for (name, s) in list.iter_mut() {
        s.enabled = out.enabled_units.contains(name) && !out.masked_units.contains(name);
    }
    found_any
}

fn add_unit(list: &mut BTreeMap<String, Service>, name: &str) {
    if name.ends_with(".service") && !name.ends_with("@.service") && list.len() < MAX_SERVICES {
        list.entry(name.to_string())
            .or_insert_with(|| service(name, "systemd"));
    }
}

fn service(name: &str, kind: &str) -> Service {
    Service {
        name: name.to_string(),
        enabled: false,
        kind: kind.to_string(),
        ..Default::default()
    }
}

/// Init scripts and their runlevel links.
fn sysv_or_openrc(
    ctx: &mut Ctx,
    out: &mut Services,
    list: &mut BTreeMap<String, Service>,
    has_systemd: bool,
) {
    let openrc = ctx.guest.is_dir("/etc/runlevels");
    let kind = if openrc { "openrc" } else { "sysv" };
    if openrc {
        for dir in OPENRC_RUNLEVELS {
            for e in ctx.list_dir(dir).into_iter().take(MAX_LINKS) {
                out.enabled_scripts.insert(e.name);
            }
        }
    } else {
        for dir in SYSV_RUNLEVELS {
            for e in ctx.list_dir(dir).into_iter().take(MAX_LINKS) {
                if let Some(name) = e.name.strip_prefix('S') {
                    let name = name.trim_start_matches(|c: char| c.is_ascii_digit());
                    if !name.is_empty() {
                        out.enabled_scripts.insert(name.to_string());
                    }
                }
            }
        }
    }
    for e in ctx.list_dir("/etc/init.d") {
        let name = e.name;
        if e.kind == FileKind::Dir
            || name.starts_with('.')
            || NOT_SCRIPTS.contains(&name.as_str())
            || name.contains(".dpkg-")
            || name.contains(".rpm")
        {
            continue;
        }
        let unit = format!("{name}.service");
        if has_systemd && list.contains_key(&unit) {
            continue;
        }
        if list.len() >= MAX_SERVICES {
            break;
        }
        let enabled = out.enabled_scripts.contains(&name);
        list.insert(
            format!("{name}\u{0}{kind}"),
            Service {
                name,
                enabled,
                kind: kind.to_string(),
                ..Default::default()
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    fn detect_in(fs: MemFs) -> Services {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let s = detect(&mut ctx);
        assert!(ctx.into_warnings().is_empty());
        s
    }

    #[test]
    fn systemd_links_and_masks() {
        let s = detect_in(
            MemFs::new()
                .symlink("/lib", "usr/lib")
                .file("/usr/lib/systemd/system/ssh.service", "")
                .file("/usr/lib/systemd/system/cron.service", "")
                .file("/usr/lib/systemd/system/getty@.service", "")
                .file("/usr/lib/systemd/system/nftables.service", "")
                .file("/usr/lib/systemd/system/apparmor.service", "")
                .file("/usr/lib/systemd/system/ssh.socket", "")
                .symlink(
                    "/etc/systemd/system/sshd.service",
                    "/lib/systemd/system/ssh.service",
                )
                .symlink(
                    "/etc/systemd/system/multi-user.target.wants/ssh.service",
                    "/lib/systemd/system/ssh.service",
                )
                .symlink(
                    "/etc/systemd/system/multi-user.target.wants/nftables.service",
                    "/lib/systemd/system/nftables.service",
                )
                .symlink(
                    "/etc/systemd/system/getty.target.wants/getty@tty1.service",
                    "/lib/systemd/system/getty@.service",
                )
                .symlink(
                    "/etc/systemd/system/sockets.target.wants/ssh.socket",
                    "/lib/systemd/system/ssh.socket",
                )
                .symlink(
                    "/etc/systemd/system/sysinit.target.wants/apparmor.service",
                    "/lib/systemd/system/apparmor.service",
                )
                .symlink("/etc/systemd/system/apparmor.service", "/dev/null")
                .file("/etc/systemd/system/local.service", "")
                .file("/etc/init.d/ssh", "#!/bin/sh")
                .file("/etc/init.d/legacy", "#!/bin/sh")
                .file("/etc/init.d/README", "")
                .symlink("/etc/rc2.d/S01ssh", "../init.d/ssh")
                .symlink("/etc/rc3.d/S20legacy", "../init.d/legacy"),
        );
        let got: Vec<(&str, bool, &str)> = s
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.enabled, s.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("apparmor.service", false, "systemd"),
                ("cron.service", false, "systemd"),
                ("getty@tty1.service", true, "systemd"),
                ("legacy", true, "sysv"),
                ("local.service", false, "systemd"),
                ("nftables.service", true, "systemd"),
                ("ssh.service", true, "systemd"),
            ]
        );
        assert!(s.is_enabled("ssh"));
        assert!(s.is_enabled("ssh.socket"));
        assert!(!s.is_enabled("apparmor"));
        assert!(!s.is_enabled("cron"));
    }

    #[test]
    fn openrc() {
        let s = detect_in(
            MemFs::new()
                .file("/etc/init.d/sshd", "#!/sbin/openrc-run")
                .file("/etc/init.d/crond", "#!/sbin/openrc-run")
                .symlink("/etc/runlevels/default/sshd", "/etc/init.d/sshd")
                .dir("/etc/runlevels/boot"),
        );
        let got: Vec<(&str, bool, &str)> = s
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.enabled, s.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("crond", false, "openrc"), ("sshd", true, "openrc")]
        );
        assert!(s.is_enabled("sshd"));
    }
}
