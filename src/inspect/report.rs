//! The inspection report: the serde types of `shared/INSPECTION.md`.
//!
//! Every key is always present (`null` or `[]` when unknown), so consumers never need
//! to tell "absent" from "empty"; names follow libguestfs's inspection API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole `output` of `guestkit.inspect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub image: ImageInfo,
    /// Every disk of the job, `/dev/sda` first (the one `image` describes).
    pub disks: Vec<DiskInfo>,
    pub partition_table: Option<String>,
    pub partitions: Vec<PartitionInfo>,
    pub md_arrays: Vec<MdArrayInfo>,
    /// LUKS and BitLocker volumes, locked or unlocked.
    pub encrypted: Vec<EncryptedVolumeInfo>,
    pub volume_groups: Vec<VolumeGroupInfo>,
    pub filesystems: Vec<FilesystemInfo>,
    pub operating_systems: Vec<OperatingSystem>,
    pub warnings: Vec<String>,
}

/// The image file itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageInfo {
    pub path: String,
    pub format: String,
    pub virtual_size: u64,
    pub backing_chain: Vec<String>,
    pub sha256: Option<String>,
    /// A remote image's URL without its query (absent for a local image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Bytes fetched over HTTP for a remote image (absent for a local image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_fetched: Option<u64>,
}

/// One disk of the job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DiskInfo {
    pub device: String,
    pub path: String,
    pub format: String,
    pub virtual_size: u64,
    pub backing_chain: Vec<String>,
}

/// One partition-table entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionInfo {
    pub device: String,
    pub number: u32,
    pub start: u64,
    pub size: u64,
    #[serde(rename = "type")]
    pub part_type: String,
    pub name: Option<String>,
    pub bootable: bool,
}

/// An encrypted volume (LUKS1/LUKS2, BitLocker).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EncryptedVolumeInfo {
    pub device: String,
    /// `luks1`, `luks2` or `bitlocker`.
    #[serde(rename = "type")]
    pub enc_type: String,
    pub uuid: Option<String>,
    /// Whether a supplied key opened it (its contents are then inspected).
    pub unlocked: bool,
    /// `/dev/mapper/luks-<uuid>` once unlocked.
    pub mapped_device: Option<String>,
    /// LUKS: the payload cipher as cryptsetup names it (`aes-xts-plain64`) and its key
    /// size in bits (512 for aes-xts with 256-bit AES), locked or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
}

/// An MD RAID array.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MdArrayInfo {
    /// `/dev/md<N>`: the array's own number, else 127 downwards.
    pub device: String,
    /// The 1.x array name (`host:name`); `None` for 0.90.
    pub name: Option<String>,
    /// As mdadm prints it.
    pub uuid: String,
    pub level: String,
    pub members: Vec<String>,
    /// `clean`, `degraded` (read from the remaining members) or `unreadable`.
    pub state: String,
}

/// An LVM2 volume group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VolumeGroupInfo {
    pub name: String,
    pub uuid: String,
    pub physical_volumes: Vec<String>,
    /// UUIDs of the PVs the metadata lists but no disk of the job holds.
    pub missing_physical_volumes: Vec<String>,
    pub logical_volumes: Vec<LogicalVolumeInfo>,
}

/// An LVM2 logical volume.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogicalVolumeInfo {
    pub name: String,
    pub device: String,
    pub size: u64,
    /// As `lvs -o segtype` shows it: `linear`, `striped`, `raid1`, `thin`, ...
    pub segment_type: String,
    /// Whether its bytes could be mapped (and so probed and read).
    pub readable: bool,
}

/// A filesystem (or other recognised content: swap, LVM2 PV, LUKS) on a device.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FilesystemInfo {
    pub device: String,
    #[serde(rename = "type")]
    pub fs_type: String,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub size: Option<u64>,
    /// Btrfs subvolumes (top level excluded), as `btrfs subvolume list` names them;
    /// empty for other filesystems.
    #[serde(default)]
    pub subvolumes: Vec<SubvolumeInfo>,
}

