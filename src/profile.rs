//! Security profiles: checks a security reviewer would run over a guest's files (Linux
//! configuration files; Windows registry hives), evaluated on the image after the
//! inspection pipeline has found its OS roots (`guestkit.profile`).
//!
//! Every finding comes from a file on the image and points at it (file, and line where
//! one applies). A check whose file is absent reports nothing, except the checks whose
//! point is an absence (no firewall, no MAC, no allow list), whose evidence names what
//! was looked for. Checks read through the guest view of each OS (fstab mounts and
//! symlinks resolved inside the guest), bounded like the inspection: capped file
//! reads, bounded directory walks, a cancel flag polled.
//!
//! One file per area: `ssh`, `accounts`, `logins` (login.defs), `files` (the walks of
//! `writable` and `suid`), `services`, `mac`, `firewall`, `sysctl`, `mounts` (fstab),
//! `audit`, `cron`, `sudo`, `trust`; Windows roots get the `windows` area only.
//! [`catalogue`] lists every check.

mod accounts;
mod audit;
mod cron;
pub mod error;
mod files;
pub mod finding;
mod firewall;
mod listed;
mod logins;
mod mac;
mod mounts;
mod services;
mod ssh;
mod sudo;
mod suid;
mod sysctl;
mod target;
#[cfg(test)]
mod testing;
mod trust;
mod walk;
mod windows;
mod writable;

use std::path::Path;

use serde::Serialize;

pub use error::ProfileError;
pub use finding::{Check, Evidence, Finding, ProfileKind, Severity};

use crate::inspect::pipeline::{inspect_full, InspectError, InspectOptions, Inspection};
use crate::inspect::report::Report;
use crate::inspect::source::CancelFlag;
use target::Target;

/// The check areas, in the order they run.
const AREAS: &[fn(&mut Target)] = &[
    ssh::run,
    accounts::run,
    logins::run,
    files::run,
    services::run,
    mac::run,
    firewall::run,
    sysctl::run,
    mounts::run,
    audit::run,
    cron::run,
    sudo::run,
    trust::run,
];

/// Every check this build knows, in area order.
pub fn catalogue() -> Vec<Check> {
    let mut all: Vec<Check> = Vec::new();
    for area in [
        ssh::CHECKS,
        accounts::CHECKS,
        logins::CHECKS,
        writable::CHECKS,
        suid::CHECKS,
        services::CHECKS,
        mac::CHECKS,
        firewall::CHECKS,
        mounts::CHECKS,
        audit::CHECKS,
        cron::CHECKS,
        sudo::CHECKS,
        trust::CHECKS,
        windows::CHECKS,
    ] {
        all.extend_from_slice(area);
    }
    all.extend(sysctl::checks());
    all
}

/// What a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRequest {
    /// The profiles to evaluate, without duplicates.
    pub profiles: Vec<ProfileKind>,
    /// Findings below this severity are dropped.
    pub threshold: Severity,
}

impl Default for ProfileRequest {
    fn default() -> ProfileRequest {
        ProfileRequest {
            profiles: ProfileKind::ALL.to_vec(),
            threshold: Severity::Info,
        }
    }
}

/// Findings per severity, and in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub info: usize,
    pub total: usize,
}

impl Summary {
    fn count(findings: &[Finding]) -> Summary {
        let mut s = Summary::default();
        for f in findings {
            *match f.severity {
                Severity::Critical => &mut s.critical,
                Severity::High => &mut s.high,
                Severity::Medium => &mut s.medium,
                Severity::Low => &mut s.low,
                Severity::Info => &mut s.info,
            } += 1;
        }
        s.total = findings.len();
        s
    }
}

/// The `output` of `guestkit.profile`.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileOutput {
    pub profiles: Vec<ProfileKind>,
    pub severity_threshold: Severity,
    pub summary: Summary,
    /// Most severe first, then by id.
    pub findings: Vec<Finding>,
    /// The full inspection report the checks ran on (their warnings appended).
    pub inspection: Report,
    /// Guest bytes the inspection read (for metrics; not published).
    #[serde(skip)]
    pub bytes_read: u64,
}

impl ProfileOutput {
    /// Filters by the threshold, sorts, and counts.
    pub fn new(
        request: &ProfileRequest,
        findings: Vec<Finding>,
        inspection: Report,
    ) -> ProfileOutput {
        let mut findings: Vec<Finding> = findings
            .into_iter()
            .filter(|f| f.severity >= request.threshold && request.profiles.contains(&f.profile))
            .collect();
        findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        ProfileOutput {
            profiles: request.profiles.clone(),
            severity_threshold: request.threshold,
            summary: Summary::count(&findings),
            findings,
            inspection,
            bytes_read: 0,
        }
    }
}

