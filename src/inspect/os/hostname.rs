//! The configured hostname: `/etc/hostname` (systemd, Debian, RHEL 7+), `/etc/HOSTNAME`
//! (old SUSE, Slackware), then `HOSTNAME=` in `/etc/sysconfig/network` (RHEL <= 6).

use super::context::Ctx;
use super::text::{content_lines, shell_var, shell_vars};

/// Longest hostname accepted (a DNS name's limit); anything longer is not a hostname.
const MAX_HOSTNAME: usize = 253;

/// The first of the three places that names a hostname.
pub fn detect(ctx: &mut Ctx) -> Option<String> {
    for path in ["/etc/hostname", "/etc/HOSTNAME"] {
        if let Some(text) = ctx.read_text(path) {
            if let Some(name) = first_word(&text) {
                return checked(ctx, path, name);
            }
        }
    }
    let text = ctx.read_text("/etc/sysconfig/network")?;
    let name = shell_var(&shell_vars(&text), "HOSTNAME").filter(|h| !h.is_empty())?;
    checked(ctx, "/etc/sysconfig/network", &name)
}

/// First non-comment line of a hostname file.
fn first_word(text: &str) -> Option<&str> {
    content_lines(text)
        .next()
        .and_then(|l| l.split_whitespace().next())
}

fn checked(ctx: &mut Ctx, path: &str, name: &str) -> Option<String> {
    if name.len() > MAX_HOSTNAME || name.chars().any(|c| c.is_control()) {
        ctx.warn(format_args!(
            "{path}: ignoring a hostname that is not a valid name"
        ));
        return None;
    }
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    fn host(fs: MemFs) -> Option<String> {
        let g = GuestFs::new(Arc::new(fs));
        detect(&mut Ctx::new(&g, "/dev/sda1"))
    }

    #[test]
    fn sources_in_order() {
        assert_eq!(
            host(MemFs::new().file("/etc/hostname", "# c\n\nweb-01\n")).as_deref(),
            Some("web-01")
        );
        assert_eq!(
            host(
                MemFs::new()
                    .file("/etc/hostname", "\n")
                    .file("/etc/HOSTNAME", "old.example.com\n")
            )
            .as_deref(),
            Some("old.example.com")
        );
        assert_eq!(
            host(MemFs::new().file(
                "/etc/sysconfig/network",
                "NETWORKING=yes\nHOSTNAME=\"db1\"\n"
            ))
            .as_deref(),
            Some("db1")
        );
        assert_eq!(host(MemFs::new()), None);
        assert_eq!(
            host(MemFs::new().file("/etc/hostname", "x".repeat(300))),
            None
        );
    }
}
