//! Roots whose OS lives on a separate `/usr` filesystem: Flatcar and CoreOS Container
//! Linux (`USR-A`/`USR-B` chosen by GPT attributes), a systemd discoverable-partitions
//! image with no fstab, and an ordinary root whose fstab mounts `/usr`.
//!
//! The disks are built by `make-disk.sh` (sfdisk with partition names, types and
//! attribute bits, mkfs.ext4 -d). Every expected value comes from what the test wrote:
//! the os-release files (the distros' published content), the attribute bits and types
//! as `sfdisk --json` reads them back, util-linux's own type table (`sfdisk -T`) to pair
//! a root type with its `/usr` type, and libosinfo's XML for the osinfo ids.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use guestkit_worker::inspect::pipeline::{self, InspectOptions};
use guestkit_worker::inspect::report::{OperatingSystem, Report};

use crate::common::{fixtures, run, tempdir};

pub(crate) const FLATCAR_3815_2_0: &str = r#"NAME="Flatcar Container Linux by Kinvolk"
ID=flatcar
ID_LIKE=coreos
VERSION=3815.2.0
VERSION_ID=3815.2.0
BUILD_ID=2024-02-12-1922
SYSEXT_LEVEL=1.0
PRETTY_NAME="Flatcar Container Linux by Kinvolk 3815.2.0 (Oklo)"
ANSI_COLOR="38;5;75"
HOME_URL="https://flatcar.org/"
BUG_REPORT_URL="https://issues.flatcar.org"
FLATCAR_BOARD="amd64-usr"
CPE_NAME="cpe:2.3:o:flatcar-linux:flatcar_linux:3815.2.0:*:*:*:*:*:*:*"
"#;

pub(crate) const FLATCAR_3815_2_1: &str = r#"NAME="Flatcar Container Linux by Kinvolk"
ID=flatcar
ID_LIKE=coreos
VERSION=3815.2.1
VERSION_ID=3815.2.1
BUILD_ID=2024-03-12-1739
SYSEXT_LEVEL=1.0
PRETTY_NAME="Flatcar Container Linux by Kinvolk 3815.2.1 (Oklo)"
ANSI_COLOR="38;5;75"
HOME_URL="https://flatcar.org/"
BUG_REPORT_URL="https://issues.flatcar.org"
FLATCAR_BOARD="amd64-usr"
CPE_NAME="cpe:2.3:o:flatcar-linux:flatcar_linux:3815.2.1:*:*:*:*:*:*:*"
"#;

pub(crate) const COREOS_2512_3_0: &str = r#"NAME="Container Linux by CoreOS"
ID=coreos
VERSION=2512.3.0
VERSION_ID=2512.3.0
BUILD_ID=2020-05-26-2133
PRETTY_NAME="Container Linux by CoreOS 2512.3.0 (Oklo)"
ANSI_COLOR="38;5;75"
HOME_URL="https://coreos.com/"
BUG_REPORT_URL="https://issues.coreos.com"
COREOS_BOARD="amd64-usr"
"#;

const FEDORA_40: &str = r#"NAME="Fedora Linux"
VERSION="40 (Forty)"
ID=fedora
VERSION_ID=40
VERSION_CODENAME=""
PLATFORM_ID="platform:f40"
PRETTY_NAME="Fedora Linux 40 (Forty)"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:40"
DEFAULT_HOSTNAME="fedora"
HOME_URL="https://fedoraproject.org/"
DOCUMENTATION_URL="https://docs.fedoraproject.org/en-US/fedora/f40/system-administrators-guide/"
SUPPORT_URL="https://ask.fedoraproject.org/"
BUG_REPORT_URL="https://bugzilla.redhat.com/"
REDHAT_BUGZILLA_PRODUCT="Fedora"
REDHAT_BUGZILLA_PRODUCT_VERSION=40
REDHAT_SUPPORT_PRODUCT="Fedora"
REDHAT_SUPPORT_PRODUCT_VERSION=40
SUPPORT_END=2025-05-13
"#;

