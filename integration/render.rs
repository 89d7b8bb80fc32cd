//! Rendering of result documents: every format × template for a completed
//! inspection, a profile, an echo, a failed and a rejected result, compared with
//! the golden files in `integration/golden/` (written by `GUESTKIT_BLESS=1`, read by
//! eye, then committed); escaping of hostile strings checked by real parsers
//! (cmark-gfm for markdown, headless Chromium for html); json fallback on broken
//! override templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use guestkit_job_spec::{
    ErrorKind, JobError, JobStatus, OutputFormat, OutputSpec, OutputTemplate, ResultDocument,
};
use guestkit_worker::inspect::report::{
    Application, Driver, FilesystemInfo, ImageInfo, Interface, Kernel, LogicalVolumeInfo, Network,
    OperatingSystem, PartitionInfo, Report, Security, Service, Ssh, User, VolumeGroupInfo,
};
use guestkit_worker::render::{Rendered, Renderer};
use serde_json::{json, Value};

use crate::common;

const TEMPLATED: [OutputFormat; 3] = [
    OutputFormat::Text,
    OutputFormat::Markdown,
    OutputFormat::Html,
];
const HOSTILE_HOSTNAME: &str = "<script>document.title='pwned'</script>";

// ---------- the documents ----------

fn doc(
    status: JobStatus,
    operation: Option<&str>,
    output: Option<Value>,
    error: Option<JobError>,
) -> ResultDocument {
    let started = Utc.with_ymd_and_hms(2026, 1, 30, 10, 0, 0).unwrap();
    ResultDocument {
        job_id: Some("job-01JKZ3Y7X5K4M8F9W2T6QHRN4D".into()),
        status,
        worker_id: "01JKZ3WORKER7Q5M2X8V4T9B6C".into(),
        pool: "default".into(),
        operation: operation.map(str::to_string),
        attempt: 1,
        started_at: started,
        finished_at: started + chrono::Duration::milliseconds(2_345),
        duration_ms: 2_345,
        output,
        error,
    }
}

/// (name, version, release, arch, summary) of a Debian 12 system's packages.
const DEBIAN_PACKAGES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "adduser",
        "3.134",
        "",
        "all",
        "add and remove users and groups",
    ),
    ("apt", "2.6.1", "", "amd64", "commandline package manager"),
    (
        "base-files",
        "12.4+deb12u5",
        "",
        "amd64",
        "Debian base system miscellaneous files",
    ),
    (
        "base-passwd",
        "3.6.1",
        "",
        "amd64",
        "Debian base system master password and group files",
    ),
    ("bash", "5.2.15", "2+b7", "amd64", "GNU Bourne Again SHell"),
    (
        "bsdutils",
        "2.38.1",
        "5+deb12u1",
        "amd64",
        "basic utilities from 4.4BSD-Lite",
    ),
    (
        "ca-certificates",
        "20230311",
        "",
        "all",
        "Common CA certificates",
    ),
    (
        "cloud-init",
        "22.4.2",
        "1",
        "all",
        "initialization and customization tool for cloud instances",
    ),
    ("coreutils", "9.1", "1", "amd64", "GNU core utilities"),
    (
        "cron",
        "3.0pl1",
        "162",
        "amd64",
        "process scheduling daemon",
    ),
    (
        "curl",
        "7.88.1",
        "10+deb12u5",
        "amd64",
        "command line tool for transferring data with URL syntax",
    ),
    ("dash", "0.5.12", "2", "amd64", "POSIX-compliant shell"),
    (
        "dbus",
        "1.14.10",
        "1~deb12u1",
        "amd64",
        "simple interprocess messaging system (system message bus)",
    ),
    (
        "debconf",
        "1.5.82",
        "",
        "all",
        "Debian configuration management system",
    ),
    (
        "debian-archive-keyring",
        "2023.3+deb12u1",
        "",
        "all",
        "GnuPG archive keys of the Debian archive",
    ),
    (
        "diffutils",
        "3.8",
        "4",
        "amd64",
        "File comparison utilities",
    ),
    (
        "dpkg",
        "1.21.22",
        "",
        "amd64",
        "Debian package management system",
    ),
    (
        "e2fsprogs",
        "1.47.0",
        "2",
        "amd64",
        "ext2/ext3/ext4 file system utilities",
    ),
    (
        "findutils",
        "4.9.0",
        "4",
        "amd64",
        "utilities for finding files--find, xargs",
    ),
    (
        "gpgv",
        "2.2.40",
        "1.1",
        "amd64",
        "GNU privacy guard - signature verification tool",
    ),
    ("grep", "3.8", "5", "amd64", "GNU grep, egrep and fgrep"),
    ("gzip", "1.12", "1", "amd64", "GNU compression utilities"),
    (
        "hostname",
        "3.23+nmu1",
        "",
        "amd64",
        "utility to set/show the host name or domain name",
    ),
    (
        "init-system-helpers",
        "1.65.2",
        "",
        "all",
        "helper tools for all init systems",
    ),
    (
        "iproute2",
        "6.1.0",
        "3",
        "amd64",
        "networking and traffic control tools",
    ),
    (
        "libc6",
        "2.36",
        "9+deb12u4",
        "amd64",
        "GNU C Library: Shared libraries",
    ),
    (
        "libssl3",
        "3.0.11",
        "1~deb12u2",
        "amd64",
        "Secure Sockets Layer toolkit - shared libraries",
    ),
    (
        "libsystemd0",
        "252.22",
        "1~deb12u1",
        "amd64",
        "systemd utility library",
    ),
    (
        "linux-image-6.1.0-18-amd64",
        "6.1.76",
        "1",
        "amd64",
        "Linux 6.1 for 64-bit PCs (signed)",
    ),
    ("login", "4.13+dfsg1", "1+b1", "amd64", "system login tools"),
    (
        "lvm2",
        "2.03.16",
        "2",
        "amd64",
        "Linux Logical Volume Manager",
    ),
    (
        "mount",
        "2.38.1",
        "5+deb12u1",
        "amd64",
        "tools for mounting and manipulating filesystems",
    ),
    (
        "nftables",
        "1.0.6",
        "2+deb12u2",
        "amd64",
        "Program to control packet filtering rules by Netfilter project",
    ),
    (
        "nginx",
        "1.22.1",
        "9",
        "amd64",
        "small, powerful, scalable web/proxy server",
    ),
    (
        "openssh-server",
        "9.2p1",
        "2+deb12u2",
        "amd64",
        "secure shell (SSH) server, for secure access from remote machines",
    ),
    (
        "passwd",
        "4.13+dfsg1",
        "1+b1",
        "amd64",
        "change and administer password and group data",
    ),
    (
        "perl-base",
        "5.36.0",
        "7+deb12u1",
        "amd64",
        "minimal Perl system",
    ),
    (
        "sudo",
        "1.9.13p3",
        "1+deb12u1",
        "amd64",
        "Provide limited super user privileges to specific users",
    ),
    (
        "systemd",
        "252.22",
        "1~deb12u1",
        "amd64",
        "system and service manager",
    ),
    (
        "tzdata",
        "2024a",
        "0+deb12u1",
        "all",
        "time zone and daylight-saving time data",
    ),
];

