//! Mandatory access control: SELinux disabled or permissive where it is configured,
//! and neither SELinux nor AppArmor at all.
//!
//! The SELinux mode is `SELINUX=` of `/etc/selinux/config` (the last assignment, as
//! the shell-style file is read), overridden by the kernel command line configured for
//! the next boot (`selinux=0` disables, `enforcing=0` makes it permissive) in GRUB's
//! defaults or `/etc/kernel/cmdline`. AppArmor's state is the inspection's
//! (`security.apparmor`: profiles present and the service enabled).

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;
use crate::inspect::os::text::numbered_lines;

const SELINUX_CONFIG: &str = "/etc/selinux/config";
/// Most GRUB drop-ins read.
const MAX_DROPINS: usize = 64;

pub const SELINUX_DISABLED: Check = Check {
    id: "MAC-001",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "SELinux is disabled",
    remediation: "Set `SELINUX=enforcing` in /etc/selinux/config (relabel with `touch /.autorelabel`) and remove `selinux=0` from the kernel command line.",
};
pub const SELINUX_PERMISSIVE: Check = Check {
    id: "MAC-002",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "SELinux is in permissive mode (policy not enforced)",
    remediation: "Set `SELINUX=enforcing` in /etc/selinux/config once the audit log shows no unexpected denials.",
};
pub const NO_MAC: Check = Check {
    id: "MAC-003",
    profile: ProfileKind::Hardening,
    severity: Severity::Medium,
    title: "No mandatory access control (neither SELinux nor AppArmor) configured",
    remediation: "Install and enable AppArmor (Debian/Ubuntu/SUSE) or SELinux (Red Hat family) with the distribution's policy.",
};

pub const CHECKS: &[Check] = &[SELINUX_DISABLED, SELINUX_PERMISSIVE, NO_MAC];

pub fn run(t: &mut Target) {
    if !t.exists(SELINUX_CONFIG) {
        if !t.os.security.apparmor {
            t.found(
                &NO_MAC,
                Evidence::general(format!(
                    "not found: {SELINUX_CONFIG}; AppArmor profiles in /etc/apparmor.d with apparmor.service enabled"
                )),
            );
        }
        return;
    }
    if let Some(e) = kernel_word(t, "selinux=0") {
        t.found(&SELINUX_DISABLED, e);
        return;
    }
    let Some(text) = t.read_text(SELINUX_CONFIG) else {
        return;
    };
    let mode = numbered_lines(&text)
        .filter_map(|(n, l)| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "SELINUX").then(|| {
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                (value.to_ascii_lowercase(), n, l)
            })
        })
        .last();
    match mode {
        Some((m, n, l)) if m == "disabled" => {
            t.found(&SELINUX_DISABLED, Evidence::line(SELINUX_CONFIG, n, l))
        }
        Some((m, n, l)) if m == "permissive" => {
            t.found(&SELINUX_PERMISSIVE, Evidence::line(SELINUX_CONFIG, n, l))
        }
        Some((m, _, _)) if m == "enforcing" => {
            if let Some(e) = kernel_word(t, "enforcing=0") {
                t.found(&SELINUX_PERMISSIVE, e);
            }
        }
        _ => {}
    }
}

/// The line of the boot configuration that puts `word` on the kernel command line.
fn kernel_word(t: &mut Target, word: &str) -> Option<Evidence> {
    let mut files = vec!["/etc/default/grub".to_string()];
    files.extend(t.glob("/etc/default/grub.d", "*.cfg", MAX_DROPINS));
    files.push("/etc/kernel/cmdline".to_string());
    for file in files {
        let Some(text) = t.read_text(&file) else {
            continue;
        };
        let grub = file != "/etc/kernel/cmdline";
        for (n, line) in numbered_lines(&text) {
            if grub && !line.starts_with("GRUB_CMDLINE_LINUX") {
                continue;
            }
            if line
                .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .any(|w| w == word)
            {
                return Some(Evidence::line(&file, n, line));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ids_and_lines, linux, run_checks, run_on};
    use super::*;
    use crate::inspect::os::memfs::MemFs;
    use std::sync::Arc;

    fn got(fs: MemFs) -> Vec<(String, String, Option<u32>)> {
        ids_and_lines(&run_checks(fs, run))
    }

    #[test]
    fn selinux_modes() {
        let cfg = |mode: &str| {
            MemFs::new().file(
                SELINUX_CONFIG,
                format!("# x\nSELINUX=enforcing\nSELINUX={mode}\nSELINUXTYPE=targeted\n"),
            )
        };
        assert_eq!(
            got(cfg("permissive")),
            vec![("MAC-002".into(), SELINUX_CONFIG.into(), Some(3))]
        );
        assert_eq!(
            got(cfg("disabled")),
            vec![("MAC-001".into(), SELINUX_CONFIG.into(), Some(3))]
        );
        assert!(got(cfg("enforcing")).is_empty());
        let grub = cfg("enforcing").file(
            "/etc/default/grub",
            "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"quiet selinux=0\"\n",
        );
        assert_eq!(
            got(grub),
            vec![("MAC-001".into(), "/etc/default/grub".into(), Some(2))]
        );
        let cmdline = cfg("enforcing").file("/etc/kernel/cmdline", "root=UUID=x enforcing=0\n");
        assert_eq!(
            got(cmdline),
            vec![("MAC-002".into(), "/etc/kernel/cmdline".into(), Some(1))]
        );
    }

    #[test]
    fn no_mac_at_all() {
        let found = run_checks(MemFs::new().dir("/etc"), run);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "MAC-003");
        assert_eq!(found[0].evidence.file, None);
        assert!(found[0].evidence.text.contains(SELINUX_CONFIG));
        let mut os = linux();
        os.security.apparmor = true;
        assert!(run_on(Arc::new(MemFs::new().dir("/etc")), &os, run).is_empty());
    }
}
