//! The LUKS oracle: volumes formatted by the real cryptsetup, unlocked and decrypted by
//! our volume layer.
//!
//! - `headers_*`: `cryptsetup luksFormat` on plain files (no kernel needed), LUKS1 and
//!   LUKS2, PBKDF2 and Argon2id: the report's `encrypted` entry agrees with `cryptsetup
//!   luksDump` (UUID, version); the right passphrase unlocks (the volume-key digest
//!   cryptsetup wrote accepts our key), a wrong one or none leaves it locked with a
//!   warning, and the passphrase appears nowhere in the report.
//! - `payloads_*`: guestfish's kernel (dm-crypt) wrote `payload.bin` through four LUKS
//!   volumes of different ciphers, KDFs and sector sizes (`luks-layouts.gf`): the bytes
//!   we decrypt equal the payload (sha256 by coreutils).
//! - `debian_lvm_on_luks`: the Debian guest with LVM on LUKS2 (`debian-luks.gf`) gives
//!   the plain-partition guest's OS report with the key, and a locked volume without.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use guestkit_worker::inspect::image::RawImage;
use guestkit_worker::inspect::partition;
use guestkit_worker::inspect::pipeline::{self, InspectOptions};
use guestkit_worker::inspect::report::Report;
use guestkit_worker::inspect::source::{ReadAt, Slice};
use guestkit_worker::inspect::volume::luks::open::{unlock, LuksKeys};
use guestkit_worker::inspect::volume::BlockDevice;
use guestkit_worker::inspect::work::Work;
use zeroize::Zeroizing;

use crate::common::guests::debian_tarball;
use crate::common::{guestfish_disks, run, sh, sha256sum, tempdir, Rng};
use crate::inspect_lvm::{assert_agrees_with_virt_inspector, virt_inspector_of_volume_guest};

const LAYOUTS: &str = include_str!("fixtures/luks-layouts.gf");
const DEBIAN_LUKS: &str = include_str!("fixtures/debian-luks.gf");
const DEBIAN_PLAIN: &str = include_str!("fixtures/debian-plain.gf");

fn key(s: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(s.as_bytes().to_vec())
}

fn keys(any: &[&str]) -> LuksKeys {
    LuksKeys {
        named: Vec::new(),
        any: any.iter().map(|s| key(s)).collect(),
    }
}

fn inspect(path: &Path, luks_keys: LuksKeys) -> Report {
    let opts = InspectOptions {
        image_roots: vec![path.parent().unwrap().to_path_buf()],
        luks_keys,
        ..InspectOptions::default()
    };
    pipeline::inspect_with_stats(path, &opts)
        .map(|(r, _)| r)
        .unwrap()
}

/// The payload cipher and volume key size (bits) `cryptsetup luksDump` prints: LUKS1's
/// `Cipher name`-`Cipher mode` and `MK bits`, LUKS2's data segment `cipher` and key
/// slot `Key`.
fn dump_cipher(path: &Path) -> (String, u32) {
    let out = run(Command::new("cryptsetup").arg("luksDump").arg(path));
    let text = String::from_utf8_lossy(&out);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
    };
    let bits = |v: String| v.trim_end_matches(" bits").trim().parse::<u32>().unwrap();
    match value("Cipher name") {
        Some(name) => (
            format!("{name}-{}", value("Cipher mode").unwrap()),
            bits(value("MK bits").unwrap()),
        ),
        None => (value("cipher").unwrap(), bits(value("Key").unwrap())),
    }
}

/// `cryptsetup luksDump`'s value of `field` (`UUID`, `Version`).
fn dump_field(path: &Path, field: &str) -> String {
    let out = run(Command::new("cryptsetup").arg("luksDump").arg(path));
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in luksDump"))
        .trim()
        .to_string()
}