fn debian_os() -> OperatingSystem {
    let applications = DEBIAN_PACKAGES
        .iter()
        .map(|(name, version, release, arch, summary)| Application {
            name: name.to_string(),
            epoch: (*name == "cron").then_some(1),
            version: version.to_string(),
            release: (!release.is_empty()).then(|| release.to_string()),
            arch: Some(arch.to_string()),
            summary: Some(summary.to_string()),
            ..Default::default()
        })
        .collect();
    let system_users = [
        ("root", 0, "/root", "/bin/bash"),
        ("daemon", 1, "/usr/sbin", "/usr/sbin/nologin"),
        ("bin", 2, "/bin", "/usr/sbin/nologin"),
        ("sys", 3, "/dev", "/usr/sbin/nologin"),
        ("sync", 4, "/bin", "/bin/sync"),
        ("games", 5, "/usr/games", "/usr/sbin/nologin"),
        ("man", 6, "/var/cache/man", "/usr/sbin/nologin"),
        ("lp", 7, "/var/spool/lpd", "/usr/sbin/nologin"),
        ("mail", 8, "/var/mail", "/usr/sbin/nologin"),
        ("news", 9, "/var/spool/news", "/usr/sbin/nologin"),
        ("uucp", 10, "/var/spool/uucp", "/usr/sbin/nologin"),
        ("proxy", 13, "/bin", "/usr/sbin/nologin"),
        ("www-data", 33, "/var/www", "/usr/sbin/nologin"),
        ("backup", 34, "/var/backups", "/usr/sbin/nologin"),
        ("list", 38, "/var/list", "/usr/sbin/nologin"),
        ("irc", 39, "/run/ircd", "/usr/sbin/nologin"),
        ("_apt", 42, "/nonexistent", "/usr/sbin/nologin"),
        ("nobody", 65534, "/nonexistent", "/usr/sbin/nologin"),
        ("systemd-network", 998, "/", "/usr/sbin/nologin"),
        ("systemd-timesync", 997, "/", "/usr/sbin/nologin"),
        ("messagebus", 100, "/nonexistent", "/usr/sbin/nologin"),
        ("sshd", 101, "/run/sshd", "/usr/sbin/nologin"),
        ("nginx-cache", 102, "/var/cache/nginx", "/usr/sbin/nologin"),
        (
            "prometheus",
            103,
            "/var/lib/prometheus",
            "/usr/sbin/nologin",
        ),
        ("postfix", 104, "/var/spool/postfix", "/usr/sbin/nologin"),
        ("tss", 105, "/var/lib/tpm", "/bin/false"),
    ];
    let mut users: Vec<User> = system_users
        .iter()
        .map(|(name, uid, home, shell)| User {
            name: name.to_string(),
            uid: *uid,
            gid: if *uid == 65534 { 65534 } else { *uid },
            home: home.to_string(),
            shell: shell.to_string(),
            system: *uid < 1000 || *uid == 65534,
            locked: *name != "root",
        })
        .collect();
    for (i, name) in ["alice", "bob", "deploy", "carol"].iter().enumerate() {
        let uid = 1000 + i as u32;
        users.push(User {
            name: name.to_string(),
            uid,
            gid: uid,
            home: format!("/home/{name}"),
            shell: "/bin/bash".into(),
            system: false,
            locked: *name == "deploy",
        });
    }
    let services = [
        ("apparmor.service", true),
        ("cloud-config.service", true),
        ("cloud-final.service", true),
        ("cloud-init-local.service", true),
        ("cloud-init.service", true),
        ("console-setup.service", true),
        ("cron.service", true),
        ("dbus.service", false),
        ("e2scrub_reap.service", true),
        ("emergency.service", false),
        ("getty@.service", false),
        ("keyboard-setup.service", true),
        ("lvm2-monitor.service", true),
        ("networking.service", true),
        ("nftables.service", true),
        ("nginx.service", true),
        ("prometheus-node-exporter.service", true),
        ("rescue.service", false),
        ("ssh.service", true),
        ("sudo.service", false),
        ("systemd-fsck-root.service", false),
        ("systemd-journald.service", false),
        ("systemd-logind.service", false),
        ("systemd-networkd.service", false),
        ("systemd-pstore.service", true),
        ("systemd-resolved.service", false),
        ("systemd-timesyncd.service", true),
        ("systemd-udevd.service", false),
        ("unattended-upgrades.service", true),
        ("user@.service", false),
    ]
    .iter()
    .map(|(name, enabled)| Service {
        name: name.to_string(),
        enabled: *enabled,
        kind: "systemd".into(),
        ..Default::default()
    })
    .collect();
    OperatingSystem {
        root: "/dev/vg0/root".into(),
        os_type: "linux".into(),
        distro: Some("debian".into()),
        product_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
        product_variant: None,
        major_version: Some(12),
        minor_version: Some(5),
        arch: Some("x86_64".into()),
        hostname: Some("web-01".into()),
        osinfo: Some("debian12".into()),
        package_format: Some("deb".into()),
        package_management: Some("apt".into()),
        mountpoints: BTreeMap::from([
            ("/".to_string(), "/dev/vg0/root".to_string()),
            ("/boot".to_string(), "/dev/sda4".to_string()),
            ("/boot/efi".to_string(), "/dev/sda1".to_string()),
            ("/var".to_string(), "/dev/vg0/var".to_string()),
        ]),
        applications,
        users,
        services,
        network: Network {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    method: Some("loopback".into()),
                    addresses: vec![],
                },
                Interface {
                    name: "ens3".into(),
                    method: Some("static".into()),
                    addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64".into()],
                },
                Interface {
                    name: "ens4".into(),
                    method: Some("dhcp".into()),
                    addresses: vec![],
                },
            ],
            dns_servers: vec!["192.0.2.53".into(), "2001:db8::53".into()],
        },
        kernels: vec![
            Kernel {
                version: "6.1.0-18-amd64".into(),
                path: "/boot/vmlinuz-6.1.0-18-amd64".into(),
            },
            Kernel {
                version: "6.1.0-17-amd64".into(),
                path: "/boot/vmlinuz-6.1.0-17-amd64".into(),
            },
        ],
        security: Security {
            selinux: None,
            apparmor: true,
            ssh: Ssh {
                permit_root_login: Some("prohibit-password".into()),
                password_authentication: Some(false),
            },
            firewall: Some("nftables".into()),
            ..Default::default()
        },
        machine_id: Some("4c8a2b5e9f0d4e7a8b1c3d5e7f9a0b2c".into()),
        cloud_init: true,
        ..Default::default()
    }
}

