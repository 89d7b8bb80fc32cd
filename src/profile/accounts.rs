//! Account checks on `/etc/passwd` and `/etc/shadow` as written on the image: extra
//! UID 0 accounts, password-less accounts that can log in, duplicate UIDs and names,
//! hashes left in passwd, and the shadow files' permissions.
//!
//! Password hashes never leave the worker: evidence lines quoting passwd or shadow have
//! the password field replaced by `<redacted>` unless it is empty or a lock marker.

use std::collections::{HashMap, HashSet};

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::{ownership, Target};

/// Most passwd/shadow lines looked at; a real file has a few hundred at most.
const MAX_LINES: usize = 100_000;

pub const EXTRA_UID0: Check = Check {
    id: "ACC-001",
    profile: ProfileKind::Security,
    severity: Severity::Critical,
    title: "Account other than root has UID 0",
    remediation:
        "Remove the account or give it a unique non-zero UID; only root should have UID 0.",
};
pub const EMPTY_PASSWORD: Check = Check {
    id: "ACC-002",
    profile: ProfileKind::Security,
    severity: Severity::Critical,
    title: "Account with an empty password and a login shell",
    remediation: "Set a password (`passwd NAME`) or lock the account (`passwd -l NAME`) and give it a nologin shell.",
};
pub const DUPLICATE_UID: Check = Check {
    id: "ACC-003",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "Several accounts share one UID",
    remediation:
        "Give every account its own UID so file ownership and audit trails name one account.",
};
pub const SHADOW_MODE: Check = Check {
    id: "ACC-004",
    profile: ProfileKind::Compliance,
    severity: Severity::High,
    title: "Shadow password file is world-readable or group/world-writable",
    remediation: "chown root:shadow (or root:root) and chmod 0640 (or 0000 on Red Hat family systems) the shadow files.",
};
pub const HASH_IN_PASSWD: Check = Check {
    id: "ACC-005",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "Password hash stored in world-readable /etc/passwd",
    remediation: "Run `pwconv` to move the hashes into /etc/shadow.",
};
pub const DUPLICATE_NAME: Check = Check {
    id: "ACC-006",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "Account name defined more than once in /etc/passwd",
    remediation:
        "Remove the duplicate entries; only the first is used and the others hide what was meant.",
};

pub const CHECKS: &[Check] = &[
    EXTRA_UID0,
    EMPTY_PASSWORD,
    DUPLICATE_UID,
    SHADOW_MODE,
    HASH_IN_PASSWD,
    DUPLICATE_NAME,
];

const PASSWD: &str = "/etc/passwd";
const SHADOW: &str = "/etc/shadow";
const SHADOW_FILES: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
];

/// One passwd line.
struct Account<'a> {
    name: &'a str,
    password: &'a str,
    uid: u32,
    shell: &'a str,
    line: u32,
    text: &'a str,
}

/// One shadow line: whether the hash is empty, and where it is.
struct ShadowEntry<'a> {
    empty: bool,
    line: u32,
    text: &'a str,
}

pub fn run(t: &mut Target) {
    if t.wants(ProfileKind::Security) {
        if let Some(passwd) = t.read_text(PASSWD) {
            let shadow_text = t.read_text(SHADOW);
            let shells = t.read_text("/etc/shells").map(|s| shells(&s));
            let accounts = parse_passwd(&passwd);
            let shadow = shadow_text.as_deref().map(parse_shadow);
            check_accounts(t, &accounts, shadow.as_ref(), shells.as_ref());
        }
    }
    if t.wants(ProfileKind::Compliance) {
        shadow_modes(t);
    }
}

fn check_accounts(
    t: &mut Target,
    accounts: &[Account],
    shadow: Option<&HashMap<&str, ShadowEntry>>,
    shells: Option<&HashSet<String>>,
) {
    let mut uids: HashMap<u32, &str> = HashMap::new();
    let mut names: HashSet<&str> = HashSet::new();
    for a in accounts {
        let passwd_evidence = || Evidence::line(PASSWD, a.line, &redact(a.text));
        if !names.insert(a.name) {
            t.found(&DUPLICATE_NAME, passwd_evidence());
            // Only the first entry of a name is ever used by the C library.
            continue;
        }
        if a.uid == 0 && a.name != "root" {
            t.found(&EXTRA_UID0, passwd_evidence());
        }
        // UID 0 twins are ACC-001 already; other sharing is reported once per extra
        // account.
        if a.uid != 0 && uids.insert(a.uid, a.name).is_some() {
            t.found(&DUPLICATE_UID, passwd_evidence());
        }
        if a.password != "x" && !a.password.is_empty() && !is_lock(a.password) {
            t.found(&HASH_IN_PASSWD, passwd_evidence());
        }
        if is_login_shell(a.shell, shells) {
            // The passwd field decides; `x` defers to shadow (no shadow entry: locked).
            let empty = if a.password == "x" {
                shadow
                    .and_then(|s| s.get(a.name))
                    .filter(|e| e.empty)
                    .map(|e| Evidence::line(SHADOW, e.line, &redact(e.text)))
            } else if a.password.is_empty() {
                Some(passwd_evidence())
            } else {
                None
            };
            if let Some(evidence) = empty {
                t.found(&EMPTY_PASSWORD, evidence);
            }
        }
    }
}

/// The shadow files must not be readable by others nor writable by the group.
fn shadow_modes(t: &mut Target) {
    for path in SHADOW_FILES {
        let Some(meta) = t.stat(path) else { continue };
        if meta.mode & 0o026 != 0 {
            t.found(&SHADOW_MODE, Evidence::file(path, ownership(&meta)));
        }
    }
}

