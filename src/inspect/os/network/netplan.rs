//! netplan (Ubuntu): `/etc/netplan/*.yaml`, with `/lib/netplan` files of the same name
//! shadowed by `/etc` ones, read in file-name order; a later file's settings for an
//! interface override an earlier one's, as netplan merges them.

use std::cell::Cell;
use std::collections::BTreeMap;

use serde::de::VariantAccess;
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use serde_norway::Value;

use super::{Found, MAX_FILES};
use crate::inspect::os::context::Ctx;

/// Cap on one netplan file: real ones are a few hundred bytes, and the YAML parser's
/// work should stay small.
const NETPLAN_LIMIT: u64 = 1024 * 1024;

/// Interface sections of a netplan `network:` mapping.
const DEVICE_KINDS: &[&str] = &[
    "ethernets",
    "wifis",
    "bonds",
    "bridges",
    "vlans",
    "tunnels",
    "vrfs",
    "modems",
    "dummy-devices",
    "virtual-ethernets",
    "nm-devices",
];

/// One interface's settings, each `None` until some file sets it.
#[derive(Default)]
struct Settings {
    dhcp: Option<bool>,
    addresses: Option<Vec<String>>,
    dns: Option<Vec<String>>,
}

pub fn read(ctx: &mut Ctx) -> Found {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for dir in ["/lib/netplan", "/etc/netplan"] {
        for path in ctx.glob(&format!("{dir}/*.yaml"), MAX_FILES) {
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            files.insert(name, path);
        }
    }
    let mut ifaces: BTreeMap<String, Settings> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for path in files.values() {
        let Some(bytes) = ctx.read_bytes(path, NETPLAN_LIMIT) else {
            continue;
        };
        // Aliases make a small file a huge tree (`b: [*a, *a, ...]` of a 5,000-item
        // `a` is 25 million nodes in 25 KB): count the nodes as the parser expands them,
        // stopping at a budget, before building any tree.
        let nodes = match count_nodes(&bytes, MAX_NODES) {
            Ok(n) => n,
            Err(e) => {
                ctx.warn(format_args!("{path}: not read: {e}"));
                continue;
            }
        };
        if !ctx.charge(nodes) {
            break;
        }
        let doc: Value = match serde_norway::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                ctx.warn(format_args!("{path}: not valid YAML: {e}"));
                continue;
            }
        };
        let Some(network) = doc.get("network") else {
            continue;
        };
        for kind in DEVICE_KINDS {
            let Some(devices) = network.get(*kind).and_then(Value::as_mapping) else {
                continue;
            };
            for (id, cfg) in devices {
                let Some(id) = id.as_str() else { continue };
                let name = cfg
                    .get("set-name")
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_string();
                if !ifaces.contains_key(&name) {
                    order.push(name.clone());
                }
                let s = ifaces.entry(name).or_default();
                let dhcp4 = cfg.get("dhcp4").and_then(truthy);
                let dhcp6 = cfg.get("dhcp6").and_then(truthy);
                if dhcp4.is_some() || dhcp6.is_some() {
                    s.dhcp = Some(dhcp4.unwrap_or(false) || dhcp6.unwrap_or(false));
                }
                if let Some(list) = cfg.get("addresses").and_then(Value::as_sequence) {
                    s.addresses = Some(list.iter().filter_map(address).collect());
                }
                if let Some(list) = cfg
                    .get("nameservers")
                    .and_then(|n| n.get("addresses"))
                    .and_then(Value::as_sequence)
                {
                    s.dns = Some(
                        list.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    );
                }
            }
        }
    }
    let mut found = Found::default();
    for name in order {
        let Some(s) = ifaces.remove(&name) else {
            continue;
        };
        let addresses = s.addresses.unwrap_or_default();
        let method = if s.dhcp == Some(true) {
            "dhcp"
        } else if !addresses.is_empty() {
            "static"
        } else {
            "manual"
        };
        found.add(&name, Some(method), addresses);
        if let Some(dns) = s.dns {
            found.add_dns(dns.iter().map(String::as_str));
        }
    }
    found
}

/// Most YAML nodes (after alias expansion) of one netplan file: real ones have tens.
const MAX_NODES: u64 = 100_000;

