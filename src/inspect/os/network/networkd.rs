//! systemd-networkd: `/etc/systemd/network/*.network` (and the vendor directories
//! `/usr/lib/systemd/network`, `/lib/systemd/network`, shadowed by same-named `/etc`
//! files, as networkd does).

use std::collections::{BTreeMap, HashSet};

use super::{Found, MAX_ADDRESSES, MAX_FILES, MAX_INTERFACES};
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
        // Each list is deduplicated as it is read and capped, so the work stays linear
        // in the file's size: 5,000 `Name=` times 100,000 identical `Address=` once
        // took seconds per megabyte as one full address list per name.
        let mut names = Unique::new(MAX_INTERFACES);
        let mut dhcp = false;
        let mut addresses = Unique::new(MAX_ADDRESSES);
        let mut dns = Unique::new(MAX_INTERFACES);
        for (section, key, value) in ini_entries(&text) {
            match (section, key) {
                ("Match", "Name") => value.split_whitespace().for_each(|n| names.add(n)),
                ("Network", "DHCP") => dhcp = !matches!(value, "no" | "false" | "0" | "off"),
                ("Network", "Address") | ("Address", "Address") => addresses.add(value),
                ("Network", "DNS") => value.split_whitespace().for_each(|d| dns.add(d)),
                _ => {}
            }
        }
        let method = if dhcp {
            "dhcp"
        } else if !addresses.items.is_empty() {
            "static"
        } else {
            "manual"
        };
        // One copy of the address list per interface name: charged to the job's work.
        let copies = names.items.len() as u64 * (addresses.items.len() as u64 + 1);
        if !ctx.charge(copies) {
            break;
        }
        // A [Match] Name= may be a glob (`en*`): reported as written.
        for name in &names.items {
            found.add(name, Some(method), addresses.items.clone());
        }
        let dns = dns.items;
        found.add_dns(dns.iter().map(String::as_str));
    }
    found
}

/// Distinct values in first-seen order, at most `max`.
struct Unique {
    items: Vec<String>,
    seen: HashSet<String>,
    max: usize,
}

impl Unique {
    fn new(max: usize) -> Unique {
        Unique {
            items: Vec::new(),
            seen: HashSet::new(),
            max,
        }
    }

    fn add(&mut self, item: &str) {
        if self.items.len() < self.max && !self.seen.contains(item) {
            self.seen.insert(item.to_string());
            self.items.push(item.to_string());
        }
    }
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
