//! A root whose `/usr` is another filesystem that its fstab does not name: the guest's
//! boot finds it by partition instead.
//!
//! - Flatcar and CoreOS Container Linux: the root partition (`ROOT`) holds `/etc` and
//!   the state; the OS (with `/usr/lib/os-release`) is on one of two partitions named
//!   `USR-A` and `USR-B`, updated in turn. The one that boots is chosen by the
//!   ChromeOS-style GPT attribute bits its GRUB reads (`gptprio`): priority (bits
//!   48-51), tries left (52-55) and successful (56); the highest priority that is
//!   successful or has tries left wins, the first partition on a tie.
//! - systemd's Discoverable Partitions Specification: with no fstab entry, the
//!   `/usr` partition is the first one on the root's disk whose GPT type is the `usr`
//!   type of the root's architecture (read from the root partition's own type when it
//!   is a DPS root type; any architecture otherwise), unless its no-auto bit (63) is
//!   set. `systemd-gpt-auto-generator` mounts it so.
//!
//! libguestfs pairs a CoreOS root with its `/usr` the same way (by content), and
//! reports mountpoints `/` and `/usr`; so do we.

use std::collections::BTreeMap;

use crate::inspect::fs::FileKind;

use super::guest::GuestFs;
use super::mountable::Mountable;

/// GPT attribute bit 63: "do not mount automatically" (DPS).
const ATTR_NO_AUTO: u64 = 1 << 63;

/// DPS root and `/usr` partition types per architecture, as util-linux names the
/// architectures (`sfdisk --label gpt -T`: "Linux root (x86-64)", "Linux /usr (x86-64)").
pub const DPS_ROOT_USR: &[(&str, &str, &str)] = &[
    (
        "x86",
        "44479540-F297-41B2-9AF7-D131D5F0458A",
        "75250D76-8CC6-458E-BD66-BD47CC81A812",
    ),
    (
        "x86-64",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "8484680C-9521-48C6-9C11-B0720656F69E",
    ),
    (
        "Alpha",
        "6523F8AE-3EB1-4E2A-A05A-18B695AE656F",
        "E18CF08C-33EC-4C0D-8246-C6C6FB3DA024",
    ),
    (
        "ARC",
        "D27F46ED-2919-4CB8-BD25-9531F3C16534",
        "7978A683-6316-4922-BBEE-38BFF5A2FECC",
    ),
    (
        "ARM",
        "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3",
        "7D0359A3-02B3-4F0A-865C-654403E70625",
    ),
    (
        "ARM-64",
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        "B0E01050-EE5F-4390-949A-9101B17104E9",
    ),
    (
        "IA-64",
        "993D8D3D-F80E-4225-855A-9DAF8ED7EA97",
        "4301D2A6-4E3B-4B2A-BB94-9E0B2C4225EA",
    ),
    (
        "LoongArch-64",
        "77055800-792C-4F94-B39A-98C91B762BB6",
        "E611C702-575C-4CBE-9A46-434FA0BF7E3F",
    ),
    (
        "MIPS-32 LE",
        "37C58C8A-D913-4156-A25F-48B1B64E07F0",
        "0F4868E9-9952-4706-979F-3ED3A473E947",
    ),
    (
        "MIPS-64 LE",
        "700BDA43-7A34-4507-B179-EEB93D7A7CA3",
        "C97C1F32-BA06-40B4-9F22-236061B08AA8",
    ),
    (
        "PPC",
        "1DE3F1EF-FA98-47B5-8DCD-4A860A654D78",
        "7D14FEC5-CC71-415D-9D6C-06BF0B3C3EAF",
    ),
    (
        "PPC64",
        "912ADE1D-A839-4913-8964-A10EEE08FBD2",
        "2C9739E2-F068-46B3-9FD0-01C5A9AFBCCA",
    ),
    (
        "PPC64LE",
        "C31C45E6-3F39-412E-80FB-4809C4980599",
        "15BB03AF-77E7-4D4A-B12B-C0D084F7491C",
    ),
    (
        "RISC-V-32",
        "60D5A7FE-8E7D-435C-B714-3DD8162144E1",
        "B933FB22-5C3F-4F91-AF90-E2BB0FA50702",
    ),
    (
        "RISC-V-64",
        "72EC70A6-CF74-40E6-BD49-4BDA08E8F224",
        "BEAEC34B-8442-439B-A40B-984381ED097D",
    ),
    (
        "S390",
        "08A7ACEA-624C-4A20-91E8-6E0FA67D23F9",
        "CD0F869B-D0FB-4CA0-B141-9EA87CC78D66",
    ),
    (
        "S390X",
        "5EEAD9A9-FE09-4A1E-A1D7-520D00531306",
        "8A4F5770-50AA-4ED3-874A-99B710DB6FEA",
    ),
    (
        "TILE-Gx",
        "C50CDD70-3862-4CC3-90E1-809A8C93EE2C",
        "55497029-C7C1-44CC-AA39-815ED1558630",
    ),
];

