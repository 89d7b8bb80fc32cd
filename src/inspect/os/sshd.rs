//! The effective `PermitRootLogin` and `PasswordAuthentication` of `/etc/ssh/sshd_config`,
//! read the way sshd reads it: keywords are case-insensitive, the first value given for
//! a keyword wins, `Include` (globs, relative to `/etc/ssh`) is expanded in place
//! (depth-limited like sshd), and `Match` blocks are skipped since they only apply to
//! some connections. Unset keywords stay `None`: the report says what the file says,
//! not what a given sshd version defaults to.

use std::collections::HashMap;

use crate::inspect::report::Ssh;

use super::context::Ctx;
use super::text::numbered_lines;

const MAIN: &str = "/etc/ssh/sshd_config";
/// sshd's own include depth limit.
const MAX_DEPTH: usize = 16;
/// Most files read through `Include`.
pub const MAX_FILES: usize = 256;
/// Most patterns expanded per `Include` line, and `Include` lines per file: real
/// configurations have one or two; a hostile `Include d/* d/* ...` over megabytes would
/// otherwise list the same directory millions of times.
pub const MAX_PATTERNS_PER_LINE: usize = 16;
pub const MAX_INCLUDES_PER_FILE: usize = 64;

/// What the reader needs from its caller: the OS facts (`Ctx`) and the profile checks
/// read the same configuration through their own file access and warning lists.
pub trait SshdSource {
    /// Text of a guest file, `None` when it is absent or unreadable.
    fn read_text(&mut self, path: &str) -> Option<String>;
    /// Files an `Include` pattern names (wildcards in the last component), sorted.
    fn include(&mut self, pattern: &str) -> Vec<String>;
    /// Something the caller's report should mention.
    fn warn(&mut self, message: std::fmt::Arguments);
}

/// Where the effective value of one keyword came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The first argument, as written.
    pub value: String,
    pub file: String,
    pub line: u32,
    /// The whole line, trimmed.
    pub text: String,
}

impl Setting {
    /// Whether the value is `word`, ignoring case as sshd does.
    pub fn is(&self, word: &str) -> bool {
        self.value.eq_ignore_ascii_case(word)
    }
}

/// Lower-case keyword -> the setting that wins.
pub type SshdConfig = HashMap<String, Setting>;

/// The effective configuration of `/etc/ssh/sshd_config` (empty when it is absent).
pub fn effective_config(src: &mut impl SshdSource) -> SshdConfig {
    let mut config = SshdConfig::new();
    let mut left = Left {
        files: MAX_FILES,
        warned: false,
    };
    read(src, MAIN, 0, &mut left, &mut config);
    config
}

/// The report's two sshd facts.
pub fn detect(ctx: &mut Ctx) -> Ssh {
    let config = effective_config(ctx);
    Ssh {
        permit_root_login: config
            .get("permitrootlogin")
            .map(|s| s.value.to_ascii_lowercase()),
        password_authentication: config.get("passwordauthentication").and_then(|s| {
            match s.value.to_ascii_lowercase().as_str() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            }
        }),
    }
}

impl SshdSource for Ctx<'_> {
    fn read_text(&mut self, path: &str) -> Option<String> {
        Ctx::read_text(self, path)
    }
    fn include(&mut self, pattern: &str) -> Vec<String> {
        self.glob(pattern, MAX_FILES)
    }
    fn warn(&mut self, message: std::fmt::Arguments) {
        Ctx::warn(self, message);
    }
}

/// What is left of the include caps of one configuration.
struct Left {
    files: usize,
    /// The "not all were read" warning was given (once is enough).
    warned: bool,
}

impl Left {
    fn exhausted(&mut self, src: &mut impl SshdSource, path: &str) {
        if !self.warned {
            self.warned = true;
            src.warn(format_args!(
                "{path}: too many nested sshd Include files, not all were read"
            ));
        }
    }
}

fn read(
    src: &mut impl SshdSource,
    path: &str,
    depth: usize,
    left: &mut Left,
    config: &mut SshdConfig,
) {
    if depth > MAX_DEPTH || left.files == 0 {
        left.exhausted(src, path);
        return;
    }
    left.files -= 1;
    let Some(text) = src.read_text(path) else {
        return;
    };
    // A Match block ends at the next Match or at the end of the file that opened it.
    let mut in_match = false;
    let mut includes = 0;
    for (n, line) in numbered_lines(&text) {
        let (keyword, args) = split_keyword(line);
        let first = args
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches('"');
        let keyword = keyword.to_ascii_lowercase();
        match keyword.as_str() {
            "match" => in_match = !first.eq_ignore_ascii_case("all"),
            _ if in_match => {}
            "include" => {
                includes += 1;
                if includes > MAX_INCLUDES_PER_FILE {
                    if includes == MAX_INCLUDES_PER_FILE + 1 {
                        src.warn(format_args!(
                            "{path}:{n}: more than {MAX_INCLUDES_PER_FILE} Include lines, the rest were not read"
                        ));
                    }
                    continue;
                }
                let mut patterns = args.split_whitespace();
                for pattern in patterns.by_ref().take(MAX_PATTERNS_PER_LINE) {
                    if left.files == 0 {
                        left.exhausted(src, path);
                        break;
                    }
                    let pattern = pattern.trim_matches('"');
                    let full = if pattern.starts_with('/') {
                        pattern.to_string()
                    } else {
                        format!("/etc/ssh/{pattern}")
                    };
                    for file in src.include(&full) {
                        read(src, &file, depth + 1, left, config);
                    }
                }
                if patterns.next().is_some() {
                    src.warn(format_args!(
                        "{path}:{n}: Include with more than {MAX_PATTERNS_PER_LINE} patterns, the rest were not read"
                    ));
                }
            }
            _ if first.is_empty() => {}
            _ => {
                config.entry(keyword).or_insert_with(|| Setting {
                    value: first.to_string(),
                    file: path.to_string(),
                    line: n,
                    text: line.to_string(),
                });
            }
        }
    }
}

/// `Keyword value`, `Keyword=value` or `Keyword = value`.
fn split_keyword(line: &str) -> (&str, &str) {
    match line.find(|c: char| c.is_whitespace() || c == '=') {
        Some(i) => (
            &line[..i],
            line[i..].trim_start_matches(|c: char| c.is_whitespace() || c == '='),
        ),
        None => (line, ""),
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
    fn include_fan_out_is_capped_with_warnings() {
        let mut fs = MemFs::new();
        for i in 0..50 {
            fs = fs.file(&format!("/etc/ssh/d/{i:02}"), "Port 22\n");
        }
        let line = format!("Include {}\n", "d/* ".repeat(100));
        let main = format!("{}PermitRootLogin no\n", line.repeat(1000));
        let (s, w) = ssh(fs.file("/etc/ssh/sshd_config", &main));
        assert_eq!(s.permit_root_login.as_deref(), Some("no"));
        assert!(
            w.iter().any(|w| w.contains("more than 16 patterns")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|w| w.contains("more than 64 Include lines")),
            "{w:?}"
        );
        assert!(w.iter().any(|w| w.contains("not all were read")), "{w:?}");
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
