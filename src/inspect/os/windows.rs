//! Inspection of one Windows root, the way libguestfs derives its facts: the system
//! directory found case-insensitively, the SOFTWARE, SYSTEM and SAM hives of
//! `System32/config` read in userspace ([`hive`]), the architecture from
//! `System32/cmd.exe`'s PE header ([`pe`]).

mod apps;
mod drivers;
pub mod hive;
mod pe;
pub(crate) mod system;
pub(crate) mod users;
mod version;

use crate::inspect::fs::FileKind;
use crate::inspect::report::{EncryptedVolumeInfo, OperatingSystem};

use super::context::Ctx;
use super::guest::GuestFs;
use super::mountable::Mountable;
use super::Include;
use hive::{Hive, HiveError};

/// The real-case path of the entry `name` (matched case-insensitively) in `dir`.
fn find_nocase(ctx: &mut Ctx, dir: &str, name: &str, kind: FileKind) -> Option<String> {
    let e = ctx
        .list_dir(dir)
        .into_iter()
        .find(|e| e.kind == kind && e.name.eq_ignore_ascii_case(name))?;
    Some(format!("{}/{}", dir.trim_end_matches('/'), e.name))
}

/// `/Windows` (or `/WINNT`...): the directory holding `System32`, in its real case.
pub fn system_root(ctx: &mut Ctx) -> Option<(String, String)> {
    for name in ["windows", "winnt", "win32", "win"] {
        if let Some(root) = find_nocase(ctx, "/", name, FileKind::Dir) {
            if let Some(sys32) = find_nocase(ctx, &root, "system32", FileKind::Dir) {
                return Some((root, sys32));
            }
        }
    }
    None
}

/// Reads a hive and its transaction logs from `config`, with its real-case path;
/// `None` when it is missing, or unreadable (with a warning).
pub(crate) fn load_hive(ctx: &mut Ctx, config: &str, name: &str) -> Option<(String, Hive)> {
    let path = find_nocase(ctx, config, name, FileKind::File)?;
    let data = ctx.read_bytes(&path, hive::MAX_HIVE_BYTES)?;
    let mut logs = Vec::new();
    for ext in ["LOG1", "LOG2"] {
        if let Some(p) = find_nocase(ctx, config, &format!("{name}.{ext}"), FileKind::File) {
            if let Some(b) = ctx.read_bytes(&p, hive::MAX_HIVE_BYTES) {
                logs.push(b);
            }
        }
    }
    match Hive::parse(data, &logs) {
        Ok(h) => {
            for w in h.warnings() {
                ctx.warn(format_args!("{path}: {w}"));
            }
            Some((path, h))
        }
        Err(e) => {
            ctx.warn(format_args!("{path}: {e}"));
            None
        }
    }
}

/// `System32/config` of the Windows root, in its real case.
pub(crate) fn config_dir(ctx: &mut Ctx) -> Option<String> {
    let (_, sys32) = system_root(ctx)?;
    find_nocase(ctx, &sys32, "config", FileKind::Dir)
}

/// A fact read from a hive; a damaged hive makes it unknown, with a warning.
fn fact<T: Default>(ctx: &mut Ctx, what: &str, r: Result<T, HiveError>) -> T {
    r.unwrap_or_else(|e| {
        ctx.warn(format_args!("{what}: {e}"));
        T::default()
    })
}

