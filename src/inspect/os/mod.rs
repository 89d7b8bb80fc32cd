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
mod kernels;
mod linux;
#[cfg(test)]
pub(crate) mod memfs;
mod misc;
pub mod mountable;
mod network;
pub mod release;
pub mod roots;
mod security;
mod services;
pub mod sshd;
pub mod text;
mod users;
pub mod windows;

pub use guest::GuestFs;
pub use mountable::Mountable;
pub use roots::RootKind;
pub mod packages;

use crate::inspect::report::OperatingSystem;

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

/// Finds the OS roots among `devices` and inspects each. Returns the OSes in device
/// order and the warnings (each prefixed with its root device).
pub fn inspect_roots(
    devices: &[Mountable],
    include: &Include,
) -> (Vec<OperatingSystem>, Vec<String>) {
    let mut oses = Vec::new();
    let mut warnings = Vec::new();
    for dev in devices {
        let Some(fs) = &dev.fs else { continue };
        match roots::classify(fs) {
            Some(RootKind::Linux) => {
                let (os, w) = linux::inspect(dev, devices, include);
                oses.push(os);
                warnings.extend(w);
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
