//! Windows: registry hives written by our test writer (`common/regf.rs`) and checked
//! value by value against hivex (`hivexget`), then read by our hive reader; and a
//! Windows skeleton disk (GPT and MBR, NTFS with the hives, an LZNT1-compressed
//! config directory, a real PE header on cmd.exe) inspected end to end.

use std::path::Path;
use std::process::Command;

use guestkit_worker::inspect::os::windows::hive::{Hive, HiveError, RegValue};

use crate::common::regf::{self, multi_sz, utf16z, Key};
use crate::common::{run, tempdir, Rng};

/// A hive with every value type, a big-data value, an `ri` index and non-ASCII names.
fn sample_hive() -> Key {
    let mut root = Key::new("ROOT");
    root.at("Types")
        .sz("Sz", "plain text")
        .set(
            "Expand",
            regf::REG_EXPAND_SZ,
            utf16z("%SystemRoot%\\system32"),
        )
        .set(
            "Multi",
            regf::REG_MULTI_SZ,
            multi_sz(&["one", "twö", "three"]),
        )
        .dword("Dword", 0xdead_beef)
        .set(
            "DwordBe",
            regf::REG_DWORD_BE,
            0x0102_0304u32.to_be_bytes().to_vec(),
        )
        .set(
            "Qword",
            regf::REG_QWORD,
            0x1122_3344_5566_7788u64.to_le_bytes().to_vec(),
        )
        .set("Binary", regf::REG_BINARY, vec![1, 2, 3, 4, 5, 6, 7])
        .set("Tiny", regf::REG_BINARY, vec![9])
        .set(
            "Big",
            regf::REG_BINARY,
            (0..40000u32).map(|i| (i * 7 % 251) as u8).collect(),
        )
        .sz("", "the default value")
        .sz("Nön-ÄSCII ñame", "välue 日本");
    for i in 0..40 {
        root.at(&format!("Many\\Child{i:02}")).dword("Index", i);
    }
    root.at("Ünïcödé Kéy\\Sub").sz("x", "y");
    root
}

/// hivex's rendering of one value (`hivexget` prints DWORDs signed, binary raw).
fn hivexget(hive: &Path, key: &str, value: &str) -> Vec<u8> {
    run(Command::new("hivexget")
        .arg(hive)
        .arg(key)
        .arg(if value.is_empty() { "@" } else { value }))
}

/// Our value rendered the way hivexget renders it.
fn as_hivexget(v: &RegValue) -> Vec<u8> {
    match v {
        RegValue::Sz(s) | RegValue::ExpandSz(s) => format!("{s}\n").into_bytes(),
        RegValue::MultiSz(l) => l
            .iter()
            .map(|s| format!("{s}\n"))
            .collect::<String>()
            .into_bytes(),
        RegValue::Dword(d) => format!("{}\n", *d as i32).into_bytes(),
        RegValue::Qword(q) => format!("{}\n", *q as i64).into_bytes(),
        RegValue::Binary(b) | RegValue::Other { data: b, .. } => b.clone(),
    }
}

/// Compares every value under `path` of `spec` (recursively) with hivexget; returns
/// how many were compared.
fn compare_all(file: &Path, hive: &Hive, spec: &Key, path: &str) -> usize {
    let k = hive
        .key(path)
        .unwrap()
        .unwrap_or_else(|| panic!("{path} missing"));
    let mut n = 0;
    let ours = hive.values(&k).unwrap();
    assert_eq!(ours.len(), spec.values.len(), "{path}");
    for (name, v) in &ours {
        let theirs = hivexget(file, if path.is_empty() { "\\" } else { path }, name);
        let mine = as_hivexget(v);
        assert!(
            theirs == mine || theirs == [mine.as_slice(), b"\n"].concat(),
            "{path}\\{name}: ours {v:?}, hivexget {:?}",
            String::from_utf8_lossy(&theirs)
        );
        n += 1;
    }
    let subs = hive.subkeys(&k).unwrap();
    assert_eq!(subs.len(), spec.children.len(), "{path}");
    for child in &spec.children {
        n += compare_all(file, hive, child, &format!("{path}\\{}", child.name));
    }
    n
}

