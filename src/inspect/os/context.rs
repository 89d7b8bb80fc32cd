//! The state shared by the fact readers of one OS root: its guest view and the warnings
//! collected so far.
//!
//! Every reader follows one rule: a file that is absent is normal (no warning); a file
//! that exists but cannot be read or parsed becomes a warning naming the file and the
//! reason, and inspection goes on. A broken file never fails the job.
//!
//! Every access is also a step of the job's [`Work`] budget (a listing costs one unit
//! per entry), checked with the job's cancel flag: once either stops the job, the
//! context reads nothing more and says so once.

use std::sync::Arc;

use crate::inspect::fs::{DirEntry, FsError, Metadata};
use crate::inspect::work::Work;

use super::guest::{GuestFs, DEFAULT_READ_LIMIT};
use super::text::glob_match;

/// Most warnings one OS root adds to the report; a hostile image with thousands of
/// broken files cannot flood it.
pub const MAX_WARNINGS: usize = 200;

/// One OS root being inspected.
pub struct Ctx<'a> {
    pub guest: &'a GuestFs,
    /// The root device, prefixed to every warning so a multi-boot report stays clear.
    pub root: String,
    warnings: Vec<String>,
    dropped: usize,
    max_warnings: usize,
    /// Cap of one [`Ctx::read_text`].
    per_file: u64,
    /// Cap of all text reads together, and what is left of it (`None`: no total cap).
    budget: Option<(u64, u64)>,
    /// The job's work budget and cancel flag.
    work: Arc<Work>,
    /// Set once `work` refused a step (warned once).
    stopped: bool,
}

impl<'a> Ctx<'a> {
    /// A context whose warnings start with `root`.
    pub fn new(guest: &'a GuestFs, root: &str) -> Ctx<'a> {
        Ctx {
            guest,
            root: root.to_string(),
            warnings: Vec::new(),
            dropped: 0,
            max_warnings: MAX_WARNINGS,
            per_file: DEFAULT_READ_LIMIT,
            budget: None,
            work: Arc::new(Work::unlimited()),
            stopped: false,
        }
    }

    /// The same, charging the job's `work` budget (and stopping on its cancel flag).
    pub fn with_work(mut self, work: Arc<Work>) -> Ctx<'a> {
        self.work = work;
        self
    }

    /// The job's work budget, for readers that charge their own steps (YAML nodes).
    pub fn work(&self) -> &Arc<Work> {
        &self.work
    }

    /// Charges `units` of work; `false` (after one warning) once the job's work budget
    /// is spent or the job is cancelled.
    pub fn charge(&mut self, units: u64) -> bool {
        if self.stopped {
            return false;
        }
        match self.work.charge(units) {
            Ok(()) => true,
            Err(why) => {
                self.stopped = true;
                self.warn(format_args!("{why}: the remaining files were not read"));
                false
            }
        }
    }

