//! Windows: registry hives written by our test writer (`common/regf.rs`) and checked
//! value by value against hivex (`hivexget`), then read by our hive reader; and a
//! Windows skeleton disk (GPT and MBR, NTFS with the hives, an LZNT1-compressed
//! config directory, a real PE header on cmd.exe) inspected end to end.

use std::path::Path;
use std::process::Command;

use guestkit_worker::inspect::os::windows::hive::{Hive, HiveError, RegValue};

use crate::common::regf::{self, multi_sz, utf16z, Key};
use crate::common::windows_disk::{sam_hive, software_hive, system_hive, windows_disks};
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

    // A subkey list pointing outside the bins, an index root listing itself, a value
    // claiming more data than the hive holds: typed errors.
    let root_off = u32::from_le_bytes(clean[36..40].try_into().unwrap()) as usize;
    let list_at = 4096 + root_off + 4 + 28;
    let mut outside = clean.clone();
    outside[list_at..list_at + 4].copy_from_slice(&0x7fff_fff8u32.to_le_bytes());
    let h = Hive::parse(outside, &[]).unwrap();
    let err = h.subkeys(&h.root().unwrap()).unwrap_err();
    assert!(err.to_string().contains("outside every hive bin"), "{err}");
    let many = hive_key_offset(&clean, "Many");
    let ri_at = 4096 + many + 4 + 28;
    let ri = u32::from_le_bytes(clean[ri_at..ri_at + 4].try_into().unwrap()) as usize;
    assert_eq!(&clean[4096 + ri + 4..4096 + ri + 6], b"ri");
    let mut looped = clean.clone();
    looped[4096 + ri + 8..4096 + ri + 12].copy_from_slice(&(ri as u32).to_le_bytes());
    let h = Hive::parse(looped, &[]).unwrap();
    assert!(matches!(
        h.key("Many\\Child00"),
        Err(HiveError::Corrupt { .. })
    ));
    let mut huge = regf::build(
        &{
            let mut k = Key::new("ROOT");
            k.set("v", regf::REG_BINARY, vec![7; 100]);
            k
        },
        (1, 1),
    );
    let vk = (4096..huge.len() - 4)
        .find(|&i| &huge[i..i + 2] == b"vk")
        .unwrap();
    huge[vk + 4..vk + 8].copy_from_slice(&5000u32.to_le_bytes());
    let h = Hive::parse(huge.clone(), &[]).unwrap();
    let err = h.values(&h.root().unwrap()).unwrap_err();
    assert!(err.to_string().contains("past its cell"), "{err}");
    huge[vk + 4..vk + 8].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    let h = Hive::parse(huge, &[]).unwrap();
    assert!(matches!(
        h.values(&h.root().unwrap()),
        Err(HiveError::TooLarge { .. })
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

#[test]
fn dirty_hive_is_replayed_from_its_transaction_log() {
    // The primary file still holds the old data (written by the writer, checked by
    // hivexget), with sequence numbers 6/5; LOG1 holds entry 5 with the new pages.
    let mut old_spec = sample_hive();
    old_spec.at("Types").dword("Dword", 1);
    let mut new_spec = sample_hive();
    new_spec.at("Types").dword("Dword", 2);
    let old = regf::build(&old_spec, (6, 5));
    let new = regf::build(&new_spec, (5, 5));
    assert_eq!(old.len(), new.len());
    let dir = tempdir();
    std::fs::write(dir.path().join("new"), &new).unwrap();
    assert_eq!(
        hivexget(&dir.path().join("new"), "\\Types", "Dword"),
        b"2\n"
    );

    let dword = |h: &Hive| {
        let k = h.key("Types").unwrap().unwrap();
        h.value(&k, "Dword").unwrap().unwrap()
    };
    let log = regf::log_for(&old, &new, 5);
    let h = Hive::parse(old.clone(), std::slice::from_ref(&log)).unwrap();
    assert_eq!(dword(&h), RegValue::Dword(2));
    assert!(
        h.warnings()[0].contains("1 transaction log entries applied"),
        "{:?}",
        h.warnings()
    );

    // A log whose entry does not continue the hive (wrong sequence) or is damaged (hash)
    // is not applied: the hive is read as is, with a warning.
    for bad in [regf::log_for(&old, &new, 9), {
        let mut l = log.clone();
        let last = l.len() - 1;
        l[last] ^= 1;
        l
    }] {
        let h = Hive::parse(old.clone(), &[bad]).unwrap();
        assert_eq!(dword(&h), RegValue::Dword(1));
        assert!(h.warnings()[0].contains("read as is"), "{:?}", h.warnings());
    }
}

/// The cell offset of the root's child key `name`, found through the reader.
fn hive_key_offset(hive: &[u8], name: &str) -> usize {
    let h = Hive::parse(hive.to_vec(), &[]).unwrap();
    h.key(name).unwrap().unwrap().offset as usize
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

#[test]
fn windows_skeleton_is_inspected_end_to_end() {
    use guestkit_worker::inspect::pipeline::{inspect_with_stats, InspectOptions};
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
    let report = inspect_with_stats(&gpt, &InspectOptions::default())
        .unwrap()
        .0;
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
    // viostor: service set to boot and its file; netkvm: manual service, no file.
    let drivers: Vec<(&str, &str, bool)> = os
        .drivers
        .iter()
        .map(|d| (d.name.as_str(), d.kind.as_str(), d.present))
        .collect();
    assert_eq!(
        drivers,
        [
            ("viostor", "virtio", true),
            ("netkvm", "virtio", true),
            ("vmxnet3", "vmware", false)
        ]
    );

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
    let report = inspect_with_stats(&mbr, &InspectOptions::default())
        .unwrap()
        .0;
    let os = &report.operating_systems[0];
    let drives: Vec<(&str, &str)> = os
        .drive_mappings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(drives, [("E", "/dev/sda1")]);
}
