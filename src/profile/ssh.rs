//! sshd checks, on the effective configuration read the way sshd reads it: keywords
//! are case-insensitive, the first value given for a keyword wins, `Include` (globs,
//! relative to `/etc/ssh`) is expanded in place, and `Match` blocks are skipped (they
//! only apply to some connections). Each setting keeps the file and line that set it,
//! for the evidence. Unset keywords produce nothing: sshd's defaults for these are safe.
//!
//! Plus the host private keys' permissions, which sshd itself refuses when too open
//! only for some of them.

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::{ownership, Target};
use crate::inspect::fs::FileKind;
use crate::inspect::os::sshd::{effective_config, Setting, SshdConfig, SshdSource, MAX_FILES};

const MAIN: &str = "/etc/ssh/sshd_config";
/// Most host keys looked at.
const MAX_HOST_KEYS: usize = 64;

pub const ROOT_LOGIN: Check = Check {
    id: "SSH-001",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "sshd permits root login with a password",
    remediation: "Set `PermitRootLogin no` (or `prohibit-password`) in /etc/ssh/sshd_config and log in as a regular user.",
};
pub const PASSWORD_AUTH: Check = Check {
    id: "SSH-002",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "sshd password authentication is explicitly enabled",
    remediation: "Set `PasswordAuthentication no` and use key-based authentication.",
};
pub const EMPTY_PASSWORDS: Check = Check {
    id: "SSH-003",
    profile: ProfileKind::Security,
    severity: Severity::Critical,
    title: "sshd permits logins to accounts with empty passwords",
    remediation: "Set `PermitEmptyPasswords no` in the sshd configuration.",
};
pub const PROTOCOL_1: Check = Check {
    id: "SSH-004",
    profile: ProfileKind::Security,
    severity: Severity::Critical,
    title: "sshd configured for the broken SSH protocol 1",
    remediation: "Remove the `Protocol` line (only protocol 2 is supported by current OpenSSH) or set `Protocol 2`.",
};
pub const X11_FORWARDING: Check = Check {
    id: "SSH-005",
    profile: ProfileKind::Hardening,
    severity: Severity::Low,
    title: "sshd X11 forwarding is enabled",
    remediation: "Set `X11Forwarding no` unless remote X11 applications are required.",
};
pub const MAX_AUTH_TRIES: Check = Check {
    id: "SSH-006",
    profile: ProfileKind::Security,
    severity: Severity::Low,
    title: "sshd MaxAuthTries is above 6",
    remediation: "Set `MaxAuthTries 4` (at most 6) to slow down password guessing.",
};
pub const HOSTBASED_AUTH: Check = Check {
    id: "SSH-007",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "sshd host-based authentication is enabled",
    remediation:
        "Set `HostbasedAuthentication no`: trust based on the client host is easily abused.",
};
pub const IGNORE_RHOSTS_OFF: Check = Check {
    id: "SSH-008",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "sshd honours .rhosts and .shosts files",
    remediation: "Set `IgnoreRhosts yes` (the default).",
};
pub const USER_ENVIRONMENT: Check = Check {
    id: "SSH-009",
    profile: ProfileKind::Hardening,
    severity: Severity::Low,
    title: "sshd lets users set environment variables for sshd",
    remediation: "Set `PermitUserEnvironment no` (the default): user-set variables such as LD_PRELOAD can bypass restrictions.",
};
pub const HOST_KEY_MODE: Check = Check {
    id: "SSH-010",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "SSH host private key is readable or writable beyond its owner",
    remediation: "chmod 0600 the host private keys (0640 with group ssh_keys where the distribution uses it).",
};

pub const CHECKS: &[Check] = &[
    ROOT_LOGIN,
    PASSWORD_AUTH,
    EMPTY_PASSWORDS,
    PROTOCOL_1,
    X11_FORWARDING,
    MAX_AUTH_TRIES,
    HOSTBASED_AUTH,
    IGNORE_RHOSTS_OFF,
    USER_ENVIRONMENT,
    HOST_KEY_MODE,
];

fn evidence(s: &Setting) -> Evidence {
    Evidence::line(&s.file, s.line, &s.text)
}

impl SshdSource for Target<'_> {
    fn read_text(&mut self, path: &str) -> Option<String> {
        Target::read_text(self, path)
    }
    fn include(&mut self, pattern: &str) -> Vec<String> {
        expand(self, pattern)
    }
    fn warn(&mut self, message: std::fmt::Arguments) {
        Target::warn(self, message);
    }
}

pub fn run(t: &mut Target) {
    if t.wants(ProfileKind::Security) || t.wants(ProfileKind::Hardening) {
        if let Some(config) = load(t) {
            check_config(t, &config);
        }
    }
    if t.wants(ProfileKind::Security) {
        host_keys(t);
    }
}

