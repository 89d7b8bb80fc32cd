//! Mountpoints from the guest's `/etc/fstab`: each entry's device resolved to one of our
//! devices, and the readable ones mounted into the guest view so a separate `/var` or
//! `/usr` is read like the guest would read it.
//!
//! A device is named by `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`, their
//! `/dev/disk/by-*/` links, a kernel name (`/dev/vda2`, `/dev/nvme0n1p2`, ... all become
//! `/dev/sda2`: we see one disk, the guest's first) or an LVM path.

use std::collections::BTreeMap;

use super::guest::{GuestFs, DEFAULT_READ_LIMIT};
use super::mountable::Mountable;
use super::text::content_lines;

/// One fstab line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    pub spec: String,
    pub mountpoint: String,
    pub fs_type: String,
    pub options: String,
}

/// Filesystem types that never hold guest files we could read (pseudo, network, swap).
const SKIPPED_TYPES: &[&str] = &[
    "swap",
    "proc",
    "sysfs",
    "devpts",
    "tmpfs",
    "devtmpfs",
    "ramfs",
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "smb3",
    "sshfs",
    "9p",
    "virtiofs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "autofs",
    "binfmt_misc",
    "hugetlbfs",
    "mqueue",
    "pstore",
    "efivarfs",
    "configfs",
    "fusectl",
    "usbfs",
    "iso9660",
    "udf",
    "none",
];

/// Most fstab entries looked at; a real fstab has a handful.
const MAX_ENTRIES: usize = 1000;

/// Parses fstab text. Comment and short lines are skipped; fields are unescaped
/// (`\040` is a space).
pub fn parse(text: &str) -> Vec<FstabEntry> {
    content_lines(text)
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(unescape_octal);
            let spec = f.next()?;
            let mountpoint = f.next()?;
            let fs_type = f.next().unwrap_or_else(|| "auto".to_string());
            let options = f.next().unwrap_or_else(|| "defaults".to_string());
            Some(FstabEntry {
                spec,
                mountpoint,
                fs_type,
                options,
            })
        })
        .take(MAX_ENTRIES)
        .collect()
}

/// Whether an entry can name a local filesystem of the disk.
fn is_candidate(e: &FstabEntry) -> bool {
    let ty = e.fs_type.as_str();
    e.mountpoint.starts_with('/')
        && !SKIPPED_TYPES.contains(&ty)
        && !ty.starts_with("fuse")
        && !e.options.split(',').any(|o| o == "bind" || o == "rbind")
}

/// What [`mount_from_fstab`] found.
#[derive(Debug, Default)]
pub struct FstabResult {
    /// Mountpoint -> device, `/` included.
    pub mountpoints: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// Reads `/etc/fstab` from `guest` (which has only the root mounted), resolves its
/// entries against `devices` and mounts the readable ones into `guest`.
pub fn mount_from_fstab(
    guest: &mut GuestFs,
    root: &Mountable,
    devices: &[Mountable],
) -> FstabResult {
    let mut out = FstabResult::default();
    out.mountpoints.insert("/".into(), root.device.clone());
    let text = match guest.read_to_string_lossy("/etc/fstab", DEFAULT_READ_LIMIT) {
        Ok(t) => t,
        Err(crate::inspect::fs::FsError::NotFound(_)) => return out,
        Err(e) => {
            out.warnings.push(format!("cannot read /etc/fstab: {e}"));
            return out;
        }
    };
    let mut entries: Vec<(String, FstabEntry)> = parse(&text)
        .into_iter()
        .filter(is_candidate)
        .map(|e| (normalise_mountpoint(&e.mountpoint), e))
        .collect();
    // Parents before children, so /var is attached before /var/lib/mysql.
    entries.sort_by_key(|(mp, _)| mp.matches('/').count());
    for (mountpoint, e) in entries {
        let Some(dev) = resolve(&e.spec, devices) else {
            out.warnings.push(format!(
                "/etc/fstab: {} for {mountpoint} does not match any device on this disk",
                e.spec
            ));
            continue;
        };
        let dev = match btrfs_subvolume(dev, &e.options, devices) {
            Ok(d) => d,
            Err(w) => {
                out.warnings.push(format!("/etc/fstab: {mountpoint}: {w}"));
                continue;
            }
        };
        if mountpoint == "/" {
            if dev.device != root.device {
                out.warnings.push(format!(
                    "/etc/fstab names {} ({}) for /, but this root was found on {}",
                    e.spec, dev.device, root.device
                ));
            }
            continue;
        }
        out.mountpoints
            .insert(mountpoint.clone(), dev.device.clone());
        match &dev.fs {
            Some(fs) => guest.mount(&mountpoint, fs.clone()),
            None => out.warnings.push(format!(
                "{mountpoint} is on {} ({}), which cannot be read yet: files under {mountpoint} are not inspected",
                dev.device,
                dev.fs_type.as_deref().unwrap_or("unrecognised content")
            )),
        }
    }
    out
}

/// For a btrfs device and an entry with `subvol=` or `subvolid=`, the mountable of that
/// subvolume (the device itself when it is the default subvolume); else `dev`.
fn btrfs_subvolume<'a>(
    dev: &'a Mountable,
    options: &str,
    devices: &'a [Mountable],
) -> Result<&'a Mountable, String> {
    let Some(sv) = &dev.subvolume else {
        return Ok(dev);
    };
    let mut path = None;
    let mut id = None;
    for o in options.split(',') {
        if let Some(v) = o.strip_prefix("subvol=") {
            path = Some(v.trim_matches('/').to_string());
        } else if let Some(v) = o.strip_prefix("subvolid=") {
            id = Some(v.parse::<u64>().map_err(|_| format!("bad subvolid={v}"))?);
        }
    }
    if path.is_none() && id.is_none() {
        return Ok(dev);
    }
    devices
        .iter()
        .find(|d| {
            d.subvolume.as_ref().is_some_and(|s| {
                s.device == sv.device
                    && id.is_none_or(|id| s.id == id)
                    && path.as_ref().is_none_or(|p| *p == s.path)
            })
        })
        .ok_or_else(|| {
            format!(
                "btrfs subvolume {} of {} not found",
                options
                    .split(',')
                    .filter(|o| o.starts_with("subvol"))
                    .collect::<Vec<_>>()
                    .join(","),
                sv.device
            )
        })
}

