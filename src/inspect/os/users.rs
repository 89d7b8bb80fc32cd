//! Local accounts from `/etc/passwd`, with their lock state from `/etc/shadow`.
//!
//! Password hashes never leave this file: only `locked` is reported. Definitions:
//! - `locked`: the account cannot log in with a password. True when its hash (the
//!   shadow one, or the passwd field when it is not `x`) starts with `!` or `*` (which
//!   covers `!!`, `!*`, `*LK*`), or when passwd says `x` and shadow has no entry for it
//!   (or no shadow file exists). An empty hash is *not* locked: it allows a password-less
//!   login. Account expiry dates are not considered.
//! - `system`: uid below `UID_MIN` or above `UID_MAX` of `/etc/login.defs` (defaults
//!   1000 and 60000), so root, daemons and `nobody` (65534) are system accounts.

use std::collections::HashMap;

use crate::inspect::report::User;

use super::context::Ctx;
use super::text::content_lines;

/// Most accounts reported; more is a hostile passwd, cut with a warning.
pub const MAX_USERS: usize = 10_000;

const DEFAULT_UID_MIN: u32 = 1000;
const DEFAULT_UID_MAX: u32 = 60000;

/// The accounts of the root behind `ctx`, in passwd order.
pub fn detect(ctx: &mut Ctx) -> Vec<User> {
    let Some(passwd) = ctx.read_text("/etc/passwd") else {
        return Vec::new();
    };
    // Read only to learn lock states; the text is dropped at the end of this function.
    let shadow = ctx.read_text("/etc/shadow");
    let (uid_min, uid_max) = match ctx.read_text("/etc/login.defs") {
        Some(t) => login_defs_range(&t),
        None => (DEFAULT_UID_MIN, DEFAULT_UID_MAX),
    };
    let locks = shadow.as_deref().map(shadow_locks);
    let (users, bad) = parse_passwd(&passwd, locks.as_ref(), uid_min, uid_max);
    if bad > 0 {
        ctx.warn(format_args!("/etc/passwd: {bad} malformed lines skipped"));
    }
    if users.len() >= MAX_USERS {
        ctx.warn(format_args!(
            "/etc/passwd: only the first {MAX_USERS} accounts are reported"
        ));
    }
    users
}

/// `UID_MIN` / `UID_MAX` from login.defs (whitespace-separated `KEY VALUE` lines).
fn login_defs_range(text: &str) -> (u32, u32) {
    let mut min = DEFAULT_UID_MIN;
    let mut max = DEFAULT_UID_MAX;
    for line in content_lines(text) {
        let mut f = line.split_whitespace();
        match (f.next(), f.next().and_then(|v| v.parse::<u32>().ok())) {
            (Some("UID_MIN"), Some(v)) => min = v,
            (Some("UID_MAX"), Some(v)) => max = v,
            _ => {}
        }
    }
    (min, max)
}

/// Name -> locked, from shadow's second field. The hash itself is not kept.
fn shadow_locks(text: &str) -> HashMap<String, bool> {
    let mut out = HashMap::new();
    for line in content_lines(text).take(MAX_USERS * 4) {
        let mut f = line.split(':');
        if let (Some(name), Some(hash)) = (f.next(), f.next()) {
            out.entry(name.to_string())
                .or_insert_with(|| hash_is_locked(hash));
        }
    }
    out
}

/// A hash that no password can match.
fn hash_is_locked(hash: &str) -> bool {
    hash.starts_with('!') || hash.starts_with('*')
}

/// Parses passwd lines (`name:pw:uid:gid:gecos:home:shell`); returns the users and the
/// count of malformed lines. NIS `+`/`-` lines are not accounts and are skipped.
fn parse_passwd(
    text: &str,
    shadow: Option<&HashMap<String, bool>>,
    uid_min: u32,
    uid_max: u32,
) -> (Vec<User>, usize) {
    let mut users = Vec::new();
    let mut bad = 0;
    for line in content_lines(text) {
        if line.starts_with('+') || line.starts_with('-') {
            continue;
        }
        let f: Vec<&str> = line.splitn(8, ':').collect();
        let (Some(uid), Some(gid)) = (
            f.get(2).and_then(|v| v.parse().ok()),
            f.get(3).and_then(|v| v.parse().ok()),
        ) else {
            bad += 1;
            continue;
        };
        if f.len() < 7 || f[0].is_empty() {
            bad += 1;
            continue;
        }
        if users.len() >= MAX_USERS {
            break;
        }
        let name = f[0];
        let pw = f[1];
        let locked = if pw == "x" {
            shadow.and_then(|s| s.get(name).copied()).unwrap_or(true)
        } else {
            hash_is_locked(pw)
        };
        users.push(User {
            name: name.to_string(),
            uid,
            gid,
            home: f[5].to_string(),
            shell: f[6].to_string(),
            system: uid < uid_min || uid > uid_max,
            locked,
        });
    }
    (users, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_system_rules() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
                      bob:x:1001:1001::/home/bob:/bin/sh\n\
                      carol:x:1002:1002::/home/carol:/bin/sh\n\
                      dave:x:1003:1003::/home/dave:/bin/sh\n\
                      old::1004:1004::/home/old:/bin/sh\n\
                      +nis::::::\n\
                      broken:x:abc:1:::\n";
        let shadow = "root:*:19000:0:99999:7:::\nnobody:*:19000::::::\n\
                      alice:$6$salt$hash:19000:0:99999:7:::\nbob:!$6$salt$hash:19000::::::\ncarol::19000::::::\n";
        let locks = shadow_locks(shadow);
        let (users, bad) = parse_passwd(passwd, Some(&locks), 1000, 60000);
        assert_eq!(bad, 1);
        let got: Vec<(&str, bool, bool)> = users
            .iter()
            .map(|u| (u.name.as_str(), u.system, u.locked))
            .collect();
        assert_eq!(
            got,
            vec![
                ("root", true, true),
                ("nobody", true, true),
                ("alice", false, false),
                ("bob", false, true),
                ("carol", false, false),
                ("dave", false, true),
                ("old", false, false),
            ]
        );
        assert_eq!(users[2].home, "/home/alice");
        assert_eq!(users[2].shell, "/bin/bash");
    }

    #[test]
    fn login_defs() {
        assert_eq!(
            login_defs_range("# x\nUID_MIN\t 500\nUID_MAX 59999\nGID_MIN 100\n"),
            (500, 59999)
        );
        assert_eq!(login_defs_range(""), (1000, 60000));
    }
}
