//! One OS root being checked: its files (the guest view), its inspection facts, the
//! findings and warnings gathered so far, and the job's cancel flag.
//!
//! Checks follow the inspection's rule for files: absent is normal and silent; present
//! but unreadable is a warning naming the file, and the check goes on without it. No
//! check ever reports on a file it could not read.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::inspect::fs::{DirEntry, Metadata};
use crate::inspect::os::context::Ctx;
use crate::inspect::os::GuestFs;
use crate::inspect::report::OperatingSystem;
use crate::inspect::source::CancelFlag;

use super::finding::{Check, Evidence, Finding, ProfileKind};

/// Per-file read cap for the configuration files the checks read: far above any real
/// one, low enough that a hostile image cannot make a check allocate much.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Most bytes of files all the checks of one root read together: real configuration
/// is a few MiB at most; thousands of drop-ins on a hostile image stop here.
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// Most findings one check reports per root (the rest are counted in a warning): a
/// passwd with 100 000 UID 0 accounts must not make a 100 000-entry result.
pub const MAX_PER_CHECK: usize = 50;

/// Most warnings one root adds; a hostile image cannot flood the report.
const MAX_WARNINGS: usize = 100;

/// The state of the checks of one OS root. Files are read through the inspection's
/// [`Ctx`] (same absent-is-silent rule), with the checks' own caps.
pub struct Target<'a> {
    pub guest: &'a GuestFs,
    pub os: &'a OperatingSystem,
    ctx: Ctx<'a>,
    wanted: &'a [ProfileKind],
    cancel: Option<&'a CancelFlag>,
    findings: Vec<Finding>,
    /// Findings per check id, and how many were dropped over [`MAX_PER_CHECK`].
    per_check: BTreeMap<&'static str, (usize, usize)>,
}

impl<'a> Target<'a> {
    pub fn new(
        guest: &'a GuestFs,
        os: &'a OperatingSystem,
        wanted: &'a [ProfileKind],
        cancel: Option<&'a CancelFlag>,
    ) -> Target<'a> {
        Target {
            guest,
            os,
            ctx: Ctx::new(guest, &format!("{}: profile", os.root)).with_caps(
                MAX_WARNINGS,
                MAX_CONFIG_BYTES,
                MAX_TOTAL_BYTES,
            ),
            wanted,
            cancel,
            findings: Vec::new(),
            per_check: BTreeMap::new(),
        }
    }

    /// The reading context, for readers shared with the inspection (registry hives).
    pub fn ctx(&mut self) -> &mut Ctx<'a> {
        &mut self.ctx
    }

    /// Whether the job asked for `profile`; checks skip work nobody wants.
    pub fn wants(&self, profile: ProfileKind) -> bool {
        self.wanted.contains(&profile)
    }

    /// Records a finding of `check` (dropped when its profile was not asked for).
    pub fn found(&mut self, check: &Check, evidence: Evidence) {
        if !self.wants(check.profile) {
            return;
        }
        let (kept, dropped) = self.per_check.entry(check.id).or_default();
        if *kept >= MAX_PER_CHECK {
            *dropped += 1;
            return;
        }
        *kept += 1;
        self.findings
            .push(Finding::new(check, &self.os.root, evidence));
    }

    /// Whether the job was cancelled; long checks poll this.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Records a note about this root for the report's warnings.
    pub fn warn(&mut self, message: impl std::fmt::Display) {
        self.ctx.warn(message);
    }

    /// The findings and warnings, when the checks are done.
    pub fn finish(mut self) -> (Vec<Finding>, Vec<String>) {
        for (id, (_, n)) in &self.per_check {
            if *n > 0 {
                self.ctx.warn(format_args!(
                    "{id}: {n} more findings beyond the first {MAX_PER_CHECK} not listed"
                ));
            }
        }
        (self.findings, self.ctx.into_warnings())
    }

    /// A text file (lossy UTF-8); `None` when absent (silently) or unreadable (warned).
    /// Reads count against [`MAX_TOTAL_BYTES`]; past it files are skipped with a warning.
    pub fn read_text(&mut self, path: &str) -> Option<String> {
        self.ctx.read_text(path)
    }

    /// Directory entries sorted by name; empty when absent or unreadable (warned).
    pub fn list_dir(&mut self, path: &str) -> Vec<DirEntry> {
        self.ctx.list_dir(path)
    }

    /// `dir/NAME` for the names in `dir` matching the glob `pattern` (no dot files),
    /// sorted, at most `max`.
    pub fn glob(&mut self, dir: &str, pattern: &str, max: usize) -> Vec<String> {
        self.ctx.glob_in(dir, pattern, max)
    }

    /// lstat(2) of a guest path; `None` when absent or unreadable (warned).
    pub fn lstat(&mut self, path: &str) -> Option<Metadata> {
        self.ctx.lstat(path)
    }

    /// stat(2) of a guest path (links followed); `None` when absent or unreadable.
    pub fn stat(&mut self, path: &str) -> Option<Metadata> {
        self.ctx.stat(path)
    }

    /// Whether `path` exists (links followed).
    pub fn exists(&self, path: &str) -> bool {
        self.guest.exists(path)
    }

    /// Target of a symbolic link, `None` when it is not one.
    pub fn read_link(&self, path: &str) -> Option<String> {
        self.guest.read_link(path).ok()
    }

    /// Whether the inspection found service `name` (`x` or `x.service`) enabled.
    pub fn service_enabled(&self, name: &str) -> bool {
        self.os
            .services
            .iter()
            .any(|s| s.enabled && same_service(&s.name, name))
    }
}

/// `sshd` names the same service as `sshd.service`.
fn same_service(reported: &str, wanted: &str) -> bool {
    reported.trim_end_matches(".service") == wanted.trim_end_matches(".service")
}

/// `0644`-style rendering of permission bits for evidence.
fn mode_str(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// `mode 0644, uid 0, gid 0`: a file's permissions as evidence text.
pub fn ownership(meta: &Metadata) -> String {
    format!(
        "mode {}, uid {}, gid {}",
        mode_str(meta.mode),
        meta.uid,
        meta.gid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_per_check_are_capped() {
        use crate::inspect::os::memfs::MemFs;
        let guest = GuestFs::new(std::sync::Arc::new(MemFs::new()));
        let os = crate::profile::testing::linux();
        let mut t = Target::new(&guest, &os, &ProfileKind::ALL, None);
        for i in 0..MAX_PER_CHECK + 7 {
            t.found(
                &crate::profile::accounts::EXTRA_UID0,
                Evidence::line("/etc/passwd", i as u32 + 1, "x"),
            );
        }
        let (findings, warnings) = t.finish();
        assert_eq!(findings.len(), MAX_PER_CHECK);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("ACC-001: 7 more"), "{warnings:?}");
    }

    #[test]
    fn numbered_lines_keep_real_line_numbers() {
        let got: Vec<_> =
            crate::inspect::os::text::numbered_lines("# c\n\n  a b \n#x\nc\n").collect();
        assert_eq!(got, vec![(3, "a b"), (5, "c")]);
        assert_eq!(mode_str(0o104755), "4755");
    }
}