#[test]
fn hive_values_match_hivexget() {
    let dir = tempdir();
    let path = dir.path().join("hive");
    let spec = sample_hive();
    std::fs::write(&path, regf::build(&spec, (1, 1))).unwrap();
    let hive = Hive::parse(std::fs::read(&path).unwrap(), &[]).unwrap();
    assert!(hive.warnings().is_empty());
    let n = compare_all(&path, &hive, &spec, "");
    eprintln!("hive: {n} values equal to hivexget's");
    // Case-insensitive lookups, non-ASCII included.
    let k = hive.key("types").unwrap().unwrap();
    assert_eq!(
        hive.value(&k, "NÖN-äscii ÑAME").unwrap(),
        Some(RegValue::Sz("välue 日本".into()))
    );
    assert!(hive.key("ÜNÏCÖDÉ KÉY\\sub").unwrap().is_some());
    assert_eq!(hive.key("Many\\Child39").unwrap().unwrap().name, "Child39");
    assert!(hive.key("Many\\Child40").unwrap().is_none());
    let big = hive.value(&k, "Big").unwrap().unwrap();
    assert_eq!(big.as_bytes().unwrap().len(), 40000);
}

#[test]
fn dirty_hives_warn_and_hostile_hives_give_typed_errors() {
    let spec = sample_hive();
    let dirty = regf::build(&spec, (5, 4));
    let hive = Hive::parse(dirty, &[]).unwrap();
    assert!(
        hive.warnings()[0].contains("dirty"),
        "{:?}",
        hive.warnings()
    );
    assert!(hive.key("Types").unwrap().is_some());

    let clean = regf::build(&spec, (1, 1));
    let mut bad = clean.clone();
    bad[200] ^= 1;
    assert!(matches!(
        Hive::parse(bad, &[]),
        Err(HiveError::Corrupt { offset: 508, .. })
    ));

    // Random damage in the bins: a result or a typed error, never a panic or hang.
    let mut rng = Rng(0x7265_6766);
    for _ in 0..3000 {
        let mut h = clean.clone();
        for _ in 0..1 + rng.below(8) {
            let at = 4096 + rng.below((h.len() - 4096) as u64) as usize;
            h[at] = rng.byte();
        }
        let Ok(hive) = Hive::parse(h, &[]) else {
            continue;
        };
        walk(&hive);
    }
}

/// Reads every key and value reachable (bounded depth), ignoring errors.
fn walk(hive: &Hive) {
    fn rec(hive: &Hive, k: &guestkit_worker::inspect::os::windows::hive::Key, depth: usize) {
        if depth > 8 {
            return;
        }
        let _ = hive.values(k);
        if let Ok(subs) = hive.subkeys(k) {
            for s in subs.iter().take(64) {
                rec(hive, s, depth + 1);
            }
        }
    }
    if let Ok(r) = hive.root() {
        rec(hive, &r, 0);
    }
}

const GPT_PART_GUID: &str = "6a1b7f2e-5c4d-4e3f-9a8b-1c2d3e4f5a6b";
const MBR_SIGNATURE: u32 = 0x1234_abcd;
const PART_START: u64 = 1 << 20;

/// A GUID's 16 bytes in Windows' mixed-endian order.
fn guid_bytes(g: &str) -> Vec<u8> {
    let hex: String = g.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut out = vec![b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]];
    out.extend(&b[8..]);
    out
}

fn software_hive() -> Key {
    let mut r = Key::new("ROOT");
    r.at("Microsoft\\Windows NT\\CurrentVersion")
        .sz("ProductName", "Windows Server 2022 Datacenter")
        .sz("InstallationType", "Server")
        .sz("CurrentVersion", "6.3")
        .dword("CurrentMajorVersionNumber", 10)
        .dword("CurrentMinorVersionNumber", 0)
        .sz("CurrentBuildNumber", "20348");
    let u = "Microsoft\\Windows\\CurrentVersion\\Uninstall";
    r.at(&format!("{u}\\{{1111-Tool}}"))
        .sz("DisplayName", "Ünïcödé Tööl 日本")
        .sz("DisplayVersion", "1.2.3")
        .sz("Publisher", "ACME Ltd")
        .sz("InstallLocation", "C:\\Program Files\\Tool")
        .sz("URLInfoAbout", "https://example.com/tool")
        .sz("Comments", "a tool");
    r.at(&format!("{u}\\NoDisplayName"))
        .sz("DisplayVersion", "9.9");
    r.at(&format!("WOW6432Node\\{u}\\Legacy32"))
        .sz("DisplayName", "Legacy 32-bit App")
        .sz("DisplayVersion", "4.5");
    r.at("Microsoft\\Windows\\CurrentVersion\\Policies\\System")
        .dword("EnableLUA", 0);
    r
}

