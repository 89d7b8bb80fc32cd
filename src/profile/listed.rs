//! The files a walk finds for one check: the first [`MAX_LISTED`] reported one by one
//! with their mode and owner, the rest counted into one summary finding, so a hostile
//! image with a million matching files still makes a small result.

use crate::inspect::fs::Metadata;

use super::finding::{Check, Evidence};
use super::target::Target;

/// Findings listed one by one before the summary.
pub const MAX_LISTED: usize = 50;

/// Files found for one check during a walk.
#[derive(Default)]
pub struct Listed {
    pub entries: Vec<(String, Metadata)>,
    pub more: usize,
}

impl Listed {
    /// Keeps `path` if fewer than [`MAX_LISTED`] are kept, else counts it.
    pub fn add(&mut self, path: &str, meta: &Metadata) {
        if self.entries.len() < MAX_LISTED {
            self.entries.push((path.to_string(), meta.clone()));
        } else {
            self.more += 1;
        }
    }

    /// One finding per kept file, with the check and evidence text `each` gives it;
    /// then, if any were only counted, `summary` saying how many more `what` there are.
    pub fn report(
        self,
        t: &mut Target,
        each: impl Fn(&Metadata) -> (&'static Check, String),
        summary: &Check,
        what: &str,
    ) {
        for (path, meta) in &self.entries {
            let (check, detail) = each(meta);
            t.found(check, Evidence::file(path, detail));
        }
        if self.more > 0 {
            t.found(
                summary,
                Evidence::general(format!(
                    "{} more {what} beyond the {MAX_LISTED} listed",
                    self.more
                )),
            );
        }
    }
}
