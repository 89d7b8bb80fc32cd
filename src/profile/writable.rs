//! World-writable entries under system directories: anyone on the machine could
//! replace a binary, a unit, a cron job or a config file there. Symlinks are skipped
//! (their mode is meaningless) and so are sticky directories (`/tmp`-style, where
//! users cannot touch each other's files).
//!
//! The first [`MAX_LISTED`](super::listed::MAX_LISTED) are reported one by one, the rest
//! as one summary finding.

use crate::inspect::fs::{FileKind, Metadata};

use super::finding::{Check, ProfileKind, Severity};
use super::listed::Listed;
use super::target::{ownership, Target};

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
    listed: Listed,
}

impl Writable {
    pub fn visit(&mut self, path: &str, meta: &Metadata) {
        if is_world_writable(meta) {
            self.listed.add(path, meta);
        }
    }

    pub fn report(self, t: &mut Target) {
        let each = |meta: &Metadata| {
            let kind = match meta.kind {
                FileKind::Dir => "directory without sticky bit",
                FileKind::File => "regular file",
                _ => "special file",
            };
            (&WORLD_WRITABLE, format!("{}, {kind}", ownership(meta)))
        };
        self.listed
            .report(t, each, &MORE_WORLD_WRITABLE, "world-writable entries");
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
    use crate::profile::listed::MAX_LISTED;

    fn meta(kind: FileKind, mode: u32) -> Metadata {
        Metadata {
            kind,
            size: 0,
            mode,
            uid: 0,
            gid: 0,
            times: Default::default(),
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
        assert_eq!((w.listed.entries.len(), w.listed.more), (MAX_LISTED, 3));
    }
}