fn windows_os() -> OperatingSystem {
    let apps = [
        ("7-Zip 23.01 (x64)", "23.01", "Igor Pavlov"),
        ("Microsoft Edge", "121.0.2277.128", "Microsoft Corporation"),
        (
            "Microsoft Visual C++ 2015-2022 Redistributable (x64)",
            "14.38.33135.0",
            "Microsoft Corporation",
        ),
        ("OpenSSH for Windows", "9.5.0.0", "Microsoft Corporation"),
        ("VMware Tools", "12.3.5.22544099", "VMware, Inc."),
    ];
    let svc = [
        ("Dnscache", true),
        ("EventLog", true),
        ("LanmanServer", true),
        ("MpsSvc", true),
        ("RemoteRegistry", false),
        ("sshd", false),
        ("TermService", true),
        ("W32Time", true),
        ("WinRM", true),
    ];
    OperatingSystem {
        root: "/dev/sda3".into(),
        os_type: "windows".into(),
        distro: Some("windows".into()),
        product_name: Some("Windows Server 2022 Standard".into()),
        product_variant: Some("Server".into()),
        major_version: Some(10),
        minor_version: Some(0),
        arch: Some("x86_64".into()),
        hostname: Some("WIN-FS01".into()),
        osinfo: Some("win2k22".into()),
        package_format: None,
        package_management: None,
        mountpoints: BTreeMap::from([("/".to_string(), "/dev/sda3".to_string())]),
        applications: apps
            .iter()
            .map(|(name, version, publisher)| Application {
                name: name.to_string(),
                epoch: None,
                version: version.to_string(),
                release: None,
                arch: None,
                summary: Some(format!("published by {publisher}")),
                ..Default::default()
            })
            .collect(),
        users: vec![
            User {
                name: "Administrator".into(),
                uid: 500,
                gid: 513,
                home: "C:\\Users\\Administrator".into(),
                shell: "".into(),
                system: false,
                locked: false,
            },
            User {
                name: "Guest".into(),
                uid: 501,
                gid: 514,
                home: "".into(),
                shell: "".into(),
                system: true,
                locked: true,
            },
        ],
        services: svc
            .iter()
            .map(|(name, enabled)| Service {
                name: name.to_string(),
                enabled: *enabled,
                kind: "windows".into(),
                ..Default::default()
            })
            .collect(),
        network: Network::default(),
        kernels: vec![],
        security: Security {
            selinux: None,
            apparmor: false,
            ssh: Ssh::default(),
            firewall: Some("windows-firewall".into()),
            rdp_enabled: Some(true),
            uac_enabled: Some(false),
            bitlocker_volumes: vec!["/dev/sdb1".into()],
        },
        machine_id: None,
        cloud_init: false,
        build_id: Some("20348".into()),
        drive_mappings: BTreeMap::from([("C".to_string(), "/dev/sda3".to_string())]),
        windows_systemroot: Some("/Windows".into()),
        windows_current_control_set: Some("ControlSet001".into()),
        drivers: vec![
            Driver {
                name: "viostor".into(),
                kind: "virtio".into(),
                present: true,
                in_initramfs: None,
            },
            Driver {
                name: "netkvm".into(),
                kind: "virtio".into(),
                present: false,
                in_initramfs: None,
            },
        ],
    }
}

