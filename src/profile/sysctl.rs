//! Kernel parameters set at boot by `systemd-sysctl` / `sysctl --system`, checked on
//! their effective value with the file and line that set it.
//!
//! Order (sysctl.d(5)): `*.conf` files of `/etc/sysctl.d`, `/run/sysctl.d`,
//! `/usr/local/lib/sysctl.d`, `/usr/lib/sysctl.d`, `/lib/sysctl.d`; a file name in an
//! earlier directory masks the same name in later ones (a link to `/dev/null` disables
//! it); the survivors are applied sorted by file name, later assignments overriding
//! earlier ones; `/etc/sysctl.conf` is applied last (procps), unless one of the
//! drop-ins is that file already (the `99-sysctl.conf` link distributions ship).
//!
//! Only values written in these files are judged: a parameter left at the kernel's
//! default is not reported, since the default is not on the image.

use std::collections::{BTreeMap, HashMap};

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;
use crate::inspect::os::text::numbered_lines;

/// Drop-in directories, highest priority first.
const DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
const SYSCTL_CONF: &str = "/etc/sysctl.conf";
/// Most drop-ins read per directory.
const MAX_FILES: usize = 1000;

/// A check and when a value is bad.
struct Rule {
    check: Check,
    keys: &'static [&'static str],
    bad: fn(&str) -> bool,
}

const fn check(
    id: &'static str,
    severity: Severity,
    title: &'static str,
    remediation: &'static str,
) -> Check {
    Check {
        id,
        profile: ProfileKind::Hardening,
        severity,
        title,
        remediation,
    }
}