/// Flatcar's names of its two `/usr` partitions.
const FLATCAR_USR: [&str; 2] = ["USR-A", "USR-B"];

/// Whether `guest` (the root alone) looks like a root whose `/usr` lives elsewhere:
/// `/etc` is a directory, `/usr` is missing or an empty directory, and no release
/// file can be read without it.
pub fn needs_usr(guest: &GuestFs) -> bool {
    guest.is_dir("/etc")
        && !guest.exists("/etc/os-release")
        && !guest.exists("/usr/lib/os-release")
        && match guest.read_dir("/usr") {
            Ok(entries) => entries.iter().all(|e| e.name == "." || e.name == ".."),
            Err(_) => !guest.exists("/usr"),
        }
}

/// Whether `dev` holds a `/usr` tree: `lib/os-release` is a file on it.
fn is_usr(dev: &Mountable) -> bool {
    dev.fs.as_ref().is_some_and(|fs| {
        let g = GuestFs::new(fs.clone());
        g.metadata("/lib/os-release")
            .is_ok_and(|m| m.kind == FileKind::File)
    })
}

/// The disk a partition device belongs to (`/dev/sda9` -> `/dev/sda`).
fn disk_of(device: &str) -> &str {
    device.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// gptprio's fields of a partition's attributes: priority, tries left, successful.
fn gptprio(m: &Mountable) -> (u64, u64, bool) {
    (
        (m.part_attrs >> 48) & 0xf,
        (m.part_attrs >> 52) & 0xf,
        m.part_attrs & (1 << 56) != 0,
    )
}

/// Flatcar's boot choice among `candidates`: see the module comment.
fn flatcar_active<'a>(candidates: &[&'a Mountable]) -> Option<&'a Mountable> {
    let mut best: Option<(&Mountable, u64)> = None;
    for &m in candidates {
        let (priority, tries, successful) = gptprio(m);
        let bootable = priority > 0 && (successful || tries > 0);
        // Strictly greater: the first partition wins a tie.
        if bootable && best.is_none_or(|(_, p)| priority > p) {
            best = Some((m, priority));
        }
    }
    best.map(|(m, _)| m)
}

