//! Red Hat and SUSE ifcfg files: `/etc/sysconfig/network-scripts/ifcfg-*` and
//! `/etc/sysconfig/network/ifcfg-*`, shell-variable files.

use super::{with_netmask, Found, MAX_FILES};
use crate::inspect::os::context::Ctx;
use crate::inspect::os::text::{shell_var, shell_vars};

const DIRS: &[&str] = &["/etc/sysconfig/network-scripts", "/etc/sysconfig/network"];
/// Backup and package-manager leftovers that the network scripts ignore too.
const IGNORED_SUFFIXES: &[&str] = &[
    ".bak", "~", ".rpmsave", ".rpmnew", ".rpmorig", ".orig", ".old",
];

pub fn read(ctx: &mut Ctx) -> Found {
    let mut found = Found::default();
    for dir in DIRS {
        for path in ctx.glob(&format!("{dir}/ifcfg-*"), MAX_FILES) {
            if IGNORED_SUFFIXES.iter().any(|s| path.ends_with(s)) {
                continue;
            }
            let Some(text) = ctx.read_text(&path) else {
                continue;
            };
            let vars = shell_vars(&text);
            let get = |k: &str| shell_var(&vars, k).filter(|v| !v.is_empty());
            let suffix = path
                .rsplit_once("ifcfg-")
                .map(|(_, s)| s)
                .unwrap_or_default();
            let name = get("DEVICE").unwrap_or_else(|| suffix.to_string());
            let mut addresses = Vec::new();
            // IPADDR/PREFIX/NETMASK, then the numbered forms IPADDR0.. (also SUSE's
            // IPADDR_x suffixes are rare enough to skip).
            for n in std::iter::once(String::new()).chain((0..=255).map(|i| i.to_string())) {
                let Some(ip) = get(&format!("IPADDR{n}")) else {
                    if n.is_empty() || n == "0" {
                        continue;
                    }
                    break;
                };
                let mask = get(&format!("PREFIX{n}")).or_else(|| get(&format!("NETMASK{n}")));
                addresses.push(with_netmask(&ip, mask.as_deref()));
            }
            if let Some(v6) = get("IPV6ADDR") {
                addresses.push(v6);
            }
            if let Some(more) = get("IPV6ADDR_SECONDARIES") {
                addresses.extend(more.split_whitespace().map(str::to_string));
            }
            let proto = get("BOOTPROTO").unwrap_or_default().to_ascii_lowercase();
            let method = if name == "lo" {
                "loopback"
            } else if proto.starts_with("dhcp") || proto == "bootp" {
                "dhcp"
            } else if !addresses.is_empty() {
                "static"
            } else {
                "manual"
            };
            found.add(&name, Some(method), addresses);
            let dns: Vec<String> = (1..=16).map_while(|i| get(&format!("DNS{i}"))).collect();
            found.add_dns(dns.iter().map(String::as_str));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::os::network::tests::detect_in;

    #[test]
    fn ifcfg_files() {
        let n = detect_in(
            MemFs::new()
                .file(
                    "/etc/sysconfig/network-scripts/ifcfg-eth0",
                    "DEVICE=eth0\nBOOTPROTO=none\nONBOOT=yes\nIPADDR=10.1.1.5\nNETMASK=255.255.0.0\nIPADDR1=10.2.2.5\nPREFIX1=24\nDNS1=10.1.1.1\nDNS2=10.1.1.2\n",
                )
                .file("/etc/sysconfig/network-scripts/ifcfg-eth1", "BOOTPROTO=dhcp\n")
                .file("/etc/sysconfig/network-scripts/ifcfg-eth1.bak", "BOOTPROTO=static\n")
                .file("/etc/sysconfig/network-scripts/ifcfg-lo", "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\n"),
        );
        let got = super::super::tests::interfaces(&n);
        assert_eq!(
            got,
            vec![
                ("eth0", Some("static"), vec!["10.1.1.5/16", "10.2.2.5/24"]),
                ("eth1", Some("dhcp"), vec![]),
                ("lo", Some("loopback"), vec!["127.0.0.1/8"]),
            ]
        );
        assert_eq!(n.dns_servers, vec!["10.1.1.1", "10.1.1.2"]);
    }
}
