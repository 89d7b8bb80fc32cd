//! NetworkManager keyfiles: `/etc/NetworkManager/system-connections/*.nmconnection`
//! (and extension-less files there, the pre-1.30 naming).

use super::{Found, MAX_FILES};
use crate::inspect::os::context::Ctx;
use crate::inspect::os::text::ini_entries;

const DIR: &str = "/etc/NetworkManager/system-connections";

pub fn read(ctx: &mut Ctx) -> Found {
    let mut found = Found::default();
    let files: Vec<String> = ctx
        .list_dir(DIR)
        .into_iter()
        .filter(|e| !e.name.starts_with('.') && !e.name.ends_with('~'))
        .take(MAX_FILES)
        .map(|e| format!("{DIR}/{}", e.name))
        .collect();
    for path in files {
        let Some(text) = ctx.read_text(&path) else {
            continue;
        };
        let mut id = None;
        let mut ifname = None;
        let mut methods: [Option<String>; 2] = [None, None];
        let mut addresses = Vec::new();
        let mut dns = Vec::new();
        for (section, key, value) in ini_entries(&text) {
            let family = match section {
                "ipv4" => 0,
                "ipv6" => 1,
                "connection" => {
                    match key {
                        "id" => id = Some(value.to_string()),
                        "interface-name" => ifname = Some(value.to_string()),
                        _ => {}
                    }
                    continue;
                }
                _ => continue,
            };
            match key {
                "method" => methods[family] = Some(value.to_string()),
                "dns" => dns.extend(
                    value
                        .split(';')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                // address1=10.0.0.2/24,10.0.0.1 (gateway after the comma); the old
                // `addresses` key lists several, `;`-separated.
                k if k == "addresses" || k.starts_with("address") => {
                    for item in value.split(';').filter(|s| !s.is_empty()) {
                        addresses.push(item.split(',').next().unwrap_or(item).trim().to_string());
                    }
                }
                _ => {}
            }
        }
        let method = methods[0]
            .as_deref()
            .filter(|m| *m != "disabled")
            .or(methods[1]
                .as_deref()
                .filter(|m| !matches!(*m, "ignore" | "disabled")))
            .or(methods[0].as_deref())
            .map(|m| match m {
                "auto" => "dhcp",
                "manual" => "static",
                other => other,
            });
        let Some(name) = ifname.or(id) else { continue };
        found.add(&name, method, addresses);
        found.add_dns(dns.iter().map(String::as_str));
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::os::network::tests::detect_in;

    #[test]
    fn keyfiles() {
        let n = detect_in(
            MemFs::new()
                .file(
                    "/etc/NetworkManager/system-connections/static.nmconnection",
                    "[connection]\nid=Wired 1\ntype=ethernet\ninterface-name=enp1s0\n\n[ipv4]\nmethod=manual\naddress1=192.168.122.50/24,192.168.122.1\ndns=192.168.122.1;8.8.8.8;\n\n[ipv6]\nmethod=auto\n",
                )
                .file("/etc/NetworkManager/system-connections/dhcp", "[connection]\nid=eth1\n[ipv4]\nmethod=auto\n"),
        );
        let got = super::super::tests::interfaces(&n);
        assert_eq!(
            got,
            vec![
                ("eth1", Some("dhcp"), vec![]),
                ("enp1s0", Some("static"), vec!["192.168.122.50/24"])
            ]
        );
        assert_eq!(n.dns_servers, vec!["192.168.122.1", "8.8.8.8"]);
    }
}
