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

/// Directory for fixtures that are slow to build (debootstrap trees) and may be kept
/// between runs: `$GUESTKIT_FIXTURE_CACHE`, else `target/fixture-cache`.
pub fn fixture_cache() -> PathBuf {
    let dir = std::env::var_os("GUESTKIT_FIXTURE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixture-cache"));
    std::fs::create_dir_all(&dir).expect("create fixture cache");
    dir
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
