//! Facts of the SYSTEM hive: the current control set, hostname, drive letters,
//! services, network interfaces and the Remote Desktop and firewall switches.

use std::collections::BTreeMap;

use crate::inspect::bytes::{array, guid_mixed_endian, le32, le64};
use crate::inspect::os::Mountable;
use crate::inspect::report::{Interface, Network, Service};

use super::hive::{Hive, HiveError, Key, RegValue};

/// Most services listed (a real install has ~600 service and driver keys).
const MAX_SERVICES: usize = 20_000;
/// Most network interfaces listed.
const MAX_INTERFACES: usize = 256;

/// `Select\Current` as a key name (`ControlSet001`).
pub(crate) fn current_control_set(system: &Hive) -> Result<Option<String>, HiveError> {
    let Some(select) = system.key("Select")? else {
        return Ok(None);
    };
    let n = system.value(&select, "Current")?.and_then(|v| v.as_u64());
    Ok(n.filter(|&n| (1..=999).contains(&n))
        .map(|n| format!("ControlSet{n:03}")))
}

fn string(hive: &Hive, key: &Key, name: &str) -> Result<Option<String>, HiveError> {
    Ok(hive
        .value(key, name)?
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty()))
}

pub(crate) fn number(hive: &Hive, key: &Key, name: &str) -> Result<Option<u64>, HiveError> {
    Ok(hive.value(key, name)?.and_then(|v| v.as_u64()))
}

/// `Services\Tcpip\Parameters\Hostname` of the control set.
pub(crate) fn hostname(system: &Hive, cs: &str) -> Result<Option<String>, HiveError> {
    match system.key(&format!("{cs}\\Services\\Tcpip\\Parameters"))? {
        Some(k) => string(system, &k, "Hostname"),
        None => Ok(None),
    }
}

/// Drive letters of `MountedDevices` mapped to our devices: an MBR volume by disk
/// signature and partition byte offset, a GPT volume by `DMIO:ID:` and its unique
/// partition GUID. Letters of volumes not on these disks are left out.
pub(crate) fn drive_mappings(
    system: &Hive,
    devices: &[Mountable],
) -> Result<BTreeMap<String, String>, HiveError> {
    let mut out = BTreeMap::new();
    let Some(k) = system.key("MountedDevices")? else {
        return Ok(out);
    };
    for (name, value) in system.values(&k)? {
        let Some(letter) = name
            .strip_prefix("\\DosDevices\\")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|l| l.len() == 1 && l.chars().all(|c| c.is_ascii_alphabetic()))
        else {
            continue;
        };
        let Some(data) = value.as_bytes() else {
            continue;
        };
        let device = if data.len() == 12 {
            let signature = format!("{:08x}", le32(data, 0));
            let offset = le64(data, 4);
            devices.iter().find(|d| {
                d.part_start == Some(offset)
                    && d.part_uuid
                        .as_deref()
                        .and_then(|u| u.split('-').next())
                        .is_some_and(|s| s.eq_ignore_ascii_case(&signature))
                    && d.part_uuid.as_deref().is_some_and(|u| u.len() == 11)
            })
        } else if data.len() == 24 && data.starts_with(b"DMIO:ID:") {
            let guid = guid_mixed_endian(&array(data, 8));
            devices.iter().find(|d| {
                d.part_uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(&guid))
            })
        } else {
            None
        };
        if let Some(d) = device {
            out.insert(letter.to_ascii_uppercase(), d.device.clone());
        }
    }
    Ok(out)
}

/// The start type names of `Start` 0-4.
fn start_name(start: u64) -> Option<&'static str> {
    Some(match start {
        0 => "boot",
        1 => "system",
        2 => "auto",
        3 => "manual",
        4 => "disabled",
        _ => return None,
    })
}

