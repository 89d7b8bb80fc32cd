//! Windows security facts on the skeleton disk (`common/windows_disk.rs`): the profile's
//! Windows checks against values written by our hive writer and read back by hivexget,
//! a BitLocker volume beside `C:` (blkid's view of it as the oracle), and a file
//! compressed by WOF/CompactOS (a real reparse point set through ntfs-3g; `ntfsinfo`
//! shows it).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use guestkit_worker::inspect::pipeline::{inspect_with_stats, InspectOptions};
use guestkit_worker::profile::{profile_image, ProfileKind, ProfileRequest, Severity};

use crate::common::regf::{self, Key};
use crate::common::windows_disk::{
    sam_hive, software_hive, system_hive, windows_disks, windows_disks_with,
};
use crate::common::{run, sh, tempdir};

const CS: &str = "ControlSet002";
const FW: &str = "ControlSet002\\Services\\SharedAccess\\Parameters\\FirewallPolicy";
const PROFILES: [&str; 3] = ["DomainProfile", "StandardProfile", "PublicProfile"];

/// hivexget's text of a value, trimmed; `None` when hivexget finds no such value.
fn hivexget(hive: &Path, key: &str, value: &str) -> Option<String> {
    let out = Command::new("hivexget")
        .arg(hive)
        .arg(key)
        .arg(value)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The hives of one variant: (RDP NLA value, UAC, firewall per profile, Guest disabled).
fn hives(nla: u32, lua: u32, firewall: [u32; 3], guest_disabled: bool) -> [Key; 3] {
    let mut software = software_hive();
    software
        .at("Microsoft\\Windows\\CurrentVersion\\Policies\\System")
        .dword("EnableLUA", lua);
    let mut system = system_hive();
    system
        .at(&format!(
            "{CS}\\Control\\Terminal Server\\WinStations\\RDP-Tcp"
        ))
        .dword("UserAuthentication", nla);
    for (p, on) in PROFILES.iter().zip(firewall) {
        system.at(&format!("{FW}\\{p}")).dword("EnableFirewall", on);
    }
    let mut sam = sam_hive();
    let mut f = vec![0u8; 0x50];
    f[0x38] = if guest_disabled { 0x11 } else { 0x10 };
    sam.at("SAM\\Domains\\Account\\Users\\000001F5")
        .set("F", regf::REG_BINARY, f);
    [software, system, sam]
}

/// The Windows findings the hives in `dir` must give, computed from hivexget's reading
/// of them: `(id, hive path in the guest, evidence text)`.
fn expected_from_hivex(dir: &Path) -> (BTreeSet<(String, String, String)>, usize) {
    let config = "/Windows/System32/config";
    let mut out = BTreeSet::new();
    let mut compared = 0;
    let system = dir.join("SYSTEM");
    let ts = format!("{CS}\\Control\\Terminal Server");
    let rdp_tcp = format!("{ts}\\WinStations\\RDP-Tcp");
    let deny = hivexget(&system, &format!("\\{ts}"), "fDenyTSConnections");
    let nla = hivexget(&system, &format!("\\{rdp_tcp}"), "UserAuthentication");
    compared += 2;
    if deny.as_deref() == Some("0") && nla.as_deref() == Some("0") {
        out.insert((
            "WIN-001".into(),
            format!("{config}/SYSTEM"),
            format!("{rdp_tcp}\\UserAuthentication = 0 ({ts}\\fDenyTSConnections = 0)"),
        ));
    }
    for p in PROFILES {
        compared += 1;
        if hivexget(&system, &format!("\\{FW}\\{p}"), "EnableFirewall").as_deref() == Some("0") {
            out.insert((
                "WIN-003".into(),
                format!("{config}/SYSTEM"),
                format!("{FW}\\{p}\\EnableFirewall = 0"),
            ));
        }
    }
    let key = "Microsoft\\Windows\\CurrentVersion\\Policies\\System";
    compared += 1;
    if hivexget(&dir.join("SOFTWARE"), &format!("\\{key}"), "EnableLUA").as_deref() == Some("0") {
        out.insert((
            "WIN-002".into(),
            format!("{config}/SOFTWARE"),
            format!("{key}\\EnableLUA = 0"),
        ));
    }
    // hivexget prints binary values raw: the account control bits are at 0x38.
    let users = "SAM\\Domains\\Account\\Users";
    let f = run(Command::new("hivexget")
        .arg(dir.join("SAM"))
        .arg(format!("\\{users}\\000001F5"))
        .arg("F"));
    compared += 1;
    let acb = u16::from_le_bytes([f[0x38], f[0x39]]);
    if acb & 1 == 0 {
        out.insert((
            "WIN-004".into(),
            format!("{config}/SAM"),
            format!(
                "{users}\\000001F5\\F: account Guest (RID 501), control bits {acb:#06x}: not disabled"
            ),
        ));
    }
    (out, compared)
}

fn windows_findings(image: &Path) -> (BTreeSet<(String, String, String)>, usize) {
    let opts = InspectOptions {
        image_roots: vec![image.parent().unwrap().to_path_buf()],
        ..InspectOptions::default()
    };
    let request = ProfileRequest {
        profiles: ProfileKind::ALL.to_vec(),
        threshold: Severity::Info,
    };
    let out = profile_image(image, &opts, &request).unwrap();
    let got = out
        .findings
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.evidence.file.clone().unwrap_or_default(),
                f.evidence.text.clone(),
            )
        })
        .collect();
    (got, out.findings.len())
}