fn system_hive() -> Key {
    let mut r = Key::new("ROOT");
    r.at("Select")
        .dword("Current", 2)
        .dword("Default", 2)
        .dword("LastKnownGood", 1);
    r.at("ControlSet001\\Services\\Tcpip\\Parameters")
        .sz("Hostname", "WRONG-CONTROL-SET");
    let cs = "ControlSet002";
    r.at(&format!("{cs}\\Services\\Tcpip\\Parameters"))
        .sz("Hostname", "WIN-SRV-01")
        .sz("NameServer", "");
    r.at(&format!(
        "{cs}\\Services\\Tcpip\\Parameters\\Interfaces\\{{0a1b2c3d-0000-0000-0000-000000000001}}"
    ))
    .dword("EnableDHCP", 0)
    .set("IPAddress", regf::REG_MULTI_SZ, multi_sz(&["192.168.10.5"]))
    .set(
        "SubnetMask",
        regf::REG_MULTI_SZ,
        multi_sz(&["255.255.255.0"]),
    )
    .sz("NameServer", "192.168.10.1,1.1.1.1");
    r.at(&format!(
        "{cs}\\Services\\Tcpip\\Parameters\\Interfaces\\{{0a1b2c3d-0000-0000-0000-000000000002}}"
    ))
    .dword("EnableDHCP", 1);
    for (name, start, display) in [
        ("viostor", 0, Some("Red Hat VirtIO SCSI controller")),
        ("netkvm", 3, None),
        ("Spooler", 2, Some("Print Spooler")),
        ("RemoteRegistry", 4, Some("Remote Registry")),
        ("Tcpip", 1, None),
    ] {
        let k = r.at(&format!("{cs}\\Services\\{name}"));
        k.dword("Start", start);
        if let Some(d) = display {
            k.sz("DisplayName", d);
        }
    }
    r.at(&format!("{cs}\\Services\\NoStartValue"))
        .sz("DisplayName", "x");
    r.at(&format!("{cs}\\Control\\Terminal Server"))
        .dword("fDenyTSConnections", 0);
    let fw = format!("{cs}\\Services\\SharedAccess\\Parameters\\FirewallPolicy");
    r.at(&format!("{fw}\\DomainProfile"))
        .dword("EnableFirewall", 0);
    r.at(&format!("{fw}\\PublicProfile"))
        .dword("EnableFirewall", 1);
    let mut gpt = b"DMIO:ID:".to_vec();
    gpt.extend(guid_bytes(GPT_PART_GUID));
    let mut mbr = MBR_SIGNATURE.to_le_bytes().to_vec();
    mbr.extend(PART_START.to_le_bytes());
    let mut elsewhere = 0x0bad_cafeu32.to_le_bytes().to_vec();
    elsewhere.extend(PART_START.to_le_bytes());
    r.at("MountedDevices")
        .set("\\DosDevices\\C:", regf::REG_BINARY, gpt)
        .set("\\DosDevices\\E:", regf::REG_BINARY, mbr)
        .set("\\DosDevices\\Z:", regf::REG_BINARY, elsewhere)
        .set(
            "\\??\\Volume{1b2c3d4e-0000-0000-0000-000000000000}",
            regf::REG_BINARY,
            vec![1; 12],
        );
    r
}

fn sam_hive() -> Key {
    let mut r = Key::new("ROOT");
    let users = "SAM\\Domains\\Account\\Users";
    for (name, rid, disabled) in [
        ("Administrator", 500u32, false),
        ("Guest", 501, true),
        ("Jöhn", 1001, false),
    ] {
        r.at(&format!("{users}\\Names\\{name}"))
            .set("", rid, Vec::new());
        let mut f = vec![0u8; 0x50];
        f[0x38] = if disabled { 0x11 } else { 0x10 };
        r.at(&format!("{users}\\{rid:08X}"))
            .set("F", regf::REG_BINARY, f);
    }
    r
}