/// Runs the checks of `profiles` over every Linux and Windows OS of an inspection. Returns the
/// findings (unsorted, unfiltered by severity) and warnings about files the checks
/// could not read.
pub fn evaluate(
    inspection: &Inspection,
    profiles: &[ProfileKind],
    cancel: Option<&CancelFlag>,
) -> Result<(Vec<Finding>, Vec<String>), ProfileError> {
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    for os in &inspection.report.operating_systems {
        // Each OS type gets its own areas: an absence check of Linux files run on
        // another OS would be an unconditional finding.
        let areas: &[fn(&mut Target)] = match os.os_type.as_str() {
            "linux" => AREAS,
            "windows" => &[windows::run],
            _ => continue,
        };
        let Some(guest) = inspection.guest(os) else {
            warnings.push(format!(
                "{}: profile: root filesystem not readable, no checks run",
                os.root
            ));
            continue;
        };
        let mut t = Target::new(&guest, os, profiles, cancel);
        for area in areas {
            area(&mut t);
            if t.cancelled() {
                return Err(ProfileError::Cancelled);
            }
        }
        let (f, w) = t.finish();
        findings.extend(f);
        warnings.extend(w);
    }
    Ok((findings, warnings))
}

/// Inspects the image at `path` and evaluates `request` on it (blocking). Every report
/// section is read whatever `opts` says: the checks need users, services and security.
pub fn profile_image(
    path: &Path,
    opts: &InspectOptions,
    request: &ProfileRequest,
) -> Result<ProfileOutput, ProfileError> {
    let opts = InspectOptions {
        include_applications: true,
        include_users: true,
        include_services: true,
        include_network: true,
        include_security: true,
        ..opts.clone()
    };
    let inspection = inspect_full(path, &opts)?;
    let (findings, warnings) = evaluate(&inspection, &request.profiles, opts.cancel.as_ref())?;
    // A filesystem loaded again for the checks may have found the process exhausted.
    if let Some(message) = crate::inspect::resources::take() {
        return Err(ProfileError::Inspect(InspectError::Resources {
            path: path.to_path_buf(),
            message,
        }));
    }
    let bytes_read = inspection.stats.bytes_read;
    let mut report = inspection.report;
    report.warnings.extend(warnings);
    let mut output = ProfileOutput::new(request, findings, report);
    output.bytes_read = bytes_read;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn catalogue_ids_are_unique_and_well_formed() {
        let all = catalogue();
        let mut seen = HashSet::new();
        for c in &all {
            assert!(seen.insert(c.id), "duplicate id {}", c.id);
            let (area, num) = c.id.split_once('-').unwrap();
            assert!(
                area.chars().all(|ch| ch.is_ascii_uppercase()) && num.len() == 3,
                "{}",
                c.id
            );
            assert!(
                !c.title.is_empty() && c.remediation.ends_with(['.', ')']),
                "{}",
                c.id
            );
        }
        assert!(all.len() >= 50, "{}", all.len());
    }

    #[test]
    fn output_filters_sorts_and_counts() {
        let os = "/dev/sda1";
        let f = |c: &Check, file: &str| Finding::new(c, os, Evidence::file(file, "x"));
        let findings = vec![
            f(&logins::UMASK, "/etc/login.defs"),
            f(&accounts::EXTRA_UID0, "/etc/passwd"),
            f(&suid::UNKNOWN_SETGID, "/usr/bin/x"),
            f(&ssh::ROOT_LOGIN, "/etc/ssh/sshd_config"),
            f(&mac::SELINUX_DISABLED, "/etc/selinux/config"),
            f(&ssh::PASSWORD_AUTH, "/etc/ssh/sshd_config"),
        ];
        let out = ProfileOutput::new(
            &ProfileRequest::default(),
            findings.clone(),
            Report::default(),
        );
        let ids: Vec<&str> = out.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["ACC-001", "MAC-001", "SSH-001", "SSH-002", "LOG-004", "SUID-002"]
        );
        assert_eq!(
            out.summary,
            Summary {
                critical: 1,
                high: 2,
                medium: 1,
                low: 1,
                info: 1,
                total: 6
            }
        );
        let req = ProfileRequest {
            profiles: vec![ProfileKind::Security],
            threshold: Severity::High,
        };
        let out = ProfileOutput::new(&req, findings, Report::default());
        let ids: Vec<&str> = out.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["ACC-001", "MAC-001", "SSH-001"]);
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["summary"]["total"], 3);
        assert_eq!(v["severity_threshold"], "high");
        assert_eq!(v["profiles"], serde_json::json!(["security"]));
        assert!(v.get("bytes_read").is_none());
        assert_eq!(
            v["findings"][0]["evidence"]["line"],
            serde_json::Value::Null
        );
    }
}
