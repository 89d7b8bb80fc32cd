//! Windows checks, read from the registry hives of `System32/config` (the same reader
//! as the inspection): Remote Desktop open without Network Level Authentication, UAC
//! off, a Windows Firewall profile off, the built-in Guest account enabled. Evidence
//! names the hive file and the key and value.
//!
//! A value that is absent is not a finding: Windows' defaults for all four are the safe
//! ones (NLA on since Server 2012, UAC on, firewall on, Guest disabled).

use crate::inspect::os::windows::hive::{Hive, HiveError};
use crate::inspect::os::windows::{config_dir, load_hive, system, users};

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;

pub const RDP_WITHOUT_NLA: Check = Check {
    id: "WIN-001",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "Remote Desktop accepts connections without Network Level Authentication",
    remediation: "Require NLA (UserAuthentication = 1 under Terminal Server\\WinStations\\RDP-Tcp) or turn Remote Desktop off.",
};
pub const UAC_OFF: Check = Check {
    id: "WIN-002",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "User Account Control is off",
    remediation: "Set EnableLUA = 1 under Microsoft\\Windows\\CurrentVersion\\Policies\\System (SOFTWARE) and reboot.",
};
pub const FIREWALL_PROFILE_OFF: Check = Check {
    id: "WIN-003",
    profile: ProfileKind::Security,
    severity: Severity::Medium,
    title: "A Windows Firewall profile is off",
    remediation:
        "Turn the profile on (EnableFirewall = 1, or `netsh advfirewall set allprofiles state on`).",
};
pub const GUEST_ENABLED: Check = Check {
    id: "WIN-004",
    profile: ProfileKind::Security,
    severity: Severity::High,
    title: "The built-in Guest account is enabled",
    remediation: "Disable the Guest account (`net user Guest /active:no`).",
};

pub const CHECKS: &[Check] = &[
    RDP_WITHOUT_NLA,
    UAC_OFF,
    FIREWALL_PROFILE_OFF,
    GUEST_ENABLED,
];

/// RID of the built-in Guest account (whatever it was renamed to).
const GUEST_RID: u32 = 501;

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Security) {
        return;
    }
    let Some(config) = config_dir(t.ctx()) else {
        return;
    };
    let cs = t.os.windows_current_control_set.clone();
    if let (Some(cs), Some((path, hive))) = (cs, load_hive(t.ctx(), &config, "SYSTEM")) {
        let r = rdp(t, &path, &hive, &cs).and_then(|()| firewall(t, &path, &hive, &cs));
        checked(t, &path, r);
    }
    if let Some((path, hive)) = load_hive(t.ctx(), &config, "SOFTWARE") {
        let r = uac(t, &path, &hive);
        checked(t, &path, r);
    }
    if let Some((path, hive)) = load_hive(t.ctx(), &config, "SAM") {
        let r = guest(t, &path, &hive);
        checked(t, &path, r);
    }
}

/// A damaged hive stops its checks with a warning, never a finding.
fn checked(t: &mut Target, path: &str, r: Result<(), HiveError>) {
    if let Err(e) = r {
        t.warn(format_args!("{path}: {e}"));
    }
}

/// The DWORD `name` of the key at `key`, if both exist.
fn dword(hive: &Hive, key: &str, name: &str) -> Result<Option<u64>, HiveError> {
    match hive.key(key)? {
        Some(k) => system::number(hive, &k, name),
        None => Ok(None),
    }
}

fn rdp(t: &mut Target, path: &str, hive: &Hive, cs: &str) -> Result<(), HiveError> {
    let ts = format!("{cs}\\Control\\Terminal Server");
    let rdp_tcp = format!("{ts}\\WinStations\\RDP-Tcp");
    if dword(hive, &ts, "fDenyTSConnections")? == Some(0)
        && dword(hive, &rdp_tcp, "UserAuthentication")? == Some(0)
    {
        t.found(
            &RDP_WITHOUT_NLA,
            Evidence::file(
                path,
                format!("{rdp_tcp}\\UserAuthentication = 0 ({ts}\\fDenyTSConnections = 0)"),
            ),
        );
    }
    Ok(())
}

fn firewall(t: &mut Target, path: &str, hive: &Hive, cs: &str) -> Result<(), HiveError> {
    let base = format!("{cs}\\Services\\SharedAccess\\Parameters\\FirewallPolicy");
    for profile in ["DomainProfile", "StandardProfile", "PublicProfile"] {
        let key = format!("{base}\\{profile}");
        if dword(hive, &key, "EnableFirewall")? == Some(0) {
            t.found(
                &FIREWALL_PROFILE_OFF,
                Evidence::file(path, format!("{key}\\EnableFirewall = 0")),
            );
        }
    }
    Ok(())
}

fn uac(t: &mut Target, path: &str, hive: &Hive) -> Result<(), HiveError> {
    let key = "Microsoft\\Windows\\CurrentVersion\\Policies\\System";
    if dword(hive, key, "EnableLUA")? == Some(0) {
        t.found(
            &UAC_OFF,
            Evidence::file(path, format!("{key}\\EnableLUA = 0")),
        );
    }
    Ok(())
}

fn guest(t: &mut Target, path: &str, hive: &Hive) -> Result<(), HiveError> {
    let Some(acb) = users::account_control(hive, GUEST_RID)? else {
        return Ok(());
    };
    if acb & users::ACB_DISABLED == 0 {
        let name = users::read(hive)?
            .into_iter()
            .find(|u| u.uid == GUEST_RID)
            .map_or_else(|| "Guest".to_string(), |u| u.name);
        t.found(
            &GUEST_ENABLED,
            Evidence::file(
                path,
                format!(
                    "{}\\{GUEST_RID:08X}\\F: account {name} (RID {GUEST_RID}), control bits {acb:#06x}: not disabled",
                    users::USERS
                ),
            ),
        );
    }
    Ok(())
}
