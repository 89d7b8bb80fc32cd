//! Paravirtual drivers of a Windows install, for the migration question "will it boot
//! on the target hypervisor": a known driver's service key in the current control set
//! (with its `Start` type) and its file in `System32/drivers`.

use crate::inspect::report::Driver;

use super::hive::{Hive, HiveError};

/// Service names of the drivers that matter, by hypervisor.
const KNOWN: &[(&str, &str)] = &[
    ("viostor", "virtio"),
    ("vioscsi", "virtio"),
    ("netkvm", "virtio"),
    ("balloon", "virtio"),
    ("viorng", "virtio"),
    ("vioser", "virtio"),
    ("pvpanic", "virtio"),
    ("vioinput", "virtio"),
    ("viofs", "virtio"),
    ("vmxnet3ndis6", "vmware"),
    ("vmxnet3", "vmware"),
    ("pvscsi", "vmware"),
    ("vmci", "vmware"),
    ("VMTools", "vmware"),
    ("storvsc", "hyperv"),
    ("netvsc", "hyperv"),
    ("vmbus", "hyperv"),
    ("xenvbd", "xen"),
    ("xennet", "xen"),
    ("xenbus", "xen"),
    ("xeniface", "xen"),
];

/// Each known driver with a service key or a driver file; `present` when the service
/// is set to load (any `Start` but disabled). `files` are the names in
/// `System32/drivers`.
pub(crate) fn read(system: &Hive, cs: &str, files: &[String]) -> Result<Vec<Driver>, HiveError> {
    let mut out = Vec::new();
    for &(name, kind) in KNOWN {
        let start = match system.key(&format!("{cs}\\Services\\{name}"))? {
            Some(k) => Some(system.value(&k, "Start")?.and_then(|v| v.as_u64())),
            None => None,
        };
        let file = format!("{name}.sys");
        let has_file = files.iter().any(|f| f.eq_ignore_ascii_case(&file));
        if start.is_none() && !has_file {
            continue;
        }
        out.push(Driver {
            name: name.to_string(),
            kind: kind.to_string(),
            present: matches!(start, Some(Some(s)) if s < 4),
            in_initramfs: None,
        });
    }
    Ok(out)
}