/// passwd lines with 7 fields and a numeric UID (NIS `+`/`-` lines are not accounts).
fn parse_passwd(text: &str) -> Vec<Account<'_>> {
    lines(text)
        .filter(|(_, l)| !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|(line, text)| {
            let f: Vec<&str> = text.splitn(7, ':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(Account {
                name: f[0],
                password: f[1],
                uid: f[2].parse().ok()?,
                shell: f[6],
                line,
                text,
            })
        })
        .collect()
}

/// Name -> shadow entry (the first one, as the C library uses).
fn parse_shadow(text: &str) -> HashMap<&str, ShadowEntry<'_>> {
    let mut out = HashMap::new();
    for (line, text) in lines(text) {
        let mut f = text.split(':');
        if let (Some(name), Some(hash)) = (f.next(), f.next()) {
            out.entry(name).or_insert(ShadowEntry {
                empty: hash.is_empty(),
                line,
                text,
            });
        }
    }
    out
}

/// Non-comment lines with their numbers, bounded.
fn lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    crate::inspect::os::text::numbered_lines(text).take(MAX_LINES)
}

/// Paths listed in /etc/shells.
fn shells(text: &str) -> HashSet<String> {
    crate::inspect::os::text::numbered_lines(text)
        .take(MAX_LINES)
        .map(|(_, l)| l.to_string())
        .collect()
}

/// A shell someone can get a session with: not nologin/false, and listed in
/// /etc/shells when the image has one. An empty field means /bin/sh.
fn is_login_shell(shell: &str, shells: Option<&HashSet<String>>) -> bool {
    let shell = if shell.trim().is_empty() {
        "/bin/sh"
    } else {
        shell.trim()
    };
    let base = shell.rsplit('/').next().unwrap_or(shell);
    if matches!(base, "nologin" | "false" | "true") {
        return false;
    }
    shells.is_none_or(|list| list.contains(shell))
}

/// A password field no password matches (`!`, `!!`, `*`, `!$6$...`).
fn is_lock(password: &str) -> bool {
    password.starts_with('!') || password.starts_with('*')
}

/// The line with its password field replaced, unless that field is empty, `x` or a
/// bare lock marker (which say nothing secret).
fn redact(line: &str) -> String {
    let mut f: Vec<&str> = line.split(':').collect();
    if f.len() > 1 && !matches!(f[1], "" | "x" | "*" | "!" | "!!" | "!*") {
        f[1] = "<redacted>";
    }
    f.join(":")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{ids_and_lines, linux, run_checks, run_on, ModeFs};
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn accounts_are_checked_line_by_line() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      toor:x:0:0::/root:/bin/sh\n\
                      # comment\n\
                      daemon:x:1:1::/:/usr/sbin/nologin\n\
                      alice:x:1000:1000::/home/alice:/bin/bash\n\
                      bob:x:1000:1000::/home/bob:/bin/bash\n\
                      carol::1002:1002::/home/carol:\n\
                      dave:$6$salt$hash:1003:1003::/home/dave:/bin/bash\n\
                      alice:x:1004:1004::/home/alice2:/bin/bash\n\
                      sync:x:4:65534::/bin:/bin/sync\n\
                      +nis::::::\n";
        let shadow = "root:$6$abc:19000::::::\ntoor:!:19000::::::\ndaemon::19000::::::\n\
                      alice::19000::::::\nbob:$6$x:19000::::::\nsync::19000::::::\n";
        let fs = MemFs::new()
            .file(PASSWD, passwd)
            .file(SHADOW, shadow)
            .file("/etc/shells", "/bin/sh\n/bin/bash\n");
        let findings = run_on(Arc::new(ModeFs::new(fs).mode(SHADOW, 0o640)), &linux(), run);
        let got = ids_and_lines(&findings);
        let want: Vec<(String, String, Option<u32>)> = vec![
            ("ACC-001", PASSWD, 2),
            ("ACC-002", PASSWD, 7),
            ("ACC-002", SHADOW, 4),
            ("ACC-003", PASSWD, 6),
            ("ACC-005", PASSWD, 8),
            ("ACC-006", PASSWD, 9),
        ]
        .into_iter()
        .map(|(i, f, l)| (i.to_string(), f.to_string(), Some(l)))
        .collect();
        assert_eq!(got, want);
        // No hash reaches the output.
        let json = serde_json::to_string(&findings).unwrap();
        assert!(!json.contains("$6$"), "{json}");
        assert!(json.contains("dave:<redacted>:1003"), "{json}");
    }

    #[test]
    fn no_shadow_means_x_is_locked_and_modes_are_checked() {
        let fs = MemFs::new().file(
            PASSWD,
            "root:x:0:0::/root:/bin/bash\nu::1000:1000::/h:/bin/bash\n",
        );
        let got = ids_and_lines(&run_checks(fs, run));
        assert_eq!(got, vec![("ACC-002".into(), PASSWD.into(), Some(2))]);

        let fs = ModeFs::new(
            MemFs::new()
                .file(SHADOW, "")
                .file("/etc/gshadow", "")
                .file("/etc/shadow-", ""),
        )
        .mode(SHADOW, 0o644)
        .mode("/etc/gshadow", 0o640)
        .mode("/etc/shadow-", 0o660);
        let got = ids_and_lines(&run_on(Arc::new(fs), &linux(), run));
        assert_eq!(
            got,
            vec![
                ("ACC-004".into(), "/etc/shadow".into(), None),
                ("ACC-004".into(), "/etc/shadow-".into(), None),
            ]
        );
    }
}
