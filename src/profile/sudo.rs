//! sudo rules that skip authentication (`NOPASSWD:` or `Defaults !authenticate`): a
//! stolen session or a compromised service running as that user becomes root at once.
//! Read from `/etc/sudoers` and what it includes (`@include`/`#include`,
//! `@includedir`/`#includedir`, with sudo's rule that files in an included directory
//! whose name has a `.` or ends in `~` are skipped).

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;

const SUDOERS: &str = "/etc/sudoers";
/// sudo's include depth limit is 128; real setups use one or two levels.
const MAX_DEPTH: usize = 8;
/// Most files read.
const MAX_FILES: usize = 256;

pub const NOPASSWD: Check = Check {
    id: "SUDO-001",
    profile: ProfileKind::Security,
    severity: Severity::Low,
    title: "sudo rule grants privileges without a password",
    remediation: "Remove `NOPASSWD:` (and `!authenticate`) from the rule unless it is limited to specific, harmless commands.",
};

pub const CHECKS: &[Check] = &[NOPASSWD];

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Security) {
        return;
    }
    let mut seen = Vec::new();
    read(t, SUDOERS, 0, &mut seen);
}

/// Reads one sudoers file; `seen` lists the files read so far (each is read once: a
/// file both included and in an included directory would report its lines twice).
fn read(t: &mut Target, path: &str, depth: usize, seen: &mut Vec<String>) {
    if depth > MAX_DEPTH || seen.len() >= MAX_FILES || seen.iter().any(|s| s == path) {
        return;
    }
    seen.push(path.to_string());
    let Some(text) = t.read_text(path) else {
        return;
    };
    for (i, raw) in text.lines().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = raw.trim();
        if let Some(dir) = directive(line, "includedir") {
            let dir = relative_to(path, dir);
            let files: Vec<String> = t
                .list_dir(&dir)
                .into_iter()
                .filter(|e| !e.name.contains('.') && !e.name.ends_with('~'))
                .map(|e| format!("{}/{}", dir.trim_end_matches('/'), e.name))
                .collect();
            for file in files {
                read(t, &file, depth + 1, seen);
            }
            continue;
        }
        if let Some(file) = directive(line, "include") {
            let file = relative_to(path, file);
            read(t, &file, depth + 1, seen);
            continue;
        }
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let skips_auth = if content.starts_with("Defaults") {
            content
                .split([' ', '\t', ','])
                .any(|w| w == "!authenticate")
        } else {
            content.contains("NOPASSWD:")
        };
        if skips_auth {
            t.found(&NOPASSWD, Evidence::line(path, n, line));
        }
    }
}

/// The argument of `@NAME arg` / `#NAME arg`.
fn directive<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.strip_prefix('@').or_else(|| line.strip_prefix('#'))?;
    let arg = rest.strip_prefix(name)?;
    arg.starts_with(char::is_whitespace)
        .then(|| arg.trim().trim_matches('"'))
        .filter(|a| !a.is_empty())
}

/// sudo 1.9 resolves a relative include against the including file's directory.
fn relative_to(including: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let dir = including.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    format!("{dir}/{target}")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ids_and_lines, run_checks};
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn nopasswd_rules_through_includes() {
        let fs = MemFs::new()
            .file(
                SUDOERS,
                "Defaults env_reset\n# %wheel ALL=(ALL) NOPASSWD: ALL\nroot ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
            )
            .file("/etc/sudoers.d/90-cloud", "ubuntu ALL=(ALL) NOPASSWD:ALL\n")
            .file("/etc/sudoers.d/README", "# #includedir x\n")
            .file("/etc/sudoers.d/old.bak", "x ALL=(ALL) NOPASSWD: ALL\n")
            .file("/etc/sudoers.d/deploy", "#include extra\nDefaults:deploy !authenticate\n")
            .file("/etc/sudoers.d/extra", "bob ALL=(ALL) NOPASSWD: /usr/bin/systemctl restart app\n");
        let got = ids_and_lines(&run_checks(fs, run));
        assert_eq!(
            got,
            vec![
                ("SUDO-001".into(), "/etc/sudoers.d/90-cloud".into(), Some(1)),
                ("SUDO-001".into(), "/etc/sudoers.d/deploy".into(), Some(2)),
                ("SUDO-001".into(), "/etc/sudoers.d/extra".into(), Some(1)),
            ]
        );
    }
}