/// A PE32+ header for x86-64 (what `file` and our reader look at).
fn cmd_exe() -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[..2].copy_from_slice(b"MZ");
    b[0x3c] = 0x80;
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    b[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
    b[0x86..0x88].copy_from_slice(&1u16.to_le_bytes()); // sections
    b[0x94..0x96].copy_from_slice(&0xf0u16.to_le_bytes()); // optional header size
    b[0x96..0x98].copy_from_slice(&0x22u16.to_le_bytes()); // executable, large address aware
    b[0x98..0x9a].copy_from_slice(&0x20bu16.to_le_bytes()); // PE32+
    b
}

/// The NTFS partition of the skeleton and the GPT and MBR disks holding it.
fn windows_disks(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let d = dir.display();
    for (name, spec) in [
        ("SOFTWARE", software_hive()),
        ("SYSTEM", system_hive()),
        ("SAM", sam_hive()),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, regf::build(&spec, (1, 1))).unwrap();
    }
    std::fs::write(dir.join("cmd.exe"), cmd_exe()).unwrap();
    std::fs::create_dir(dir.join("mnt")).unwrap();
    crate::common::sh(&format!(
        r#"cd '{d}'
truncate -s 40M part.img
mkntfs -F -Q -L Windows part.img >/dev/null 2>&1
ntfs-3g part.img mnt
trap 'cd /; fusermount -u "{d}/mnt" 2>/dev/null || true' EXIT
mkdir -p mnt/Windows/System32/config mnt/Windows/System32/drivers "mnt/Program Files/Ünïcödé Tööl"
# The config directory is compressed, so the hives are stored LZNT1.
setfattr -h -v 0x00000800 -n system.ntfs_attrib_be mnt/Windows/System32/config
cp SOFTWARE SYSTEM SAM mnt/Windows/System32/config/
cp cmd.exe mnt/Windows/System32/cmd.exe
head -c 8192 /dev/zero > mnt/Windows/System32/drivers/viostor.sys
cd /
fusermount -u '{d}/mnt'
trap - EXIT
for i in $(seq 100); do fuser -s '{d}/part.img' 2>/dev/null || break; sleep 0.05; done
cd '{d}'
truncate -s 64M gpt.img mbr.img
printf 'label: gpt\nstart=2048, size=81920, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid={GPT_PART_GUID}\n' | sfdisk -q gpt.img
printf 'label: dos\nlabel-id: 0x{MBR_SIGNATURE:08x}\nstart=2048, size=81920, type=7\n' | sfdisk -q mbr.img
dd if=part.img of=gpt.img bs=1M seek=1 conv=notrunc status=none
dd if=part.img of=mbr.img bs=1M seek=1 conv=notrunc status=none
"#
    ));
    // The hives really are LZNT1-compressed on the volume.
    let info = String::from_utf8(run(Command::new("ntfsinfo")
        .arg("-F")
        .arg("/Windows/System32/config/SOFTWARE")
        .arg(dir.join("part.img"))))
    .unwrap();
    assert!(info.contains("COMPRESSED"), "{info}");
    (dir.join("gpt.img"), dir.join("mbr.img"))
}