/// Every service and driver key of the control set that has a `Start` value.
pub(crate) fn services(system: &Hive, cs: &str) -> Result<Vec<Service>, HiveError> {
    let Some(root) = system.key(&format!("{cs}\\Services"))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for k in system.subkeys(&root)?.into_iter().take(MAX_SERVICES) {
        let Some(start) = number(system, &k, "Start")? else {
            continue;
        };
        out.push(Service {
            name: k.name.clone(),
            enabled: start <= 2,
            kind: "windows".into(),
            display_name: string(system, &k, "DisplayName")?,
            start: start_name(start).map(str::to_string),
        });
    }
    out.sort_by_key(|s| s.name.to_lowercase());
    Ok(out)
}

/// Prefix length of a dotted IPv4 mask (`255.255.255.0` -> 24).
fn prefix(mask: &str) -> Option<u32> {
    let ip: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(ip);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| bits.leading_ones())
}

fn multi(v: Option<RegValue>) -> Vec<String> {
    match v {
        Some(RegValue::MultiSz(list)) => list,
        Some(RegValue::Sz(s)) | Some(RegValue::ExpandSz(s)) => s
            .split([',', ' '])
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Interfaces under `Services\Tcpip\Parameters\Interfaces` (named by their GUID) and
/// the DNS servers configured globally or per interface.
pub(crate) fn network(system: &Hive, cs: &str) -> Result<Network, HiveError> {
    let mut net = Network::default();
    let Some(params) = system.key(&format!("{cs}\\Services\\Tcpip\\Parameters"))? else {
        return Ok(net);
    };
    let mut dns = multi(system.value(&params, "NameServer")?);
    if let Some(ifaces) = system.key(&format!("{cs}\\Services\\Tcpip\\Parameters\\Interfaces"))? {
        for k in system.subkeys(&ifaces)?.into_iter().take(MAX_INTERFACES) {
            let dhcp = number(system, &k, "EnableDHCP")?;
            let ips = multi(system.value(&k, "IPAddress")?);
            let masks = multi(system.value(&k, "SubnetMask")?);
            let addresses: Vec<String> = ips
                .iter()
                .filter(|ip| ip.as_str() != "0.0.0.0")
                .enumerate()
                .map(|(i, ip)| match masks.get(i).and_then(|m| prefix(m)) {
                    Some(p) => format!("{ip}/{p}"),
                    None => ip.clone(),
                })
                .collect();
            let method = match dhcp {
                Some(1) => Some("dhcp"),
                _ if !addresses.is_empty() => Some("static"),
                _ => None,
            };
            if method.is_none() {
                continue;
            }
            dns.extend(multi(system.value(&k, "NameServer")?));
            net.interfaces.push(Interface {
                name: k.name.clone(),
                method: method.map(str::to_string),
                addresses,
            });
        }
    }
    for d in dns {
        if !net.dns_servers.contains(&d) {
            net.dns_servers.push(d);
        }
    }
    Ok(net)
}

/// Remote Desktop: connections allowed when `fDenyTSConnections` is 0.
pub(crate) fn rdp_enabled(system: &Hive, cs: &str) -> Result<Option<bool>, HiveError> {
    match system.key(&format!("{cs}\\Control\\Terminal Server"))? {
        Some(k) => Ok(number(system, &k, "fDenyTSConnections")?.map(|d| d == 0)),
        None => Ok(None),
    }
}

/// Whether any Windows Firewall profile (domain, private, public) is on.
pub(crate) fn firewall_enabled(system: &Hive, cs: &str) -> Result<Option<bool>, HiveError> {
    let base = format!("{cs}\\Services\\SharedAccess\\Parameters\\FirewallPolicy");
    let mut seen = None;
    for profile in ["DomainProfile", "StandardProfile", "PublicProfile"] {
        if let Some(k) = system.key(&format!("{base}\\{profile}"))? {
            if let Some(on) = number(system, &k, "EnableFirewall")? {
                seen = Some(seen.unwrap_or(false) || on != 0);
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix("255.255.255.0"), Some(24));
        assert_eq!(prefix("255.255.0.255"), None);
        assert_eq!(prefix("0.0.0.0"), Some(0));
    }
}
