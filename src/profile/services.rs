//! Cleartext remote-access and file-transfer services that start at boot: telnet, the
//! r-services (rsh, rlogin, rexec), FTP and TFTP servers, NIS. Passwords and sessions
//! cross the network unencrypted, or (TFTP) without any authentication.
//!
//! Where a service can be enabled:
//! - systemd: a link in a `*.wants/` or `*.requires/` directory of `/etc/systemd/system`
//!   (socket units included: telnet and the r-services are socket-activated), not
//!   masked;
//! - SysV / OpenRC: the inspection's enabled init scripts, with the runlevel link as
//!   evidence;
//! - xinetd: a `service NAME { ... }` block in `/etc/xinetd.conf` or `/etc/xinetd.d/*`
//!   without `disable = yes` (xinetd runs a service unless told not to);
//! - inetd: an uncommented line of `/etc/inetd.conf`.

use std::collections::BTreeSet;

use crate::inspect::fs::FileKind;

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;
use crate::inspect::os::text::numbered_lines;

const SYSTEMD_ADMIN_DIR: &str = "/etc/systemd/system";
/// Most xinetd files read.
const MAX_XINETD_FILES: usize = 1000;

/// systemd units of cleartext services.
const UNITS: &[&str] = &[
    "telnet.socket",
    "telnet.service",
    "telnetd.service",
    "rsh.socket",
    "rlogin.socket",
    "rexec.socket",
    "vsftpd.service",
    "proftpd.service",
    "pure-ftpd.service",
    "tftp.socket",
    "tftp.service",
    "tftpd-hpa.service",
    "ypserv.service",
];

/// Init scripts of cleartext services.
const SCRIPTS: &[&str] = &[
    "telnetd",
    "vsftpd",
    "proftpd",
    "pure-ftpd",
    "tftpd-hpa",
    "atftpd",
    "ypserv",
];

/// inetd/xinetd service names (from /etc/services) of cleartext services.
const INETD_NAMES: &[&str] = &[
    "telnet",
    "shell",
    "login",
    "exec",
    "rsh",
    "rlogin",
    "rexec",
    "ftp",
    "tftp",
    "talk",
    "ntalk",
    "krb5-telnet",
    "gssftp",
];

pub const ENABLED_SERVICE: Check = Check {
    id: "SVC-001",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "Cleartext remote-access or file-transfer service enabled at boot",
    remediation: "Disable the service (`systemctl disable --now UNIT`) and remove the package; use SSH/SFTP instead.",
};
pub const XINETD_SERVICE: Check = Check {
    id: "SVC-002",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "Cleartext service enabled in xinetd",
    remediation:
        "Set `disable = yes` in the service's xinetd file (or remove it) and use SSH/SFTP instead.",
};
pub const INETD_SERVICE: Check = Check {
    id: "SVC-003",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "Cleartext service enabled in inetd.conf",
    remediation:
        "Comment out the line in /etc/inetd.conf (or remove the package) and use SSH/SFTP instead.",
};

pub const CHECKS: &[Check] = &[ENABLED_SERVICE, XINETD_SERVICE, INETD_SERVICE];

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Security) {
        return;
    }
    systemd(t);
    init_scripts(t);
    xinetd(t);
    inetd(t);
}

/// Enabled, unmasked systemd units from the list.
fn systemd(t: &mut Target) {
    let admin = t.list_dir(SYSTEMD_ADMIN_DIR);
    let masked: BTreeSet<String> = admin
        .iter()
        .filter(|e| e.kind == FileKind::Symlink)
        .filter(|e| {
            t.read_link(&format!("{SYSTEMD_ADMIN_DIR}/{}", e.name))
                .as_deref()
                == Some("/dev/null")
        })
        .map(|e| e.name.clone())
        .collect();
    let mut reported = BTreeSet::new();
    for dir in admin {
        let is_dep_dir = dir.name.ends_with(".wants") || dir.name.ends_with(".requires");
        if !is_dep_dir || !matches!(dir.kind, FileKind::Dir | FileKind::Symlink) {
            continue;
        }
        let dir_path = format!("{SYSTEMD_ADMIN_DIR}/{}", dir.name);
        for unit in t.list_dir(&dir_path) {
            let name = unit.name.as_str();
            if !UNITS.contains(&name)
                || masked.contains(name)
                || !reported.insert(unit.name.clone())
            {
                continue;
            }
            let path = format!("{dir_path}/{name}");
            let text = match t.read_link(&path) {
                Some(target) => format!("{}/{name} -> {target}", dir.name),
                None => format!("{}/{name}", dir.name),
            };
            t.found(&ENABLED_SERVICE, Evidence::file(&path, text));
        }
    }
}

