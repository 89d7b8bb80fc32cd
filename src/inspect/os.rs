//! OS layer: finding operating-system roots on the probed filesystems and reading the
//! facts of each one (release, arch, hostname, mountpoints, applications, users,
//! services, network, kernels, security) from files on the image.
//!
//! Entry point: [`inspect_roots`]. Everything below reads through [`GuestFs`], the
//! guest's own view of its files (mounts from fstab, symlinks resolved inside the guest).

mod apps;
pub mod arch;
pub mod context;
pub mod distro;
pub mod fstab;
pub mod guest;
pub mod hostname;
pub mod initramfs;
mod kernels;
mod linux;
#[cfg(test)]
pub(crate) mod memfs;
mod misc;
mod modules;
pub mod mountable;
mod network;
pub mod release;
pub mod roots;
mod security;
mod services;
pub mod sshd;
pub mod text;
mod users;
pub mod usr;
pub mod windows;

pub use guest::GuestFs;
pub use mountable::Mountable;
pub use roots::RootKind;
pub mod packages;

use std::sync::Arc;

use crate::inspect::caps::{ReportCaps, MAX_OS_ROOTS};
use crate::inspect::report::OperatingSystem;
use crate::inspect::work::Work;

/// Which optional sections of each OS to read (the job's `options`); all on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Include {
    pub applications: bool,
    pub users: bool,
    pub services: bool,
    pub network: bool,
    pub security: bool,
}

impl Default for Include {
    fn default() -> Include {
        Include {
            applications: true,
            users: true,
            services: true,
            network: true,
            security: true,
        }
    }
}

/// Finds the OS roots among `devices` and inspects each, charging `work`. Returns the
/// OSes in device order and the warnings (each prefixed with its root device). At most
/// [`MAX_OS_ROOTS`] roots are inspected, and applications, users and services are capped
/// across all of them ([`ReportCaps`]) as each root is read, so memory stays bounded.
pub fn inspect_roots(
    devices: &[Mountable],
    include: &Include,
    work: &Arc<Work>,
) -> (Vec<OperatingSystem>, Vec<String>) {
    let mut oses = Vec::new();
    let mut warnings = Vec::new();
    let mut caps = ReportCaps::default();
    for dev in devices {
        let Some(fs) = &dev.fs else { continue };
        if work.check().is_err() {
            warnings.push(format!(
                "{}: not inspected: the job's work budget is spent or the job was cancelled",
                dev.device
            ));
            continue;
        }
        // A root without fstab or hosts whose OS is on a separate /usr partition
        // (Flatcar, a discoverable-partitions image) is a Linux root too.
        let kind = roots::classify(fs).or_else(|| {
            (usr::needs_usr(&GuestFs::new(fs.clone())) && usr::find(dev, devices).is_some())
                .then_some(RootKind::Linux)
        });
        if kind.is_some() && oses.len() == MAX_OS_ROOTS {
            warnings.push(format!(
                "{}: OS root not inspected: only {MAX_OS_ROOTS} are inspected per disk",
                dev.device
            ));
            continue;
        }
        match kind {
            Some(RootKind::Linux) => {
                let (mut os, w) = linux::inspect(dev, devices, include, work);
                warnings.extend(w);
                let capped = [
                    ReportCaps::take(&mut caps.applications, &mut os.applications, "applications"),
                    ReportCaps::take(&mut caps.users, &mut os.users, "users"),
                    ReportCaps::take(&mut caps.services, &mut os.services, "services"),
                ];
                for c in capped.into_iter().flatten() {
                    warnings.push(format!("{}: {c}", dev.device));
                }
                oses.push(os);
            }
            Some(RootKind::Windows) => {
                let (os, w) = windows::inspect(dev, devices, include);
                oses.push(os);
                warnings.extend(w);
            }
            None => {}
        }
    }
    (oses, warnings)
}