#[test]
fn headers_agree_with_luksdump_and_only_the_right_key_unlocks() {
    let tmp = tempdir();
    let cases = [
        ("luks1", "--type luks1 --hash sha1 --pbkdf-force-iterations 1000"),
        ("luks1", "--type luks1 --hash sha512 --pbkdf-force-iterations 1000 --key-size 256"),
        (
            "luks1",
            "--type luks1 --cipher aes-cbc-essiv:sha256 --key-size 256 --hash sha256 --pbkdf-force-iterations 1000",
        ),
        ("luks2", "--type luks2 --pbkdf pbkdf2 --hash sha256 --pbkdf-force-iterations 1000"),
        (
            "luks2",
            "--type luks2 --pbkdf argon2id --pbkdf-memory 8192 --pbkdf-parallel 1 --pbkdf-force-iterations 4",
        ),
        (
            "luks2",
            "--type luks2 --pbkdf argon2i --pbkdf-memory 8192 --pbkdf-parallel 2 --pbkdf-force-iterations 4 --sector-size 4096",
        ),
    ];
    for (i, (version, args)) in cases.iter().enumerate() {
        let img = tmp.path().join(format!("v{i}.img"));
        let pass = format!("correct horse {i}");
        sh(&format!(
            "truncate -s 24M {img}; printf '%s' '{pass}' | cryptsetup luksFormat -q {args} --key-file - {img}",
            img = img.display()
        ));
        let uuid = dump_field(&img, "UUID");
        assert_eq!(format!("luks{}", dump_field(&img, "Version")), *version);

        let r = inspect(&img, keys(&[&pass]));
        assert_eq!(r.encrypted.len(), 1, "{args}: {:?}", r.warnings);
        let e = &r.encrypted[0];
        assert_eq!(
            (e.device.as_str(), e.enc_type.as_str(), e.uuid.as_deref()),
            ("/dev/sda", *version, Some(uuid.as_str()))
        );
        assert!(e.unlocked, "{args}: {:?}", r.warnings);
        let (cipher, bits) = dump_cipher(&img);
        assert_eq!(
            (e.cipher.as_deref(), e.key_size),
            (Some(cipher.as_str()), Some(bits)),
            "{args}"
        );
        assert_eq!(
            e.mapped_device.as_deref(),
            Some(format!("/dev/mapper/luks-{uuid}").as_str())
        );

        for tried in [keys(&[]), keys(&["wrong", "correct horse"])] {
            let r = inspect(&img, tried);
            assert!(!r.encrypted[0].unlocked && r.encrypted[0].mapped_device.is_none());
            // Locked volumes still report their cipher.
            assert_eq!(r.encrypted[0].cipher.as_deref(), Some(cipher.as_str()));
            assert!(
                r.warnings.iter().any(|w| w.contains(&uuid)),
                "{:?}",
                r.warnings
            );
            let json = serde_json::to_string(&r).unwrap();
            assert!(!json.contains("correct horse") && !json.contains("wrong"));
        }
        // A key named by UUID (any case) or by device opens it; one named for another
        // volume is not tried.
        for (name, opens) in [
            (uuid.to_uppercase(), true),
            ("/dev/sda".to_string(), true),
            ("/dev/sdb".to_string(), false),
        ] {
            let named = LuksKeys {
                named: vec![(name.clone(), key(&pass))],
                any: Vec::new(),
            };
            assert_eq!(inspect(&img, named).encrypted[0].unlocked, opens, "{name}");
        }
    }
}