/// Enabled SysV or OpenRC scripts from the list, with the runlevel link as evidence.
fn init_scripts(t: &mut Target) {
    let enabled: Vec<(String, String)> =
        t.os.services
            .iter()
            .filter(|s| s.enabled && s.kind != "systemd" && SCRIPTS.contains(&s.name.as_str()))
            .map(|s| (s.name.clone(), s.kind.clone()))
            .collect();
    for (name, kind) in enabled {
        let link = runlevel_link(t, &name, &kind);
        let evidence = match link {
            Some(path) => Evidence::file(&path, format!("{kind} script {name} enabled at boot")),
            None => Evidence::file(
                &format!("/etc/init.d/{name}"),
                format!("{kind} script {name} enabled at boot"),
            ),
        };
        t.found(&ENABLED_SERVICE, evidence);
    }
}

/// The first `S??name` link in /etc/rc[2-5].d, or `name` in an OpenRC runlevel.
fn runlevel_link(t: &mut Target, name: &str, kind: &str) -> Option<String> {
    if kind == "openrc" {
        for level in ["sysinit", "boot", "default"] {
            let path = format!("/etc/runlevels/{level}/{name}");
            if t.guest.lstat(&path).is_ok() {
                return Some(path);
            }
        }
        return None;
    }
    for level in 2..=5 {
        let dir = format!("/etc/rc{level}.d");
        for e in t.list_dir(&dir) {
            let script = e
                .name
                .strip_prefix('S')
                .map(|n| n.trim_start_matches(|c: char| c.is_ascii_digit()));
            if script == Some(name) {
                return Some(format!("{dir}/{}", e.name));
            }
        }
    }
    None
}

/// xinetd service blocks of listed services without `disable = yes`.
fn xinetd(t: &mut Target) {
    let mut files = vec!["/etc/xinetd.conf".to_string()];
    files.extend(
        t.list_dir("/etc/xinetd.d")
            .into_iter()
            // xinetd skips names with a dot or ending in `~` (backups, rpmnew files).
            .filter(|e| e.kind == FileKind::File && !e.name.contains('.') && !e.name.ends_with('~'))
            .take(MAX_XINETD_FILES)
            .map(|e| format!("/etc/xinetd.d/{}", e.name)),
    );
    for file in files {
        let Some(text) = t.read_text(&file) else {
            continue;
        };
        for block in xinetd_blocks(&text) {
            if !INETD_NAMES.contains(&block.name.as_str()) || block.disabled {
                continue;
            }
            let (line, text) = block.disable_line.unwrap_or((block.line, block.text));
            t.found(&XINETD_SERVICE, Evidence::line(&file, line, &text));
        }
    }
}

/// One `service NAME { ... }` block.
struct XinetdBlock {
    name: String,
    line: u32,
    text: String,
    disabled: bool,
    /// The `disable = ...` line, when there is one.
    disable_line: Option<(u32, String)>,
}