/// `/var/` and `/var//lib/..` are the same mountpoint as `/var` and `/var`.
fn normalise_mountpoint(p: &str) -> String {
    let mut comps: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                comps.pop();
            }
            c => comps.push(c),
        }
    }
    format!("/{}", comps.join("/"))
}

/// The device an fstab spec names, if it is on this disk.
pub fn resolve<'a>(spec: &str, devices: &'a [Mountable]) -> Option<&'a Mountable> {
    let spec = spec.trim_matches('"');
    let by = |what: &str| -> Option<(&str, String)> {
        let (kind, value) = if let Some(v) = spec.strip_prefix("UUID=") {
            ("uuid", v.trim_matches('"').to_string())
        } else if let Some(v) = spec.strip_prefix("LABEL=") {
            ("label", v.trim_matches('"').to_string())
        } else if let Some(v) = spec.strip_prefix("PARTUUID=") {
            ("partuuid", v.trim_matches('"').to_string())
        } else if let Some(v) = spec.strip_prefix("PARTLABEL=") {
            ("partlabel", v.trim_matches('"').to_string())
        } else {
            let rest = spec.strip_prefix("/dev/disk/by-")?;
            let (kind, v) = rest.split_once('/')?;
            (kind, unescape_udev(v))
        };
        (kind == what).then_some((kind, value))
    };
    let eq_ci =
        |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
    let eq = |a: &Option<String>, b: &str| a.as_deref() == Some(b);
    if let Some((_, v)) = by("uuid") {
        return devices.iter().find(|d| eq_ci(&d.uuid, &v));
    }
    if let Some((_, v)) = by("label") {
        return devices.iter().find(|d| eq(&d.label, &v));
    }
    if let Some((_, v)) = by("partuuid") {
        return devices.iter().find(|d| eq_ci(&d.part_uuid, &v));
    }
    if let Some((_, v)) = by("partlabel") {
        return devices.iter().find(|d| eq(&d.part_label, &v));
    }
    let name = guest_device_name(spec)?;
    devices
        .iter()
        .find(|d| d.device == name)
        .or_else(|| devices.iter().find(|d| d.aliases.contains(&name)))
}

