//! Security settings from files on the image, never from a running system's `/sys`:
//! SELinux mode, AppArmor, the sshd settings (see `sshd.rs`) and the firewall.
//!
//! - `selinux`: `SELINUX=` of `/etc/selinux/config`; `disabled` when the kernel command
//!   line in the boot config says `selinux=0`; `None` without the config file.
//! - `apparmor`: profiles exist in `/etc/apparmor.d`, the apparmor service is enabled,
//!   and the kernel command line does not say `apparmor=0`.
//! - `firewall`: the first that applies of firewalld (service enabled), ufw
//!   (`ENABLED=yes` in `/etc/ufw/ufw.conf`), nftables (service enabled and its rules file
//!   present), iptables (a restore service enabled and its rules file present).

use crate::inspect::fs::FileKind;
use crate::inspect::report::Security;

use super::context::Ctx;
use super::services::Services;
use super::sshd;
use super::text::{shell_var, shell_vars};

pub fn detect(ctx: &mut Ctx, services: &Services) -> Security {
    let cmdline = kernel_cmdline(ctx);
    Security {
        selinux: selinux(ctx, &cmdline),
        apparmor: apparmor(ctx, services, &cmdline),
        ssh: sshd::detect(ctx),
        firewall: firewall(ctx, services).map(str::to_string),
        ..Default::default()
    }
}

/// Kernel parameters configured for the next boot: GRUB's defaults files and
/// `/etc/kernel/cmdline` (systemd-boot, UKIs), as one list of words.
fn kernel_cmdline(ctx: &mut Ctx) -> Vec<String> {
    let mut words = Vec::new();
    let mut files = vec!["/etc/default/grub".to_string()];
    files.extend(ctx.glob("/etc/default/grub.d/*.cfg", 64));
    for f in files {
        let Some(text) = ctx.read_text(&f) else {
            continue;
        };
        let vars = shell_vars(&text);
        for key in ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"] {
            if let Some(v) = shell_var(&vars, key) {
                words.extend(v.split_whitespace().map(str::to_string));
            }
        }
    }
    if let Some(text) = ctx.read_text("/etc/kernel/cmdline") {
        words.extend(text.split_whitespace().map(str::to_string));
    }
    words
}

fn selinux(ctx: &mut Ctx, cmdline: &[String]) -> Option<String> {
    let text = ctx.read_text("/etc/selinux/config")?;
    if cmdline.iter().any(|w| w == "selinux=0") {
        return Some("disabled".into());
    }
    let mode = shell_var(&shell_vars(&text), "SELINUX")?.to_ascii_lowercase();
    match mode.as_str() {
        "enforcing" | "permissive" | "disabled" => Some(mode),
        _ => {
            ctx.warn(format_args!("/etc/selinux/config: unknown SELINUX={mode}"));
            None
        }
    }
}

fn apparmor(ctx: &mut Ctx, services: &Services, cmdline: &[String]) -> bool {
    if cmdline.iter().any(|w| w == "apparmor=0") {
        return false;
    }
    let has_profiles = ctx
        .list_dir("/etc/apparmor.d")
        .iter()
        .any(|e| e.kind == FileKind::File);
    has_profiles && services.is_enabled("apparmor")
}

