//! Host-based trust files of the r-services (and of sshd's host-based authentication):
//! `/etc/hosts.equiv`, `/etc/ssh/shosts.equiv` and users' `~/.rhosts` / `~/.shosts`.
//! An entry there lets a remote host or user log in without a password; a `+` lets
//! anyone. Files with no entries are harmless and not reported.

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;
use crate::inspect::os::text::numbered_lines;

const SYSTEM_FILES: &[&str] = &["/etc/hosts.equiv", "/etc/ssh/shosts.equiv"];
const USER_FILES: &[&str] = &[".rhosts", ".shosts"];
/// Most home directories looked into.
const MAX_HOMES: usize = 1000;

pub const HOSTS_EQUIV: Check = Check {
    id: "TRUST-001",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "System-wide host trust file has entries (password-less r-service/host-based login)",
    remediation: "Empty or delete the file and use key-based SSH authentication.",
};
pub const USER_RHOSTS: Check = Check {
    id: "TRUST-002",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "User .rhosts/.shosts file has entries (password-less login from other hosts)",
    remediation: "Delete the file and use key-based SSH authentication.",
};

pub const CHECKS: &[Check] = &[HOSTS_EQUIV, USER_RHOSTS];

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Security) {
        return;
    }
    for file in SYSTEM_FILES {
        first_entry(t, file, &HOSTS_EQUIV);
    }
    let mut homes: Vec<String> = vec!["/root".to_string()];
    for user in &t.os.users {
        if user.home.starts_with('/') && user.home != "/" && !homes.contains(&user.home) {
            homes.push(user.home.clone());
        }
        if homes.len() >= MAX_HOMES {
            break;
        }
    }
    for home in homes {
        for name in USER_FILES {
            first_entry(
                t,
                &format!("{}/{name}", home.trim_end_matches('/')),
                &USER_RHOSTS,
            );
        }
    }
}

/// Reports the first entry of `file`, if it has one.
fn first_entry(t: &mut Target, file: &str, check: &crate::profile::finding::Check) {
    if !t.exists(file) {
        return;
    }
    let Some(text) = t.read_text(file) else {
        return;
    };
    let first = numbered_lines(&text).next();
    if let Some((n, line)) = first {
        t.found(check, Evidence::line(file, n, line));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{ids_and_lines, linux, run_on};
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::report::User;

    #[test]
    fn trust_files_with_entries() {
        let fs = MemFs::new()
            .file("/etc/hosts.equiv", "# none\n+\n")
            .file("/etc/ssh/shosts.equiv", "# empty\n")
            .file("/home/alice/.rhosts", "\nbuild.example.com alice\n")
            .file("/root/.shosts", "");
        let mut os = linux();
        os.users = vec![User {
            name: "alice".into(),
            home: "/home/alice".into(),
            ..Default::default()
        }];
        let got = ids_and_lines(&run_on(Arc::new(fs), &os, super::run));
        assert_eq!(
            got,
            vec![
                ("TRUST-001".into(), "/etc/hosts.equiv".into(), Some(2)),
                ("TRUST-002".into(), "/home/alice/.rhosts".into(), Some(2)),
            ]
        );
    }
}