/// Maps a guest kernel device name to ours. Block devices of the first disk, whatever
/// the bus (`sda`, `hda`, `vda`, `xvda`, `nvme0n1`, `mmcblk0`), become `/dev/sda[N]`;
/// `vdb`, `xvdc`, ... become the job's second, third disk (`/dev/sdb`, `/dev/sdc`).
/// `/dev/mapper/vg-lv` becomes `/dev/vg/lv`.
fn guest_device_name(spec: &str) -> Option<String> {
    let name = spec.strip_prefix("/dev/")?;
    if let Some(mapper) = name.strip_prefix("mapper/") {
        return lvm_from_mapper(mapper).or_else(|| Some(spec.to_string()));
    }
    // mdadm's `/dev/md/N` is a link to `/dev/mdN`.
    if let Some(n) = name.strip_prefix("md/") {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return Some(format!("/dev/md{n}"));
        }
    }
    for bus in ["xvd", "sd", "hd", "vd"] {
        if let Some(rest) = name.strip_prefix(bus) {
            let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            let (disk, part) = rest.split_at(letters);
            if disk.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // The job's disks are sda, sdb, ... in order, whatever bus the guest used.
            return (disk.len() == 1).then(|| format!("/dev/sd{disk}{part}"));
        }
    }
    for (prefix, disk0) in [("nvme", "0n1"), ("mmcblk", "0")] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let part = match rest.split_once('p') {
                Some((disk, part)) if disk == disk0 && part.bytes().all(|b| b.is_ascii_digit()) => {
                    part
                }
                None if rest == disk0 => "",
                _ => return None,
            };
            return Some(format!("/dev/sda{part}"));
        }
    }
    // LVM `/dev/vg/lv` and anything else: compared as written.
    Some(spec.to_string())
}

/// device-mapper names double a `-` inside a VG or LV name; the single `-` separates
/// them.
fn lvm_from_mapper(mapper: &str) -> Option<String> {
    let bytes = mapper.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let vg = mapper[..i].replace("--", "-");
            let lv = mapper[i + 1..].replace("--", "-");
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some(format!("/dev/{vg}/{lv}"));
        }
        i += 1;
    }
    None
}

