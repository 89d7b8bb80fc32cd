//! What a check reports: a [`Finding`] made of a static [`Check`] (stable id, profile,
//! severity, title, remediation) and the [`Evidence`] found on the image.
//!
//! Checks are static so ids, severities and remediations stay the same from one run
//! to the next (consumers key dashboards and suppressions on the id); only the
//! evidence varies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest evidence text, in characters: enough for any config line worth quoting,
/// short enough that a hostile file cannot bloat the result.
pub const MAX_EVIDENCE_CHARS: usize = 200;

/// How bad a finding is. Ordered: `Info < Low < ... < Critical`, so a threshold is a
/// plain comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, most severe first (the order of the summary and of the findings).
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Severity, String> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity {s:?}; expected one of critical, high, medium, low, info")
            })
    }
}

/// A named group of checks a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// What an attacker could use now: logins, exposed services, writable system files.
    Security,
    /// What an auditor asks for: password ageing, audit logging, file permissions.
    Compliance,
    /// Defence in depth: kernel settings, mount options, MAC, set-id binaries.
    Hardening,
}

impl ProfileKind {
    /// Every profile, in the order they are listed by default.
    pub const ALL: [ProfileKind; 3] = [
        ProfileKind::Security,
        ProfileKind::Compliance,
        ProfileKind::Hardening,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Security => "security",
            ProfileKind::Compliance => "compliance",
            ProfileKind::Hardening => "hardening",
        }
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProfileKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ProfileKind, String> {
        ProfileKind::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown profile {s:?}; expected one of security, compliance, hardening")
            })
    }
}

/// One check's fixed description. Every finding of a check carries these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// Stable identifier, `AREA-NNN`.
    pub id: &'static str,
    pub profile: ProfileKind,
    pub severity: Severity,
    pub title: &'static str,
    /// One sentence saying what to change.
    pub remediation: &'static str,
}

/// Where on the image a finding comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Guest path of the file (or directory) concerned; `None` when the finding is
    /// about something absent that has no single file (no firewall at all).
    pub file: Option<String>,
    /// 1-based line in `file`; `None` when the finding is about a file as a whole (its
    /// mode) or about a missing file or setting.
    pub line: Option<u32>,
    /// The offending line (trimmed), or what was looked for and not found.
    pub text: String,
}

impl Evidence {
    /// A line of a file.
    pub fn line(file: &str, line: u32, text: &str) -> Evidence {
        Evidence {
            file: Some(file.to_string()),
            line: Some(line),
            text: clip(text),
        }
    }

    /// A file as a whole (its mode, its existence), or a setting missing from it.
    pub fn file(file: &str, text: impl AsRef<str>) -> Evidence {
        Evidence {
            file: Some(file.to_string()),
            line: None,
            text: clip(text.as_ref()),
        }
    }

    /// Evidence with no single file: something absent from the whole system (`text`
    /// names what was looked for), or a summary of entries not listed one by one.
    pub fn general(text: impl AsRef<str>) -> Evidence {
        Evidence {
            file: None,
            line: None,
            text: clip(text.as_ref()),
        }
    }
}

/// One finding as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub profile: ProfileKind,
    pub severity: Severity,
    pub title: String,
    /// The OS root device the finding is about (a multi-boot disk has several).
    pub os_root: String,
    pub evidence: Evidence,
    pub remediation: String,
}

impl Finding {
    pub fn new(check: &Check, os_root: &str, evidence: Evidence) -> Finding {
        Finding {
            id: check.id.to_string(),
            profile: check.profile,
            severity: check.severity,
            title: check.title.to_string(),
            os_root: os_root.to_string(),
            evidence,
            remediation: check.remediation.to_string(),
        }
    }

    /// The published order: most severe first, then by id, then by place.
    pub fn sort_key(&self) -> impl Ord + '_ {
        (
            std::cmp::Reverse(self.severity),
            self.id.as_str(),
            self.os_root.as_str(),
            self.evidence.file.as_deref(),
            self.evidence.line,
        )
    }
}

/// Trims `text` and cuts it to [`MAX_EVIDENCE_CHARS`] characters (an ellipsis marks a
/// cut), so evidence is one readable line.
pub fn clip(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_EVIDENCE_CHARS {
        return text.replace(['\r', '\n'], " ");
    }
    let mut out: String = text.chars().take(MAX_EVIDENCE_CHARS - 1).collect();
    out.push('…');
    out.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for p in ProfileKind::ALL {
            assert_eq!(p.as_str().parse::<ProfileKind>().unwrap(), p);
        }
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        assert!("severe".parse::<Severity>().is_err());
        assert!("Security".parse::<ProfileKind>().is_err());
    }

    #[test]
    fn evidence_is_trimmed_and_clipped() {
        let e = Evidence::line("/etc/x", 3, "   PermitRootLogin yes  ");
        assert_eq!(e.text, "PermitRootLogin yes");
        let long = "é".repeat(500);
        let e = Evidence::file("/etc/x", &long);
        assert_eq!(e.text.chars().count(), MAX_EVIDENCE_CHARS);
        assert!(e.text.ends_with('…'));
        assert_eq!(clip("a\nb"), "a b");
    }
}