    /// The same with other caps: at most `max_warnings` warnings, text reads of at
    /// most `per_file` bytes each and `total` bytes together (past it files are skipped
    /// with a warning). For readers that may be pointed at thousands of files.
    pub fn with_caps(mut self, max_warnings: usize, per_file: u64, total: u64) -> Ctx<'a> {
        self.max_warnings = max_warnings;
        self.per_file = per_file;
        self.budget = Some((total, total));
        self
    }

    /// Records a warning about this root.
    pub fn warn(&mut self, message: impl std::fmt::Display) {
        if self.warnings.len() < self.max_warnings {
            self.warnings.push(format!("{}: {message}", self.root));
        } else {
            self.dropped += 1;
        }
    }

    /// The warnings, plus a count of those dropped over the cap.
    pub fn into_warnings(mut self) -> Vec<String> {
        if self.dropped > 0 {
            let n = self.dropped;
            self.warnings
                .push(format!("{}: {n} more warnings omitted", self.root));
        }
        self.warnings
    }

    /// A file's bytes; `None` when absent (silently) or unreadable (with a warning).
    pub fn read_bytes(&mut self, path: &str, limit: u64) -> Option<Vec<u8>> {
        if !self.charge(1) {
            return None;
        }
        let bytes = self.guest.read_file(path, limit);
        self.ok(path, bytes)
    }

    /// A text file (lossy UTF-8), capped at [`DEFAULT_READ_LIMIT`] unless
    /// [`Ctx::with_caps`] said otherwise.
    pub fn read_text(&mut self, path: &str) -> Option<String> {
        if !self.charge(1) {
            return None;
        }
        let left = self.budget.map_or(u64::MAX, |(_, left)| left);
        let limit = self.per_file.min(left);
        match self.guest.read_to_string_lossy(path, limit) {
            Ok(s) => {
                if let Some((_, left)) = &mut self.budget {
                    *left = left.saturating_sub(s.len() as u64);
                }
                Some(s)
            }
            Err(FsError::TooLarge { .. }) if limit < self.per_file => {
                let total = self.budget.map_or(0, |(total, _)| total);
                self.warn(format_args!(
                    "{path} not read: the checks already read {total} bytes of files"
                ));
                None
            }
            Err(e) => {
                self.note(path, e);
                None
            }
        }
    }

    /// A directory's entries sorted by name; empty when absent (silently) or unreadable
    /// (with a warning).
    pub fn list_dir(&mut self, path: &str) -> Vec<DirEntry> {
        if !self.charge(1) {
            return Vec::new();
        }
        match self.guest.read_dir(path) {
            Ok(mut entries) => {
                if !self.charge(entries.len() as u64) {
                    return Vec::new();
                }
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                entries
            }
            Err(e) => {
                self.note(path, e);
                Vec::new()
            }
        }
    }

    /// Paths matching `pattern`, which may have `*`/`?` wildcards in its last component
    /// only (what `Include`/`source` lines use in practice), sorted; a pattern without
    /// wildcards is returned as is if it exists. At most `max` results.
    pub fn glob(&mut self, pattern: &str, max: usize) -> Vec<String> {
        let (dir, file) = match pattern.rsplit_once('/') {
            Some((d, f)) => (if d.is_empty() { "/" } else { d }, f),
            None => return Vec::new(),
        };
        if !file.contains(['*', '?']) {
            return if self.charge(1) && self.guest.exists(pattern) {
                vec![pattern.to_string()]
            } else {
                Vec::new()
            };
        }
        self.glob_in(dir, file, max)
    }

    /// `dir/NAME` for the names in `dir` matching the glob `pattern` (no dot files),
    /// sorted, at most `max`.
    pub fn glob_in(&mut self, dir: &str, pattern: &str, max: usize) -> Vec<String> {
        let dir = dir.trim_end_matches('/');
        let entries = self.list_dir(if dir.is_empty() { "/" } else { dir });
        matching_paths(dir, entries, pattern, max)
    }

    /// lstat(2) of a guest path; `None` when absent (silently) or unreadable (warned).
    pub fn lstat(&mut self, path: &str) -> Option<Metadata> {
        if !self.charge(1) {
            return None;
        }
        let meta = self.guest.lstat(path);
        self.ok(path, meta)
    }

    /// stat(2) of a guest path (links followed); `None` when absent or unreadable.
    pub fn stat(&mut self, path: &str) -> Option<Metadata> {
        if !self.charge(1) {
            return None;
        }
        let meta = self.guest.metadata(path);
        self.ok(path, meta)
    }

    /// Target of a link, `None` when it is not one or cannot be read.
    pub fn read_link(&mut self, path: &str) -> Option<String> {
        if !self.charge(1) {
            return None;
        }
        match self.guest.read_link(path) {
            Ok(t) => Some(t),
            Err(FsError::NotASymlink(_)) => None,
            Err(e) => {
                self.note(path, e);
                None
            }
        }
    }

    fn ok<T>(&mut self, path: &str, result: Result<T, FsError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.note(path, e);
                None
            }
        }
    }

    /// Absent is normal: a missing path, or one below something that is not a
    /// directory (what open(2) calls ENOTDIR), is silent; anything else is warned.
    fn note(&mut self, path: &str, e: FsError) {
        if !matches!(e, FsError::NotFound(_) | FsError::NotADirectory(_)) {
            self.warn(format_args!("cannot read {path}: {e}"));
        }
    }
}

/// `dir/NAME` for the `entries` of `dir` whose names match the glob `pattern` (dot files
/// skipped), in the entries' order, at most `max`.
fn matching_paths(dir: &str, entries: Vec<DirEntry>, pattern: &str, max: usize) -> Vec<String> {
    entries
        .into_iter()
        .filter(|e| !e.name.starts_with('.') && glob_match(pattern, &e.name))
        .take(max)
        .map(|e| format!("{dir}/{}", e.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn work_budget_and_cancel_stop_every_access_with_one_warning() {
        let g = GuestFs::new(Arc::new(
            MemFs::new()
                .file("/d/a", "1")
                .file("/d/b", "2")
                .file("/d/c", "3"),
        ));
        // Listing /d costs 1 + 3 units: a budget of 6 allows one listing, not two.
        let mut ctx = Ctx::new(&g, "/dev/sda1").with_work(Arc::new(Work::new(6, None)));
        assert_eq!(ctx.list_dir("/d").len(), 3);
        assert!(ctx.list_dir("/d").is_empty());
        assert!(ctx.read_text("/d/a").is_none());
        let w = ctx.into_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("work budget"), "{w:?}");

        // The cancel flag stops a context that never reaches the disk again.
        let cancel = Arc::new(AtomicBool::new(false));
        let work = Arc::new(Work::new(u64::MAX, Some(cancel.clone())));
        let mut ctx = Ctx::new(&g, "/dev/sda1").with_work(work);
        assert_eq!(ctx.glob("/d/*", 10).len(), 3);
        cancel.store(true, Ordering::Relaxed);
        assert!(ctx.glob("/d/*", 10).is_empty());
        assert!(ctx.into_warnings()[0].contains("cancelled"));
    }
}
