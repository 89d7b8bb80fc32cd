//! Debian's ifupdown: `/etc/network/interfaces` and the files it pulls in with
//! `source` / `source-directory` (usually `/etc/network/interfaces.d/*`).

use super::{with_netmask, Found, MAX_FILES};
use crate::inspect::os::context::Ctx;
use crate::inspect::os::text::content_lines;

/// Nesting depth of `source` lines followed.
const MAX_DEPTH: usize = 8;

pub fn read(ctx: &mut Ctx) -> Found {
    let mut found = Found::default();
    let mut budget = MAX_FILES;
    read_file(ctx, "/etc/network/interfaces", 0, &mut budget, &mut found);
    found
}

/// One stanza being read: `iface NAME FAMILY METHOD` and its option lines.
struct Stanza {
    name: String,
    method: String,
    address: Option<String>,
    netmask: Option<String>,
}

fn read_file(ctx: &mut Ctx, path: &str, depth: usize, budget: &mut usize, found: &mut Found) {
    if depth > MAX_DEPTH || *budget == 0 {
        ctx.warn(format_args!(
            "{path}: too many nested `source` files, not all were read"
        ));
        return;
    }
    *budget -= 1;
    let Some(text) = ctx.read_text(path) else {
        return;
    };
    let dir = path
        .rsplit_once('/')
        .map(|(d, _)| d)
        .unwrap_or("/")
        .to_string();
    let mut cur: Option<Stanza> = None;
    for line in content_lines(&text) {
        let mut w = line.split_whitespace();
        let Some(keyword) = w.next() else { continue };
        let rest: Vec<&str> = w.collect();
        match keyword {
            "iface" => {
                finish(cur.take(), found);
                if let (Some(name), Some(method)) = (rest.first(), rest.get(2)) {
                    cur = Some(Stanza {
                        name: name.to_string(),
                        method: method.to_string(),
                        address: None,
                        netmask: None,
                    });
                }
            }
            "source" | "source-directory" => {
                finish(cur.take(), found);
                let Some(arg) = rest.first() else { continue };
                let target = if arg.starts_with('/') {
                    arg.to_string()
                } else {
                    format!("{dir}/{arg}")
                };
                let files = if keyword == "source" {
                    ctx.glob(&target, MAX_FILES)
                } else {
                    // run-parts naming: letters, digits, `_` and `-` only.
                    ctx.list_dir(&target)
                        .into_iter()
                        .filter(|e| {
                            e.name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                        })
                        .map(|e| format!("{target}/{}", e.name))
                        .collect()
                };
                for f in files {
                    read_file(ctx, &f, depth + 1, budget, found);
                }
            }
            "auto" | "allow-hotplug" | "mapping" | "no-auto-down" | "no-scripts" | "rename" => {
                finish(cur.take(), found);
            }
            _ => {
                let Some(st) = cur.as_mut() else { continue };
                let value = rest.first().map(|v| v.to_string());
                match keyword {
                    "address" => st.address = value,
                    "netmask" => st.netmask = value,
                    "dns-nameservers" => found.add_dns(rest.iter().copied()),
                    _ => {}
                }
            }
        }
    }
    finish(cur, found);
}

fn finish(st: Option<Stanza>, found: &mut Found) {
    let Some(st) = st else { return };
    let addresses = st
        .address
        .iter()
        .map(|a| with_netmask(a, st.netmask.as_deref()))
        .collect();
    found.add(&st.name, Some(&st.method), addresses);
}

#[cfg(test)]
mod tests {
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::os::network::tests::detect_with_warnings;

    #[test]
    fn stanzas_and_sources() {
        let (n, warnings) = detect_with_warnings(
            MemFs::new()
                .file(
                    "/etc/network/interfaces",
                    "source interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n\
                     allow-hotplug eth0\niface eth0 inet static\n  address 192.168.1.10\n  netmask 255.255.255.0\n\
                     \x20 gateway 192.168.1.1\n  dns-nameservers 192.168.1.1 8.8.8.8\niface eth0 inet6 auto\n",
                )
                .file("/etc/network/interfaces.d/eth1", "auto eth1\niface eth1 inet dhcp\n")
                .file("/etc/network/interfaces.d/loop", "source /etc/network/interfaces.d/loop\n"),
        );
        let got = super::super::tests::interfaces(&n);
        assert_eq!(
            got,
            vec![
                ("eth1", Some("dhcp"), vec![]),
                ("lo", Some("loopback"), vec![]),
                ("eth0", Some("static"), vec!["192.168.1.10/24"]),
            ]
        );
        assert_eq!(n.dns_servers, vec!["192.168.1.1", "8.8.8.8"]);
        // The self-including file is cut at the nesting limit, with a warning.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("nested"));
    }
}
