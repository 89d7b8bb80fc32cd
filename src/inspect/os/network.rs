//! Network configuration as written in the guest's config files (never the running
//! state): one file per configuration system, merged into one interface list, plus the
//! DNS servers.
//!
//! Interfaces are merged by name in the order the sources are read (ifupdown, netplan,
//! NetworkManager, ifcfg, systemd-networkd): the first source to name an interface sets
//! its method; addresses from later sources are appended. DNS comes from
//! `/etc/resolv.conf` unless it is missing (e.g. a link to a `/run` file that does not
//! exist on a disk image) or only points at the local systemd-resolved stub; then from
//! what the configuration files say (netplan `nameservers`, ifcfg `DNSn`, keyfile `dns=`,
//! ifupdown `dns-nameservers`, networkd and `/etc/systemd/resolved.conf` `DNS=`).

mod ifcfg;
mod ifupdown;
mod keyfile;
mod netplan;
mod networkd;

use std::net::IpAddr;

use crate::inspect::report::{Interface, Network};

use super::context::Ctx;
use super::text::{content_lines, ini_entries};

/// Most interfaces and DNS servers reported, and addresses per interface.
pub const MAX_INTERFACES: usize = 1024;
pub const MAX_ADDRESSES: usize = 256;
/// Most files read from one configuration directory.
pub const MAX_FILES: usize = 256;

/// What one configuration system says.
#[derive(Debug, Default)]
pub struct Found {
    pub interfaces: Vec<Interface>,
    pub dns: Vec<String>,
}

impl Found {
    /// Adds `addresses` to interface `name`, creating it with `method` if new.
    pub fn add(&mut self, name: &str, method: Option<&str>, addresses: Vec<String>) {
        if name.is_empty() {
            return;
        }
        let count = self.interfaces.len();
        match self.interfaces.iter_mut().find(|i| i.name == name) {
            Some(i) => {
                if i.method.is_none() {
                    i.method = method.map(str::to_string);
                }
                push_unique(&mut i.addresses, addresses, MAX_ADDRESSES);
            }
            None if count < MAX_INTERFACES => {
                let mut i = Interface {
                    name: name.to_string(),
                    method: method.map(str::to_string),
                    addresses: Vec::new(),
                };
                push_unique(&mut i.addresses, addresses, MAX_ADDRESSES);
                self.interfaces.push(i);
            }
            None => {}
        }
    }

    /// Adds DNS servers that parse as IP addresses (`1.1.1.1#name` and `[::1]:53`
    /// forms are reduced to the address).
    pub fn add_dns<'a>(&mut self, servers: impl IntoIterator<Item = &'a str>) {
        let parsed: Vec<String> = servers.into_iter().filter_map(dns_address).collect();
        push_unique(&mut self.dns, parsed, MAX_INTERFACES);
    }

    fn merge(&mut self, other: Found) {
        for i in other.interfaces {
            self.add(&i.name, i.method.as_deref(), i.addresses);
        }
        push_unique(&mut self.dns, other.dns, MAX_INTERFACES);
    }
}

/// Appends the `items` not yet in `into`, up to `max` in all; linear (a set of what is
/// there), since both lists may be long on a hostile image.
fn push_unique(into: &mut Vec<String>, items: Vec<String>, max: usize) {
    if into.len() >= max {
        return;
    }
    let mut seen: std::collections::HashSet<String> = into.iter().cloned().collect();
    for item in items {
        if into.len() >= max {
            return;
        }
        if !seen.contains(&item) {
            seen.insert(item.clone());
            into.push(item);
        }
    }
}

/// The address part of a DNS server setting, if it is an IP address.
fn dns_address(s: &str) -> Option<String> {
    let s = s.trim().trim_matches(|c| c == ',' || c == ';');
    let s = s.split('#').next()?;
    let s = match s.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => s,
    };
    let s = s.split('%').next()?;
    s.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// `192.168.1.10` + `255.255.255.0` -> `192.168.1.10/24`; the address alone when the
/// mask is absent or not a valid IPv4 mask.
pub fn with_netmask(address: &str, netmask: Option<&str>) -> String {
    if address.contains('/') {
        return address.to_string();
    }
    let prefix = netmask.and_then(|m| {
        if let Ok(n) = m.parse::<u8>() {
            return (n <= 128).then_some(n as u32);
        }
        let mask: std::net::Ipv4Addr = m.parse().ok()?;
        let bits = u32::from(mask);
        (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones())
    });
    match prefix {
        Some(p) => format!("{address}/{p}"),
        None => address.to_string(),
    }
}

