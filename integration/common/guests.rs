//! Whole-guest helpers shared by the volume tests (LVM, MD, LUKS): each builds the same
//! Debian tree on its own layout and checks it against the plain-partition guest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use guestkit_worker::inspect::pipeline::{self, DiskSpec, InspectOptions};
use guestkit_worker::inspect::report::{OperatingSystem, Report};

use super::{fixture_cache, fixtures, run};

/// The cached debootstrap tarball of Debian bookworm (built once per machine).
pub fn debian_tarball() -> PathBuf {
    let tar = fixture_cache().join("debian-bookworm.tar");
    run(Command::new(fixtures().join("debian-tree.sh"))
        .arg("bookworm")
        .arg(&tar));
    tar
}

/// Inspects raw `disks` as one job (`/dev/sda`, `/dev/sdb`, ... in order), with the
/// first disk's folder as the image root: the report, guest bytes read and time taken.
pub fn inspect_disks(disks: &[PathBuf]) -> (Report, u64, Duration) {
    inspect_disks_with(disks, InspectOptions::default())
}

/// [`inspect_disks`] with `base`'s other options (keys, sections).
pub fn inspect_disks_with(disks: &[PathBuf], base: InspectOptions) -> (Report, u64, Duration) {
    let opts = InspectOptions {
        image_roots: vec![disks[0].parent().unwrap().to_path_buf()],
        extra_disks: disks[1..]
            .iter()
            .map(|p| DiskSpec {
                path: p.clone(),
                format: Some("raw".into()),
            })
            .collect(),
        ..base
    };
    let t = Instant::now();
    let (report, stats) = pipeline::inspect_with_stats(&disks[0], &opts).unwrap();
    (report, stats.bytes_read, t.elapsed())
}

/// `os` with every device name replaced by `rename`'s (root and mountpoints), so a
/// guest on volumes compares equal to the same guest on plain partitions.
pub fn renamed(os: &OperatingSystem, rename: &BTreeMap<&str, &str>) -> OperatingSystem {
    let r = |d: &String| rename.get(d.as_str()).map_or(d.clone(), |n| n.to_string());
    let mut os = os.clone();
    os.root = r(&os.root);
    os.mountpoints = os
        .mountpoints
        .iter()
        .map(|(k, v)| (k.clone(), r(v)))
        .collect();
    os
}