/// The number of nodes of the YAML document in `bytes`, counting every alias as the
/// nodes it expands to; an error past `max` (or for invalid YAML). Memory stays at the
/// parser's event list: nothing is built.
fn count_nodes(bytes: &[u8], max: u64) -> Result<u64, String> {
    let left = Cell::new(max);
    let de = serde_norway::Deserializer::from_slice(bytes);
    match Count(&left).deserialize(de) {
        Ok(()) => Ok(max - left.get()),
        Err(e) => Err(if left.get() == 0 {
            format!("more than {max} YAML nodes once aliases are expanded")
        } else {
            format!("not valid YAML: {e}")
        }),
    }
}

/// A serde visitor that only counts, so a document is walked without being built.
#[derive(Clone, Copy)]
struct Count<'a>(&'a Cell<u64>);

impl Count<'_> {
    fn tick<E: de::Error>(self) -> Result<(), E> {
        match self.0.get() {
            0 => Err(E::custom("node budget exhausted")),
            n => {
                self.0.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.tick()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.tick()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.tick()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.tick()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.tick()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.tick()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.tick()
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        self.tick()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.tick()?;
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.tick()?;
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tick()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tick()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        self.tick()?;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

/// netplan booleans: YAML `true`, or the strings netplan also accepts.
fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Some(true),
            "false" | "no" | "off" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// An `addresses:` item: `"10.0.0.2/24"` or `{"10.0.0.2/24": {lifetime: 0}}`.
fn address(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => m.keys().next().and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::os::network::tests::{detect_in, detect_with_warnings};

    #[test]
    fn ethernets_bonds_and_overrides() {
        let n = detect_in(
            MemFs::new()
                .file(
                    "/etc/netplan/50-cloud-init.yaml",
                    "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n    ens4:\n      match: {macaddress: 'aa:bb:cc:dd:ee:ff'}\n      set-name: lan0\n      addresses: [10.0.0.5/24, {\"fd00::5/64\": {lifetime: 0}}]\n      nameservers:\n        addresses: [10.0.0.1]\n  bonds:\n    bond0:\n      interfaces: [eth1, eth2]\n      addresses: [192.168.5.2/24]\n",
                )
                .file("/etc/netplan/90-override.yaml", "network:\n  ethernets:\n    eth0:\n      dhcp4: no\n      addresses: [172.16.0.9/16]\n")
                .symlink("/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf"),
        );
        let got = super::super::tests::interfaces(&n);
        assert_eq!(
            got,
            vec![
                ("eth0", Some("static"), vec!["172.16.0.9/16"]),
                ("lan0", Some("static"), vec!["10.0.0.5/24", "fd00::5/64"]),
                ("bond0", Some("static"), vec!["192.168.5.2/24"]),
            ]
        );
        assert_eq!(n.dns_servers, vec!["10.0.0.1"]);
    }

    #[test]
    fn alias_fan_out_is_refused_and_counted() {
        let a: Vec<String> = (0..1000).map(|i| format!("x{i}")).collect();
        let yaml = format!(
            "a: &a [{}]\nb: [{}]\n",
            a.join(", "),
            vec!["*a"; 1000].join(", ")
        );
        assert!(super::count_nodes(yaml.as_bytes(), super::MAX_NODES)
            .unwrap_err()
            .contains("aliases"));
        // Counted as expanded: 1 map + 2 keys + 1 seq of 3 + 3 items + 1 seq of 2 aliases
        // (2 x 4 nodes) = 16.
        let small = "a: &a [1, 2, 3]\nb: [*a, *a]\n";
        assert_eq!(super::count_nodes(small.as_bytes(), 100), Ok(16));
        let (n, w) = detect_with_warnings(MemFs::new().file(
            "/etc/netplan/01.yaml",
            format!("network:\n  version: 2\n{yaml}"),
        ));
        assert!(n.interfaces.is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("YAML nodes"), "{w:?}");
    }

    #[test]
    fn broken_yaml_is_a_warning() {
        let (n, w) =
            detect_with_warnings(MemFs::new().file("/etc/netplan/01.yaml", "network: [\n"));
        assert!(n.interfaces.is_empty());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("/etc/netplan/01.yaml"), "{w:?}");
    }
}
