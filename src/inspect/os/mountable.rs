//! A device of the disk as the OS layer sees it: its guest name, the identifiers an
//! fstab may use for it, and its filesystem when we can read it.
//!
//! The pipeline builds one per partition (or for the whole disk); root detection and
//! fstab resolution only need these facts, not the layers below.

use std::sync::Arc;

use crate::inspect::fs::FileSystem;

/// One device that may hold a filesystem.
#[derive(Clone)]
pub struct Mountable {
    /// Name as the guest would see it on a single disk (`/dev/sda2`).
    pub device: String,
    /// Probed content type (`ext4`, `vfat`, `xfs`, `swap`, ...), if recognised.
    pub fs_type: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// GPT unique partition GUID or the MBR `<signature>-<nn>` form (`PARTUUID=`).
    pub part_uuid: Option<String>,
    /// GPT partition name (`PARTLABEL=`).
    pub part_label: Option<String>,
    /// GPT type GUID (upper-case) or MBR type (`0x83`): finds a separate `/usr` by type.
    pub part_type: Option<String>,
    /// GPT attribute bits (0 on MBR): which of Flatcar's `/usr` partitions is active.
    pub part_attrs: u64,
    /// Byte offset of the partition on its disk (Windows maps MBR drive letters by it).
    pub part_start: Option<u64>,
    /// The opened filesystem, when its type is one we read.
    pub fs: Option<Arc<dyn FileSystem>>,
    /// For btrfs: which subvolume `fs` shows (the default one for the block device
    /// itself), so fstab's `subvol=`/`subvolid=` options can be matched.
    pub subvolume: Option<SubvolumeRef>,
    /// Other names the guest has for the device (an MD array's `/dev/md/<name>`).
    pub aliases: Vec<String>,
}

/// A btrfs subvolume as a mountable: libguestfs names it `btrfsvol:<device>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolumeRef {
    /// The block device holding the filesystem (`/dev/sda2`).
    pub device: String,
    pub id: u64,
    /// From the top level, without a leading `/` (empty for the top level itself).
    pub path: String,
}

impl Mountable {
    /// A device with nothing known yet but its name.
    pub fn new(device: &str) -> Mountable {
        Mountable {
            device: device.to_string(),
            fs_type: None,
            uuid: None,
            label: None,
            part_uuid: None,
            part_label: None,
            part_type: None,
            part_attrs: 0,
            part_start: None,
            fs: None,
            subvolume: None,
            aliases: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Mountable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mountable")
            .field("device", &self.device)
            .field("fs_type", &self.fs_type)
            .field("uuid", &self.uuid)
            .field("label", &self.label)
            .field("part_uuid", &self.part_uuid)
            .field("part_label", &self.part_label)
            .field("readable", &self.fs.is_some())
            .field("subvolume", &self.subvolume)
            .finish()
    }
}
