//! Who may schedule jobs: cron and at should be restricted to the users in
//! `/etc/cron.allow` and `/etc/at.allow` (without an allow file every user not in the
//! deny file may), and the system crontab should not be readable by everyone (it tells
//! an attacker which scripts root runs). Judged only when cron or at is on the image.

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::{ownership, Target};

const CRONTAB: &str = "/etc/crontab";
/// Files that mean a cron daemon is installed (`/etc/cron.d` alone does not: other
/// packages drop jobs there whether or not cron is installed).
const CRON_MARKERS: &[&str] = &[
    CRONTAB,
    "/usr/bin/crontab",
    "/usr/sbin/cron",
    "/usr/sbin/crond",
];
/// Files that mean at is installed.
const AT_MARKERS: &[&str] = &["/etc/at.deny", "/usr/bin/at", "/var/spool/cron/atjobs"];

pub const CRON_ALLOW: Check = Check {
    id: "CRON-001",
    profile: ProfileKind::Compliance,
    severity: Severity::Low,
    title: "cron is not restricted to an allow list (/etc/cron.allow missing)",
    remediation: "Create /etc/cron.allow (mode 0600, owner root) listing the users who may use crontab, and remove /etc/cron.deny.",
};
pub const CRONTAB_MODE: Check = Check {
    id: "CRON-002",
    profile: ProfileKind::Compliance,
    severity: Severity::Low,
    title: "/etc/crontab is accessible to group or others",
    remediation: "chown root:root /etc/crontab and chmod 0600 /etc/crontab.",
};
pub const AT_ALLOW: Check = Check {
    id: "AT-001",
    profile: ProfileKind::Compliance,
    severity: Severity::Low,
    title: "at is not restricted to an allow list (/etc/at.allow missing)",
    remediation: "Create /etc/at.allow (mode 0600, owner root) listing the users who may use at, and remove /etc/at.deny.",
};

pub const CHECKS: &[Check] = &[CRON_ALLOW, CRONTAB_MODE, AT_ALLOW];

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Compliance) {
        return;
    }
    if let Some(marker) = CRON_MARKERS.iter().find(|m| t.exists(m)) {
        if !t.exists("/etc/cron.allow") {
            t.found(
                &CRON_ALLOW,
                Evidence::file(
                    "/etc/cron.allow",
                    format!("/etc/cron.allow not found; cron is installed ({marker} exists)"),
                ),
            );
        }
    }
    if let Some(meta) = t.stat(CRONTAB) {
        if meta.mode & 0o077 != 0 {
            t.found(&CRONTAB_MODE, Evidence::file(CRONTAB, ownership(&meta)));
        }
    }
    if let Some(marker) = AT_MARKERS.iter().find(|m| t.exists(m)) {
        if !t.exists("/etc/at.allow") {
            t.found(
                &AT_ALLOW,
                Evidence::file(
                    "/etc/at.allow",
                    format!("/etc/at.allow not found; at is installed ({marker} exists)"),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{ids_and_lines, linux, run_checks, run_on, ModeFs};
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn allow_files_and_crontab_mode() {
        let fs = ModeFs::new(MemFs::new().file(CRONTAB, "").file("/etc/at.deny", ""))
            .mode(CRONTAB, 0o644);
        let got = ids_and_lines(&run_on(Arc::new(fs), &linux(), run));
        assert_eq!(
            got,
            vec![
                ("AT-001".into(), "/etc/at.allow".into(), None),
                ("CRON-001".into(), "/etc/cron.allow".into(), None),
                ("CRON-002".into(), CRONTAB.into(), None),
            ]
        );
        let fs = ModeFs::new(
            MemFs::new()
                .file(CRONTAB, "")
                .file("/etc/cron.allow", "root\n")
                .file("/etc/at.deny", "")
                .file("/etc/at.allow", ""),
        )
        .mode(CRONTAB, 0o600);
        assert!(run_on(Arc::new(fs), &linux(), run).is_empty());
        assert!(run_checks(MemFs::new().dir("/etc"), run).is_empty());
    }
}