/// Everything about the Windows root on `root`, and the warnings met on the way.
pub fn inspect(
    root: &Mountable,
    devices: &[Mountable],
    include: &Include,
) -> (OperatingSystem, Vec<String>) {
    let mut os = OperatingSystem {
        root: root.device.clone(),
        os_type: "windows".into(),
        distro: Some("windows".into()),
        mountpoints: [("/".to_string(), root.device.clone())]
            .into_iter()
            .collect(),
        ..OperatingSystem::default()
    };
    let Some(fs) = root.fs.clone() else {
        return (
            os,
            vec![format!("{}: root filesystem is not readable", root.device)],
        );
    };
    let guest = GuestFs::new(fs);
    let mut ctx = Ctx::new(&guest, &root.device);
    let Some((sysroot, sys32)) = system_root(&mut ctx) else {
        ctx.warn("no Windows system directory");
        return (os, ctx.into_warnings());
    };
    os.windows_systemroot = Some(sysroot);
    if let Some(cmd) = find_nocase(&mut ctx, &sys32, "cmd.exe", FileKind::File) {
        // Unreadable (WOF-compressed by CompactOS, say): a warning naming it, no arch.
        if let Some(b) = ctx.read_bytes(&cmd, 64 << 20) {
            os.arch = pe::arch(&b[..b.len().min(pe::HEADER_BYTES)]).map(str::to_string);
        }
    }
    let config = find_nocase(&mut ctx, &sys32, "config", FileKind::Dir);
    let hive = |ctx: &mut Ctx, name: &str| load_hive(ctx, config.as_deref()?, name).map(|(_, h)| h);

    if let Some(software) = hive(&mut ctx, "SOFTWARE") {
        let v = fact(&mut ctx, "SOFTWARE", version::read(&software));
        os.osinfo = version::osinfo(&v);
        os.product_name = v.product_name;
        os.product_variant = v.product_variant;
        os.major_version = v.major;
        os.minor_version = v.minor;
        os.build_id = v.build;
        if include.applications {
            os.applications = fact(&mut ctx, "SOFTWARE applications", apps::read(&software));
        }
        if include.security {
            let lua = software
                .key("Microsoft\\Windows\\CurrentVersion\\Policies\\System")
                .and_then(|k| match k {
                    Some(k) => software.value(&k, "EnableLUA"),
                    None => Ok(None),
                })
                .map(|v| v.and_then(|v| v.as_u64()).map(|n| n != 0));
            os.security.uac_enabled = fact(&mut ctx, "SOFTWARE EnableLUA", lua);
        }
    }
    if let Some(sys) = hive(&mut ctx, "SYSTEM") {
        let cs = fact(&mut ctx, "SYSTEM Select", system::current_control_set(&sys));
        os.drive_mappings = fact(
            &mut ctx,
            "SYSTEM MountedDevices",
            system::drive_mappings(&sys, devices),
        );
        if let Some(cs) = cs {
            os.hostname = fact(&mut ctx, "SYSTEM hostname", system::hostname(&sys, &cs));
            if include.services {
                os.services = fact(&mut ctx, "SYSTEM services", system::services(&sys, &cs));
            }
            let files: Vec<String> = match find_nocase(&mut ctx, &sys32, "drivers", FileKind::Dir) {
                Some(d) => ctx.list_dir(&d).into_iter().map(|e| e.name).collect(),
                None => Vec::new(),
            };
            os.drivers = fact(&mut ctx, "SYSTEM drivers", drivers::read(&sys, &cs, &files));
            if include.network {
                os.network = fact(&mut ctx, "SYSTEM network", system::network(&sys, &cs));
            }
            if include.security {
                os.security.rdp_enabled = fact(
                    &mut ctx,
                    "SYSTEM Terminal Server",
                    system::rdp_enabled(&sys, &cs),
                );
                let fw = fact(
                    &mut ctx,
                    "SYSTEM firewall",
                    system::firewall_enabled(&sys, &cs),
                );
                os.security.firewall = (fw == Some(true)).then(|| "windows-firewall".to_string());
            }
            os.windows_current_control_set = Some(cs);
        }
    }
    if include.users {
        if let Some(sam) = hive(&mut ctx, "SAM") {
            os.users = fact(&mut ctx, "SAM users", users::read(&sam));
        }
    }
    (os, ctx.into_warnings())
}

/// Puts the BitLocker volumes the volume layer found on the guest's disks into a
/// Windows OS's security section (a data volume beside `C:` is the usual case; a
/// BitLocker system volume would hide the OS itself).
pub fn note_bitlocker(os: &mut OperatingSystem, encrypted: &[EncryptedVolumeInfo]) {
    if os.os_type == "windows" {
        os.security.bitlocker_volumes = encrypted
            .iter()
            .filter(|e| e.enc_type == "bitlocker")
            .map(|e| e.device.clone())
            .collect();
    }
}
