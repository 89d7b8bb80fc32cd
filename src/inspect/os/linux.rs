//! Inspection of one Linux root: mount what its fstab names (and a separate `/usr` it
//! does not name, found by partition: see `usr.rs`), then read every fact.

use std::sync::Arc;

use crate::inspect::report::OperatingSystem;
use crate::inspect::work::Work;

use super::context::Ctx;
use super::guest::GuestFs;
use super::mountable::Mountable;
use super::{
    apps, arch, distro, fstab, hostname, kernels, misc, modules, network, release, security,
    services, users, usr, Include,
};

/// Everything about the Linux root on `root`, and the warnings met on the way.
pub fn inspect(
    root: &Mountable,
    devices: &[Mountable],
    include: &Include,
    work: &Arc<Work>,
) -> (OperatingSystem, Vec<String>) {
    let Some(fs) = root.fs.clone() else {
        return (
            OperatingSystem::default(),
            vec![format!("{}: root filesystem is not readable", root.device)],
        );
    };
    let mut guest = GuestFs::new(fs);
    let mut fstab = fstab::mount_from_fstab(&mut guest, root, devices);
    if let Some(w) = usr::mount_separate_usr(&mut guest, root, devices, &mut fstab.mountpoints) {
        fstab.warnings.push(w);
    }
    let mut ctx = Ctx::new(&guest, &root.device).with_work(work.clone());
    for w in fstab.warnings {
        ctx.warn(w);
    }

    let rel = release::detect(&mut ctx);
    let package_format = distro::package_format(&rel);
    let version = distro::version(&rel);
    let mut os = OperatingSystem {
        root: root.device.clone(),
        os_type: "linux".into(),
        distro: rel.distro.clone(),
        product_name: rel.product_name.clone(),
        product_variant: rel.product_variant.clone(),
        major_version: version.map(|v| v.0),
        minor_version: version.map(|v| v.1),
        arch: arch::detect(&mut ctx),
        hostname: hostname::detect(&mut ctx),
        osinfo: distro::osinfo(&rel),
        package_format: package_format.map(str::to_string),
        package_management: distro::package_management(&rel).map(str::to_string),
        mountpoints: fstab.mountpoints,
        ..OperatingSystem::default()
    };
    if include.applications {
        os.applications = apps::detect(&mut ctx, package_format);
    }
    if include.users {
        os.users = users::detect(&mut ctx);
    }
    // Security and cloud-init ask whether services are enabled, so the init system is
    // read whenever any of them is wanted; the list is reported only when asked for.
    let svc = services::detect(&mut ctx);
    if include.network {
        os.network = network::detect(&mut ctx);
    }
    os.kernels = kernels::detect(&mut ctx);
    os.drivers = modules::detect(&mut ctx, &os.kernels);
    if include.security {
        os.security = security::detect(&mut ctx, &svc);
    }
    os.machine_id = misc::machine_id(&mut ctx);
    os.cloud_init = misc::cloud_init(&mut ctx, &svc);
    if include.services {
        os.services = svc.services;
    }
    let warnings = ctx.into_warnings();
    (os, warnings)
}
