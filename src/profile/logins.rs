//! Password-ageing and account-creation defaults in `/etc/login.defs` (shadow-utils):
//! `KEY VALUE` lines, the last assignment of a key wins (shadow's getdef reads the file
//! top to bottom, each line overwriting the previous value).
//!
//! Nothing is reported without the file. With it, a key that is missing is reported
//! when shadow-utils' built-in default is itself weak (no maximum password age,
//! minimum age 0, umask 022), with `line: null`.

use std::collections::HashMap;

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;
use crate::inspect::os::text::numbered_lines;

const LOGIN_DEFS: &str = "/etc/login.defs";
/// Most lines looked at.
const MAX_LINES: usize = 10_000;

pub const PASS_MAX_DAYS: Check = Check {
    id: "LOG-001",
    profile: ProfileKind::Compliance,
    severity: Severity::Medium,
    title: "Passwords do not expire within 90 days (PASS_MAX_DAYS)",
    remediation: "Set `PASS_MAX_DAYS 90` (or less) in /etc/login.defs and apply it to existing accounts with `chage --maxdays 90`.",
};
pub const PASS_MIN_DAYS: Check = Check {
    id: "LOG-002",
    profile: ProfileKind::Compliance,
    severity: Severity::Low,
    title: "Passwords can be changed again immediately (PASS_MIN_DAYS 0)",
    remediation:
        "Set `PASS_MIN_DAYS 1` in /etc/login.defs so a password cannot be cycled back at once.",
};
pub const PASS_WARN_AGE: Check = Check {
    id: "LOG-003",
    profile: ProfileKind::Compliance,
    severity: Severity::Low,
    title: "Password expiry warning shorter than 7 days (PASS_WARN_AGE)",
    remediation: "Set `PASS_WARN_AGE 7` (or more) in /etc/login.defs.",
};
pub const UMASK: Check = Check {
    id: "LOG-004",
    profile: ProfileKind::Hardening,
    severity: Severity::Low,
    title: "Default UMASK is more permissive than 027",
    remediation: "Set `UMASK 027` in /etc/login.defs so new files are not readable by other users.",
};
pub const ENCRYPT_METHOD: Check = Check {
    id: "LOG-005",
    profile: ProfileKind::Compliance,
    severity: Severity::Medium,
    title: "Weak password hashing method (ENCRYPT_METHOD DES or MD5)",
    remediation: "Set `ENCRYPT_METHOD SHA512` (or YESCRYPT) in /etc/login.defs and have users change their passwords.",
};

pub const CHECKS: &[Check] = &[
    PASS_MAX_DAYS,
    PASS_MIN_DAYS,
    PASS_WARN_AGE,
    UMASK,
    ENCRYPT_METHOD,
];

/// Where a key was last set.
struct Def<'a> {
    value: &'a str,
    line: u32,
    text: &'a str,
}

impl Def<'_> {
    fn evidence(&self) -> Evidence {
        Evidence::line(LOGIN_DEFS, self.line, self.text)
    }
}

pub fn run(t: &mut Target) {
    if !(t.wants(ProfileKind::Compliance) || t.wants(ProfileKind::Hardening)) {
        return;
    }
    let Some(text) = t.read_text(LOGIN_DEFS) else {
        return;
    };
    let defs = parse(&text);
    let missing = |key: &str, default: &str| {
        Evidence::file(
            LOGIN_DEFS,
            format!("{key} not set (shadow-utils default: {default})"),
        )
    };

    match defs.get("PASS_MAX_DAYS") {
        // -1 (or any negative) disables expiry.
        Some(d) if d.value.parse::<i64>().is_ok_and(|v| !(0..=90).contains(&v)) => {
            t.found(&PASS_MAX_DAYS, d.evidence())
        }
        Some(_) => {}
        None => t.found(&PASS_MAX_DAYS, missing("PASS_MAX_DAYS", "no maximum")),
    }
    match defs.get("PASS_MIN_DAYS") {
        Some(d) if d.value.parse::<i64>().is_ok_and(|v| v <= 0) => {
            t.found(&PASS_MIN_DAYS, d.evidence())
        }
        Some(_) => {}
        None => t.found(&PASS_MIN_DAYS, missing("PASS_MIN_DAYS", "0")),
    }
    if let Some(d) = defs.get("PASS_WARN_AGE") {
        if d.value.parse::<i64>().is_ok_and(|v| v < 7) {
            t.found(&PASS_WARN_AGE, d.evidence());
        }
    }
    match defs.get("UMASK") {
        Some(d) if parse_octal(d.value).is_some_and(|m| m & 0o027 != 0o027) => {
            t.found(&UMASK, d.evidence())
        }
        Some(_) => {}
        None => t.found(&UMASK, missing("UMASK", "022")),
    }
    if let Some(d) = defs.get("ENCRYPT_METHOD") {
        if d.value.eq_ignore_ascii_case("DES") || d.value.eq_ignore_ascii_case("MD5") {
            t.found(&ENCRYPT_METHOD, d.evidence());
        }
    }
}

/// Key -> last assignment.
fn parse(text: &str) -> HashMap<&str, Def<'_>> {
    let mut out = HashMap::new();
    for (line, l) in numbered_lines(text).take(MAX_LINES) {
        let mut f = l.split_whitespace();
        if let (Some(key), Some(value)) = (f.next(), f.next()) {
            out.insert(
                key,
                Def {
                    value: value.trim_matches('"'),
                    line,
                    text: l,
                },
            );
        }
    }
    out
}

/// An octal umask (`022`, `0027`); `None` when not octal or out of range.
fn parse_octal(v: &str) -> Option<u32> {
    u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ids_and_lines, run_checks};
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    fn got(text: &str) -> Vec<(String, String, Option<u32>)> {
        ids_and_lines(&run_checks(MemFs::new().file(LOGIN_DEFS, text), run))
    }

    #[test]
    fn weak_values_are_reported_at_their_last_line() {
        let text = "# defaults\nPASS_MAX_DAYS 60\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 3\n\
                    UMASK 022\nENCRYPT_METHOD MD5\n";
        let want: Vec<_> = [
            ("LOG-001", 3),
            ("LOG-002", 4),
            ("LOG-003", 5),
            ("LOG-004", 6),
            ("LOG-005", 7),
        ]
        .into_iter()
        .map(|(i, l)| (i.to_string(), LOGIN_DEFS.to_string(), Some(l)))
        .collect();
        assert_eq!(got(text), want);
    }

    #[test]
    fn strong_values_and_missing_keys() {
        assert!(got("PASS_MAX_DAYS 90\nPASS_MIN_DAYS 1\nPASS_WARN_AGE 7\nUMASK 027\nENCRYPT_METHOD SHA512\n").is_empty());
        assert!(got("PASS_MAX_DAYS 30\nPASS_MIN_DAYS 7\nUMASK 077\n").is_empty());
        let missing = got("PASS_WARN_AGE 14\n");
        let ids: Vec<_> = missing.iter().map(|(i, _, l)| (i.as_str(), *l)).collect();
        assert_eq!(
            ids,
            vec![("LOG-001", None), ("LOG-002", None), ("LOG-004", None)]
        );
        assert!(got("PASS_MAX_DAYS -1\n")
            .iter()
            .any(|(i, _, l)| i == "LOG-001" && *l == Some(1)));
        assert!(run_checks(MemFs::new().dir("/etc"), run).is_empty());
    }
}
