//! Installed-package databases, read from their bytes: the "applications" of a guest.
//!
//! The OS layer reads the database files out of the guest filesystem and hands the bytes
//! here; nothing in this module touches a filesystem or runs a guest binary. One file per
//! on-disk format:
//!
//! - [`dpkg`]: `/var/lib/dpkg/status` (Debian, Ubuntu).
//! - [`rpm_header`]: one rpm header blob, the record every rpm database stores.
//! - [`rpmdb_sqlite`]: `/var/lib/rpm/rpmdb.sqlite` (rpm >= 4.16), read by our own minimal
//!   SQLite reader in [`sqlite`] (plus its write-ahead log).
//! - [`rpmdb_bdb`]: `/var/lib/rpm/Packages` (Berkeley DB hash, rpm < 4.16).
//! - [`rpmdb_ndb`]: `/usr/lib/sysimage/rpm/Packages.db` (rpm's ndb, SUSE).
//! - [`apk`]: `/lib/apk/db/installed` (Alpine).
//! - [`pacman`]: `/var/lib/pacman/local/<pkg>/desc` (Arch).
//!
//! Every parser takes hostile bytes: any input gives `Ok` or a [`PackageError`], never a
//! panic, and every count or length read from the input is bounded before it is used.

pub mod apk;
pub mod dpkg;
pub mod pacman;
pub mod rpm_header;
pub mod rpmdb_bdb;
pub mod rpmdb_ndb;
pub mod rpmdb_sqlite;
pub mod sqlite;

pub use apk::parse_apk_installed;
pub use dpkg::{parse_dpkg_status, parse_dpkg_status_list};
pub use pacman::parse_pacman_desc;
pub use rpm_header::parse_rpm_header;
pub use rpmdb_bdb::parse_rpmdb_bdb;
pub use rpmdb_ndb::parse_rpmdb_ndb;
pub use rpmdb_sqlite::{parse_rpmdb_sqlite, parse_rpmdb_sqlite_with_wal};

use crate::inspect::report::Application;

/// Most packages one database may yield. Real systems have a few thousand; the cap keeps
/// a hostile database from growing the report without bound.
pub const MAX_PACKAGES: usize = 200_000;

/// Longest name, version, release or arch accepted, in bytes. Real ones are tens of bytes;
/// a longer value means a corrupt record, not a package.
pub const MAX_FIELD_LEN: usize = 4096;

/// Summaries longer than this are cut (at a character boundary), not rejected: a summary
/// is descriptive text and a long one is odd but harmless.
pub const MAX_SUMMARY_LEN: usize = 4096;

/// Long descriptions longer than this are cut (at a character boundary): a few KiB is
/// usual, and the cap keeps one hostile record from growing the report.
pub const MAX_DESCRIPTION_LEN: usize = 64 * 1024;

/// Most warnings one database may produce; later ones are counted in a final warning so a
/// database with a million bad records cannot flood the report.
pub const MAX_WARNINGS: usize = 32;

/// Why a package database could not be read. One enum for the whole layer; every message
/// names the database and the line, record or byte offset that was wrong.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A line-oriented database (dpkg status, apk installed, pacman desc) is malformed.
    #[error("{database}: line {line}: {message}")]
    Syntax {
        database: &'static str,
        line: usize,
        message: String,
    },
    /// A binary structure (rpm header, SQLite page, Berkeley DB page) is malformed.
    #[error("{database}: corrupt {structure} at byte offset {offset}: {message}")]
    Corrupt {
        database: &'static str,
        structure: String,
        offset: u64,
        message: String,
    },
    /// A count or length in the database is above the bound we accept.
    #[error("{database}: {what} of {size} exceeds the limit of {limit}")]
    TooLarge {
        database: &'static str,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// A database format we recognise but do not read; the OS layer reports it as a warning.
    #[error("unsupported package database: {0}")]
    Unsupported(String),
}

