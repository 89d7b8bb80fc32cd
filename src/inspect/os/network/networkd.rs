//! systemd-networkd: `/etc/systemd/network/*.network` (and the vendor directories
//! `/usr/lib/systemd/network`, `/lib/systemd/network`, shadowed by same-named `/etc`
//! files, as networkd does).

use std::collections::BTreeMap;

use super::{Found, MAX_FILES};
use crate::inspect::os::context::Ctx;
use crate::inspect::os::text::ini_entries;

const DIRS: &[&str] = &[
    "/usr/lib/systemd/network",
    "/lib/systemd/network",
    "/etc/systemd/network",
];

pub fn read(ctx: &mut Ctx) -> Found {
    let mut found = Found::default();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for dir in DIRS {
        for path in ctx.glob(&format!("{dir}/*.network"), MAX_FILES) {
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            files.insert(name, path);
        }
    }
    for path in files.values() {
        let Some(text) = ctx.read_text(path) else {
            continue;
        };
        let mut names = Vec::new();
        let mut dhcp = false;
        let mut addresses = Vec::new();
        let mut dns = Vec::new();
        for (section, key, value) in ini_entries(&text) {
            match (section.as_str(), key.as_str()) {
                ("Match", "Name") => names.extend(value.split_whitespace().map(str::to_string)),
                ("Network", "DHCP") => {
                    dhcp = !matches!(value.as_str(), "no" | "false" | "0" | "off")
                }
                ("Network", "Address") | ("Address", "Address") => addresses.push(value),
                ("Network", "DNS") => dns.extend(value.split_whitespace().map(str::to_string)),
                _ => {}
            }
        }
        let method = if dhcp {
            "dhcp"
        } else if !addresses.is_empty() {
            "static"
        } else {
            "manual"
        };
        // A [Match] Name= may be a glob (`en*`): reported as written.
        for name in names {
            found.add(&name, Some(method), addresses.clone());
        }
        found.add_dns(dns.iter().map(String::as_str));
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::os::network::tests::detect_in;

    #[test]
    fn network_files() {
        let n = detect_in(
            MemFs::new()
                .file("/etc/systemd/network/10-lan.network", "[Match]\nName=enp1s0\n\n[Network]\nAddress=10.9.0.2/24\nGateway=10.9.0.1\nDNS=10.9.0.1\n")
                .file("/usr/lib/systemd/network/80-dhcp.network", "[Match]\nName=en*\n[Network]\nDHCP=yes\n")
                .file("/usr/lib/systemd/network/10-lan.network", "[Match]\nName=shadowed\n"),
        );
        let got = super::super::tests::interfaces(&n);
        assert_eq!(
            got,
            vec![
                ("enp1s0", Some("static"), vec!["10.9.0.2/24"]),
                ("en*", Some("dhcp"), vec![])
            ]
        );
        assert_eq!(n.dns_servers, vec!["10.9.0.1"]);
    }
}
