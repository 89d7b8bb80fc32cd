//! No host firewall: the inspection found none of firewalld, ufw, nftables or iptables
//! enabled (see `inspect/os/security.rs` for what "enabled" means for each). The
//! evidence says what was looked for, and which of those tools is installed but off,
//! so the reader knows where to start.

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;

pub const NO_FIREWALL: Check = Check {
    id: "FW-001",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "No host firewall is enabled",
    remediation: "Enable a host firewall (firewalld, ufw, or nftables with a ruleset) that only allows the ports the machine serves.",
};

pub const CHECKS: &[Check] = &[NO_FIREWALL];

/// Files whose presence means a firewall tool is installed.
const INSTALLED_MARKERS: &[(&str, &str)] = &[
    ("firewalld", "/etc/firewalld"),
    ("ufw", "/etc/ufw/ufw.conf"),
    ("nftables", "/etc/nftables.conf"),
    ("nftables", "/etc/sysconfig/nftables.conf"),
    ("iptables", "/etc/iptables"),
    ("iptables", "/etc/sysconfig/iptables"),
];

pub fn run(t: &mut Target) {
    if t.os.security.firewall.is_some() {
        return;
    }
    let mut installed: Vec<&str> = Vec::new();
    for (tool, marker) in INSTALLED_MARKERS {
        if !installed.contains(tool) && t.exists(marker) {
            installed.push(tool);
        }
    }
    let mut text = String::from(
        "none enabled: firewalld.service; ufw (ENABLED=yes in /etc/ufw/ufw.conf); nftables.service with its ruleset; \
         iptables/netfilter-persistent with saved rules",
    );
    if !installed.is_empty() {
        text.push_str(&format!(" (installed but off: {})", installed.join(", ")));
    }
    t.found(&NO_FIREWALL, Evidence::general(text));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{linux, run_on};
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn only_without_a_firewall() {
        let fs = Arc::new(MemFs::new().file("/etc/ufw/ufw.conf", "ENABLED=no\n"));
        let found = run_on(fs.clone(), &linux(), super::run);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].evidence.text.contains("installed but off: ufw"),
            "{:?}",
            found[0].evidence
        );
        assert!(
            found[0].evidence.text.chars().count() <= super::super::finding::MAX_EVIDENCE_CHARS
        );
        let mut os = linux();
        os.security.firewall = Some("ufw".into());
        assert!(run_on(fs, &os, super::run).is_empty());
    }
}
