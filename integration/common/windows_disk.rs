//! The Windows skeleton shared by the Windows tests and the inspect bench: SOFTWARE,
//! SYSTEM and SAM hives (written by `regf.rs`), a PE `cmd.exe`, an NTFS volume made by
//! mkntfs and filled through ntfs-3g (its `config` directory LZNT1-compressed), and
//! the same volume on a GPT and on an MBR disk. Depends only on `super::regf` so the
//! bench can include it by path.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::regf::{self, multi_sz, Key};

fn sh(script: &str) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "windows skeleton: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub const GPT_PART_GUID: &str = "6a1b7f2e-5c4d-4e3f-9a8b-1c2d3e4f5a6b";
pub const MBR_SIGNATURE: u32 = 0x1234_abcd;
pub const PART_START: u64 = 1 << 20;

/// A GUID's 16 bytes in Windows' mixed-endian order.
pub fn guid_bytes(g: &str) -> Vec<u8> {
    let hex: String = g.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut out = vec![b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]];
    out.extend(&b[8..]);
    out
}

pub fn software_hive() -> Key {
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

pub fn system_hive() -> Key {
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

pub fn sam_hive() -> Key {
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
pub fn cmd_exe() -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[..2].copy_from_slice(b"MZ");
    b[0x3c] = 0x80;
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    b[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
    b[0x86..0x88].copy_from_slice(&1u16.to_le_bytes()); // sections
    b[0x94..0x96].copy_from_slice(&0xf0u16.to_le_bytes()); // optional header size
    b[0x96..0x98].copy_from_slice(&0x22u16.to_le_bytes()); // executable, large address aware
    b[0x98..0x9a].copy_from_slice(&0x20bu16.to_le_bytes()); // PE32+
    b[0xdc..0xde].copy_from_slice(&3u16.to_le_bytes()); // console subsystem
    b
}

/// The NTFS partition of the skeleton and the GPT and MBR disks holding it.
pub fn windows_disks(dir: &Path) -> (PathBuf, PathBuf) {
    windows_disks_with(dir, [software_hive(), system_hive(), sam_hive()], "")
}

/// The same with other SOFTWARE, SYSTEM and SAM hives, and `extra` shell run in `dir`
/// while the volume is mounted at `mnt` (after the files are copied).
pub fn windows_disks_with(dir: &Path, hives: [Key; 3], extra: &str) -> (PathBuf, PathBuf) {
    let d = dir.display();
    for (name, spec) in ["SOFTWARE", "SYSTEM", "SAM"].into_iter().zip(hives) {
        let file = dir.join(name);
        std::fs::write(&file, regf::build(&spec, (1, 1))).unwrap();
    }
    std::fs::write(dir.join("cmd.exe"), cmd_exe()).unwrap();
    std::fs::create_dir(dir.join("mnt")).unwrap();
    sh(&format!(
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
# A VMware driver file left behind, its service gone: not present.
head -c 4096 /dev/zero > mnt/Windows/System32/drivers/VMXNET3.SYS
{extra}
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
    let info = Command::new("ntfsinfo")
        .arg("-F")
        .arg("/Windows/System32/config/SOFTWARE")
        .arg(dir.join("part.img"))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("COMPRESSED"), "{info}");
    (dir.join("gpt.img"), dir.join("mbr.img"))
}