/// Reads the network configuration of the root behind `ctx`.
pub fn detect(ctx: &mut Ctx) -> Network {
    let mut all = Found::default();
    all.merge(ifupdown::read(ctx));
    all.merge(netplan::read(ctx));
    all.merge(keyfile::read(ctx));
    all.merge(ifcfg::read(ctx));
    all.merge(networkd::read(ctx));
    resolved_conf(ctx, &mut all);
    let dns = match resolv_conf(ctx) {
        Some(servers) if !servers.is_empty() => servers,
        _ => all.dns,
    };
    Network {
        interfaces: all.interfaces,
        dns_servers: dns,
    }
}

/// Servers of /etc/resolv.conf, without systemd-resolved's local stub addresses;
/// `None` when the file (or its link target) is not on the image.
fn resolv_conf(ctx: &mut Ctx) -> Option<Vec<String>> {
    let text = ctx.read_text("/etc/resolv.conf")?;
    let mut f = Found::default();
    for line in content_lines(&text) {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            f.add_dns(
                words
                    .next()
                    .filter(|a| !matches!(*a, "127.0.0.53" | "127.0.0.54")),
            );
        }
    }
    Some(f.dns)
}

/// `DNS=` of systemd-resolved's config and its drop-ins.
fn resolved_conf(ctx: &mut Ctx, found: &mut Found) {
    let mut files = vec!["/etc/systemd/resolved.conf".to_string()];
    files.extend(ctx.glob("/etc/systemd/resolved.conf.d/*.conf", MAX_FILES));
    for path in files {
        let Some(text) = ctx.read_text(&path) else {
            continue;
        };
        for (section, key, value) in ini_entries(&text) {
            if section == "Resolve" && key == "DNS" {
                found.add_dns(value.split_whitespace());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    pub(super) fn detect_with_warnings(fs: MemFs) -> (Network, Vec<String>) {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let n = detect(&mut ctx);
        (n, ctx.into_warnings())
    }

    /// (name, method, addresses) of each interface, for compact assertions.
    pub(super) fn interfaces(n: &Network) -> Vec<(&str, Option<&str>, Vec<&str>)> {
        n.interfaces
            .iter()
            .map(|i| {
                (
                    i.name.as_str(),
                    i.method.as_deref(),
                    i.addresses.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    pub(super) fn detect_in(fs: MemFs) -> Network {
        let (n, w) = detect_with_warnings(fs);
        assert_eq!(w, Vec::<String>::new());
        n
    }

    #[test]
    fn helpers() {
        assert_eq!(
            with_netmask("10.0.0.2", Some("255.255.255.0")),
            "10.0.0.2/24"
        );
        assert_eq!(with_netmask("10.0.0.2", Some("24")), "10.0.0.2/24");
        assert_eq!(with_netmask("10.0.0.2", Some("255.0.255.0")), "10.0.0.2");
        assert_eq!(
            with_netmask("10.0.0.2/16", Some("255.255.255.0")),
            "10.0.0.2/16"
        );
        assert_eq!(
            dns_address("1.1.1.1#cloudflare-dns.com").as_deref(),
            Some("1.1.1.1")
        );
        assert_eq!(
            dns_address("[2606:4700::1111]:53").as_deref(),
            Some("2606:4700::1111")
        );
        assert_eq!(dns_address("fe80::1%eth0").as_deref(), Some("fe80::1"));
        assert_eq!(dns_address("8.8.8.8;").as_deref(), Some("8.8.8.8"));
        assert_eq!(dns_address("dns.example"), None);
    }

    #[test]
    fn resolv_conf_wins_unless_it_is_the_stub_or_dangling() {
        let n = detect_in(
            MemFs::new()
                .file(
                    "/etc/resolv.conf",
                    "# x\nnameserver 10.0.0.1\nnameserver 10.0.0.1\nsearch example\n",
                )
                .file("/etc/systemd/resolved.conf", "[Resolve]\nDNS=9.9.9.9\n"),
        );
        assert_eq!(n.dns_servers, vec!["10.0.0.1"]);
        let n = detect_in(
            MemFs::new()
                .symlink(
                    "/etc/resolv.conf",
                    "../run/systemd/resolve/stub-resolv.conf",
                )
                .file(
                    "/etc/systemd/resolved.conf",
                    "[Resolve]\n#DNS=\nDNS=9.9.9.9 1.1.1.1#one.one.one.one\n",
                )
                .file(
                    "/etc/systemd/resolved.conf.d/x.conf",
                    "[Resolve]\nDNS=8.8.4.4\n",
                ),
        );
        assert_eq!(n.dns_servers, vec!["9.9.9.9", "1.1.1.1", "8.8.4.4"]);
        let n = detect_in(
            MemFs::new()
                .file("/etc/resolv.conf", "nameserver 127.0.0.53\noptions edns0\n")
                .file("/etc/systemd/resolved.conf", "[Resolve]\nDNS=9.9.9.9\n"),
        );
        assert_eq!(n.dns_servers, vec!["9.9.9.9"]);
    }
}
