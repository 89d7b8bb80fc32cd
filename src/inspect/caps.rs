//! Caps on one whole report, on top of the caps each OS root has.
//!
//! A per-OS cap is not enough: a disk of 48 (overlapping) partitions that each look like
//! an OS with a 64 MiB package database once gave 9.1 M applications and a 4.7 GB
//! report. So the lists that grow with the image are also capped across the report:
//! while the roots are inspected ([`ReportCaps::take`], so memory stays bounded as
//! well), and once more on the finished report ([`cap_output`]) for the warnings and the
//! serialized size.

use std::io::Write;

use super::report::Report;

/// Most OS roots inspected on one disk: real multi-boot disks have a handful.
pub const MAX_OS_ROOTS: usize = 16;
/// Most applications, users and services in one report, all OS roots together.
pub const MAX_REPORT_APPLICATIONS: usize = 200_000;
pub const MAX_REPORT_USERS: usize = 20_000;
pub const MAX_REPORT_SERVICES: usize = 20_000;
/// Most warnings in one report.
pub const MAX_REPORT_WARNINGS: usize = 2_000;
/// Most bytes of the report as JSON: a real one is well under a few MiB even with
/// 200,000 applications (about 30 MiB); past this the largest lists are dropped.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

/// What is left of the report-wide caps while the OS roots are inspected.
#[derive(Debug)]
pub struct ReportCaps {
    pub applications: usize,
    pub users: usize,
    pub services: usize,
}

impl Default for ReportCaps {
    fn default() -> ReportCaps {
        ReportCaps {
            applications: MAX_REPORT_APPLICATIONS,
            users: MAX_REPORT_USERS,
            services: MAX_REPORT_SERVICES,
        }
    }
}

impl ReportCaps {
    /// Truncates `items` to what is left of `left` and takes it from `left`; a warning
    /// naming `what` when something was dropped.
    pub fn take<T>(left: &mut usize, items: &mut Vec<T>, what: &str) -> Option<String> {
        let had = items.len();
        items.truncate(*left);
        *left -= items.len();
        (had > items.len()).then(|| {
            format!(
                "{} of {had} {what} dropped: the report is capped across all OS roots",
                had - items.len()
            )
        })
    }
}

/// Caps the finished report: warnings to [`MAX_REPORT_WARNINGS`], then the JSON size to
/// [`MAX_REPORT_BYTES`] by dropping applications, then services and users, of every OS
/// (with a warning).
pub fn cap_output(report: &mut Report) {
    if report.warnings.len() > MAX_REPORT_WARNINGS {
        let dropped = report.warnings.len() - (MAX_REPORT_WARNINGS - 1);
        report.warnings.truncate(MAX_REPORT_WARNINGS - 1);
        report
            .warnings
            .push(format!("{dropped} more warnings omitted"));
    }
    let mut dropped = Vec::new();
    for what in ["applications", "services", "users"] {
        if json_size(report) <= MAX_REPORT_BYTES {
            break;
        }
        for os in &mut report.operating_systems {
            match what {
                "applications" => os.applications = Vec::new(),
                "services" => os.services = Vec::new(),
                _ => os.users = Vec::new(),
            }
        }
        dropped.push(what);
    }
    if !dropped.is_empty() {
        report.warnings.push(format!(
            "report larger than {MAX_REPORT_BYTES} bytes: {} dropped",
            dropped.join(", ")
        ));
    }
}

/// Size of `report` as compact JSON, counted without building the text.
fn json_size(report: &Report) -> u64 {
    let mut counter = Counter(0);
    // Serialising our own types into a counter cannot fail; a failure counts as huge.
    match serde_json::to_writer(&mut counter, report) {
        Ok(()) => counter.0,
        Err(_) => u64::MAX,
    }
}

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::report::{Application, OperatingSystem};

    #[test]
    fn take_shares_one_cap() {
        let mut left = 5;
        let mut a = vec![1, 2, 3];
        assert_eq!(ReportCaps::take(&mut left, &mut a, "x"), None);
        let mut b = vec![1, 2, 3, 4];
        let w = ReportCaps::take(&mut left, &mut b, "applications").unwrap();
        assert_eq!((b.len(), left), (2, 0));
        assert!(w.starts_with("2 of 4 applications dropped"), "{w}");
    }

    #[test]
    fn output_is_capped() {
        let app = Application {
            name: "x".repeat(4000),
            ..Application::default()
        };
        let os = OperatingSystem {
            applications: vec![app; (MAX_REPORT_BYTES / 4000) as usize + 10],
            ..OperatingSystem::default()
        };
        let mut r = Report {
            operating_systems: vec![os],
            warnings: vec!["w".to_string(); MAX_REPORT_WARNINGS + 5],
            ..Report::default()
        };
        cap_output(&mut r);
        assert!(r.operating_systems[0].applications.is_empty());
        assert!(json_size(&r) <= MAX_REPORT_BYTES);
        assert_eq!(r.warnings.len(), MAX_REPORT_WARNINGS + 1);
        assert!(r.warnings.last().unwrap().contains("applications dropped"));
    }
}