fn report() -> Report {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let part = |n: u32, start: u64, size: u64, ty: &str, name: &str| PartitionInfo {
        device: format!("/dev/sda{n}"),
        number: n,
        start,
        size,
        part_type: ty.into(),
        name: Some(name.into()),
        bootable: false,
    };
    let fs = |device: &str, ty: &str, uuid: &str, label: Option<&str>, size: Option<u64>| {
        FilesystemInfo {
            device: device.into(),
            fs_type: ty.into(),
            uuid: Some(uuid.into()),
            label: label.map(str::to_string),
            size,
            subvolumes: Vec::new(),
        }
    };
    Report {
        image: ImageInfo {
            path: "/var/lib/guestkit/images/web-01.qcow2".into(),
            format: "qcow2".into(),
            virtual_size: 64 * GIB,
            backing_chain: vec!["/var/lib/guestkit/images/base/debian-12-generic-amd64.qcow2".into()],
            sha256: Some("9f2c5d8e1a7b4c3d6e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d".into()),
            ..Default::default()
        },
        disks: vec![],
        partition_table: Some("gpt".into()),
        partitions: vec![
            part(1, MIB, 512 * MIB, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI system partition"),
            part(2, 513 * MIB, 16 * MIB, "E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved partition"),
            part(3, 529 * MIB, 31 * GIB, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Basic data partition"),
            part(4, 529 * MIB + 31 * GIB, GIB, "BC13C2FF-59E6-4262-A352-B275FD6F7172", "boot"),
            part(5, 529 * MIB + 32 * GIB, 31 * GIB, "E6D6D379-F507-44C2-A23C-238F2A3DF928", "lvm"),
        ],
        encrypted: vec![],

        md_arrays: vec![],
        volume_groups: vec![VolumeGroupInfo {
            name: "vg0".into(),
            uuid: "Xk3PqT-1bYc-Rz4D-e8Hn-Wm2V-q7La-9sFgJ0".into(),
            physical_volumes: vec!["/dev/sda5".into()],
            missing_physical_volumes: vec![],
            logical_volumes: vec![
                LogicalVolumeInfo {
                    name: "root".into(),
                    device: "/dev/vg0/root".into(),
                    segment_type: "linear".into(),
                    readable: true,
                    size: 20 * GIB,
                },
                LogicalVolumeInfo {
                    name: "var".into(),
                    device: "/dev/vg0/var".into(),
                    segment_type: "linear".into(),
                    readable: true,
                    size: 8 * GIB,
                },
                LogicalVolumeInfo {
                    name: "swap".into(),
                    device: "/dev/vg0/swap".into(),
                    segment_type: "linear".into(),
                    readable: true,
                    size: 2 * GIB,
                },
            ],
        }],
        filesystems: vec![
            fs("/dev/sda1", "vfat", "5A1C-3F2E", Some("EFI"), Some(512 * MIB)),
            fs("/dev/sda3", "ntfs", "6E2C8B1F2C8AE3A1", Some("Windows"), Some(31 * GIB)),
            fs("/dev/sda4", "ext4", "3b8f0c1e-7d2a-4f6b-9e5c-1a2b3c4d5e6f", Some("boot"), Some(GIB)),
            fs("/dev/sda5", "LVM2_member", "Yt7Qm2-aB3c-Dd4E-fF5g-Hh6I-jJ7k-Ll8MnO", None, None),
            fs("/dev/vg0/root", "ext4", "8d2e4f6a-1b3c-4d5e-8f7a-9b0c1d2e3f4a", Some("root"), Some(20 * GIB)),
            fs("/dev/vg0/var", "xfs", "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f", None, Some(8 * GIB)),
            fs("/dev/vg0/swap", "swap", "0f9e8d7c-6b5a-4938-a7b6-c5d4e3f2a1b0", None, Some(2 * GIB)),
        ],
        operating_systems: vec![debian_os(), windows_os()],
        warnings: vec![
            "/dev/vg0/var: the XFS log is dirty; files were read as of the last checkpoint".into(),
            "/dev/sda3: BitLocker metadata found; the Windows registry hives are readable, user profiles are not".into(),
        ],
    }
}

fn inspection() -> ResultDocument {
    doc(
        JobStatus::Completed,
        Some("guestkit.inspect"),
        Some(serde_json::to_value(report()).unwrap()),
        None,
    )
}

fn profile() -> ResultDocument {
    let finding =
        |id: &str, severity: &str, title: &str, file: Option<(&str, u32)>, remediation: &str| {
            json!({
                "id": id, "severity": severity, "title": title,
                "evidence": file.map(|(f, l)| json!({"file": f, "line": l})),
                "remediation": remediation,
            })
        };
    let findings = vec![
        finding(
            "ssh-password-authentication",
            "high",
            "sshd accepts password authentication",
            Some(("/etc/ssh/sshd_config", 57)),
            "Set `PasswordAuthentication no` in /etc/ssh/sshd_config and use keys.",
        ),
        finding(
            "uid0-non-root",
            "critical",
            "Account toor has UID 0",
            Some(("/etc/passwd", 27)),
            "Remove the account or give it an unprivileged UID.",
        ),
        finding(
            "login-without-password",
            "high",
            "Account guest can log in without a password",
            Some(("/etc/shadow", 31)),
            "Lock the account (passwd -l guest) or set a password.",
        ),
        finding(
            "pass-max-days",
            "medium",
            "Passwords never expire (PASS_MAX_DAYS 99999)",
            Some(("/etc/login.defs", 160)),
            "Set PASS_MAX_DAYS to 365 or less.",
        ),
        finding(
            "sysctl-ip-forward",
            "low",
            "IPv4 forwarding is enabled",
            Some(("/etc/sysctl.d/99-router.conf", 3)),
            "Set net.ipv4.ip_forward = 0 unless the host routes traffic.",
        ),
        finding(
            "firewall-none",
            "medium",
            "No firewall configuration found",
            None,
            "Install and enable nftables or firewalld with a default-deny policy.",
        ),
        finding(
            "selinux-absent",
            "info",
            "SELinux is not configured (AppArmor is enabled)",
            None,
            "No action needed when AppArmor profiles are enforced.",
        ),
    ];
    let os = debian_os();
    let output = json!({
        "profiles": ["security", "hardening"],
        "findings": findings,
        "summary": {"critical": 1, "high": 2, "medium": 2, "low": 1, "info": 1},
        // A subset of the report: the templates must fill the rest.
        "inspection": {
            "image": {"path": "/var/lib/guestkit/images/web-01.qcow2", "format": "qcow2", "virtual_size": 68719476736u64},
            "operating_systems": [{
                "root": os.root, "type": os.os_type, "distro": os.distro, "product_name": os.product_name,
                "major_version": os.major_version, "minor_version": os.minor_version, "arch": os.arch,
                "hostname": os.hostname, "security": os.security, "users": os.users,
            }],
            "warnings": [],
        },
    });
    let mut d = doc(
        JobStatus::Completed,
        Some("guestkit.profile"),
        Some(output),
        None,
    );
    d.duration_ms = 4_012;
    d.finished_at = d.started_at + chrono::Duration::milliseconds(4_012);
    d
}

fn echo() -> ResultDocument {
    doc(
        JobStatus::Completed,
        Some("system.echo"),
        Some(
            json!({"message": "hello from the integration tests", "sleep_ms": 0, "tags": ["a", "b"], "nested": {"n": 3, "ok": true, "none": null}}),
        ),
        None,
    )
}

fn failed() -> ResultDocument {
    let mut d = doc(
        JobStatus::Failed,
        Some("guestkit.inspect"),
        None,
        Some(JobError::new(
            ErrorKind::ImageError,
            "corrupt qcow2 image at offset 196608: L2 table offset 0x30001 is not cluster aligned",
            false,
        )),
    );
    d.attempt = 2;
    d
}

fn rejected() -> ResultDocument {
    let mut d = doc(
        JobStatus::Rejected,
        None,
        None,
        Some(JobError::new(
            ErrorKind::NotJson,
            "message is not valid JSON: expected value at line 1 column 1",
            false,
        )),
    );
    d.job_id = None;
    d.duration_ms = 0;
    d.finished_at = d.started_at;
    d
}

fn documents() -> Vec<(&'static str, ResultDocument)> {
    vec![
        ("inspection", inspection()),
        ("profile", profile()),
        ("echo", echo()),
        ("failed", failed()),
        ("rejected", rejected()),
    ]
}

// ---------- helpers ----------

fn spec(format: OutputFormat, template: OutputTemplate) -> OutputSpec {
    OutputSpec { format, template }
}

fn extension(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Json => "json",
        OutputFormat::Yaml => "yaml",
        OutputFormat::Text => "txt",
        OutputFormat::Markdown => "md",
        OutputFormat::Html => "html",
    }
}

fn render_ok(
    renderer: &Renderer,
    doc: &ResultDocument,
    format: OutputFormat,
    template: OutputTemplate,
) -> String {
    let r = renderer.render(doc, spec(format, template));
    assert_eq!(r.render_error, None, "{format}/{template}");
    assert_eq!(r.format, format);
    assert_eq!(r.content_type, format.content_type());
    String::from_utf8(r.body).expect("utf-8 body")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/golden")
}

fn bless() -> bool {
    std::env::var_os("GUESTKIT_BLESS").is_some_and(|v| v == "1")
}

/// Compares `got` with the golden file `name`, or (re)writes it under `GUESTKIT_BLESS=1`.
/// Returns a description of the mismatch instead of panicking, so one run reports all.
fn check_golden(name: &str, got: &str) -> Option<String> {
    let path = golden_dir().join(name);
    // The footer names the worker's version; goldens hold a placeholder for it.
    let got = got.replace(env!("CARGO_PKG_VERSION"), "{version}");
    let got = got.as_str();
    if bless() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, got).unwrap();
        return None;
    }
    let want = match std::fs::read_to_string(&path) {
        Ok(w) => w,
        Err(e) => {
            return Some(format!(
                "{name}: cannot read golden file ({e}); run with GUESTKIT_BLESS=1 and review"
            ))
        }
    };
    if want == got {
        return None;
    }
    let line = want
        .lines()
        .zip(got.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(want.lines().count().min(got.lines().count()));
    Some(format!(
        "{name}: differs from the golden file at line {}:\n  want: {:?}\n  got:  {:?}",
        line + 1,
        want.lines().nth(line).unwrap_or("<end>"),
        got.lines().nth(line).unwrap_or("<end>"),
    ))
}

