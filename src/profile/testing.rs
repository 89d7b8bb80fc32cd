//! Unit-test helpers: run one check module over an in-memory tree, and a filesystem
//! wrapper that gives chosen paths a mode (the shared `MemFs` has none), for the checks
//! that look at permissions.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::inspect::fs::{DirEntry, FileSystem, FsError, Metadata};
use crate::inspect::os::memfs::MemFs;
use crate::inspect::os::GuestFs;
use crate::inspect::report::OperatingSystem;

use super::finding::{Finding, ProfileKind};
use super::target::Target;

/// `MemFs` with per-path mode, uid and gid overrides.
pub struct ModeFs {
    inner: MemFs,
    modes: BTreeMap<String, (u32, u32, u32)>,
}

impl ModeFs {
    pub fn new(inner: MemFs) -> ModeFs {
        ModeFs {
            inner,
            modes: BTreeMap::new(),
        }
    }

    pub fn mode(mut self, path: &str, mode: u32) -> ModeFs {
        self.modes.insert(path.to_string(), (mode, 0, 0));
        self
    }
}

impl FileSystem for ModeFs {
    fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let mut m = self.inner.metadata(path)?;
        if let Some(&(mode, uid, gid)) = self.modes.get(path) {
            (m.mode, m.uid, m.gid) = (mode, uid, gid);
        } else if m.kind == crate::inspect::fs::FileKind::Dir {
            m.mode = 0o755;
        }
        Ok(m)
    }
    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        self.inner.read_dir(path)
    }
    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        self.inner.read_file(path, limit)
    }
    fn read_link(&self, path: &str) -> Result<String, FsError> {
        self.inner.read_link(path)
    }
}

/// A Linux OS on `/dev/sda1` with nothing known about it.
pub fn linux() -> OperatingSystem {
    OperatingSystem {
        root: "/dev/sda1".into(),
        os_type: "linux".into(),
        ..OperatingSystem::default()
    }
}

/// Runs `check` (every profile wanted) over `fs`; panics on warnings, which a
/// well-formed test tree never causes.
pub fn run_checks(fs: MemFs, check: fn(&mut Target)) -> Vec<Finding> {
    run_on(Arc::new(fs), &linux(), check)
}

/// Like [`run_checks`], with a filesystem of any kind and given inspection facts.
pub fn run_on(
    fs: Arc<dyn FileSystem>,
    os: &OperatingSystem,
    check: fn(&mut Target),
) -> Vec<Finding> {
    let (findings, warnings) = run_warned(fs, os, check);
    assert!(warnings.is_empty(), "{warnings:?}");
    findings
}

/// Like [`run_on`], returning the warnings too.
pub fn run_warned(
    fs: Arc<dyn FileSystem>,
    os: &OperatingSystem,
    check: fn(&mut Target),
) -> (Vec<Finding>, Vec<String>) {
    let guest = GuestFs::new(fs);
    let mut t = Target::new(&guest, os, &ProfileKind::ALL, None);
    check(&mut t);
    t.finish()
}

/// `(id, file, line)` of each finding, sorted.
pub fn ids_and_lines(findings: &[Finding]) -> Vec<(String, String, Option<u32>)> {
    let mut out: Vec<_> = findings
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.evidence.file.clone().unwrap_or_default(),
                f.evidence.line,
            )
        })
        .collect();
    out.sort();
    out
}
