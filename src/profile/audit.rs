//! The Linux audit daemon installed but not started at boot: security-relevant events
//! (logins, privilege use, file changes watched by rules) go unrecorded. Only judged
//! when auditd is on the image (its package or its unit/script): an image without it
//! gets nothing from this check.

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;

/// Package names of the audit daemon (Debian: auditd; Red Hat, SUSE, Arch: audit).
const PACKAGES: &[&str] = &["auditd", "audit"];
/// Unit files and init scripts of the daemon.
const UNIT_FILES: &[&str] = &[
    "/etc/systemd/system/auditd.service",
    "/usr/lib/systemd/system/auditd.service",
    "/lib/systemd/system/auditd.service",
    "/etc/init.d/auditd",
];

pub const AUDITD_DISABLED: Check = Check {
    id: "AUD-001",
    profile: ProfileKind::Compliance,
    severity: Severity::Low,
    title: "auditd is installed but not enabled at boot",
    remediation: "Enable the audit daemon (`systemctl enable auditd`) and load audit rules for logins, privilege use and changes to system files.",
};

pub const CHECKS: &[Check] = &[AUDITD_DISABLED];

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Compliance) || t.service_enabled("auditd") {
        return;
    }
    let unit = UNIT_FILES.iter().find(|f| t.exists(f));
    let package =
        t.os.applications
            .iter()
            .find(|a| PACKAGES.contains(&a.name.as_str()))
            .map(|a| format!("package {} {}", a.name, a.version));
    let evidence = match (unit, package) {
        (Some(unit), pkg) => Evidence::file(
            unit,
            format!(
                "{}auditd not enabled (no link in /etc/systemd/system/*.wants or rc?.d)",
                pkg.map(|p| format!("{p} installed; ")).unwrap_or_default()
            ),
        ),
        (None, Some(pkg)) => {
            Evidence::general(format!("{pkg} installed; auditd not enabled at boot"))
        }
        (None, None) => return,
    };
    t.found(&AUDITD_DISABLED, evidence);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{ids_and_lines, linux, run_checks, run_on};
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::report::{Application, Service};

    #[test]
    fn installed_but_not_enabled() {
        let unit = "/usr/lib/systemd/system/auditd.service";
        let fs = Arc::new(MemFs::new().file(unit, "[Service]\n"));
        let got = ids_and_lines(&run_on(fs.clone(), &linux(), super::run));
        assert_eq!(got, vec![("AUD-001".into(), unit.into(), None)]);
        let mut os = linux();
        os.services = vec![Service {
            name: "auditd.service".into(),
            enabled: true,
            kind: "systemd".into(),
            ..Default::default()
        }];
        assert!(run_on(fs, &os, super::run).is_empty());
        assert!(run_checks(MemFs::new().dir("/etc"), super::run).is_empty());
        let mut os = linux();
        os.applications = vec![Application {
            name: "audit".into(),
            version: "3.1".into(),
            ..Default::default()
        }];
        let found = run_on(Arc::new(MemFs::new()), &os, super::run);
        assert_eq!(found.len(), 1);
        assert!(found[0].evidence.text.contains("package audit 3.1"));
    }
}