/// `\040`-style octal escapes of fstab fields.
fn unescape_octal(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `\x2f`-style escapes of udev's /dev/disk/by-label names.
fn unescape_udev(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(v) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::memfs::MemFs;

    fn dev(
        name: &str,
        uuid: &str,
        label: Option<&str>,
        partuuid: &str,
        fs: Option<MemFs>,
    ) -> Mountable {
        Mountable {
            device: name.into(),
            fs_type: Some(if fs.is_some() { "ext4" } else { "xfs" }.into()),
            uuid: Some(uuid.into()),
            label: label.map(str::to_string),
            part_uuid: Some(partuuid.into()),
            part_label: Some(format!("part {name}")),
            part_type: None,
            part_attrs: 0,
            part_start: None,
            fs: fs.map(|f| Arc::new(f) as _),
            subvolume: None,
            aliases: Vec::new(),
        }
    }

    #[test]
    fn parses_and_unescapes() {
        let e = parse(
            "# c\nUUID=1 / ext4 errors=remount-ro 0 1\n/dev/sda3\t/mnt/my\\040disk vfat\nshort\n",
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].mountpoint, "/mnt/my disk");
        assert_eq!(e[1].options, "defaults");
    }

    #[test]
    fn md_arrays_resolve_by_number_and_name() {
        let mut md = dev("/dev/md127", "mduuid", None, "", None);
        md.aliases.push("/dev/md/data".into());
        let devs = vec![dev("/dev/md0", "md0", None, "", None), md];
        let r = |s: &str| resolve(s, &devs).map(|d| d.device.as_str());
        assert_eq!(r("/dev/md0"), Some("/dev/md0"));
        assert_eq!(r("/dev/md/0"), Some("/dev/md0"));
        assert_eq!(r("/dev/md/data"), Some("/dev/md127"));
        assert_eq!(r("/dev/md/other"), None);
    }

    #[test]
    fn resolves_every_spec_kind() {
        let devs = vec![
            dev("/dev/sda1", "ABCD-1234", Some("ESP"), "11111111-aaaa", None),
            dev(
                "/dev/sda2",
                "0b6c-root",
                Some("my root"),
                "22222222-bbbb",
                None,
            ),
            dev("/dev/vg0/lv-data", "lvuuid", None, "", None),
        ];
        let r = |s: &str| resolve(s, &devs).map(|d| d.device.as_str());
        assert_eq!(r("UUID=abcd-1234"), Some("/dev/sda1"));
        assert_eq!(r("UUID=\"0B6C-ROOT\""), Some("/dev/sda2"));
        assert_eq!(r("LABEL=ESP"), Some("/dev/sda1"));
        assert_eq!(r("LABEL=esp"), None);
        assert_eq!(r("PARTUUID=22222222-BBBB"), Some("/dev/sda2"));
        assert_eq!(r("PARTLABEL=part /dev/sda1"), Some("/dev/sda1"));
        assert_eq!(r("/dev/disk/by-uuid/0b6c-root"), Some("/dev/sda2"));
        assert_eq!(r("/dev/disk/by-label/my\\x20root"), Some("/dev/sda2"));
        assert_eq!(r("/dev/disk/by-partuuid/11111111-aaaa"), Some("/dev/sda1"));
        assert_eq!(r("/dev/vda2"), Some("/dev/sda2"));
        assert_eq!(r("/dev/xvda1"), Some("/dev/sda1"));
        assert_eq!(r("/dev/nvme0n1p2"), Some("/dev/sda2"));
        assert_eq!(r("/dev/mmcblk0p1"), Some("/dev/sda1"));
        assert_eq!(r("/dev/sdb1"), None);
        assert_eq!(r("/dev/nvme1n1p1"), None);
        assert_eq!(r("/dev/mapper/vg0-lv--data"), Some("/dev/vg0/lv-data"));
        assert_eq!(r("/dev/vg0/lv-data"), Some("/dev/vg0/lv-data"));
        assert_eq!(r("UUID=nope"), None);
    }

    #[test]
    fn other_disks_of_the_job_resolve_by_letter() {
        let devs = vec![dev("/dev/sdb1", "u", None, "p", None)];
        let r = |s: &str| resolve(s, &devs).map(|d| d.device.as_str());
        assert_eq!(r("/dev/vdb1"), Some("/dev/sdb1"));
        assert_eq!(r("/dev/xvdb1"), Some("/dev/sdb1"));
        assert_eq!(r("/dev/vdc1"), None);
        assert_eq!(r("/dev/vdaa1"), None);
    }

    #[test]
    fn btrfs_subvol_and_subvolid_pick_the_subvolume() {
        use crate::inspect::os::mountable::SubvolumeRef;
        let sv = |device: &str, id: u64, path: &str, fs: MemFs| {
            let mut m = dev(device, "btrfs-uuid", Some("fedora"), "", Some(fs));
            m.subvolume = Some(SubvolumeRef {
                device: "/dev/sda2".into(),
                id,
                path: path.into(),
            });
            m
        };
        let top = MemFs::new().dir("/root").dir("/home");
        let root = MemFs::new().file(
            "/etc/fstab",
            "UUID=btrfs-uuid / btrfs subvol=root,compress=zstd:1 0 0\n\
             LABEL=fedora /home btrfs subvolid=257 0 0\n\
             /dev/vda2 /top btrfs subvol=/ 0 0\n\
             UUID=btrfs-uuid /gone btrfs subvol=nope 0 0\n",
        );
        let home = MemFs::new().file("/user/.profile", "x");
        let devs = vec![
            sv("/dev/sda2", 5, "", top),
            sv("btrfsvol:/dev/sda2/root", 256, "root", root),
            sv("btrfsvol:/dev/sda2/home", 257, "home", home),
        ];
        let mut g = GuestFs::new(devs[1].fs.clone().unwrap());
        let out = mount_from_fstab(&mut g, &devs[1], &devs);
        assert_eq!(out.mountpoints["/home"], "btrfsvol:/dev/sda2/home");
        assert_eq!(out.mountpoints["/top"], "/dev/sda2");
        assert!(!out.mountpoints.contains_key("/gone"));
        assert_eq!(g.read_file("/home/user/.profile", 10).unwrap(), b"x");
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(
            out.warnings[0].contains("subvol=nope"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn mounts_readable_entries_and_warns_about_the_rest() {
        let root_fs = MemFs::new().file(
            "/etc/fstab",
            "UUID=r / ext4 defaults 0 1\nLABEL=var /var/ ext4 defaults 0 2\n/dev/vda3 /srv xfs defaults 0 2\n\
             UUID=gone /home ext4 defaults 0 2\n/dev/vda4 none swap sw 0 0\nproc /proc proc defaults 0 0\n\
             /srv/x /mnt none bind 0 0\nserver:/e /net nfs defaults 0 0\n",
        );
        let var_fs = MemFs::new().file("/lib/dpkg/status", "x");
        let devs = vec![
            dev("/dev/sda1", "r", None, "p1", Some(root_fs)),
            dev("/dev/sda2", "v", Some("var"), "p2", Some(var_fs)),
            dev("/dev/sda3", "s", None, "p3", None),
        ];
        let mut g = GuestFs::new(devs[0].fs.clone().unwrap());
        let out = mount_from_fstab(&mut g, &devs[0], &devs);
        let mps: Vec<(&str, &str)> = out
            .mountpoints
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            mps,
            vec![
                ("/", "/dev/sda1"),
                ("/srv", "/dev/sda3"),
                ("/var", "/dev/sda2")
            ]
        );
        assert_eq!(g.read_file("/var/lib/dpkg/status", 10).unwrap(), b"x");
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
        assert!(out.warnings[0].contains("/srv") || out.warnings[1].contains("/srv"));
        assert!(out.warnings.iter().any(|w| w.contains("UUID=gone")));
    }
}
