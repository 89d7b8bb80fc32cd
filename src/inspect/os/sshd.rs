//! The effective `PermitRootLogin` and `PasswordAuthentication` of `/etc/ssh/sshd_config`,
//! read the way sshd reads it: keywords are case-insensitive, the first value given for
//! a keyword wins, `Include` (globs, relative to `/etc/ssh`) is expanded in place
//! (depth-limited like sshd), and `Match` blocks are skipped since they only apply to
//! some connections. Unset keywords stay `None`: the report says what the file says,
//! not what a given sshd version defaults to.

use crate::inspect::report::Ssh;

use super::context::Ctx;
use super::text::content_lines;

const MAIN: &str = "/etc/ssh/sshd_config";
/// sshd's own include depth limit.
const MAX_DEPTH: usize = 16;
/// Most files read through `Include`.
const MAX_FILES: usize = 256;

pub fn detect(ctx: &mut Ctx) -> Ssh {
    let mut ssh = Ssh::default();
    let mut budget = MAX_FILES;
    read(ctx, MAIN, 0, &mut budget, &mut ssh);
    ssh
}

fn read(ctx: &mut Ctx, path: &str, depth: usize, budget: &mut usize, ssh: &mut Ssh) {
    if depth > MAX_DEPTH || *budget == 0 {
        ctx.warn(format_args!(
            "{path}: too many nested Include files, not all were read"
        ));
        return;
    }
    *budget -= 1;
    let Some(text) = ctx.read_text(path) else {
        return;
    };
    let mut in_match = false;
    for line in content_lines(&text) {
        // `Keyword value`, `Keyword=value` or `Keyword = value`.
        let (keyword, args) = match line.find(|c: char| c.is_whitespace() || c == '=') {
            Some(i) => (
                &line[..i],
                line[i..].trim_start_matches(|c: char| c.is_whitespace() || c == '='),
            ),
            None => (line, ""),
        };
        let first_arg = args
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches('"');
        match keyword.to_ascii_lowercase().as_str() {
            "match" => in_match = !first_arg.eq_ignore_ascii_case("all"),
            _ if in_match => {}
            "include" => {
                for pattern in args.split_whitespace() {
                    let pattern = pattern.trim_matches('"');
                    let full = if pattern.starts_with('/') {
                        pattern.to_string()
                    } else {
                        format!("/etc/ssh/{pattern}")
                    };
                    for file in ctx.glob(&full, MAX_FILES) {
                        read(ctx, &file, depth + 1, budget, ssh);
                    }
                }
            }
            "permitrootlogin" if ssh.permit_root_login.is_none() && !first_arg.is_empty() => {
                ssh.permit_root_login = Some(first_arg.to_ascii_lowercase());
            }
            "passwordauthentication" if ssh.password_authentication.is_none() => {
                ssh.password_authentication = match first_arg.to_ascii_lowercase().as_str() {
                    "yes" => Some(true),
                    "no" => Some(false),
                    _ => None,
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    fn ssh(fs: MemFs) -> (Ssh, Vec<String>) {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let s = detect(&mut ctx);
        (s, ctx.into_warnings())
    }

    #[test]
    fn first_value_wins_through_includes() {
        let (s, w) = ssh(
            MemFs::new()
                .file(
                    "/etc/ssh/sshd_config",
                    "Include /etc/ssh/sshd_config.d/*.conf\n#PermitRootLogin yes\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication yes\nMatch User backup\n  PasswordAuthentication yes\n",
                )
                .file("/etc/ssh/sshd_config.d/10-hard.conf", "passwordauthentication=no\nMatch Address 10.0.0.0/8\nPermitRootLogin yes\n")
                .file("/etc/ssh/sshd_config.d/20-x.conf", "PasswordAuthentication yes\n")
                .file("/etc/ssh/sshd_config.d/README", "PermitRootLogin yes\n"),
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.permit_root_login.as_deref(), Some("prohibit-password"));
        assert_eq!(s.password_authentication, Some(false));
    }

    #[test]
    fn unset_and_self_include() {
        let (s, w) = ssh(MemFs::new().file("/etc/ssh/sshd_config", "Port 22\n"));
        assert_eq!(s, Ssh::default());
        assert!(w.is_empty());
        let (s, w) = ssh(MemFs::new().file(
            "/etc/ssh/sshd_config",
            "Include sshd_config\nPermitRootLogin no\n",
        ));
        assert_eq!(s.permit_root_login.as_deref(), Some("no"));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn match_all_ends_a_match_block() {
        let (s, _) = ssh(MemFs::new().file(
            "/etc/ssh/sshd_config",
            "Match Group x\nPermitRootLogin yes\nMatch all\nPermitRootLogin no\n",
        ));
        assert_eq!(s.permit_root_login.as_deref(), Some("no"));
    }
}
