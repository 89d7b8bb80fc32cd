//! World-writable entries under system directories: anyone on the machine could
//! replace a binary, a unit, a cron job or a config file there. Symlinks are skipped
//! (their mode is meaningless) and so are sticky directories (`/tmp`-style, where
//! users cannot touch each other's files).
//!
//! The first [`MAX_LISTED`] are reported one by one, the rest as one summary finding.

use crate::inspect::fs::{FileKind, Metadata};

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::{mode_str, Target};

/// Findings listed one by one before the summary.
pub const MAX_LISTED: usize = 50;

/// The trees walked: binaries, configuration, units and cron jobs.
pub const ROOTS: &[&str] = &[
    "/etc",
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/lib/systemd",
    "/var/spool/cron",
];

pub const WORLD_WRITABLE: Check = Check {
    id: "WW-001",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "World-writable file or directory in a system directory",
    remediation: "Remove write permission for others (`chmod o-w PATH`); system files should be writable by root only.",
};
pub const MORE_WORLD_WRITABLE: Check = Check {
    id: "WW-002",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "More world-writable entries in system directories than listed",
    remediation: "List them with `find / -xdev -perm -0002 ! -type l` on the system and remove write permission for others.",
};

pub const CHECKS: &[Check] = &[WORLD_WRITABLE, MORE_WORLD_WRITABLE];

/// Gathers world-writable entries during a walk.
#[derive(Default)]
pub struct Writable {
    listed: Vec<(String, Metadata)>,
    more: usize,
}

impl Writable {
    pub fn visit(&mut self, path: &str, meta: &Metadata) {
        if !is_world_writable(meta) {
            return;
        }
        if self.listed.len() < MAX_LISTED {
            self.listed.push((path.to_string(), meta.clone()));
        } else {
            self.more += 1;
        }
    }

    pub fn report(self, t: &mut Target) {
        for (path, meta) in &self.listed {
            let kind = match meta.kind {
                FileKind::Dir => "directory without sticky bit",
                FileKind::File => "regular file",
                _ => "special file",
            };
            t.found(
                &WORLD_WRITABLE,
                Evidence::file(
                    path,
                    format!(
                        "mode {}, uid {}, gid {}, {kind}",
                        mode_str(meta.mode),
                        meta.uid,
                        meta.gid
                    ),
                ),
            );
        }
        if self.more > 0 {
            t.found(
                &MORE_WORLD_WRITABLE,
                Evidence::general(format!(
                    "{} more world-writable entries beyond the {MAX_LISTED} listed",
                    self.more
                )),
            );
        }
    }
}

/// o+w on anything but a symlink, except directories with the sticky bit.
fn is_world_writable(meta: &Metadata) -> bool {
    match meta.kind {
        FileKind::Symlink => false,
        FileKind::Dir => meta.mode & 0o002 != 0 && meta.mode & 0o1000 == 0,
        _ => meta.mode & 0o002 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: FileKind, mode: u32) -> Metadata {
        Metadata {
            kind,
            size: 0,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn what_counts_as_world_writable() {
        assert!(is_world_writable(&meta(FileKind::File, 0o666)));
        assert!(is_world_writable(&meta(FileKind::Dir, 0o777)));
        assert!(!is_world_writable(&meta(FileKind::Dir, 0o1777)));
        assert!(!is_world_writable(&meta(FileKind::Symlink, 0o777)));
        assert!(!is_world_writable(&meta(FileKind::File, 0o664)));
        assert!(is_world_writable(&meta(FileKind::Other, 0o622)));

        let mut w = Writable::default();
        for i in 0..MAX_LISTED + 3 {
            w.visit(&format!("/etc/f{i}"), &meta(FileKind::File, 0o646));
        }
        assert_eq!((w.listed.len(), w.more), (MAX_LISTED, 3));
    }
}
