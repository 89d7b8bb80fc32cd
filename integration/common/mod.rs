//! Helpers shared by the integration tests: running real tools, temp dirs, fixture cache.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command, panicking with its stderr when it fails: a fixture that cannot be
/// built is a broken test environment, never a skip.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is the Debian package installed? see .ci/run)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Shell one-liner helper for fixture scripts.
pub fn sh(script: &str) -> Vec<u8> {
    run(Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script))
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("guestkit-test-")
        .tempdir()
        .expect("tempdir")
}

/// Directory for fixtures that are slow to build (debootstrap trees, guestfish-built
/// disks) and are kept between runs and clones: `$GUESTKIT_FIXTURE_CACHE`, else
/// `$HOME/.cache/guestkit-fixtures`. Entries are keyed by what builds them (suite name,
/// script hash), so a changed script builds a new entry instead of reusing a stale one.
pub fn fixture_cache() -> PathBuf {
    let dir = std::env::var_os("GUESTKIT_FIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/guestkit-fixtures"))
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixture-cache"));
    std::fs::create_dir_all(&dir).expect("create fixture cache");
    dir
}

/// Disks built by a guestfish script (a real kernel in libguestfs' own small VM: LVM, MD,
/// LUKS, btrfs subvolumes, compression), cached by the script's and inputs' content; see
/// `integration/fixtures/guestfish-image.sh`. Returns one path per entry of `sizes_mib`
/// (`/dev/sda`, `/dev/sdb`, ... in the script). The files are shared: copy before changing.
pub fn guestfish_disks(script: &str, sizes_mib: &[u64], inputs: &[&Path]) -> Vec<PathBuf> {
    let tmp = tempdir();
    let script_file = tmp.path().join("script.gf");
    std::fs::write(&script_file, script).expect("write guestfish script");
    let sizes: Vec<String> = sizes_mib.iter().map(u64::to_string).collect();
    let out = run(Command::new(fixtures().join("guestfish-image.sh"))
        .arg(fixture_cache())
        .arg(&script_file)
        .arg(sizes.join(","))
        .args(inputs));
    let dir = PathBuf::from(String::from_utf8_lossy(&out).trim());
    (0..sizes_mib.len())
        .map(|i| dir.join(format!("disk{i}.img")))
        .collect()
}

/// Disks a test builds itself (`build` gets an empty folder and returns the disk files it
/// made), kept in the cache so their bytes stay the same between runs: mkfs stamps
/// times and random ids, and an oracle cached by the disk's content (virt-inspector's
/// XML) would otherwise run again every time. Keyed by `name` and the content of
/// `sources`, the files whose code or data decide the disk (a changed builder builds a
/// new entry). Returns the cached files in `build`'s order, all in one folder.
pub fn cached_disks(
    name: &str,
    sources: &[&Path],
    build: impl FnOnce(&Path) -> Vec<PathBuf>,
) -> Vec<PathBuf> {
    let mut key = format!("v1 {name}\n");
    for s in sources {
        key.push_str(&sha256sum(s));
        key.push('\n');
    }
    let tmp = tempdir();
    std::fs::write(tmp.path().join("key"), &key).unwrap();
    let dir = fixture_cache().join("built").join(format!(
        "{name}-{}",
        &sha256sum(&tmp.path().join("key"))[..16]
    ));
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    // Test threads may ask for the same disks at once: one builds, the others wait.
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let list = dir.join("disks");
    if let Ok(names) = std::fs::read_to_string(&list) {
        return names.lines().map(|n| dir.join(n)).collect();
    }
    let work = tempdir();
    let built = build(work.path());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut names = String::new();
    for disk in &built {
        let file = disk.file_name().unwrap();
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(disk)
            .arg(dir.join(file)));
        names.push_str(&format!("{}\n", file.to_string_lossy()));
    }
    std::fs::write(&list, names).unwrap();
    built
        .iter()
        .map(|d| dir.join(d.file_name().unwrap()))
        .collect()
}

/// The fixture scripts' folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/fixtures")
}

/// Hex sha256 of a file, computed by the coreutils tool (an oracle independent of ours).
pub fn sha256sum(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Small deterministic PRNG (xorshift64*), so a failing mutation names a reproducible
/// seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A byte, boundary values half of the time: they find the off-by-ones.
    pub fn byte(&mut self) -> u8 {
        match self.below(8) {
            0 => 0x00,
            1 => 0xff,
            2 => 0x7f,
            3 => 0x80,
            _ => self.next() as u8,
        }
    }
}

pub mod broker;
pub mod guests;
pub mod rabbit_node;
pub mod regf;
pub mod tree;
pub mod virt_inspector;
pub mod windows_disk;