const RULES: &[Rule] = &[
    Rule {
        check: check("SYS-001", Severity::Low, "IPv4 forwarding is enabled (net.ipv4.ip_forward = 1)",
            "Set `net.ipv4.ip_forward = 0` unless the machine is a router or container host."),
        keys: &["net.ipv4.ip_forward"],
        bad: |v| v == "1",
    },
    Rule {
        check: check("SYS-002", Severity::Medium, "ICMP redirects are accepted (accept_redirects = 1)",
            "Set `net.ipv4.conf.all.accept_redirects = 0` and `net.ipv4.conf.default.accept_redirects = 0`."),
        keys: &["net.ipv4.conf.all.accept_redirects", "net.ipv4.conf.default.accept_redirects"],
        bad: |v| v == "1",
    },
    Rule {
        check: check("SYS-003", Severity::Medium, "ICMP redirects are sent (send_redirects = 1)",
            "Set `net.ipv4.conf.all.send_redirects = 0` and `net.ipv4.conf.default.send_redirects = 0` on hosts that are not routers."),
        keys: &["net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects"],
        bad: |v| v == "1",
    },
    Rule {
        check: check("SYS-004", Severity::Medium, "Source-routed packets are accepted (accept_source_route = 1)",
            "Set `net.ipv4.conf.all.accept_source_route = 0` and `net.ipv4.conf.default.accept_source_route = 0`."),
        keys: &["net.ipv4.conf.all.accept_source_route", "net.ipv4.conf.default.accept_source_route"],
        bad: |v| v == "1",
    },
    Rule {
        check: check("SYS-005", Severity::Medium, "TCP SYN cookies are disabled (net.ipv4.tcp_syncookies = 0)",
            "Set `net.ipv4.tcp_syncookies = 1` to resist SYN floods."),
        keys: &["net.ipv4.tcp_syncookies"],
        bad: |v| v == "0",
    },
    Rule {
        check: check("SYS-006", Severity::High, "Address space layout randomization is weakened (kernel.randomize_va_space != 2)",
            "Set `kernel.randomize_va_space = 2` (full ASLR)."),
        keys: &["kernel.randomize_va_space"],
        bad: |v| v != "2",
    },
    Rule {
        check: check("SYS-007", Severity::Low, "Kernel pointers are exposed to users (kernel.kptr_restrict = 0)",
            "Set `kernel.kptr_restrict = 1` (or 2)."),
        keys: &["kernel.kptr_restrict"],
        bad: |v| v == "0",
    },
    Rule {
        check: check("SYS-008", Severity::Low, "Kernel log readable by unprivileged users (kernel.dmesg_restrict = 0)",
            "Set `kernel.dmesg_restrict = 1`."),
        keys: &["kernel.dmesg_restrict"],
        bad: |v| v == "0",
    },
    Rule {
        check: check("SYS-009", Severity::Medium, "Set-id programs may dump core (fs.suid_dumpable != 0)",
            "Set `fs.suid_dumpable = 0` so privileged processes never leave readable core dumps."),
        keys: &["fs.suid_dumpable"],
        bad: |v| v != "0",
    },
    Rule {
        check: check("SYS-010", Severity::Medium, "Symlink protection in sticky directories is off (fs.protected_symlinks = 0)",
            "Set `fs.protected_symlinks = 1`."),
        keys: &["fs.protected_symlinks"],
        bad: |v| v == "0",
    },
    Rule {
        check: check("SYS-011", Severity::Medium, "Hardlink protection is off (fs.protected_hardlinks = 0)",
            "Set `fs.protected_hardlinks = 1`."),
        keys: &["fs.protected_hardlinks"],
        bad: |v| v == "0",
    },
    Rule {
        check: check("SYS-012", Severity::Low, "Any process may ptrace other processes of its user (kernel.yama.ptrace_scope = 0)",
            "Set `kernel.yama.ptrace_scope = 1` (or higher)."),
        keys: &["kernel.yama.ptrace_scope"],
        bad: |v| v == "0",
    },
    Rule {
        check: check("SYS-013", Severity::Medium, "IPv6 ICMP redirects are accepted (accept_redirects = 1)",
            "Set `net.ipv6.conf.all.accept_redirects = 0` and `net.ipv6.conf.default.accept_redirects = 0`."),
        keys: &["net.ipv6.conf.all.accept_redirects", "net.ipv6.conf.default.accept_redirects"],
        bad: |v| v == "1",
    },
    Rule {
        check: check("SYS-014", Severity::Low, "Reverse-path filtering is off (rp_filter = 0)",
            "Set `net.ipv4.conf.all.rp_filter = 1` (strict) or 2 (loose)."),
        keys: &["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"],
        bad: |v| v == "0",
    },
    Rule {
        check: check("SYS-015", Severity::Low, "Broadcast pings are answered (net.ipv4.icmp_echo_ignore_broadcasts = 0)",
            "Set `net.ipv4.icmp_echo_ignore_broadcasts = 1`."),
        keys: &["net.ipv4.icmp_echo_ignore_broadcasts"],
        bad: |v| v == "0",
    },
];

/// Every sysctl check, for the catalogue.
pub fn checks() -> Vec<Check> {
    RULES.iter().map(|r| r.check).collect()
}

/// Where a parameter's effective value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assignment {
    value: String,
    file: String,
    line: u32,
    text: String,
}

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Hardening) {
        return;
    }
    let values = effective(t);
    for rule in RULES {
        for key in rule.keys {
            if let Some(a) = values.get(*key) {
                if (rule.bad)(&a.value) {
                    t.found(&rule.check, Evidence::line(&a.file, a.line, &a.text));
                }
            }
        }
    }
}

