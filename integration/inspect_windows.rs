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
        .set("Expand", regf::REG_EXPAND_SZ, utf16z("%SystemRoot%\\system32"))
        .set("Multi", regf::REG_MULTI_SZ, multi_sz(&["one", "twö", "three"]))
        .dword("Dword", 0xdead_beef)
        .set("DwordBe", regf::REG_DWORD_BE, 0x0102_0304u32.to_be_bytes().to_vec())
        .set("Qword", regf::REG_QWORD, 0x1122_3344_5566_7788u64.to_le_bytes().to_vec())
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
        RegValue::MultiSz(l) => l.iter().map(|s| format!("{s}\n")).collect::<String>().into_bytes(),
        RegValue::Dword(d) => format!("{}\n", *d as i32).into_bytes(),
        RegValue::Qword(q) => format!("{}\n", *q as i64).into_bytes(),
        RegValue::Binary(b) | RegValue::Other { data: b, .. } => b.clone(),
    }
}

/// Compares every value under `path` of `spec` (recursively) with hivexget; returns
/// how many were compared.
fn compare_all(file: &Path, hive: &Hive, spec: &Key, path: &str) -> usize {
    let k = hive.key(path).unwrap().unwrap_or_else(|| panic!("{path} missing"));
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
    assert!(hive.warnings()[0].contains("dirty"), "{:?}", hive.warnings());
    assert!(hive.key("Types").unwrap().is_some());

    let clean = regf::build(&spec, (1, 1));
    let mut bad = clean.clone();
    bad[200] ^= 1;
    assert!(matches!(Hive::parse(bad, &[]), Err(HiveError::Corrupt { offset: 508, .. })));

    // Random damage in the bins: a result or a typed error, never a panic or hang.
    let mut rng = Rng(0x7265_6766);
    for _ in 0..3000 {
        let mut h = clean.clone();
        for _ in 0..1 + rng.below(8) {
            let at = 4096 + rng.below((h.len() - 4096) as u64) as usize;
            h[at] = rng.byte();
        }
        let Ok(hive) = Hive::parse(h, &[]) else { continue };
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