fn xinetd_blocks(text: &str) -> Vec<XinetdBlock> {
    let mut out = Vec::new();
    let mut current: Option<XinetdBlock> = None;
    for (n, line) in numbered_lines(text) {
        if let Some(name) = line
            .strip_prefix("service")
            .filter(|r| r.starts_with(char::is_whitespace))
        {
            if let Some(done) = current.take() {
                out.push(done);
            }
            current = Some(XinetdBlock {
                name: name.trim().trim_end_matches('{').trim().to_string(),
                line: n,
                text: line.to_string(),
                disabled: false,
                disable_line: None,
            });
            continue;
        }
        if line.starts_with('}') {
            if let Some(done) = current.take() {
                out.push(done);
            }
            continue;
        }
        let Some(block) = current.as_mut() else {
            continue;
        };
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "disable" {
                block.disabled = value.trim().eq_ignore_ascii_case("yes");
                block.disable_line = Some((n, line.to_string()));
            }
        }
    }
    out.extend(current);
    out
}

/// Uncommented inetd.conf lines of listed services (`name socktype proto ...`).
fn inetd(t: &mut Target) {
    let file = "/etc/inetd.conf";
    let Some(text) = t.read_text(file) else {
        return;
    };
    for (n, line) in numbered_lines(&text) {
        // `[addr:]service`: a listen address may prefix the name.
        let service = line.split_whitespace().next().unwrap_or("");
        let service = service.rsplit(':').next().unwrap_or(service);
        if INETD_NAMES.contains(&service) {
            t.found(&INETD_SERVICE, Evidence::line(file, n, line));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{ids_and_lines, linux, run_checks, run_on};
    use super::*;
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::report::Service;

    #[test]
    fn systemd_xinetd_and_inetd() {
        let fs = MemFs::new()
            .symlink("/etc/systemd/system/sockets.target.wants/telnet.socket", "/usr/lib/systemd/system/telnet.socket")
            .symlink("/etc/systemd/system/sockets.target.wants/rsh.socket", "/usr/lib/systemd/system/rsh.socket")
            .symlink("/etc/systemd/system/rsh.socket", "/dev/null")
            .symlink("/etc/systemd/system/multi-user.target.wants/sshd.service", "/usr/lib/systemd/system/sshd.service")
            .file(
                "/etc/xinetd.d/telnet",
                "# default: on\nservice telnet\n{\n\tflags = REUSE\n\tdisable = no\n}\n",
            )
            .file("/etc/xinetd.d/tftp", "service tftp\n{\n  socket_type = dgram\n}\n")
            .file("/etc/xinetd.d/rsync", "service rsync\n{\n  disable = no\n}\n")
            .file("/etc/xinetd.d/ftp.rpmsave", "service ftp\n{\n}\n")
            .file("/etc/xinetd.d/shell", "service shell\n{\n  disable = yes\n}\n")
            .file("/etc/inetd.conf", "#ftp stream tcp nowait root /usr/sbin/ftpd\ntelnet stream tcp nowait root /usr/sbin/tcpd in.telnetd\n");
        let got = ids_and_lines(&run_checks(fs, run));
        assert_eq!(
            got,
            vec![
                (
                    "SVC-001".into(),
                    "/etc/systemd/system/sockets.target.wants/telnet.socket".into(),
                    None
                ),
                ("SVC-002".into(), "/etc/xinetd.d/telnet".into(), Some(5)),
                ("SVC-002".into(), "/etc/xinetd.d/tftp".into(), Some(1)),
                ("SVC-003".into(), "/etc/inetd.conf".into(), Some(2)),
            ]
        );
    }

    #[test]
    fn sysv_scripts_point_at_their_runlevel_link() {
        let mut os = linux();
        os.services = vec![
            Service {
                name: "vsftpd".into(),
                enabled: true,
                kind: "sysv".into(),
                ..Default::default()
            },
            Service {
                name: "proftpd".into(),
                enabled: false,
                kind: "sysv".into(),
                ..Default::default()
            },
            Service {
                name: "ssh".into(),
                enabled: true,
                kind: "sysv".into(),
                ..Default::default()
            },
        ];
        let fs = MemFs::new()
            .file("/etc/init.d/vsftpd", "")
            .symlink("/etc/rc3.d/S20vsftpd", "../init.d/vsftpd");
        let got = ids_and_lines(&run_on(Arc::new(fs), &os, run));
        assert_eq!(
            got,
            vec![("SVC-001".into(), "/etc/rc3.d/S20vsftpd".into(), None)]
        );
    }
}
