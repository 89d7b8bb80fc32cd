//! Small text-format helpers shared by the config-file readers: `KEY=value` files with
//! shell quoting (os-release, lsb-release, ifcfg, /etc/default/grub, ...) and
//! comment-stripped lines.
//!
//! These files are written for a shell to source; we never run a shell, so we unquote
//! the common forms ourselves and ignore what only a shell could evaluate.

/// Lines with surrounding blanks trimmed, skipping empty lines and `#` comments.
pub fn content_lines(text: &str) -> impl Iterator<Item = &str> {
    numbered_lines(text).map(|(_, line)| line)
}

/// [`content_lines`] with their 1-based line numbers, for evidence that points at a line.
pub fn numbered_lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (u32::try_from(i + 1).unwrap_or(u32::MAX), l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `KEY=value` pairs of a shell-style variables file, in file order, values unquoted.
/// Lines that are not assignments are skipped; a leading `export ` is allowed.
pub fn shell_vars(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in content_lines(text) {
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        out.push((key.to_string(), shell_unquote(value.trim())));
    }
    out
}

/// Value of the last assignment to `key` (the shell's "last one wins").
pub fn shell_var(vars: &[(String, String)], key: &str) -> Option<String> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Unquotes one shell word: `"..."` (with `\"`, `\\`, `\$`, `` \` `` escapes), `'...'`
/// (literal), or bare (backslash escapes, stops at an unquoted blank or `#` comment).
/// Adjacent quoted parts concatenate as in the shell (`"a"'b'c` is `abc`).
pub fn shell_unquote(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&n @ ('"' | '\\' | '$' | '`')) => {
                                out.push(n);
                                chars.next();
                            }
                            Some('\n') => {
                                chars.next();
                            }
                            _ => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c if c.is_whitespace() => break,
            c => out.push(c),
        }
    }
    out
}

/// `(section, key, value)` triples of an INI-style file (NetworkManager keyfiles,
/// systemd units and `.network` files), in order; repeated keys are all kept, since
/// systemd treats many of them as lists. `#` and `;` start comments.
///
/// Borrowed from `text`, never copied per entry: a hostile 1 MiB `[section]` name
/// followed by thousands of keys once cost gigabytes as one copy per key.
pub fn ini_entries(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    let mut section = "";
    text.lines().map(str::trim).filter_map(move |line| {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return None;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim();
            return None;
        }
        let (k, v) = line.split_once('=')?;
        Some((section, k.trim(), v.trim()))
    })
}

/// Whether `name` matches a shell glob of `*` and `?` (no character classes).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Splits a `major[.minor[...]]` version string into numbers, the way libguestfs does
/// (`"12"` is 12.0, `"3.19.1"` is 3.19, `"22.04"` is 22.4). `None` unless it starts with
/// a digit.
pub fn major_minor(text: &str) -> Option<(u32, u32)> {
    let text = text.trim();
    let major_len = text.bytes().take_while(u8::is_ascii_digit).count();
    if major_len == 0 {
        return None;
    }
    let major: u32 = text[..major_len].parse().ok()?;
    let rest = &text[major_len..];
    let minor = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                0
            } else {
                r[..n].parse().ok()?
            }
        }
        None => 0,
    };
    Some((major, minor))
}

/// Finds `word` followed by a version (`release 7.9.2009` -> 7.9) anywhere in `text`.
pub fn version_after(text: &str, word: &str) -> Option<(u32, u32)> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let start = from + i + word.len();
        if let Some(v) = major_minor(&text[start..]) {
            return Some(v);
        }
        from = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_like_a_shell() {
        assert_eq!(
            shell_unquote(r#""Debian GNU/Linux 12 (bookworm)""#),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(shell_unquote("'it''s'"), "its");
        assert_eq!(shell_unquote(r#""a\"b\\c\$""#), "a\"b\\c$");
        assert_eq!(shell_unquote("bare # comment"), "bare");
        assert_eq!(shell_unquote(r"a\ b"), "a b");
        assert_eq!(shell_unquote(r#""unterminated"#), "unterminated");
    }

    #[test]
    fn reads_variable_files() {
        let vars = shell_vars("# c\nID=debian\nexport NAME=\"x y\"\n bad line\n1=2\nID=ubuntu\n");
        assert_eq!(shell_var(&vars, "ID").as_deref(), Some("ubuntu"));
        assert_eq!(shell_var(&vars, "NAME").as_deref(), Some("x y"));
        assert_eq!(vars.len(), 4);
    }

    #[test]
    fn ini_and_globs() {
        let e: Vec<_> = ini_entries(
            "[Match]\nName=eth0\n# c\n[Network]\nAddress=10.0.0.2/24\nAddress = 10.0.0.3/24\nbad\n",
        )
        .collect();
        assert_eq!(e.len(), 3);
        assert_eq!(e[2], ("Network", "Address", "10.0.0.3/24"));
        assert!(glob_match("*.conf", "a.conf"));
        assert!(glob_match("ifcfg-*", "ifcfg-eth0"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("*.conf", "a.conf.bak"));
        assert!(glob_match("*", ""));
        assert!(!glob_match(&"*a".repeat(50), &"a".repeat(49)));
    }

    #[test]
    fn versions() {
        assert_eq!(major_minor("12"), Some((12, 0)));
        assert_eq!(major_minor("22.04"), Some((22, 4)));
        assert_eq!(major_minor("3.19.1\n"), Some((3, 19)));
        assert_eq!(major_minor("12."), Some((12, 0)));
        assert_eq!(major_minor("trixie/sid"), None);
        assert_eq!(major_minor("99999999999"), None);
        assert_eq!(
            version_after("CentOS Linux release 7.9.2009 (Core)", "release "),
            Some((7, 9))
        );
        assert_eq!(
            version_after("Fedora release 39 (Thirty Nine)", "release "),
            Some((39, 0))
        );
        assert_eq!(version_after("release notes, release x", "release "), None);
    }
}