/// Runs `cmd` with a kill deadline (a hung browser must not hang the suite; this is
/// not a performance assertion) and returns stdout.
fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {cmd:?}: {e} (is the Debian package installed? see .ci/run)")
        });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "{cmd:?} failed: {status}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish in {deadline:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------- tests ----------

#[test]
fn every_format_and_template_matches_its_golden_file() {
    let renderer = Renderer::new();
    let mut failures = Vec::new();
    for (name, doc) in documents() {
        for format in TEMPLATED {
            for template in OutputTemplate::ALL {
                let body = render_ok(&renderer, &doc, format, template);
                let file = format!("{name}.{template}.{}", extension(format));
                failures.extend(check_golden(&file, &body));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_and_yaml_are_the_document_itself() {
    let renderer = Renderer::new();
    for (name, doc) in documents() {
        for template in OutputTemplate::ALL {
            let json = render_ok(&renderer, &doc, OutputFormat::Json, template);
            assert_eq!(
                serde_json::from_str::<ResultDocument>(&json).unwrap(),
                doc,
                "{name}"
            );
            let yaml = render_ok(&renderer, &doc, OutputFormat::Yaml, template);
            assert_eq!(
                serde_norway::from_str::<ResultDocument>(&yaml).unwrap(),
                doc,
                "{name}"
            );
        }
    }
}

/// The templates show the whole document: every value of these lists appears in the
/// detailed rendering of every format, and the standard one shows the first 25 of
/// each long list and says how many it left out.
#[test]
fn detailed_shows_everything_and_standard_truncates() {
    let renderer = Renderer::new();
    let doc = inspection();
    let report = report();
    let os = &report.operating_systems[0];
    let mut everything: Vec<String> = Vec::new();
    for os in &report.operating_systems {
        everything.extend(os.applications.iter().map(|a| a.name.clone()));
        everything.extend(os.users.iter().map(|u| u.name.clone()));
        everything.extend(os.services.iter().map(|s| s.name.clone()));
        everything.extend(os.kernels.iter().map(|k| k.path.clone()));
        everything.extend(
            os.network
                .interfaces
                .iter()
                .flat_map(|i| i.addresses.clone()),
        );
        everything.extend(os.network.dns_servers.clone());
        everything.extend(os.machine_id.clone());
        everything.extend(os.hostname.clone());
    }
    everything.extend(report.partitions.iter().map(|p| p.device.clone()));
    everything.extend(report.filesystems.iter().flat_map(|f| f.uuid.clone()));
    everything.extend(
        report.volume_groups[0]
            .logical_volumes
            .iter()
            .map(|l| l.device.clone()),
    );
    everything.extend(report.warnings.clone());
    everything.push(report.image.sha256.clone().unwrap());
    everything.push(doc.job_id.clone().unwrap());
    everything.push(doc.worker_id.clone());
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-./:@ ,;()".contains(c))
    };
    for format in TEMPLATED {
        let body = render_ok(&renderer, &doc, format, OutputTemplate::Detailed);
        for item in everything.iter().filter(|s| plain(s)) {
            assert!(
                body.contains(item.as_str()),
                "{format}/detailed lacks {item:?}"
            );
        }
        let standard = render_ok(&renderer, &doc, format, OutputTemplate::Standard);
        for (list, total) in [
            (
                os.applications
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>(),
                os.applications.len(),
            ),
            (
                os.users.iter().map(|u| u.name.as_str()).collect(),
                os.users.len(),
            ),
            (
                os.services.iter().map(|s| s.name.as_str()).collect(),
                os.services.len(),
            ),
        ] {
            assert!(total > 25, "the test data must exceed the standard limit");
            for name in list.iter().take(25).filter(|n| plain(n)) {
                assert!(standard.contains(name), "{format}/standard lacks {name:?}");
            }
            // Names past the limit that no shown line contains as a substring.
            let hidden: Vec<_> = list
                .iter()
                .skip(25)
                .filter(|n| !is_substring_of_any(n, &list[..25]))
                .collect();
            assert!(!hidden.is_empty());
            for name in hidden {
                let shown = match format {
                    OutputFormat::Html => standard.contains(&format!("<tr><td>{name}</td>")),
                    OutputFormat::Markdown => standard.contains(&format!("\n| {name} |")),
                    _ => standard
                        .lines()
                        .any(|l| l.starts_with(&format!("    {name} "))),
                };
                assert!(!shown, "{format}/standard shows {name:?}, past the limit");
            }
            let more = format!("and {} more", total - 25);
            assert!(
                standard.contains(&more),
                "{format}/standard does not say {more:?}"
            );
        }
    }
}

/// Whether `name` is a substring of one of `shown` (then its absence cannot be checked).
fn is_substring_of_any(name: &str, shown: &[&str]) -> bool {
    shown.iter().any(|s| s.contains(name))
}

fn hostile_inspection() -> ResultDocument {
    let mut r = report();
    let os = &mut r.operating_systems[0];
    os.hostname = Some(HOSTILE_HOSTNAME.into());
    os.applications[0].summary =
        Some("<img src=x onerror=alert(1)> & \"quoted\" | piped\nsecond line".into());
    os.product_name = Some("Debian | \u{1b}[31mred\u{1b}[0m".into());
    os.users[0].home = "/root|x".into();
    doc(
        JobStatus::Completed,
        Some("guestkit.inspect"),
        Some(serde_json::to_value(r).unwrap()),
        None,
    )
}

#[test]
fn html_escapes_hostile_strings_everywhere() {
    let renderer = Renderer::new();
    let doc = hostile_inspection();
    for template in OutputTemplate::ALL {
        let html = render_ok(&renderer, &doc, OutputFormat::Html, template);
        assert!(
            !html.contains("<script"),
            "html/{template} contains a raw <script"
        );
        assert!(
            !html.contains("<img"),
            "html/{template} contains a raw <img"
        );
        // Escaped as & < > " ' entities.
        assert!(
            html.contains("&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;"),
            "html/{template} lacks the escaped hostname"
        );
        if template == OutputTemplate::Detailed {
            assert!(
                html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot;"),
                "summary not escaped"
            );
        }
        assert!(!html.contains('\u{1b}'));
    }
}

#[test]
fn text_keeps_hostile_strings_as_text_without_control_characters() {
    let renderer = Renderer::new();
    let doc = hostile_inspection();
    for template in OutputTemplate::ALL {
        let text = render_ok(&renderer, &doc, OutputFormat::Text, template);
        assert!(
            text.contains(HOSTILE_HOSTNAME),
            "text/{template} lacks the hostname as text"
        );
        assert!(
            !text.contains('\u{1b}'),
            "text/{template} passes an escape character to the terminal"
        );
        assert!(text.contains("Debian | \u{FFFD}[31mred"), "text/{template}");
    }
    let text = render_ok(
        &renderer,
        &doc,
        OutputFormat::Text,
        OutputTemplate::Detailed,
    );
    assert!(
        text.contains("| piped second line"),
        "newline in a summary not flattened"
    );
}

/// Markdown output parsed by cmark-gfm (GitHub's parser, an independent oracle):
/// every table row has as many cells as its header, the hostile values land whole in
/// one cell, and no raw HTML gets through even with raw HTML allowed (`--unsafe`).
#[test]
fn markdown_tables_survive_pipes_newlines_and_html() {
    let renderer = Renderer::new();
    let tmp = common::tempdir();
    for (name, doc) in documents()
        .into_iter()
        .chain([("hostile", hostile_inspection())])
    {
        for template in OutputTemplate::ALL {
            let md = render_ok(&renderer, &doc, OutputFormat::Markdown, template);
            let path = tmp.path().join(format!("{name}.{template}.md"));
            std::fs::write(&path, &md).unwrap();
            let html = String::from_utf8(common::run(
                Command::new("cmark-gfm")
                    .args([
                        "--extension",
                        "table",
                        "--extension",
                        "strikethrough",
                        "--extension",
                        "autolink",
                        "--unsafe",
                    ])
                    .arg(&path),
            ))
            .unwrap();
            let tables = check_tables(&html);
            let expected_tables = md
                .lines()
                .filter(|l| l.starts_with("|") && l.contains("---"))
                .count();
            assert_eq!(tables, expected_tables, "{name}/{template}: cmark-gfm found {tables} tables, the markdown has {expected_tables}");
            assert!(!html.contains("<script"), "{name}/{template}: raw script");
            assert!(!html.contains("<img"), "{name}/{template}: raw img");
            assert!(
                !html.contains("<del>"),
                "{name}/{template}: a value became strikethrough"
            );
            if name == "hostile" {
                assert!(
                    html.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
                    "{name}/{template}: hostname not shown as text:\n{html}"
                );
                if template == OutputTemplate::Detailed {
                    assert!(html.contains("<td>&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot; | piped second line</td>"), "summary not in one cell:\n{html}");
                    assert!(html.contains("<td>/root|x</td>"), "home not in one cell");
                }
            }
        }
    }
}

/// Checks every `<table>` of cmark-gfm's output: each row has the header's cell count.
/// Returns how many tables there are.
fn check_tables(html: &str) -> usize {
    let mut count = 0;
    for table in html.split("<table>").skip(1) {
        let table = table.split("</table>").next().unwrap();
        let rows: Vec<usize> = table
            .split("<tr>")
            .skip(1)
            .map(|row| row.matches("<th").count() + row.matches("<td").count())
            .collect();
        assert!(!rows.is_empty(), "empty table: {table}");
        assert!(
            rows.iter().all(|&n| n == rows[0]),
            "ragged table {rows:?}:\n{table}"
        );
        count += 1;
    }
    count
}

fn write_overrides(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn assert_fallback(r: Rendered, doc: &ResultDocument, needle: &str) {
    let err = r.render_error.expect("a render error");
    assert!(
        err.contains(needle),
        "render_error {err:?} does not mention {needle:?}"
    );
    assert_eq!(r.format, OutputFormat::Json);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(
        &serde_json::from_slice::<ResultDocument>(&r.body).unwrap(),
        doc,
        "fallback body is not the document"
    );
}

#[test]
fn overrides_replace_builtins_and_broken_ones_fall_back_to_json() {
    let doc = inspection();
    let tmp = common::tempdir();
    // A working override of one template, a partial of its own, and a stray file.
    write_overrides(
        tmp.path(),
        &[
            ("text/minimal.txt.tera", "{% include \"text/mine.txt.tera\" %} {{ status }} on {{ report.operating_systems[0].hostname }}"),
            ("text/mine.txt.tera", "custom"),
            ("README", "not a template"),
        ],
    );
    let renderer = Renderer::with_overrides(tmp.path()).unwrap();
    let text = render_ok(&renderer, &doc, OutputFormat::Text, OutputTemplate::Minimal);
    assert_eq!(text, "custom completed on web-01");
    // The other templates are still the built-ins.
    let builtin = render_ok(
        &Renderer::new(),
        &doc,
        OutputFormat::Text,
        OutputTemplate::Standard,
    );
    assert_eq!(
        render_ok(
            &renderer,
            &doc,
            OutputFormat::Text,
            OutputTemplate::Standard
        ),
        builtin
    );

    // A syntax error: the whole format falls back, the others still render.
    let tmp = common::tempdir();
    write_overrides(
        tmp.path(),
        &[("html/standard.html.tera", "<h1>{{ status </h1>")],
    );
    let renderer = Renderer::with_overrides(tmp.path()).unwrap();
    for template in OutputTemplate::ALL {
        assert_fallback(
            renderer.render(&doc, spec(OutputFormat::Html, template)),
            &doc,
            "html/standard.html.tera",
        );
    }
    render_ok(
        &renderer,
        &doc,
        OutputFormat::Markdown,
        OutputTemplate::Standard,
    );

    // A missing variable: found at render time, only that template falls back.
    let tmp = common::tempdir();
    write_overrides(
        tmp.path(),
        &[(
            "markdown/detailed.md.tera",
            "# {{ no_such_variable.field }}",
        )],
    );
    let renderer = Renderer::with_overrides(tmp.path()).unwrap();
    assert_fallback(
        renderer.render(&doc, spec(OutputFormat::Markdown, OutputTemplate::Detailed)),
        &doc,
        "no_such_variable",
    );
    render_ok(
        &renderer,
        &doc,
        OutputFormat::Markdown,
        OutputTemplate::Minimal,
    );

    // A base template that extends a missing parent breaks every child.
    let tmp = common::tempdir();
    write_overrides(
        tmp.path(),
        &[(
            "text/base.txt.tera",
            "{% extends \"text/nowhere.txt.tera\" %}",
        )],
    );
    let renderer = Renderer::with_overrides(tmp.path()).unwrap();
    assert_fallback(
        renderer.render(&doc, spec(OutputFormat::Text, OutputTemplate::Standard)),
        &doc,
        "nowhere",
    );

    // A directory that does not exist is an error at startup, not a silent default.
    assert!(Renderer::with_overrides(&tmp.path().join("missing")).is_err());
}

/// The html report opened in headless Chromium: the DOM parses (the main heading
/// is there), the hostile hostname is text, and its script did not run (the title
/// is unchanged and there is no script element).
#[test]
fn chromium_parses_the_html_report_and_runs_no_injected_script() {
    let renderer = Renderer::new();
    let doc = hostile_inspection();
    let tmp = common::tempdir();
    let html = render_ok(
        &renderer,
        &doc,
        OutputFormat::Html,
        OutputTemplate::Standard,
    );
    let page = tmp.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let profile = tmp.path().join("chromium-profile");
    let dom = run_with_deadline(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", page.display())),
        Duration::from_secs(120),
    );
    assert!(
        dom.contains("<h1>Inspection report</h1>"),
        "main heading missing from the DOM:\n{dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "hostname not in the DOM as text:\n{dom}"
    );
    assert!(!dom.contains("<script"), "the DOM has a script element");
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .expect("a title");
    assert_ne!(title, "pwned");
    assert!(
        title.contains("Inspection report"),
        "title changed: {title:?}"
    );
    assert!(
        dom.contains("web-01") || dom.contains("WIN-FS01"),
        "report body missing"
    );
}

/// A large inspection (3,000 applications, 500 users and services) renders in every
/// format and template, with the long lists cut in `standard`. The time is printed
/// for the record (a debug build: the release measurement is the ignored
/// `render::tests::large_report_timing` lib test), never asserted.
#[test]
fn large_report_renders_in_every_format() {
    let renderer = Renderer::new();
    let mut r = report();
    let os = &mut r.operating_systems[0];
    let base = os.applications.clone();
    os.applications = (0..3000)
        .map(|i| {
            let mut a = base[i % base.len()].clone();
            a.name = format!("{}-{i}", a.name);
            a
        })
        .collect();
    let users = os.users.clone();
    os.users = (0..500)
        .map(|i| User {
            name: format!("user{i}"),
            ..users[i % users.len()].clone()
        })
        .collect();
    let services = os.services.clone();
    os.services = (0..500)
        .map(|i| Service {
            name: format!("svc{i}.service"),
            ..services[i % services.len()].clone()
        })
        .collect();
    let doc = doc(
        JobStatus::Completed,
        Some("guestkit.inspect"),
        Some(serde_json::to_value(r).unwrap()),
        None,
    );
    for format in OutputFormat::ALL {
        for template in OutputTemplate::ALL {
            let start = Instant::now();
            let body = render_ok(&renderer, &doc, format, template);
            let took = start.elapsed();
            eprintln!(
                "render 3000 apps {format:>8}/{template:<8}: {took:>10.2?} ({} bytes)",
                body.len()
            );
            if template == OutputTemplate::Standard && TEMPLATED.contains(&format) {
                assert!(body.contains("and 2975 more"), "{format}/standard");
                assert!(body.contains("and 475 more"), "{format}/standard");
            }
            if template == OutputTemplate::Detailed && TEMPLATED.contains(&format) {
                assert!(
                    body.contains("tzdata-2999")
                        && body.contains("user499")
                        && body.contains("svc499.service")
                );
            }
        }
    }
}