#[test]
fn bitlocker_signature_is_a_locked_volume() {
    let tmp = tempdir();
    let img = tmp.path().join("bl.img");
    // A BitLocker boot sector as Windows writes it: OEM id -FVE-FS-, FAT-like BPB.
    let mut d = vec![0u8; 8 << 20];
    d[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
    d[3..11].copy_from_slice(b"-FVE-FS-");
    d[11..13].copy_from_slice(&512u16.to_le_bytes());
    d[13] = 8;
    d[14..16].copy_from_slice(&6u16.to_le_bytes());
    d[16] = 2;
    d[21] = 0xf8;
    d[510] = 0x55;
    d[511] = 0xaa;
    std::fs::write(&img, d).unwrap();
    let r = inspect(&img, LuksKeys::default());
    assert_eq!(r.encrypted.len(), 1);
    let e = &r.encrypted[0];
    assert_eq!((e.enc_type.as_str(), e.unlocked), ("bitlocker", false));
    assert!(r.filesystems.iter().all(|f| f.fs_type != "vfat"));
}

/// 4 MiB of reproducible noise, the plaintext written through each volume.
fn payload(dir: &Path) -> PathBuf {
    let p = dir.join("payload.bin");
    let mut rng = Rng(0x1u64 << 40 | 0x5eed);
    let bytes: Vec<u8> = (0..4 << 20).map(|_| rng.next() as u8).collect();
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn payloads_decrypt_to_what_dm_crypt_wrote() {
    let tmp = tempdir();
    let plain = payload(tmp.path());
    let want = sha256sum(&plain);
    let disk = &guestfish_disks(LAYOUTS, &[100], &[&plain])[0];
    let src: Arc<dyn ReadAt> = Arc::new(RawImage::open(disk).unwrap());
    let table = partition::read_table(src.as_ref()).unwrap().unwrap();
    let members: Vec<BlockDevice> = table
        .partitions
        .iter()
        .map(|p| BlockDevice {
            name: format!("/dev/sda{}", p.number),
            src: Arc::new(Slice::new(src.clone(), p.start, p.size).unwrap()),
        })
        .collect();
    assert_eq!(members.len(), 4);
    // pass-four-b opens sda4 through its second (Argon2i) key slot.
    let opened = unlock(
        members,
        &keys(&["nope", "pass-one", "pass-two", "pass-three", "pass-four-b"]),
        &Work::unlimited(),
    );
    assert_eq!(opened.warnings, Vec::<String>::new());
    assert_eq!(
        opened
            .encrypted
            .iter()
            .map(|e| (e.enc_type.as_str(), e.unlocked))
            .collect::<Vec<_>>(),
        vec![
            ("luks1", true),
            ("luks2", true),
            ("luks1", true),
            ("luks2", true)
        ]
    );
    let mut wrong = Vec::new();
    for (dev, e) in opened.devices.iter().zip(&opened.encrypted) {
        let mut got = vec![0u8; 4 << 20];
        // Read in odd-sized pieces across sector boundaries.
        let mut off = 0;
        for n in [1usize, 511, 4097, 100_000].iter().cycle() {
            if off == got.len() {
                break;
            }
            let n = (*n).min(got.len() - off);
            dev.src
                .read_exact_at(off as u64, &mut got[off..off + n])
                .unwrap();
            off += n;
        }
        let out = tmp.path().join("got.bin");
        std::fs::write(&out, &got).unwrap();
        if sha256sum(&out) != want {
            wrong.push(e.device.clone());
        }
    }
    assert_eq!(wrong, Vec::<String>::new());
}

#[test]
fn debian_lvm_on_luks_is_the_plain_guest_with_the_key() {
    let tar = debian_tarball();
    let luks = guestfish_disks(DEBIAN_LUKS, &[512], &[&tar]);
    let plain = guestfish_disks(DEBIAN_PLAIN, &[448], &[&tar]);
    let plain_report = inspect(&plain[0], LuksKeys::default());
    let report = inspect(&luks[0], keys(&["debian-luks-key"]));
    assert_eq!(report.warnings, Vec::<String>::new());
    let e = &report.encrypted[0];
    assert_eq!((e.device.as_str(), e.unlocked), ("/dev/sda2", true));
    let mapped = e.mapped_device.clone().unwrap();
    assert_eq!(report.volume_groups[0].physical_volumes, vec![mapped]);
    let rename: BTreeMap<&str, &str> = [
        ("/dev/sda2", "/dev/guest-vg/root"),
        ("/dev/sda3", "/dev/guest-vg/usr"),
        ("/dev/sda4", "/dev/guest-vg/var"),
        ("/dev/sda5", "/dev/guest-vg/home"),
    ]
    .into();
    let r = |d: &String| rename.get(d.as_str()).map_or(d.clone(), |n| n.to_string());
    let mut want = plain_report.operating_systems[0].clone();
    want.root = r(&want.root);
    want.mountpoints = want
        .mountpoints
        .iter()
        .map(|(k, v)| (k.clone(), r(v)))
        .collect();
    assert_eq!(report.operating_systems, vec![want]);
    let theirs = virt_inspector_of_volume_guest(&luks, Some("debian-luks-key"));
    let n = assert_agrees_with_virt_inspector(&report, &theirs);
    eprintln!(
        "virt-inspector agrees: root, {} mountpoints, {n} filesystems",
        theirs.mountpoints.len()
    );

    // Without the key, or with a wrong one: the volume is reported locked, no OS root
    // is found (root is inside), and the key tried is nowhere.
    for tried in [keys(&[]), keys(&["not-the-debian-key"])] {
        let r = inspect(&luks[0], tried);
        assert_eq!(r.encrypted.len(), 1);
        assert!(!r.encrypted[0].unlocked);
        assert!(r.operating_systems.is_empty());
        assert!(r
            .warnings
            .iter()
            .any(|w| w.contains("/dev/sda2: LUKS volume")));
        assert!(!serde_json::to_string(&r)
            .unwrap()
            .contains("not-the-debian-key"));
    }
}

/// A 24 MiB LUKS2 (PBKDF2) file holding nothing, formatted with `pass`; its UUID.
fn luks_file(path: &Path, pass: &str) -> String {
    sh(&format!(
        "truncate -s 24M {img}; printf '%s' '{pass}' | cryptsetup luksFormat -q --type luks2 \
         --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - {img}",
        img = path.display()
    ));
    dump_field(path, "UUID")
}

#[test]
fn cli_key_flags_unlock_and_never_echo_the_key() {
    let tmp = tempdir();
    let img = tmp.path().join("c.img");
    let uuid = luks_file(&img, "cli-secret-pass");
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, "cli-secret-pass").unwrap();
    let cli = |args: &[String], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .args(["--log-level", "debug", "inspect"])
            .arg(&img)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("cli-secret-pass") && !all.contains("stdin-wrong"));
        let r: Report = serde_json::from_slice(&out.stdout).unwrap();
        r.encrypted[0].unlocked
    };
    let by = |id: &str| {
        vec![
            "--key".to_string(),
            format!("{id}:file:{}", key_file.display()),
        ]
    };
    assert!(cli(&by(&uuid), ""));
    assert!(cli(&by("/dev/sda"), ""));
    assert!(!cli(&by("/dev/sdb"), ""));
    assert!(!cli(&[], ""));
    let stdin = ["--keys-from-stdin".to_string()];
    assert!(cli(&stdin, "stdin-wrong\ncli-secret-pass\n"));
    assert!(!cli(&stdin, "stdin-wrong\n"));
    // A malformed --key is an error that does not echo a file's content.
    let out = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .arg("inspect")
        .arg(&img)
        .args(["--key", "no-file-part"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_unlocks_with_its_keys_dir_through_the_broker() {
    use crate::common::broker::{Pool, WorkerProcess, BROKER_LOCK};
    use serde_json::json;
    use std::time::Duration;

    let _shared = BROKER_LOCK.read().await;
    let tmp = tempdir();
    let roots = tmp.path().join("images");
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::create_dir_all(keys.join("..2026_data")).unwrap();
    let by_uuid = luks_file(&roots.join("a.img"), "daemon-pass-a");
    luks_file(&roots.join("b.img"), "daemon-pass-default");
    luks_file(&roots.join("c.img"), "daemon-pass-none");
    std::fs::write(keys.join(&by_uuid), "daemon-pass-a").unwrap();
    std::fs::write(keys.join("default"), "daemon-pass-default").unwrap();
    std::fs::write(keys.join(".hidden"), "daemon-pass-none").unwrap();

    let pool = Pool::new("luks").await;
    let _worker = WorkerProcess::spawn(
        pool.pool(),
        &[
            "--image-root",
            roots.to_str().unwrap(),
            "--luks-keys-dir",
            keys.to_str().unwrap(),
        ],
    );
    for name in ["a", "b", "c"] {
        pool.publish(&json!({
            "version": "1.0", "job_id": format!("job-luks-{name}"), "kind": "VMOperation",
            "operation": "guestkit.inspect",
            "payload": { "type": "guestkit.inspect.v1",
                         "data": { "image": { "path": roots.join(format!("{name}.img")) } } },
            "execution": { "max_attempts": 1 },
        }))
        .await;
    }
    let results = pool.results(3, Duration::from_secs(120)).await;
    let mut unlocked = BTreeMap::new();
    for r in &results {
        let text = r.body.to_string();
        assert!(!text.contains("daemon-pass"), "{text}");
        assert_eq!(r.body["status"], "completed", "{:#}", r.body);
        unlocked.insert(
            r.body["job_id"].as_str().unwrap().to_string(),
            r.body["output"]["encrypted"][0]["unlocked"].as_bool(),
        );
    }
    assert_eq!(
        unlocked,
        [
            ("job-luks-a".to_string(), Some(true)),
            ("job-luks-b".to_string(), Some(true)),
            ("job-luks-c".to_string(), Some(false)),
        ]
        .into()
    );
    pool.cleanup().await;
}

/// Random byte mutations of real LUKS1 and LUKS2 headers (binary header, JSON area,
/// key slot area), inspected with the right key: a report every time (typed errors
/// become warnings), never a panic or a hang. LUKS1's iteration counts are left alone
/// so a mutation cannot make a run of this test slow within the allowed KDF costs.
#[test]
fn mutated_headers_never_panic() {
    let tmp = tempdir();
    let mut rng = Rng(0x10c5);
    for (version, args) in [
        ("luks1", "--type luks1 --pbkdf-force-iterations 1000"),
        ("luks2", "--type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --luks2-metadata-size 16k --luks2-keyslots-size 1m"),
    ] {
        let img = tmp.path().join(format!("{version}.img"));
        sh(&format!(
            "truncate -s 20M {img}; printf mutant | cryptsetup luksFormat -q {args} --key-file - {img}",
            img = img.display()
        ));
        let orig = std::fs::read(&img).unwrap();
        let iteration_fields: Vec<usize> = std::iter::once(164)
            .chain((0..8).map(|i| 208 + 48 * i + 4))
            .collect();
        let (mut unlocked, mut locked) = (0, 0);
        for _ in 0..120 {
            let mut d = orig.clone();
            let region = if version == "luks1" { 592 } else { 3 * 4096 + 16384 };
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(region) as usize;
                if version == "luks1" && iteration_fields.iter().any(|f| (*f..f + 4).contains(&at)) {
                    continue;
                }
                d[at] = rng.byte();
            }
            let m = tmp.path().join("m.img");
            std::fs::write(&m, &d).unwrap();
            let r = inspect(&m, keys(&["mutant"]));
            match r.encrypted.first() {
                Some(e) if e.unlocked => unlocked += 1,
                _ => locked += 1,
            }
        }
        eprintln!("{version}: {unlocked} mutants still unlocked, {locked} not");
        assert!(locked > 0, "no mutation ever broke the {version} header");
    }
}

/// A LUKS1 header whose eight key slots all ask for the most PBKDF2 iterations a slot
/// may (8 x 20M, minutes of CPU per passphrase): the job's work budget refuses each
/// derivation before it runs, with a typed reason, and the volume stays locked.
#[test]
fn hostile_kdf_costs_stop_at_the_work_budget() {
    let tmp = tempdir();
    let img = tmp.path().join("hostile.img");
    // Eight real slots (cryptsetup checks their areas), then every slot's iteration
    // count raised to the maximum.
    sh(&format!(
        "cd {dir}; truncate -s 8M {img}; printf pw > k0; \
         cryptsetup luksFormat -q --type luks1 --hash sha256 --pbkdf-force-iterations 1000 --key-file k0 {img}; \
         for i in 1 2 3 4 5 6 7; do printf pw$i > k$i; \
         cryptsetup luksAddKey -q --pbkdf-force-iterations 1000 --key-file k0 {img} k$i; done",
        dir = tmp.path().display(),
        img = img.display()
    ));
    let mut bytes = std::fs::read(&img).unwrap();
    for i in 0..8 {
        let at = 208 + 48 * i + 4;
        bytes[at..at + 4].copy_from_slice(&20_000_000u32.to_be_bytes());
    }
    std::fs::write(&img, &bytes).unwrap();
    assert_eq!(
        run(Command::new("cryptsetup").arg("luksDump").arg(&img))
            .windows(7)
            .filter(|w| w == b"ENABLED")
            .count(),
        8,
        "cryptsetup reads eight enabled slots"
    );
    let t = std::time::Instant::now();
    let r = inspect(&img, keys(&["pw", "other", "third"]));
    eprintln!(
        "8 max-cost slots x 3 passphrases refused in {:?}",
        t.elapsed()
    );
    let e = &r.encrypted[0];
    assert!(!e.unlocked);
    assert_eq!(e.cipher.as_deref(), Some("aes-xts-plain64"));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("key derivation not run") && w.contains("work budget")),
        "{:?}",
        r.warnings
    );
}