/// The device holding `root`'s `/usr`, and how it was chosen, among `devices`.
pub fn find<'a>(root: &Mountable, devices: &'a [Mountable]) -> Option<(&'a Mountable, String)> {
    let disk = disk_of(&root.device);
    let same_disk = |m: &&Mountable| m.device != root.device && disk_of(&m.device) == disk;
    let flatcar: Vec<&Mountable> = devices
        .iter()
        .filter(same_disk)
        .filter(|m| {
            m.part_label
                .as_deref()
                .is_some_and(|l| FLATCAR_USR.contains(&l))
                && is_usr(m)
        })
        .collect();
    if !flatcar.is_empty() {
        return Some(match flatcar_active(&flatcar) {
            Some(m) => {
                let (priority, tries, successful) = gptprio(m);
                (
                    m,
                    format!(
                        "{} is the active one of the USR-A/USR-B partitions (GPT priority \
                         {priority}, tries {tries}, successful {successful})",
                        m.device
                    ),
                )
            }
            None => (
                flatcar[0],
                format!(
                    "{}: no USR-A/USR-B partition is marked bootable by its GPT attributes; \
                     the first one is used",
                    flatcar[0].device
                ),
            ),
        });
    }
    let root_type = root.part_type.as_deref().unwrap_or("");
    let arch = DPS_ROOT_USR
        .iter()
        .find(|(_, r, _)| r.eq_ignore_ascii_case(root_type));
    devices
        .iter()
        .filter(same_disk)
        .find(|m| {
            let t = m.part_type.as_deref().unwrap_or("");
            let usr_type = match arch {
                Some((_, _, usr)) => usr.eq_ignore_ascii_case(t),
                None => DPS_ROOT_USR
                    .iter()
                    .any(|(_, _, u)| u.eq_ignore_ascii_case(t)),
            };
            usr_type && m.part_attrs & ATTR_NO_AUTO == 0 && is_usr(m)
        })
        .map(|m| {
            let arch = DPS_ROOT_USR
                .iter()
                .find(|(_, _, u)| {
                    m.part_type
                        .as_deref()
                        .is_some_and(|t| u.eq_ignore_ascii_case(t))
                })
                .map_or("?", |a| a.0);
            (
                m,
                format!(
                    "{} has the discoverable-partitions type of /usr ({arch})",
                    m.device
                ),
            )
        })
}