/// One btrfs subvolume: its id and its path from the top-level subvolume.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubvolumeInfo {
    pub id: u64,
    pub path: String,
}

/// One operating system root and what was found in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OperatingSystem {
    pub root: String,
    #[serde(rename = "type")]
    pub os_type: String,
    pub distro: Option<String>,
    pub product_name: Option<String>,
    pub product_variant: Option<String>,
    pub major_version: Option<u32>,
    pub minor_version: Option<u32>,
    /// Windows build number (`CurrentBuildNumber`).
    #[serde(default)]
    pub build_id: Option<String>,
    pub arch: Option<String>,
    pub hostname: Option<String>,
    pub osinfo: Option<String>,
    pub package_format: Option<String>,
    pub package_management: Option<String>,
    pub mountpoints: BTreeMap<String, String>,
    /// Windows drive letters (`C`) to devices, from `MountedDevices`.
    #[serde(default)]
    pub drive_mappings: BTreeMap<String, String>,
    /// Windows: the system directory inside the root (`/Windows`).
    #[serde(default)]
    pub windows_systemroot: Option<String>,
    /// Windows: the control set the next boot uses (`ControlSet001`).
    #[serde(default)]
    pub windows_current_control_set: Option<String>,
    pub applications: Vec<Application>,
    pub users: Vec<User>,
    pub services: Vec<Service>,
    /// Hypervisor drivers found (virtio, VMware, Hyper-V, Xen): migration readiness.
    #[serde(default)]
    pub drivers: Vec<Driver>,
    pub network: Network,
    pub kernels: Vec<Kernel>,
    pub security: Security,
    pub machine_id: Option<String>,
    pub cloud_init: bool,
}

/// An installed package, from the package database itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Application {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: Option<String>,
    pub arch: Option<String>,
    pub summary: Option<String>,
    /// Windows: the `DisplayName` (the name is the Uninstall key's).
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub publisher: Option<String>,
    #[serde(default)]
    pub install_path: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub source_package: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A local account; password hashes never leave the worker, only `locked`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    pub system: bool,
    pub locked: bool,
}

/// A service and whether it starts at boot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub enabled: bool,
    pub kind: String,
    /// Windows: the service's `DisplayName`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Windows: `boot`, `system`, `auto`, `manual` or `disabled`.
    #[serde(default)]
    pub start: Option<String>,
}

/// A paravirtual driver installed in the guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Driver {
    pub name: String,
    /// `virtio`, `vmware`, `hyperv`, `xen` or `other`.
    pub kind: String,
    /// Installed and set to load at boot (not only a file left on disk); Linux: shipped
    /// for (or built into) the default kernel.
    pub present: bool,
    /// Linux: built into the default kernel or carried by its initramfs, so usable
    /// before the root filesystem is mounted; `None` when unknown (Windows, or no
    /// initramfs read).
    #[serde(default)]
    pub in_initramfs: Option<bool>,
}

/// Network configuration as written in the guest's config files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    pub interfaces: Vec<Interface>,
    pub dns_servers: Vec<String>,
}

/// One configured interface.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// `dhcp`, `static`, `manual`, `loopback`, ...
    pub method: Option<String>,
    pub addresses: Vec<String>,
}

/// An installed kernel.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
    pub path: String,
}

/// Security settings read from files on the image (never from a running system).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Security {
    pub selinux: Option<String>,
    pub apparmor: bool,
    pub ssh: Ssh,
    pub firewall: Option<String>,
    /// Windows: Remote Desktop accepts connections (`fDenyTSConnections` = 0).
    #[serde(default)]
    pub rdp_enabled: Option<bool>,
    /// Windows: User Account Control on (`EnableLUA`).
    #[serde(default)]
    pub uac_enabled: Option<bool>,
    /// Windows: the BitLocker volumes on the guest's disks (also in `encrypted`).
    #[serde(default)]
    pub bitlocker_volumes: Vec<String>,
}

/// The effective sshd settings that matter most.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ssh {
    pub permit_root_login: Option<String>,
    pub password_authentication: Option<bool>,
}