#[test]
fn profile_windows_checks_match_hivexget() {
    let mut compared = 0;
    for (name, hives, findings) in [
        ("insecure", hives(0, 0, [0, 0, 1], false), 5),
        ("secure", hives(1, 1, [1, 1, 1], true), 0),
        // NLA off but Remote Desktop itself off: not a finding.
        (
            "rdp-off",
            {
                let mut h = hives(0, 1, [1, 1, 1], true);
                h[1].at(&format!("{CS}\\Control\\Terminal Server"))
                    .dword("fDenyTSConnections", 1);
                h
            },
            0,
        ),
    ] {
        let dir = tempdir();
        let (gpt, _) = windows_disks_with(dir.path(), hives, "");
        let (expected, n) = expected_from_hivex(dir.path());
        compared += n;
        let (got, total) = windows_findings(&gpt);
        assert_eq!(got, expected, "{name}");
        // Only Windows checks ran on the Windows root.
        assert_eq!((total, expected.len()), (findings, findings), "{name}");
    }
    eprintln!("windows profile: {compared} hive values compared with hivexget");
}

/// A BitLocker boot sector and its three FVE metadata blocks (what blkid checks).
fn bitlocker_volume(path: &Path) {
    let mut b = vec![0u8; 1 << 20];
    b[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
    b[3..11].copy_from_slice(b"-FVE-FS-");
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = 8;
    b[510..512].copy_from_slice(&[0x55, 0xaa]);
    for i in 0..3 {
        let at = 0x10000 * (i + 1);
        b[0xb0 + 8 * i..0xb8 + 8 * i].copy_from_slice(&(at as u64).to_le_bytes());
        b[at..at + 8].copy_from_slice(b"-FVE-FS-");
        b[at + 8..at + 10].copy_from_slice(&0x40u16.to_le_bytes());
        b[at + 10..at + 12].copy_from_slice(&2u16.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn bitlocker_volume_beside_windows_is_reported() {
    let dir = tempdir();
    windows_disks(dir.path());
    let d = dir.path();
    bitlocker_volume(&d.join("bl.img"));
    let blkid = String::from_utf8(run(Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(d.join("bl.img"))))
    .unwrap();
    assert!(blkid.contains("TYPE=BitLocker\n"), "{blkid}");
    sh(&format!(
        r#"cd '{}'
truncate -s 64M two.img
printf 'label: gpt\nstart=2048, size=81920, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nstart=86016, size=4096, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n' | sfdisk -q two.img
dd if=part.img of=two.img bs=1M seek=1 conv=notrunc status=none
dd if=bl.img of=two.img bs=512 seek=86016 conv=notrunc status=none
"#,
        d.display()
    ));
    let report = inspect_with_stats(&d.join("two.img"), &InspectOptions::default())
        .unwrap()
        .0;
    let enc: Vec<(&str, &str, bool)> = report
        .encrypted
        .iter()
        .map(|e| (e.device.as_str(), e.enc_type.as_str(), e.unlocked))
        .collect();
    assert_eq!(enc, [("/dev/sda2", "bitlocker", false)]);
    assert_eq!(report.operating_systems.len(), 1, "{:?}", report.warnings);
    let os = &report.operating_systems[0];
    assert_eq!(os.root, "/dev/sda1");
    assert_eq!(os.security.bitlocker_volumes, ["/dev/sda2"]);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("/dev/sda2: BitLocker volume")),
        "{:?}",
        report.warnings
    );
    // Without one, the list is empty.
    let plain = inspect_with_stats(&d.join("gpt.img"), &InspectOptions::default())
        .unwrap()
        .0;
    assert!(plain.encrypted.is_empty());
    assert!(plain.operating_systems[0]
        .security
        .bitlocker_volumes
        .is_empty());
}

#[test]
fn wof_compressed_file_is_a_warning_naming_it() {
    let dir = tempdir();
    // A WOF reparse point (tag 0x80000017, XPRESS4K through the file provider) on
    // cmd.exe, as CompactOS leaves system binaries.
    let wof = "0x170000801000000001000000020000000100000000000000";
    let (gpt, _) = windows_disks_with(
        dir.path(),
        [software_hive(), system_hive(), sam_hive()],
        &format!("setfattr -h -n system.ntfs_reparse_data -v {wof} mnt/Windows/System32/cmd.exe"),
    );
    let info = String::from_utf8_lossy(&run(Command::new("ntfsinfo")
        .arg("-F")
        .arg("/Windows/System32/cmd.exe")
        .arg(dir.path().join("part.img"))))
    .to_string();
    assert!(info.contains("REPARSE_POINT"), "{info}");
    let report = inspect_with_stats(&gpt, &InspectOptions::default())
        .unwrap()
        .0;
    let os = &report.operating_systems[0];
    // Everything else is read; the architecture (from cmd.exe) is unknown, and said why.
    assert_eq!(os.hostname.as_deref(), Some("WIN-SRV-01"));
    assert_eq!(os.arch, None);
    let w: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("/Windows/System32/cmd.exe") && w.contains("WOF"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", report.warnings);
}