fn check_config(t: &mut Target, c: &SshdConfig) {
    let get = |k: &str| c.get(k);
    if let Some(s) = get("permitrootlogin").filter(|s| s.is("yes")) {
        t.found(&ROOT_LOGIN, evidence(s));
    }
    if let Some(s) = get("passwordauthentication").filter(|s| s.is("yes")) {
        t.found(&PASSWORD_AUTH, evidence(s));
    }
    if let Some(s) = get("permitemptypasswords").filter(|s| s.is("yes")) {
        t.found(&EMPTY_PASSWORDS, evidence(s));
    }
    if let Some(s) = get("protocol").filter(|s| s.value.split(',').any(|p| p.trim() == "1")) {
        t.found(&PROTOCOL_1, evidence(s));
    }
    if let Some(s) = get("x11forwarding").filter(|s| s.is("yes")) {
        t.found(&X11_FORWARDING, evidence(s));
    }
    if let Some(s) = get("maxauthtries").filter(|s| s.value.parse::<u64>().is_ok_and(|n| n > 6)) {
        t.found(&MAX_AUTH_TRIES, evidence(s));
    }
    if let Some(s) = get("hostbasedauthentication").filter(|s| s.is("yes")) {
        t.found(&HOSTBASED_AUTH, evidence(s));
    }
    if let Some(s) = get("ignorerhosts").filter(|s| s.is("no")) {
        t.found(&IGNORE_RHOSTS_OFF, evidence(s));
    }
    // `yes` or (OpenSSH 7.8+) a pattern list of variable names: anything but `no`.
    if let Some(s) = get("permituserenvironment").filter(|s| !s.is("no")) {
        t.found(&USER_ENVIRONMENT, evidence(s));
    }
}

/// The effective configuration; `None` without `/etc/ssh/sshd_config`.
fn load(t: &mut Target) -> Option<SshdConfig> {
    t.exists(MAIN).then(|| effective_config(t))
}

/// Files named by an Include pattern (wildcards in the last component), sorted as
/// sshd's glob(3) sorts them.
fn expand(t: &mut Target, pattern: &str) -> Vec<String> {
    let Some((dir, file)) = pattern.rsplit_once('/') else {
        return Vec::new();
    };
    if !file.contains(['*', '?']) {
        return if t.exists(pattern) {
            vec![pattern.to_string()]
        } else {
            Vec::new()
        };
    }
    t.glob(if dir.is_empty() { "/" } else { dir }, file, MAX_FILES)
}

/// Host private keys (`/etc/ssh/ssh_host_*_key`) with group-write or any access for
/// others.
fn host_keys(t: &mut Target) {
    for key in t.glob("/etc/ssh", "ssh_host_*_key", MAX_HOST_KEYS) {
        let Some(meta) = t.lstat(&key) else { continue };
        if meta.kind == FileKind::File && meta.mode & 0o037 != 0 {
            t.found(&HOST_KEY_MODE, Evidence::file(&key, ownership(&meta)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{ids_and_lines, linux, run_checks, run_warned};
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn first_value_wins_through_includes_and_match_is_skipped() {
        let fs = MemFs::new()
            .file(
                "/etc/ssh/sshd_config",
                "# c\nInclude sshd_config.d/*.conf\nPermitRootLogin yes\nPasswordAuthentication no\n\
                 Match User backup\n  PermitEmptyPasswords yes\nMatch all\nX11Forwarding yes\nMaxAuthTries 6\n",
            )
            .file(
                "/etc/ssh/sshd_config.d/10-a.conf",
                "passwordauthentication=yes\nMatch Address 10.0.0.0/8\nProtocol 1\n",
            )
            .file("/etc/ssh/sshd_config.d/20-b.conf", "Protocol 2,1\nMaxAuthTries 10\nIgnoreRhosts no\n")
            .file("/etc/ssh/sshd_config.d/README", "PermitEmptyPasswords yes\n");
        let got = ids_and_lines(&run_checks(fs, super::run));
        assert_eq!(
            got,
            vec![
                ("SSH-001".into(), "/etc/ssh/sshd_config".into(), Some(3)),
                (
                    "SSH-002".into(),
                    "/etc/ssh/sshd_config.d/10-a.conf".into(),
                    Some(1)
                ),
                (
                    "SSH-004".into(),
                    "/etc/ssh/sshd_config.d/20-b.conf".into(),
                    Some(1)
                ),
                ("SSH-005".into(), "/etc/ssh/sshd_config".into(), Some(8)),
                (
                    "SSH-006".into(),
                    "/etc/ssh/sshd_config.d/20-b.conf".into(),
                    Some(2)
                ),
                (
                    "SSH-008".into(),
                    "/etc/ssh/sshd_config.d/20-b.conf".into(),
                    Some(3)
                ),
            ]
        );
    }

    #[test]
    fn safe_or_absent_configs_report_nothing() {
        let fs = MemFs::new().file(
            "/etc/ssh/sshd_config",
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nInclude /nonexistent/*.conf\n",
        );
        assert!(run_checks(fs, super::run).is_empty());
        assert!(run_checks(MemFs::new().dir("/etc"), super::run).is_empty());
        let fs = MemFs::new().file(
            "/etc/ssh/sshd_config",
            "Include sshd_config\nPermitRootLogin yes\n",
        );
        // A config including itself stops at the depth limit, with a warning.
        let (found, warnings) = run_warned(Arc::new(fs), &linux(), super::run);
        assert_eq!(
            ids_and_lines(&found),
            vec![("SSH-001".into(), "/etc/ssh/sshd_config".into(), Some(2))]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