const FEDORA_39: &str = r#"NAME="Fedora Linux"
VERSION="39 (Thirty Nine)"
ID=fedora
VERSION_ID=39
VERSION_CODENAME=""
PLATFORM_ID="platform:f39"
PRETTY_NAME="Fedora Linux 39 (Thirty Nine)"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:39"
DEFAULT_HOSTNAME="fedora"
HOME_URL="https://fedoraproject.org/"
SUPPORT_END=2024-11-12
"#;

const UBUNTU_24_04: &str = r#"PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
"#;

pub(crate) fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub(crate) fn link(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

/// The state partition of these OSes: `/etc` and an empty `/usr` mountpoint, the
/// release file a dangling link into `/usr`, no fstab.
fn root_tree(dir: &Path, hostname: &str) -> std::path::PathBuf {
    let r = dir.join("root");
    write(&r, "/etc/hostname", &format!("{hostname}\n"));
    write(&r, "/etc/machine-id", "5f2c1a7e0b9d4c3e8a6f1b2d3c4e5f60\n");
    link(&r, "/etc/os-release", "../usr/lib/os-release");
    link(&r, "/bin", "usr/bin");
    for d in ["usr", "home", "root", "var/log"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    r
}

/// A `/usr` tree: its os-release and a host binary (for the architecture). CoreOS
/// Container Linux's also has `share/coreos` (here its `update.conf`) and `local`, as
/// it ships them.
fn usr_tree(dir: &Path, name: &str, os_release: &str) -> std::path::PathBuf {
    let u = dir.join(name);
    write(&u, "/lib/os-release", os_release);
    std::fs::create_dir_all(u.join("bin")).unwrap();
    std::fs::copy("/bin/sh", u.join("bin/sh")).unwrap();
    if self::os_release(os_release)["ID"] == "coreos" {
        write(
            &u,
            "/share/coreos/update.conf",
            "SERVER=https://public.update.core-os.net/v1/update/\n",
        );
        std::fs::create_dir_all(u.join("local")).unwrap();
    }
    u
}

pub(crate) fn make_disk(out: &Path, parts: &[String]) {
    run(Command::new(fixtures().join("make-disk.sh"))
        .arg(out)
        .arg("gpt")
        .args(parts));
}

/// One partition as `sfdisk --json` reads it back.
struct Part {
    device: String,
    part_type: String,
    name: String,
    bits: BTreeSet<u32>,
}

fn sfdisk_parts(disk: &Path) -> Vec<Part> {
    let out = run(Command::new("sfdisk").arg("--json").arg(disk));
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    json["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, p)| Part {
            device: format!("/dev/sda{}", i + 1),
            part_type: p["type"].as_str().unwrap().to_string(),
            name: p["name"].as_str().unwrap_or("").to_string(),
            bits: p["attrs"]
                .as_str()
                .and_then(|a| a.split("GUID:").nth(1))
                .map(|b| b.split(',').map(|n| n.trim().parse().unwrap()).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// os-release as this test reads it.
pub(crate) fn os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// libosinfo's releases (Debian package osinfo-db): `<distro>`, `<version>` and the
/// short ids of each OS entry.
pub(crate) fn libosinfo_releases() -> Vec<(String, String, BTreeSet<String>)> {
    let tag = |xml: &str, name: &str| -> Vec<String> {
        xml.split(&format!("<{name}>"))
            .skip(1)
            .filter_map(|r| r.split(&format!("</{name}>")).next().map(str::to_string))
            .collect()
    };
    let mut out = Vec::new();
    for vendor in std::fs::read_dir("/usr/share/osinfo/os").expect("osinfo-db installed") {
        for file in std::fs::read_dir(vendor.unwrap().path()).unwrap() {
            let xml = std::fs::read_to_string(file.unwrap().path()).unwrap_or_default();
            // The OS's own fields come before its media and trees.
            let head = xml.split("<media").next().unwrap_or(&xml);
            let first = |name| tag(head, name).into_iter().next().unwrap_or_default();
            out.push((
                first("distro"),
                first("version"),
                tag(head, "short-id").into_iter().collect(),
            ));
        }
    }
    assert!(out.len() > 500, "osinfo-db has {} entries", out.len());
    out
}

/// Our osinfo id against libosinfo's entry for (`distro`, `version`): one of its ids
/// when the database has the release, none when it has no release of the distro.
pub(crate) fn check_osinfo(osinfo: Option<&str>, distro: &str, version: &str) {
    let releases = libosinfo_releases();
    let of_distro: Vec<_> = releases.iter().filter(|r| r.0 == distro).collect();
    match (osinfo, of_distro.iter().find(|r| r.1 == version)) {
        (Some(id), Some(entry)) => {
            assert!(entry.2.contains(id), "{id}: libosinfo says {:?}", entry.2)
        }
        (None, _) => assert!(of_distro.is_empty(), "libosinfo knows {distro}"),
        // A release newer than this osinfo-db: nothing to compare with.
        (Some(id), None) => {
            eprintln!("{distro} {version}: libosinfo has no entry to check {id} against")
        }
    }
}

pub(crate) fn inspect(image: &Path) -> Report {
    let opts = InspectOptions {
        image_roots: vec![image.parent().unwrap().to_path_buf()],
        ..InspectOptions::default()
    };
    pipeline::inspect_with_stats(image, &opts)
        .unwrap_or_else(|e| panic!("{}: {e}", image.display()))
        .0
}

/// Checks the one OS of `report` against the os-release text on its `/usr`, the
/// hostname written on its root and the two devices.
fn check(report: &Report, release: &str, hostname: &str, root: &str, usr: &str) -> OperatingSystem {
    assert_eq!(
        report.operating_systems.len(),
        1,
        "{:#?}",
        report.operating_systems
    );
    let os = report.operating_systems[0].clone();
    let rel = os_release(release);
    assert_eq!(os.os_type, "linux");
    assert_eq!(os.distro.as_deref(), Some(rel["ID"].as_str()));
    assert_eq!(
        os.product_name.as_deref(),
        Some(rel["PRETTY_NAME"].as_str())
    );
    let mut v = rel["VERSION_ID"]
        .split('.')
        .map(|n| n.parse::<u32>().unwrap());
    assert_eq!(os.major_version, v.next());
    assert_eq!(os.minor_version, Some(v.next().unwrap_or(0)));
    assert_eq!(os.hostname.as_deref(), Some(hostname));
    assert_eq!(os.arch.as_deref(), Some(std::env::consts::ARCH));
    let want: BTreeMap<String, String> = [("/", root), ("/usr", usr)]
        .into_iter()
        .map(|(m, d)| (m.to_string(), d.to_string()))
        .collect();
    assert_eq!(os.mountpoints, want);
    check_osinfo(os.osinfo.as_deref(), &rel["ID"], &rel["VERSION_ID"]);
    os
}

/// The partition Flatcar's GRUB (`gptprio.next`) boots among `usr`: highest priority
/// (bits 48-51) that is successful (56) or has tries left (52-55); the first on a tie.
fn gptprio_choice<'a>(usr: &[&'a Part]) -> &'a Part {
    let field = |p: &Part, from: u32| {
        (0..4)
            .filter(|b| p.bits.contains(&(from + b)))
            .map(|b| 1 << b)
            .sum::<u32>()
    };
    let mut best: Option<&Part> = None;
    for p in usr {
        let (prio, tries) = (field(p, 48), field(p, 52));
        if prio == 0 || (tries == 0 && !p.bits.contains(&56)) {
            continue;
        }
        if best.is_none_or(|b| field(b, 48) < prio) {
            best = Some(p);
        }
    }
    best.expect("one bootable USR partition")
}

/// Flatcar's nine partitions (`USR-A` 3, `USR-B` 4, `ROOT` 9) with the given attribute
/// bits on the two `/usr` partitions. The root has the update settings where the OS of
/// USR-A keeps them: `/etc/flatcar/update.conf`, or `/etc/coreos/update.conf` on CoreOS
/// Container Linux.
pub(crate) fn flatcar_disk(
    dir: &Path,
    a: (&str, &str),
    b: (&str, &str),
    hostname: &str,
) -> std::path::PathBuf {
    let root = root_tree(dir, hostname);
    let vendor = if os_release(a.0)["ID"] == "coreos" {
        "coreos"
    } else {
        "flatcar"
    };
    write(
        &root,
        &format!("/etc/{vendor}/update.conf"),
        "GROUP=stable\n",
    );
    let usr_a = usr_tree(dir, "usr-a", a.0);
    let usr_b = usr_tree(dir, "usr-b", b.0);
    let usr_type = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6";
    let reserved = "C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0";
    let disk = dir.join("flatcar.raw");
    make_disk(
        &disk,
        &[
            "U:vfat:8:-::::EFI-SYSTEM:".to_string(),
            "21686148-6449-6E6F-744E-656564454649:empty:1:-::::BIOS-BOOT:".to_string(),
            format!("{usr_type}:ext4:8:{}::::USR-A:{}", usr_a.display(), a.1),
            format!("{usr_type}:ext4:8:{}::::USR-B:{}", usr_b.display(), b.1),
            format!("{usr_type}:empty:1:-::::ROOT-C:"),
            format!("{reserved}:empty:1:-::::OEM:"),
            format!("{reserved}:empty:1:-::::OEM-CONFIG:"),
            "L:empty:1:-::::unused:".to_string(),
            format!(
                "3884DD41-8582-4404-B9A8-E9B84F2DF50E:ext4:16:{}::ROOT::ROOT:",
                root.display()
            ),
        ],
    );
    disk
}

#[test]
fn flatcar_and_coreos_usr_a_or_usr_b_by_gpt_attributes() {
    // (USR-A release, bits), (USR-B release, bits): first boot (A successful, B empty of
    // priority), after an update (B priority 2 with a try left), a failed update (B
    // without tries: A again), and CoreOS Container Linux.
    let cases = [
        ((FLATCAR_3815_2_0, "48,56"), (FLATCAR_3815_2_1, "")),
        ((FLATCAR_3815_2_0, "48,56"), (FLATCAR_3815_2_1, "49,52")),
        ((FLATCAR_3815_2_0, "48,56"), (FLATCAR_3815_2_1, "49")),
        ((COREOS_2512_3_0, "48,56"), (COREOS_2512_3_0, "")),
    ];
    for (i, (a, b)) in cases.into_iter().enumerate() {
        let dir = tempdir();
        let hostname = format!("node-{i}");
        let disk = flatcar_disk(dir.path(), a, b, &hostname);
        let parts = sfdisk_parts(&disk);
        let usr: Vec<&Part> = parts
            .iter()
            .filter(|p| p.name == "USR-A" || p.name == "USR-B")
            .collect();
        let active = gptprio_choice(&usr);
        let release = if active.name == "USR-A" { a.0 } else { b.0 };
        let root = parts.iter().find(|p| p.name == "ROOT").unwrap();
        let report = inspect(&disk);
        let os = check(&report, release, &hostname, &root.device, &active.device);
        eprintln!(
            "case {i}: {} from {} ({:?})",
            os.product_name.unwrap(),
            active.name,
            active.bits
        );
    }
}

/// A systemd discoverable-partitions disk, no fstab: an x86-64 root, an ARM-64 `/usr`
/// and a no-auto (bit 63) x86-64 `/usr` as decoys (Fedora 39), and the x86-64 `/usr`
/// (Fedora 40). Returns the disk and the type GUIDs of the x86-64 root and `/usr`, as
/// util-linux's table (`sfdisk -T`) names them.
pub(crate) fn dps_disk(dir: &Path) -> (std::path::PathBuf, String, String) {
    let root = root_tree(dir, "dps-image");
    let f40 = usr_tree(dir, "usr40", FEDORA_40);
    let f39 = usr_tree(dir, "usr39", FEDORA_39);
    // util-linux's table pairs each root type with the /usr type of its architecture.
    let types =
        String::from_utf8(run(Command::new("sfdisk").args(["--label", "gpt", "-T"]))).unwrap();
    let type_of = |name: &str| {
        types
            .lines()
            .find(|l| l.trim_end().ends_with(name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name} not in sfdisk -T"))
            .to_string()
    };
    let (root_x86, usr_x86, usr_arm) = (
        type_of("Linux root (x86-64)"),
        type_of("Linux /usr (x86-64)"),
        type_of("Linux /usr (ARM-64)"),
    );
    let disk = dir.join("dps.raw");
    make_disk(
        &disk,
        &[
            "U:vfat:8:-::::esp:".to_string(),
            format!("{root_x86}:ext4:16:{}::::root:", root.display()),
            // Another architecture's /usr, and one marked no-auto (bit 63): not mounted.
            format!("{usr_arm}:ext4:8:{}::::usr-arm64:", f39.display()),
            format!("{usr_x86}:ext4:8:{}::::usr-off:63", f39.display()),
            format!("{usr_x86}:ext4:8:{}::::usr:", f40.display()),
        ],
    );
    (disk, root_x86, usr_x86)
}

#[test]
fn discoverable_partitions_usr_of_the_roots_architecture() {
    let dir = tempdir();
    let (disk, root_x86, usr_x86) = dps_disk(dir.path());
    let parts = sfdisk_parts(&disk);
    let root_part = parts.iter().find(|p| p.part_type == root_x86).unwrap();
    // The generator's choice, from what sfdisk reads back: the root's architecture's
    // /usr type, without the no-auto bit.
    let usr_part = parts
        .iter()
        .find(|p| p.part_type == usr_x86 && !p.bits.contains(&63))
        .unwrap();
    let report = inspect(&disk);
    let os = check(
        &report,
        FEDORA_40,
        "dps-image",
        &root_part.device,
        &usr_part.device,
    );
    assert_eq!(os.package_management.as_deref(), Some("dnf"));
}

/// An Ubuntu 24.04 root whose fstab mounts `/usr` (by UUID) from the second partition,
/// which holds the os-release.
pub(crate) fn fstab_usr_disk(dir: &Path) -> std::path::PathBuf {
    let root = root_tree(dir, "noble");
    let (root_uuid, usr_uuid) = (
        "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f",
        "0d9e8f7a-6b5c-4d3e-9f1a-2b3c4d5e6f70",
    );
    write(
        &root,
        "/etc/fstab",
        &format!("UUID={root_uuid} / ext4 defaults 0 1\nUUID={usr_uuid} /usr ext4 defaults 0 2\n"),
    );
    let usr = usr_tree(dir, "usr", UBUNTU_24_04);
    let disk = dir.join("fstab.raw");
    make_disk(
        &disk,
        &[
            format!("L:ext4:16:{}:{root_uuid}::", root.display()),
            format!("L:ext4:8:{}:{usr_uuid}::", usr.display()),
        ],
    );
    disk
}

#[test]
fn fstab_mounts_a_separate_usr() {
    let dir = tempdir();
    let disk = fstab_usr_disk(dir.path());
    let report = inspect(&disk);
    let os = check(&report, UBUNTU_24_04, "noble", "/dev/sda1", "/dev/sda2");
    assert_eq!(os.package_management.as_deref(), Some("apt"));
}