impl PackageError {
    /// A syntax error at `line` of the line-oriented `database`.
    pub fn syntax(database: &'static str, line: usize, message: &str) -> PackageError {
        PackageError::Syntax {
            database,
            line,
            message: message.to_string(),
        }
    }
}

/// Applications plus the non-fatal problems met while reading them. Exists for the binary
/// databases, where (like `rpm -qa` itself) one bad record is skipped, not fatal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackageList {
    pub applications: Vec<Application>,
    pub warnings: Vec<String>,
}

impl PackageList {
    /// Records a warning, keeping at most [`MAX_WARNINGS`] plus one summary line.
    pub(crate) fn warn(&mut self, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        } else if self.warnings.len() == MAX_WARNINGS {
            self.warnings.push("further warnings omitted".to_string());
        }
    }
}

/// Sorts by name, then version (then the remaining fields, so the order is total and the
/// report deterministic). Plain byte order: no distro's version-comparison rules.
pub(crate) fn sort_applications(apps: &mut [Application]) {
    apps.sort_by(|a, b| {
        (
            &a.name, &a.version, &a.epoch, &a.release, &a.arch, &a.summary,
        )
            .cmp(&(
                &b.name, &b.version, &b.epoch, &b.release, &b.arch, &b.summary,
            ))
    });
}

/// Decodes a name/version/release/arch value, rejecting over-long ones. Lossy UTF-8: a
/// legacy Latin-1 byte must not cost the whole package list.
pub(crate) fn field_text(bytes: &[u8]) -> Option<String> {
    if bytes.len() > MAX_FIELD_LEN {
        return None;
    }
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Decodes a summary, cutting it to [`MAX_SUMMARY_LEN`] bytes at a character boundary;
/// `None` when empty.
pub(crate) fn summary_text(bytes: &[u8]) -> Option<String> {
    capped_text(bytes, MAX_SUMMARY_LEN)
}

/// Decodes a long description, cut to [`MAX_DESCRIPTION_LEN`] bytes like a summary;
/// `None` when empty.
pub(crate) fn description_text(bytes: &[u8]) -> Option<String> {
    capped_text(bytes, MAX_DESCRIPTION_LEN)
}

/// Decodes descriptive text (lossy UTF-8), cut to `cap` bytes at a character boundary and
/// trimmed; `None` when empty.
fn capped_text(bytes: &[u8], cap: usize) -> Option<String> {
    let cut = &bytes[..bytes.len().min(cap)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    // Cutting may have split a multi-byte character into a trailing U+FFFD: drop it.
    if cut.len() < bytes.len() && text.ends_with('\u{FFFD}') {
        text.pop();
    }
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Parses a decimal epoch; `None` for anything that is not a plain u32.
pub(crate) fn parse_epoch(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_cut_at_a_char_boundary() {
        let mut long = "é".repeat(MAX_SUMMARY_LEN);
        long.push('x');
        let s = summary_text(long.as_bytes()).unwrap();
        assert!(s.len() <= MAX_SUMMARY_LEN);
        assert!(s.chars().all(|c| c == 'é'));
        assert_eq!(summary_text(b"  "), None);
    }

    #[test]
    fn description_is_capped() {
        let long = "ü".repeat(MAX_DESCRIPTION_LEN);
        let d = description_text(long.as_bytes()).unwrap();
        assert!(d.len() <= MAX_DESCRIPTION_LEN);
        assert!(d.chars().all(|c| c == 'ü'));
        // Hostile bytes decode lossily, never panic.
        assert!(description_text(&[0xff, 0xfe, b'a']).is_some());
    }

    #[test]
    fn epoch_is_strict() {
        assert_eq!(parse_epoch("12"), Some(12));
        assert_eq!(parse_epoch(""), None);
        assert_eq!(parse_epoch("-1"), None);
        assert_eq!(parse_epoch("99999999999"), None);
    }

    #[test]
    fn warnings_are_capped() {
        let mut list = PackageList::default();
        for i in 0..100 {
            list.warn(format!("w{i}"));
        }
        assert_eq!(list.warnings.len(), MAX_WARNINGS + 1);
    }
}