#[test]
fn windows_skeleton_is_inspected_end_to_end() {
    use guestkit_worker::inspect::pipeline::{inspect, InspectOptions};
    let dir = tempdir();
    let (gpt, mbr) = windows_disks(dir.path());
    // Every hive value is what hivex reads too.
    let config = |name: &str| dir.path().join(name);
    let mut compared = 0;
    for (name, spec) in [
        ("SOFTWARE", software_hive()),
        ("SYSTEM", system_hive()),
        ("SAM", sam_hive()),
    ] {
        let hive = Hive::parse(std::fs::read(config(name)).unwrap(), &[]).unwrap();
        compared += compare_all(&config(name), &hive, &spec, "");
    }
    eprintln!("windows hives: {compared} values equal to hivexget's");

    let started = std::time::Instant::now();
    let report = inspect(&gpt, &InspectOptions::default()).unwrap();
    eprintln!("windows skeleton inspected in {:?}", started.elapsed());
    assert_eq!(report.operating_systems.len(), 1, "{:?}", report.warnings);
    let os = &report.operating_systems[0];
    assert_eq!(os.root, "/dev/sda1");
    assert_eq!(
        (os.os_type.as_str(), os.distro.as_deref()),
        ("windows", Some("windows"))
    );
    assert_eq!(
        os.product_name.as_deref(),
        Some("Windows Server 2022 Datacenter")
    );
    assert_eq!(os.product_variant.as_deref(), Some("Server"));
    assert_eq!((os.major_version, os.minor_version), (Some(10), Some(0)));
    assert_eq!(os.build_id.as_deref(), Some("20348"));
    assert_eq!(os.osinfo.as_deref(), Some("win2k22"));
    assert_eq!(os.arch.as_deref(), Some("x86_64"));
    assert_eq!(os.hostname.as_deref(), Some("WIN-SRV-01"));
    assert_eq!(os.windows_systemroot.as_deref(), Some("/Windows"));
    assert_eq!(
        os.windows_current_control_set.as_deref(),
        Some("ControlSet002")
    );
    let drives: Vec<(&str, &str)> = os
        .drive_mappings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(drives, [("C", "/dev/sda1")]);

    let apps: Vec<(&str, Option<&str>, &str)> = os
        .applications
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.display_name.as_deref(),
                a.version.as_str(),
            )
        })
        .collect();
    assert_eq!(
        apps,
        [
            ("{1111-Tool}", Some("Ünïcödé Tööl 日本"), "1.2.3"),
            ("Legacy32", Some("Legacy 32-bit App"), "4.5")
        ]
    );
    let tool = &os.applications[0];
    assert_eq!(
        (
            tool.publisher.as_deref(),
            tool.install_path.as_deref(),
            tool.url.as_deref(),
            tool.description.as_deref()
        ),
        (
            Some("ACME Ltd"),
            Some("C:\\Program Files\\Tool"),
            Some("https://example.com/tool"),
            Some("a tool")
        )
    );

    let services: Vec<(&str, bool, Option<&str>, Option<&str>)> = os
        .services
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.enabled,
                s.start.as_deref(),
                s.display_name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("netkvm", false, Some("manual"), None),
            (
                "RemoteRegistry",
                false,
                Some("disabled"),
                Some("Remote Registry")
            ),
            ("Spooler", true, Some("auto"), Some("Print Spooler")),
            ("Tcpip", true, Some("system"), None),
            (
                "viostor",
                true,
                Some("boot"),
                Some("Red Hat VirtIO SCSI controller")
            ),
        ]
    );
    assert!(os.services.iter().all(|s| s.kind == "windows"));

    assert_eq!(os.security.rdp_enabled, Some(true));
    assert_eq!(os.security.uac_enabled, Some(false));
    assert_eq!(os.security.firewall.as_deref(), Some("windows-firewall"));

    let ifaces: Vec<(&str, &str, Vec<&str>)> = os
        .network
        .interfaces
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                i.method.as_deref().unwrap_or(""),
                i.addresses.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        ifaces,
        [
            (
                "{0a1b2c3d-0000-0000-0000-000000000001}",
                "static",
                vec!["192.168.10.5/24"]
            ),
            ("{0a1b2c3d-0000-0000-0000-000000000002}", "dhcp", vec![]),
        ]
    );
    assert_eq!(os.network.dns_servers, ["192.168.10.1", "1.1.1.1"]);

    let users: Vec<(&str, u32, bool, bool)> = os
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.uid, u.system, u.locked))
        .collect();
    assert_eq!(
        users,
        [
            ("Administrator", 500, true, false),
            ("Guest", 501, true, true),
            ("Jöhn", 1001, false, false)
        ]
    );

    // The NTFS volume as blkid sees it.
    let blkid = String::from_utf8(run(Command::new("blkid")
        .arg("-p")
        .arg("-o")
        .arg("export")
        .arg(dir.path().join("part.img"))))
    .unwrap();
    let fs = &report.filesystems[0];
    assert!(
        blkid.contains(&format!("UUID={}\n", fs.uuid.as_deref().unwrap())),
        "{blkid}"
    );
    assert_eq!(fs.label.as_deref(), Some("Windows"));

    // The same volume on an MBR disk: E: is mapped by disk signature and offset.
    let report = inspect(&mbr, &InspectOptions::default()).unwrap();
    let os = &report.operating_systems[0];
    let drives: Vec<(&str, &str)> = os
        .drive_mappings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(drives, [("E", "/dev/sda1")]);
    let json = serde_json::to_string_pretty(os).unwrap();
    std::fs::write(fixture_cache_dir().join("windows-report.json"), json).unwrap();
}

fn fixture_cache_dir() -> std::path::PathBuf {
    crate::common::fixture_cache()
}