/// Mounts the separate `/usr` of a root whose fstab did not name one, when the root
/// needs it and a partition is found; records it in `mountpoints`. Returns a note for
/// the warnings when the choice was a guess.
pub fn mount_separate_usr(
    guest: &mut GuestFs,
    root: &Mountable,
    devices: &[Mountable],
    mountpoints: &mut BTreeMap<String, String>,
) -> Option<String> {
    if mountpoints.contains_key("/usr") || !needs_usr(guest) {
        return None;
    }
    let (dev, why) = find(root, devices)?;
    let fs = dev.fs.clone()?;
    guest.mount("/usr", fs);
    mountpoints.insert("/usr".into(), dev.device.clone());
    tracing::debug!(root = %root.device, usr = %dev.device, %why, "separate /usr found");
    why.contains("first one is used").then_some(why)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::memfs::MemFs;

    fn part(device: &str, label: &str, part_type: &str, attrs: u64, fs: MemFs) -> Mountable {
        let mut m = Mountable::new(device);
        m.part_label = Some(label.into());
        m.part_type = Some(part_type.into());
        m.part_attrs = attrs;
        m.fs = Some(Arc::new(fs));
        m
    }

    fn usr_fs(id: &str) -> MemFs {
        MemFs::new().file("/lib/os-release", format!("ID={id}\n"))
    }

    fn attrs(priority: u64, tries: u64, successful: bool) -> u64 {
        priority << 48 | tries << 52 | u64::from(successful) << 56
    }

    const FLATCAR_USR_TYPE: &str = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6";
    const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

    #[test]
    fn flatcar_picks_the_partition_its_boot_would() {
        let root = part("/dev/sda9", "ROOT", LINUX, 0, MemFs::new().dir("/etc"));
        let pick = |a: u64, b: u64| {
            let devices = vec![
                part("/dev/sda3", "USR-A", FLATCAR_USR_TYPE, a, usr_fs("a")),
                part("/dev/sda4", "USR-B", FLATCAR_USR_TYPE, b, usr_fs("b")),
                root.clone(),
            ];
            find(&root, &devices).map(|(m, _)| m.device.clone())
        };
        assert_eq!(pick(attrs(1, 0, true), 0).as_deref(), Some("/dev/sda3"));
        // After an update: B has the higher priority and tries left.
        assert_eq!(
            pick(attrs(1, 0, true), attrs(2, 1, false)).as_deref(),
            Some("/dev/sda4")
        );
        // B failed to boot (no tries, not successful): A again.
        assert_eq!(
            pick(attrs(1, 0, true), attrs(2, 0, false)).as_deref(),
            Some("/dev/sda3")
        );
        // A tie goes to the first partition; nothing bootable falls back on the first.
        assert_eq!(
            pick(attrs(1, 0, true), attrs(1, 0, true)).as_deref(),
            Some("/dev/sda3")
        );
        assert_eq!(pick(0, 0).as_deref(), Some("/dev/sda3"));
    }

    #[test]
    fn dps_usr_of_the_roots_architecture_on_the_same_disk() {
        let (x86_64, arm64) = (DPS_ROOT_USR[1], DPS_ROOT_USR[5]);
        let root = part("/dev/sda2", "root", x86_64.1, 0, MemFs::new().dir("/etc"));
        let devices = vec![
            part("/dev/sda3", "usr-arm", arm64.2, 0, usr_fs("arm")),
            part("/dev/sdb1", "other-disk", x86_64.2, 0, usr_fs("other")),
            part(
                "/dev/sda4",
                "usr-off",
                x86_64.2,
                ATTR_NO_AUTO,
                usr_fs("off"),
            ),
            part("/dev/sda5", "usr", x86_64.2, 0, usr_fs("x")),
            root.clone(),
        ];
        let (m, why) = find(&root, &devices).unwrap();
        assert_eq!(m.device, "/dev/sda5");
        assert!(why.contains("x86-64"), "{why}");
        // A plain Linux root takes a /usr of any architecture.
        let plain = part("/dev/sda2", "root", LINUX, 0, MemFs::new().dir("/etc"));
        assert_eq!(find(&plain, &devices).unwrap().0.device, "/dev/sda3");
    }

    /// Our table against util-linux's (`sfdisk -T`), both ways: every "Linux root (ARCH)"
    /// and "Linux /usr (ARCH)" it knows is ours with the same GUID, and nothing more.
    #[test]
    fn dps_types_are_util_linuxs() {
        let out = std::process::Command::new("sfdisk")
            .args(["--label", "gpt", "-T"])
            .output()
            .expect("sfdisk (Debian package fdisk)");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut theirs = std::collections::BTreeMap::new();
        for line in text.lines() {
            let Some((guid, name)) = line.trim().split_once(char::is_whitespace) else {
                continue;
            };
            for (kind, prefix) in [("root", "Linux root ("), ("usr", "Linux /usr (")] {
                if let Some(arch) = name
                    .trim()
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix(')'))
                {
                    theirs.insert((kind, arch.to_string()), guid.to_string());
                }
            }
        }
        let mut ours = std::collections::BTreeMap::new();
        for (arch, root, usr) in DPS_ROOT_USR {
            ours.insert(("root", arch.to_string()), root.to_string());
            ours.insert(("usr", arch.to_string()), usr.to_string());
        }
        assert!(theirs.len() >= 30, "{text}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn only_roots_without_usr_and_release_need_one() {
        let g = |fs: MemFs| GuestFs::new(Arc::new(fs));
        assert!(needs_usr(&g(MemFs::new().dir("/etc").dir("/usr"))));
        assert!(needs_usr(&g(MemFs::new()
            .dir("/etc")
            .symlink("/etc/os-release", "../usr/lib/os-release"))));
        assert!(!needs_usr(&g(MemFs::new()
            .dir("/etc")
            .file("/usr/lib/os-release", "ID=x\n"))));
        assert!(!needs_usr(&g(MemFs::new().dir("/etc").dir("/usr/share"))));
        assert!(!needs_usr(&g(MemFs::new().dir("/usr"))));
    }
}
