//! Mount options of the world-writable scratch filesystems: when `/tmp`, `/var/tmp` or
//! `/dev/shm` is its own mount in `/etc/fstab`, it should carry `nodev`, `nosuid` and
//! `noexec` so files dropped there cannot be device nodes, set-id programs or
//! executables. Not a separate mount: nothing to say (the options would not apply).

use super::finding::{Check, Evidence, ProfileKind, Severity};
use super::target::Target;
use crate::inspect::os::text::numbered_lines;

const FSTAB: &str = "/etc/fstab";
const WANTED: &[&str] = &["nodev", "nosuid", "noexec"];

pub const TMP: Check = Check {
    id: "MNT-001",
    profile: ProfileKind::Hardening,
    severity: Severity::Low,
    title: "/tmp is mounted without nodev, nosuid and noexec",
    remediation: "Add `nodev,nosuid,noexec` to the options of /tmp in /etc/fstab.",
};
pub const VAR_TMP: Check = Check {
    id: "MNT-002",
    profile: ProfileKind::Hardening,
    severity: Severity::Low,
    title: "/var/tmp is mounted without nodev, nosuid and noexec",
    remediation: "Add `nodev,nosuid,noexec` to the options of /var/tmp in /etc/fstab.",
};
pub const DEV_SHM: Check = Check {
    id: "MNT-003",
    profile: ProfileKind::Hardening,
    severity: Severity::Low,
    title: "/dev/shm is mounted without nodev, nosuid and noexec",
    remediation: "Add `nodev,nosuid,noexec` to the options of /dev/shm in /etc/fstab.",
};

pub const CHECKS: &[Check] = &[TMP, VAR_TMP, DEV_SHM];

pub fn run(t: &mut Target) {
    if !t.wants(ProfileKind::Hardening) {
        return;
    }
    let Some(text) = t.read_text(FSTAB) else {
        return;
    };
    for (n, line) in numbered_lines(&text) {
        let mut f = line.split_whitespace();
        let (Some(_spec), Some(mountpoint)) = (f.next(), f.next()) else {
            continue;
        };
        let fs_type = f.next().unwrap_or("auto");
        let options: Vec<&str> = f.next().unwrap_or("defaults").split(',').collect();
        let check = match mountpoint.trim_end_matches('/') {
            "/tmp" => &TMP,
            "/var/tmp" => &VAR_TMP,
            "/dev/shm" => &DEV_SHM,
            _ => continue,
        };
        // A bind mount takes its options from where it is bound; judge the source.
        if fs_type == "none" && options.contains(&"bind") {
            continue;
        }
        if WANTED.iter().any(|w| !options.contains(w)) {
            t.found(check, Evidence::line(FSTAB, n, line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ids_and_lines, run_checks};
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn only_separate_mounts_without_all_three_options() {
        let fstab = "UUID=a / ext4 defaults 0 1\n\
                     tmpfs /tmp tmpfs defaults,nosuid 0 0\n\
                     UUID=b /var/tmp ext4 nodev,nosuid,noexec 0 2\n\
                     # tmpfs /dev/shm tmpfs defaults 0 0\n\
                     tmpfs /dev/shm/ tmpfs rw,nodev,nosuid 0 0\n";
        let got = ids_and_lines(&run_checks(MemFs::new().file(FSTAB, fstab), run));
        assert_eq!(
            got,
            vec![
                ("MNT-001".into(), FSTAB.into(), Some(2)),
                ("MNT-003".into(), FSTAB.into(), Some(5))
            ]
        );
        assert!(run_checks(
            MemFs::new().file(FSTAB, "UUID=a / ext4 defaults 0 1\n"),
            run
        )
        .is_empty());
    }
}
