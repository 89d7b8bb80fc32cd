//! The state shared by the fact readers of one OS root: its guest view and the warnings
//! collected so far.
//!
//! Every reader follows one rule: a file that is absent is normal (no warning); a file
//! that exists but cannot be read or parsed becomes a warning naming the file and the
//! reason, and inspection goes on. A broken file never fails the job.

use crate::inspect::fs::{DirEntry, FsError};

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
}

impl<'a> Ctx<'a> {
    pub fn new(guest: &'a GuestFs, root: &str) -> Ctx<'a> {
        Ctx {
            guest,
            root: root.to_string(),
            warnings: Vec::new(),
            dropped: 0,
        }
    }

    /// Records a warning about this root.
    pub fn warn(&mut self, message: impl std::fmt::Display) {
        if self.warnings.len() < MAX_WARNINGS {
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
        match self.guest.read_file(path, limit) {
            Ok(b) => Some(b),
            Err(e) => {
                self.note(path, e);
                None
            }
        }
    }

    /// A text file (lossy UTF-8), capped at [`DEFAULT_READ_LIMIT`].
    pub fn read_text(&mut self, path: &str) -> Option<String> {
        match self.guest.read_to_string_lossy(path, DEFAULT_READ_LIMIT) {
            Ok(s) => Some(s),
            Err(e) => {
                self.note(path, e);
                None
            }
        }
    }

    /// A directory's entries sorted by name; empty when absent (silently) or unreadable
    /// (with a warning).
    pub fn list_dir(&mut self, path: &str) -> Vec<DirEntry> {
        match self.guest.read_dir(path) {
            Ok(mut entries) => {
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
            return if self.guest.exists(pattern) {
                vec![pattern.to_string()]
            } else {
                Vec::new()
            };
        }
        let dir = dir.trim_end_matches('/');
        let entries = self.list_dir(if dir.is_empty() { "/" } else { dir });
        matching_paths(dir, entries, file, max)
    }

    /// Target of a link, `None` when it is not one or cannot be read.
    pub fn read_link(&mut self, path: &str) -> Option<String> {
        match self.guest.read_link(path) {
            Ok(t) => Some(t),
            Err(FsError::NotASymlink(_)) => None,
            Err(e) => {
                self.note(path, e);
                None
            }
        }
    }

    fn note(&mut self, path: &str, e: FsError) {
        if !matches!(e, FsError::NotFound(_)) {
            self.warn(format_args!("cannot read {path}: {e}"));
        }
    }
}

/// `dir/NAME` for the `entries` of `dir` whose names match the glob `pattern` (dot files
/// skipped), in the entries' order, at most `max`.
pub fn matching_paths(dir: &str, entries: Vec<DirEntry>, pattern: &str, max: usize) -> Vec<String> {
    entries
        .into_iter()
        .filter(|e| !e.name.starts_with('.') && glob_match(pattern, &e.name))
        .take(max)
        .map(|e| format!("{dir}/{}", e.name))
        .collect()
}
