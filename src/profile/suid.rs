//! Set-user-id and set-group-id executables that are not among the ones distributions
//! ship on purpose. Each extra one is attack surface: a bug in it is a privilege
//! escalation. Not a vulnerability by itself, hence low (setuid) and info (setgid).
//!
//! The first [`MAX_LISTED`](super::listed::MAX_LISTED) are reported one by one, the rest
//! as one summary finding.

use crate::inspect::fs::{FileKind, Metadata};

use super::finding::{Check, ProfileKind, Severity};
use super::listed::Listed;
use super::target::{ownership, Target};

/// The trees where executables live.
pub const ROOTS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/lib",
    "/usr/libexec",
    "/usr/local/lib",
    "/opt",
];

/// Set-id programs the common distributions (Debian, Ubuntu, Fedora/RHEL, SUSE,
/// Alpine, Arch) install set-id by design, by file name.
const KNOWN: &[&str] = &[
    "at",
    "bbsuid",
    "bsd-write",
    "chage",
    "chfn",
    "chrome-sandbox",
    "chsh",
    "cockpit-session",
    "crontab",
    "dbus-daemon-launch-helper",
    "doas",
    "dotlockfile",
    "exim4",
    "expiry",
    "fusermount",
    "fusermount3",
    "gpasswd",
    "grub2-set-bootflag",
    "ksu",
    "locate",
    "lockdev",
    "mail-lock",
    "mail-touchlock",
    "mail-unlock",
    "mlocate",
    "mount",
    "mount.cifs",
    "mount.ecryptfs_private",
    "mount.nfs",
    "netreport",
    "newgidmap",
    "newgrp",
    "newuidmap",
    "pam_timestamp_check",
    "passwd",
    "ping",
    "ping6",
    "pkexec",
    "plocate",
    "polkit-agent-helper-1",
    "postdrop",
    "postqueue",
    "pppd",
    "pt_chown",
    "sg",
    "snap-confine",
    "ssh-agent",
    "ssh-keysign",
    "staprun",
    "su",
    "sudo",
    "sudoedit",
    "traceroute6.iputils",
    "umount",
    "unix2_chkpwd",
    "unix_chkpwd",
    "userhelper",
    "usernetctl",
    "utempter",
    "vmware-user-suid-wrapper",
    "wall",
    "write",
    "Xorg",
    "Xorg.wrap",
];

pub const UNKNOWN_SETUID: Check = Check {
    id: "SUID-001",
    profile: ProfileKind::Hardening,
    severity: Severity::Low,
    title: "Set-user-id executable not in the list of expected ones",
    remediation:
        "Check why the file is setuid; if it need not be, `chmod u-s PATH` (or remove the package).",
};
pub const UNKNOWN_SETGID: Check = Check {
    id: "SUID-002",
    profile: ProfileKind::Hardening,
    severity: Severity::Info,
    title: "Set-group-id executable not in the list of expected ones",
    remediation: "Check why the file is setgid; if it need not be, `chmod g-s PATH`.",
};
pub const MORE_SETID: Check = Check {
    id: "SUID-003",
    profile: ProfileKind::Hardening,
    severity: Severity::Info,
    title: "More unexpected set-id executables than listed",
    remediation: "List them with `find / -xdev -perm /6000 -type f` on the system and review each.",
};

pub const CHECKS: &[Check] = &[UNKNOWN_SETUID, UNKNOWN_SETGID, MORE_SETID];

/// Gathers unexpected set-id files during a walk.
#[derive(Default)]
pub struct SetId {
    listed: Listed,
}

impl SetId {
    pub fn visit(&mut self, path: &str, meta: &Metadata) {
        if meta.kind != FileKind::File || meta.mode & 0o6000 == 0 {
            return;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        if !KNOWN.contains(&name) {
            self.listed.add(path, meta);
        }
    }

    pub fn report(self, t: &mut Target) {
        let each = |meta: &Metadata| {
            let check = if meta.mode & 0o4000 != 0 {
                &UNKNOWN_SETUID
            } else {
                &UNKNOWN_SETGID
            };
            (check, ownership(meta))
        };
        self.listed
            .report(t, each, &MORE_SETID, "unexpected set-id executables");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_setid_regular_files() {
        let m = |kind, mode| Metadata {
            kind,
            size: 0,
            mode,
            uid: 0,
            gid: 0,
            times: Default::default(),
        };
        let mut s = SetId::default();
        s.visit("/usr/bin/passwd", &m(FileKind::File, 0o4755));
        s.visit("/usr/bin/evil", &m(FileKind::File, 0o4755));
        s.visit("/usr/bin/games", &m(FileKind::File, 0o2755));
        s.visit("/usr/bin/plain", &m(FileKind::File, 0o755));
        s.visit("/usr/bin/dir", &m(FileKind::Dir, 0o2775));
        let names: Vec<_> = s.listed.entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, vec!["/usr/bin/evil", "/usr/bin/games"]);
    }
}