fn firewall(ctx: &mut Ctx, services: &Services) -> Option<&'static str> {
    if services.is_enabled("firewalld") {
        return Some("firewalld");
    }
    if let Some(text) = ctx.read_text("/etc/ufw/ufw.conf") {
        if shell_var(&shell_vars(&text), "ENABLED").is_some_and(|v| v.eq_ignore_ascii_case("yes")) {
            return Some("ufw");
        }
    }
    let any_file = |ctx: &mut Ctx, files: &[&str]| files.iter().any(|f| ctx.guest.is_file(f));
    if services.is_enabled("nftables")
        && any_file(ctx, &["/etc/nftables.conf", "/etc/sysconfig/nftables.conf"])
    {
        return Some("nftables");
    }
    let iptables_service = ["netfilter-persistent", "iptables", "ip6tables"]
        .iter()
        .any(|s| services.is_enabled(s));
    let rules = [
        "/etc/iptables/rules.v4",
        "/etc/iptables/rules.v6",
        "/etc/sysconfig/iptables",
        "/etc/sysconfig/ip6tables",
        "/etc/iptables/rules-save",
    ];
    if iptables_service && any_file(ctx, &rules) {
        return Some("iptables");
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::os::services;

    fn sec(fs: MemFs) -> Security {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let s = services::detect(&mut ctx);
        let out = detect(&mut ctx, &s);
        assert!(ctx.into_warnings().is_empty());
        out
    }

    const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";

    #[test]
    fn debian_like() {
        let s = sec(MemFs::new()
            .file("/etc/apparmor.d/usr.sbin.ntpd", "profile")
            .dir("/etc/apparmor.d/abstractions")
            .file("/lib/systemd/system/apparmor.service", "")
            .symlink(
                "/etc/systemd/system/sysinit.target.wants/apparmor.service",
                "/lib/systemd/system/apparmor.service",
            )
            .symlink(
                &format!("{WANTS}/nftables.service"),
                "/lib/systemd/system/nftables.service",
            )
            .file("/etc/nftables.conf", "flush ruleset\n")
            .file(
                "/etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            ));
        assert!(s.apparmor);
        assert_eq!(s.selinux, None);
        assert_eq!(s.firewall.as_deref(), Some("nftables"));
    }

    #[test]
    fn apparmor_off_on_the_kernel_command_line() {
        let s = sec(MemFs::new()
            .file("/etc/apparmor.d/usr.sbin.ntpd", "profile")
            .symlink(
                "/etc/systemd/system/sysinit.target.wants/apparmor.service",
                "/lib/systemd/system/apparmor.service",
            )
            .file(
                "/etc/default/grub",
                "GRUB_CMDLINE_LINUX=\"apparmor=0 quiet\"\n",
            ));
        assert!(!s.apparmor);
    }

    #[test]
    fn rhel_like() {
        let s = sec(MemFs::new()
            .file(
                "/etc/selinux/config",
                "# c\nSELINUX=Enforcing\nSELINUXTYPE=targeted\n",
            )
            .symlink(
                &format!("{WANTS}/firewalld.service"),
                "/usr/lib/systemd/system/firewalld.service",
            ));
        assert_eq!(s.selinux.as_deref(), Some("enforcing"));
        assert_eq!(s.firewall.as_deref(), Some("firewalld"));
        let s = sec(MemFs::new()
            .file("/etc/selinux/config", "SELINUX=enforcing\n")
            .file("/etc/kernel/cmdline", "root=UUID=x selinux=0\n"));
        assert_eq!(s.selinux.as_deref(), Some("disabled"));
    }

    #[test]
    fn ufw_and_iptables() {
        let s = sec(MemFs::new().file("/etc/ufw/ufw.conf", "ENABLED=yes\nLOGLEVEL=low\n"));
        assert_eq!(s.firewall.as_deref(), Some("ufw"));
        let s = sec(MemFs::new().file("/etc/ufw/ufw.conf", "ENABLED=no\n"));
        assert_eq!(s.firewall, None);
        let s = sec(MemFs::new()
            .symlink(
                &format!("{WANTS}/netfilter-persistent.service"),
                "/lib/systemd/system/netfilter-persistent.service",
            )
            .file("/etc/iptables/rules.v4", "*filter\nCOMMIT\n"));
        assert_eq!(s.firewall.as_deref(), Some("iptables"));
        // Enabled but nothing to load: no firewall.
        let s = sec(MemFs::new().symlink(
            &format!("{WANTS}/nftables.service"),
            "/lib/systemd/system/nftables.service",
        ));
        assert_eq!(s.firewall, None);
    }
}