/// Parameter (dotted form) -> its last assignment in application order.
fn effective(t: &mut Target) -> HashMap<String, Assignment> {
    // File name -> path, from the highest-priority directory that has it.
    let mut dropins: BTreeMap<String, String> = BTreeMap::new();
    for dir in DIRS {
        for path in t.glob(dir, "*.conf", MAX_FILES) {
            let name = path.rsplit('/').next().unwrap_or(&path).to_string();
            dropins.entry(name).or_insert(path);
        }
    }
    let mut files: Vec<String> = Vec::new();
    let mut saw_sysctl_conf = false;
    for path in dropins.into_values() {
        match t.guest.canonicalize(&path) {
            Ok(real) if real == "/dev/null" => continue,
            Ok(real) if real == SYSCTL_CONF => saw_sysctl_conf = true,
            // A link to /dev/null dangles inside the image: the drop-in is masked.
            Err(_) if t.read_link(&path).as_deref() == Some("/dev/null") => continue,
            _ => {}
        }
        files.push(path);
    }
    if !saw_sysctl_conf {
        files.push(SYSCTL_CONF.to_string());
    }
    let mut values = HashMap::new();
    for file in files {
        let Some(text) = t.read_text(&file) else {
            continue;
        };
        for (n, line) in numbered_lines(&text) {
            if line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            values.insert(
                normalize_key(key),
                Assignment {
                    value: value.trim().to_string(),
                    file: file.clone(),
                    line: n,
                    text: line.to_string(),
                },
            );
        }
    }
    values
}

/// `-net/ipv4/ip_forward ` -> `net.ipv4.ip_forward`: a leading `-` (ignore errors) is
/// dropped, and as in sysctl.d(5) a key whose first separator is `/` has `/` and `.`
/// swapped (so `net/ipv4/conf/eth0.1/x` names the interface `eth0.1`).
fn normalize_key(key: &str) -> String {
    let key = key.trim().trim_start_matches('-').trim();
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ids_and_lines, run_checks};
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn later_files_override_earlier_ones() {
        let fs = MemFs::new()
            .file(
                "/usr/lib/sysctl.d/10-default.conf",
                "kernel.randomize_va_space = 0\nfs.protected_symlinks = 1\n",
            )
            .file("/usr/lib/sysctl.d/50-x.conf", "fs.suid_dumpable = 2\n")
            // Same name in /etc masks the vendor file entirely.
            .file("/etc/sysctl.d/50-x.conf", "# mine\nfs.suid_dumpable=0\n")
            .file(
                "/etc/sysctl.d/60-net.conf",
                "net/ipv4/ip_forward = 1\n-net.ipv4.conf.all.accept_redirects=1\n",
            )
            .symlink("/etc/sysctl.d/70-masked.conf", "/dev/null")
            .file(
                "/usr/lib/sysctl.d/70-masked.conf",
                "kernel.kptr_restrict = 0\n",
            )
            .file(
                "/run/sysctl.d/80-run.conf",
                "; comment\nfs.protected_symlinks = 0\n",
            )
            .file(
                SYSCTL_CONF,
                "kernel.dmesg_restrict = 0\nnet.ipv4.conf.all.accept_redirects = 0\n",
            );
        let got = ids_and_lines(&run_checks(fs, run));
        assert_eq!(
            got,
            vec![
                (
                    "SYS-001".into(),
                    "/etc/sysctl.d/60-net.conf".into(),
                    Some(1)
                ),
                (
                    "SYS-006".into(),
                    "/usr/lib/sysctl.d/10-default.conf".into(),
                    Some(1)
                ),
                ("SYS-008".into(), SYSCTL_CONF.into(), Some(1)),
                (
                    "SYS-010".into(),
                    "/run/sysctl.d/80-run.conf".into(),
                    Some(2)
                ),
            ]
        );
    }

    #[test]
    fn sysctl_conf_linked_as_a_dropin_is_read_in_its_place() {
        let fs = MemFs::new()
            .symlink("/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
            .file(SYSCTL_CONF, "kernel.randomize_va_space = 1\n")
            .file(
                "/usr/lib/sysctl.d/zz-late.conf",
                "kernel.randomize_va_space = 2\n",
            );
        assert!(run_checks(fs, run).is_empty());
        assert_eq!(
            normalize_key(" -net/ipv4/conf/eth0.1/rp_filter"),
            "net.ipv4.conf.eth0/1.rp_filter"
        );
        assert!(run_checks(MemFs::new().dir("/etc"), run).is_empty());
    }
}
