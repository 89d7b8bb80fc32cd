//! The OS oracle: whole disk images built by real tools from real or synthetic trees,
//! inspected end to end through `pipeline::inspect_with_stats`, and every fact compared with what
//! the tree itself says, read here independently (os-release parsed by this file,
//! packages by `dpkg-query` / `rpm -qa`, users from the passwd lines, ...).
//!
//! - `debian_*`: a debootstrap minbase tree (cached: the first run takes a few minutes)
//!   on GPT with an ESP, as compressed qcow2. Run alone with
//!   `cargo test --test integration inspect_os::debian`.
//! - synthetic trees: Fedora-like (rpmdb.sqlite made by `rpm`, usr-merge, a host ELF
//!   binary), Alpine-like (no partition table, OpenRC), Arch-like (MBR, device-name
//!   fstab, pacman db), and a Debian-like root whose `/var` is its own partition.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use guestkit_worker::inspect::pipeline::{self, InspectOptions, InspectStats};
use guestkit_worker::inspect::report::{Application, OperatingSystem, Report};

use crate::common::{fixture_cache, fixtures, run, tempdir};

/// Inspects `image` with the image's directory as the only image root.
fn inspect_with(image: &Path, opts: InspectOptions) -> (Report, InspectStats, Duration) {
    let opts = InspectOptions {
        image_roots: vec![image.parent().unwrap().to_path_buf()],
        ..opts
    };
    let t = Instant::now();
    let (report, stats) = pipeline::inspect_with_stats(image, &opts)
        .unwrap_or_else(|e| panic!("inspect {}: [{}] {e}", image.display(), e.kind()));
    (report, stats, t.elapsed())
}

fn inspect(image: &Path) -> Report {
    inspect_with(image, InspectOptions::default()).0
}

fn only_os(report: &Report) -> &OperatingSystem {
    assert_eq!(
        report.operating_systems.len(),
        1,
        "{:#?}",
        report.operating_systems
    );
    &report.operating_systems[0]
}

fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel.trim_start_matches('/'))).unwrap()
}

/// `KEY=value` pairs of os-release, unquoted: this test's own reading of the file.
fn os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

/// Runs make-disk.sh (see its header for the PART syntax).
fn make_disk(out: &Path, table: &str, parts: &[String]) {
    run(Command::new(fixtures().join("make-disk.sh"))
        .arg(out)
        .arg(table)
        .args(parts));
}

fn to_qcow2(raw: &Path) -> PathBuf {
    let out = raw.with_extension("qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-c", "-O", "qcow2"])
        .arg(raw)
        .arg(&out));
    std::fs::remove_file(raw).unwrap();
    out
}

/// Full Debian version string of one of our applications, as dpkg prints it.
fn deb_version(a: &Application) -> String {
    let mut v = String::new();
    // Epoch 0 (what we report for a version without one) is not printed by dpkg.
    if let Some(e) = a.epoch.filter(|&e| e != 0) {
        v.push_str(&format!("{e}:"));
    }
    v.push_str(&a.version);
    if let Some(r) = &a.release {
        v.push_str(&format!("-{r}"));
    }
    v
}

/// (name, version, arch, summary, homepage, source package) of every installed package,
/// by `dpkg-query` on `admindir`.
type DebRow = (String, String, String, String, String, String);

fn dpkg_query(admindir: &Path) -> BTreeSet<DebRow> {
    let out = run(Command::new("dpkg-query")
        .arg("--admindir")
        .arg(admindir)
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\t${binary:Summary}\\t${Homepage}\\t${source:Package}\\n",
        ]));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("ii"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[4].trim().to_string(),
                f[5].to_string(),
                f[6].to_string(),
            )
        })
        .collect()
}

fn ours_deb(os: &OperatingSystem) -> BTreeSet<DebRow> {
    os.applications
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                deb_version(a),
                a.arch.clone().unwrap_or_default(),
                a.summary.clone().unwrap_or_default(),
                a.url.clone().unwrap_or_default(),
                // dpkg's ${source:Package} is the package's own name when it has no
                // Source field; we report null there.
                a.source_package.clone().unwrap_or_else(|| a.name.clone()),
            )
        })
        .collect()
}

/// The host's architecture in the report's naming (fixtures copy host binaries).
fn host_arch() -> String {
    let out = run(Command::new("uname").arg("-m"));
    let m = String::from_utf8(out).unwrap().trim().to_string();
    match m.as_str() {
        "i686" | "i586" => "i386".to_string(),
        "armv7l" => "arm".to_string(),
        _ => m,
    }
}

/// Users of a passwd file, read here: (name, uid, gid, home, shell).
fn passwd_users(text: &str) -> Vec<(String, u32, u32, String, String)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (
                f[0].into(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[5].into(),
                f[6].into(),
            )
        })
        .collect()
}

/// Names whose shadow hash is locked or who have no shadow entry.
fn shadow_locked(passwd: &str, shadow: &str) -> BTreeSet<String> {
    let hashes: BTreeMap<&str, &str> = shadow
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.next()?))
        })
        .collect();
    passwd_users(passwd)
        .into_iter()
        .filter(|u| {
            hashes
                .get(u.0.as_str())
                .is_none_or(|h| h.starts_with('!') || h.starts_with('*'))
        })
        .map(|u| u.0)
        .collect()
}

// --------------------------------------------------------------------------- Debian

#[test]
fn debian_bookworm_minbase_gpt_esp_qcow2() {
    let dir = tempdir();
    run(Command::new(fixtures().join("debian-disk.sh"))
        .arg("bookworm")
        .arg(fixture_cache())
        .arg(dir.path()));
    let tree = dir.path().join("root");
    let image = dir.path().join("disk.qcow2");

    // Time a few runs; report the best (the first warms the page cache).
    let mut best = Duration::MAX;
    let mut result = None;
    for _ in 0..3 {
        let (report, stats, elapsed) = inspect_with(&image, InspectOptions::default());
        best = best.min(elapsed);
        result = Some((report, stats));
    }
    let (report, stats) = result.unwrap();
    eprintln!(
        "debian qcow2 inspection: best of 3 {:.1} ms, {} guest bytes read, {} applications",
        best.as_secs_f64() * 1000.0,
        stats.bytes_read,
        report
            .operating_systems
            .first()
            .map_or(0, |o| o.applications.len())
    );

    assert_eq!(report.image.format, "qcow2");
    assert_eq!(report.partition_table.as_deref(), Some("gpt"));
    let types: Vec<(&str, &str)> = report
        .filesystems
        .iter()
        .map(|f| (f.device.as_str(), f.fs_type.as_str()))
        .collect();
    assert_eq!(types, vec![("/dev/sda1", "vfat"), ("/dev/sda2", "ext4")]);
    assert_eq!(report.warnings, Vec::<String>::new());

    let os = only_os(&report);
    let rel = os_release(&read(&tree, "/etc/os-release"));
    assert_eq!(os.root, "/dev/sda2");
    assert_eq!(os.os_type, "linux");
    assert_eq!(os.distro.as_deref(), Some(rel["ID"].as_str()));
    assert_eq!(
        os.product_name.as_deref(),
        Some(rel["PRETTY_NAME"].as_str())
    );
    let debian_version = read(&tree, "/etc/debian_version");
    let (major, minor) = debian_version.trim().split_once('.').unwrap();
    assert_eq!(major, rel["VERSION_ID"]);
    assert_eq!(os.major_version, Some(major.parse().unwrap()));
    assert_eq!(os.minor_version, Some(minor.parse().unwrap()));
    assert_eq!(
        os.osinfo.as_deref(),
        Some(format!("debian{major}").as_str())
    );
    assert_eq!(os.package_format.as_deref(), Some("deb"));
    assert_eq!(os.package_management.as_deref(), Some("apt"));
    assert_eq!(
        os.hostname.as_deref(),
        Some(read(&tree, "/etc/hostname").trim())
    );
    assert_eq!(os.arch.as_deref(), Some(host_arch().as_str()));
    let mps: Vec<(&str, &str)> = os
        .mountpoints
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(mps, vec![("/", "/dev/sda2"), ("/boot/efi", "/dev/sda1")]);

    // Every installed package, name + full version + arch, as dpkg-query sees it.
    let oracle = dpkg_query(&tree.join("var/lib/dpkg"));
    assert!(oracle.len() > 50, "a minbase system has dozens of packages");
    assert_eq!(ours_deb(os), oracle);
    assert!(os.applications.iter().all(|a| a.summary.is_some()));

    // Every user of passwd, with lock state from shadow.
    let passwd = read(&tree, "/etc/passwd");
    let ours: Vec<(String, u32, u32, String, String)> = os
        .users
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                u.uid,
                u.gid,
                u.home.clone(),
                u.shell.clone(),
            )
        })
        .collect();
    assert_eq!(ours, passwd_users(&passwd));
    let locked: BTreeSet<String> = os
        .users
        .iter()
        .filter(|u| u.locked)
        .map(|u| u.name.clone())
        .collect();
    assert_eq!(locked, shadow_locked(&passwd, &read(&tree, "/etc/shadow")));
    let by_name = |n: &str| os.users.iter().find(|u| u.name == n).unwrap();
    assert!(!by_name("alice").locked && !by_name("alice").system);
    assert!(by_name("bob").locked && !by_name("bob").system);
    assert!(by_name("root").system && by_name("nobody").system);

    // Services: every unit file of the tree, enabled exactly when linked in a wants dir.
    let unit_dir = tree.join("usr/lib/systemd/system");
    let mut units: Vec<String> = std::fs::read_dir(&unit_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".service") && !n.ends_with("@.service"))
        .collect();
    units.sort();
    let ours_units: Vec<&str> = os
        .services
        .iter()
        .filter(|s| s.kind == "systemd")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(ours_units, units);
    for s in os.services.iter().filter(|s| s.kind == "systemd") {
        let linked = std::fs::read_dir(tree.join("etc/systemd/system"))
            .unwrap()
            .any(|d| {
                let d = d.unwrap().path();
                d.extension().is_some_and(|e| e == "wants")
                    && d.join(&s.name).symlink_metadata().is_ok()
            });
        assert_eq!(s.enabled, linked, "{}", s.name);
    }
    assert!(
        os.services.iter().any(|s| s.enabled),
        "e2scrub_reap.service is enabled by debootstrap"
    );

    // DNS: what the tree's resolv.conf says.
    let dns: Vec<String> = read(&tree, "/etc/resolv.conf")
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(os.network.dns_servers, dns);
    assert_eq!(os.machine_id, None, "minbase has no /etc/machine-id");
    assert!(!os.cloud_init);
}

// --------------------------------------------------------------------------- Fedora

/// Builds three tiny rpms and records them with `rpm --justdb` in `root`'s
/// `/usr/lib/sysimage/rpm` (Fedora >= 36's place), linked from `/var/lib/rpm`.
pub(crate) fn rpm_database(root: &Path, work: &Path) -> Vec<Application> {
    run(Command::new(fixtures().join("rpm-db.sh"))
        .arg(root)
        .arg(work));
    // The oracle: rpm itself, reading the database it wrote. Records end with RS (0x1e):
    // descriptions may span lines. rpm has epochs: none stored is epoch 0 in our report;
    // the source package is SOURCERPM without the `-VERSION-RELEASE.src.rpm` rpm reports.
    let out = run(Command::new("rpm").arg("--root").arg(root).args([
        "--dbpath",
        "/usr/lib/sysimage/rpm",
        "-qa",
        "--qf",
        "%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SUMMARY}\t%{URL}\t%{SOURCERPM}\t%{DESCRIPTION}\x1e",
    ]));
    let none = |s: &str| (s != "(none)").then(|| s.to_string());
    let mut apps: Vec<Application> = String::from_utf8(out)
        .unwrap()
        .split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(9, '\t').collect();
            Application {
                name: f[0].into(),
                epoch: Some(none(f[1]).map_or(0, |e| e.parse().unwrap())),
                version: f[2].into(),
                release: none(f[3]),
                arch: none(f[4]),
                summary: none(f[5]),
                url: none(f[6]),
                source_package: none(f[7]).map(|s| {
                    s.strip_suffix(&format!("-{}-{}.src.rpm", f[2], f[3]))
                        .unwrap()
                        .to_string()
                }),
                description: none(f[8]).map(|d| d.trim().to_string()),
                ..Default::default()
            }
        })
        .collect();
    apps.sort();
    apps
}

const FEDORA_MACHINE_ID: &str = "5f3a9c1e7b2d4e6f8a0b1c2d3e4f5a6b";

/// The Fedora-like guest (GPT, ESP, ext4 root with usr-merge links, rpmdb.sqlite, SELinux,
/// NetworkManager, ...) built in `dir`: its raw disk and the oracle's package list.
pub(crate) fn fedora_like_disk(dir: &Path) -> (PathBuf, Vec<Application>) {
    let r = dir.join("root");
    write(
        &r,
        "/usr/lib/os-release",
        "NAME=\"Fedora Linux\"\nVERSION=\"39 (Server Edition)\"\nID=fedora\nVERSION_ID=39\n\
         PRETTY_NAME=\"Fedora Linux 39 (Server Edition)\"\nVARIANT=\"Server Edition\"\nVARIANT_ID=server\n",
    );
    link(&r, "/etc/os-release", "../usr/lib/os-release");
    link(&r, "/bin", "usr/bin");
    link(&r, "/lib", "usr/lib");
    link(&r, "/lib64", "usr/lib64");
    // A real ELF binary of the host, reached through the /bin link.
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy("/bin/sh", r.join("usr/bin/bash")).unwrap();
    link(&r, "/usr/bin/sh", "bash");
    write(&r, "/etc/hostname", "fedora-box.example.com\n");
    write(
        &r,
        "/etc/fstab",
        "UUID=3e6c2d8a-1f4b-4c5d-8e9f-a0b1c2d3e4f5 / ext4 defaults 1 1\n\
         PARTUUID=6d1f0c2e-83a4-4b59-9e7a-1c2b3d4e5f60 /boot/efi vfat umask=0077 0 2\n",
    );
    write(&r, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nsshd:x:74:74::/usr/share/empty.sshd:/sbin/nologin\nfedora:x:1000:1000::/home/fedora:/bin/bash\n");
    write(&r, "/etc/shadow", "root:!locked::0:99999:7:::\nsshd:!!:19000::::::\nfedora:$y$j9T$abc$def:19000:0:99999:7:::\n");
    write(
        &r,
        "/etc/selinux/config",
        "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
    );
    link(
        &r,
        "/etc/systemd/system/multi-user.target.wants/firewalld.service",
        "/usr/lib/systemd/system/firewalld.service",
    );
    link(
        &r,
        "/etc/systemd/system/multi-user.target.wants/sshd.service",
        "/usr/lib/systemd/system/sshd.service",
    );
    write(&r, "/usr/lib/systemd/system/firewalld.service", "[Unit]\n");
    write(&r, "/usr/lib/systemd/system/sshd.service", "[Unit]\n");
    write(&r, "/usr/lib/systemd/system/chronyd.service", "[Unit]\n");
    write(&r, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\n#PermitRootLogin prohibit-password\nPasswordAuthentication yes\n");
    write(
        &r,
        "/etc/ssh/sshd_config.d/50-redhat.conf",
        "PasswordAuthentication no\nMatch User x\n  PermitRootLogin yes\n",
    );
    write(
        &r,
        "/etc/NetworkManager/system-connections/enp1s0.nmconnection",
        "[connection]\nid=enp1s0\ninterface-name=enp1s0\n[ipv4]\nmethod=manual\naddress1=192.0.2.10/24,192.0.2.1\ndns=192.0.2.53;\n",
    );
    link(&r, "/etc/resolv.conf", "../run/NetworkManager/resolv.conf");
    write(
        &r,
        "/usr/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz",
        "not really a kernel",
    );
    write(&r, "/etc/machine-id", format!("{FEDORA_MACHINE_ID}\n"));
    write(&r, "/etc/cloud/cloud.cfg", "users: [default]\n");
    let oracle = rpm_database(&r, &dir.join("rpmbuild"));
    assert_eq!(oracle.len(), 3, "{oracle:?}");

    let raw = dir.join("fedora.raw");
    make_disk(
        &raw,
        "gpt",
        &[
            "U:vfat:32:-:1A2B3C4D::6D1F0C2E-83A4-4B59-9E7A-1C2B3D4E5F60".to_string(),
            format!(
                "L:ext4:64:{}:3e6c2d8a-1f4b-4c5d-8e9f-a0b1c2d3e4f5:fedora",
                r.display()
            ),
        ],
    );
    (raw, oracle)
}

#[test]
fn fedora_like_rpmdb_sqlite_usrmerge() {
    let dir = tempdir();
    let (raw, oracle) = fedora_like_disk(dir.path());
    let report = inspect(&raw);
    assert_eq!(report.warnings, Vec::<String>::new());
    let os = only_os(&report);
    assert_eq!(os.root, "/dev/sda2");
    let mps: Vec<(&str, &str)> = os
        .mountpoints
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(mps, vec![("/", "/dev/sda2"), ("/boot/efi", "/dev/sda1")]);
    assert_eq!(
        (os.distro.as_deref(), os.major_version, os.minor_version),
        (Some("fedora"), Some(39), Some(0))
    );
    assert_eq!(
        os.product_name.as_deref(),
        Some("Fedora Linux 39 (Server Edition)")
    );
    assert_eq!(os.product_variant.as_deref(), Some("Server Edition"));
    assert_eq!(os.osinfo.as_deref(), Some("fedora39"));
    assert_eq!(
        (
            os.package_format.as_deref(),
            os.package_management.as_deref()
        ),
        (Some("rpm"), Some("dnf"))
    );
    assert_eq!(os.arch.as_deref(), Some(host_arch().as_str()));
    assert_eq!(os.hostname.as_deref(), Some("fedora-box.example.com"));

    let mut ours: Vec<Application> = os.applications.clone();
    ours.sort();
    assert_eq!(ours, oracle);

    let locked: Vec<(&str, bool, bool)> = os
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.system, u.locked))
        .collect();
    assert_eq!(
        locked,
        vec![
            ("root", true, true),
            ("sshd", true, true),
            ("fedora", false, false)
        ]
    );
    let svc: Vec<(&str, bool)> = os
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.enabled))
        .collect();
    assert_eq!(
        svc,
        vec![
            ("chronyd.service", false),
            ("firewalld.service", true),
            ("sshd.service", true)
        ]
    );
    assert_eq!(os.security.selinux.as_deref(), Some("enforcing"));
    assert_eq!(os.security.firewall.as_deref(), Some("firewalld"));
    assert!(!os.security.apparmor);
    assert_eq!(os.security.ssh.permit_root_login, None);
    assert_eq!(os.security.ssh.password_authentication, Some(false));
    assert_eq!(os.network.interfaces.len(), 1);
    assert_eq!(os.network.interfaces[0].name, "enp1s0");
    assert_eq!(os.network.interfaces[0].method.as_deref(), Some("static"));
    assert_eq!(os.network.interfaces[0].addresses, vec!["192.0.2.10/24"]);
    assert_eq!(os.network.dns_servers, vec!["192.0.2.53"]);
    let kernels: Vec<(&str, &str)> = os
        .kernels
        .iter()
        .map(|k| (k.version.as_str(), k.path.as_str()))
        .collect();
    assert_eq!(
        kernels,
        vec![(
            "6.5.6-300.fc39.x86_64",
            "/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz"
        )]
    );
    assert_eq!(os.machine_id.as_deref(), Some(FEDORA_MACHINE_ID));
    assert!(os.cloud_init);
}

// --------------------------------------------------------------------------- Alpine

const ALPINE_INSTALLED: &str = "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:383152\nT:the musl c library (libc) implementation\n\n\
                     C:Q1def=\nP:busybox\nV:1.36.1-r15\nA:x86_64\nT:Size optimized toolbox of many common UNIX utilities\n\n\
                     P:alpine-baselayout\nV:3.4.3-r2\nA:x86_64\nT:Alpine base dir structure and init scripts\n\n";

/// The Alpine-like guest (no partition table, OpenRC, apk database `ALPINE_INSTALLED`)
/// built in `dir`: its qcow2 disk.
pub(crate) fn alpine_like_disk(dir: &Path) -> PathBuf {
    let r = dir.join("root");
    write(&r, "/etc/alpine-release", "3.19.1\n");
    write(
        &r,
        "/etc/os-release",
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
    );
    write(&r, "/etc/hosts", "127.0.0.1 localhost\n");
    write(&r, "/etc/hostname", "alpine1\n");
    std::fs::create_dir_all(r.join("bin")).unwrap();
    std::fs::copy("/bin/sh", r.join("bin/busybox")).unwrap();
    link(&r, "/bin/sh", "/bin/busybox");
    link(&r, "/bin/ls", "/bin/busybox");
    write(&r, "/lib/apk/db/installed", ALPINE_INSTALLED);
    write(&r, "/etc/init.d/sshd", "#!/sbin/openrc-run\n");
    write(&r, "/etc/init.d/crond", "#!/sbin/openrc-run\n");
    link(&r, "/etc/runlevels/default/sshd", "/etc/init.d/sshd");
    std::fs::create_dir_all(r.join("etc/runlevels/boot")).unwrap();
    write(
        &r,
        "/etc/network/interfaces",
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n",
    );
    write(&r, "/etc/resolv.conf", "nameserver 198.51.100.1\n");
    write(
        &r,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/ash\nalpine:x:1000:1000::/home/alpine:/bin/ash\n",
    );
    write(
        &r,
        "/etc/shadow",
        "root:*::0:::::\nalpine::19000:0:99999:7:::\n",
    );
    write(&r, "/boot/vmlinuz-lts", "k");
    std::fs::create_dir_all(r.join("lib/modules/6.6.14-0-lts")).unwrap();

    let raw = dir.join("alpine.raw");
    make_disk(
        &raw,
        "none",
        &[format!("L:ext4:32:{}::alpineroot", r.display())],
    );
    to_qcow2(&raw)
}

#[test]
fn alpine_like_whole_disk_openrc() {
    let dir = tempdir();
    let image = alpine_like_disk(dir.path());
    let (report, stats, _) = inspect_with(&image, InspectOptions::default());
    assert!(stats.bytes_read > 0);
    assert_eq!(report.partition_table, None);
    assert_eq!(report.partitions, vec![]);
    assert_eq!(report.warnings, Vec::<String>::new());
    let os = only_os(&report);
    assert_eq!(os.root, "/dev/sda");
    assert_eq!(
        (
            os.distro.as_deref(),
            os.major_version,
            os.minor_version,
            os.osinfo.as_deref()
        ),
        (Some("alpine"), Some(3), Some(19), Some("alpinelinux3.19"))
    );
    assert_eq!(
        (
            os.package_format.as_deref(),
            os.package_management.as_deref()
        ),
        (Some("apk"), Some("apk"))
    );
    assert_eq!(os.arch.as_deref(), Some(host_arch().as_str()));
    // The oracle: the P:/V: lines of the file this test wrote.
    let mut want: Vec<(String, String)> = Vec::new();
    let mut name = String::new();
    for line in ALPINE_INSTALLED.lines() {
        if let Some(p) = line.strip_prefix("P:") {
            name = p.to_string();
        } else if let Some(v) = line.strip_prefix("V:") {
            want.push((name.clone(), v.to_string()));
        }
    }
    want.sort();
    let ours: Vec<(String, String)> = os
        .applications
        .iter()
        .map(|a| {
            let v = match &a.release {
                Some(r) => format!("{}-r{r}", a.version),
                None => a.version.clone(),
            };
            (a.name.clone(), v)
        })
        .collect();
    assert_eq!(ours, want);
    let svc: Vec<(&str, bool, &str)> = os
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.enabled, s.kind.as_str()))
        .collect();
    assert_eq!(
        svc,
        vec![("crond", false, "openrc"), ("sshd", true, "openrc")]
    );
    let ifaces: Vec<(&str, Option<&str>)> = os
        .network
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.method.as_deref()))
        .collect();
    assert_eq!(
        ifaces,
        vec![("lo", Some("loopback")), ("eth0", Some("dhcp"))]
    );
    assert_eq!(os.network.dns_servers, vec!["198.51.100.1"]);
    let users: Vec<(&str, bool)> = os
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.locked))
        .collect();
    assert_eq!(users, vec![("root", true), ("alpine", false)]);
    let kernels: Vec<(&str, &str)> = os
        .kernels
        .iter()
        .map(|k| (k.version.as_str(), k.path.as_str()))
        .collect();
    assert_eq!(kernels, vec![("6.6.14-0-lts", "/boot/vmlinuz-lts")]);

    // The options switch sections off.
    let off = InspectOptions {
        include_applications: false,
        include_users: false,
        include_services: false,
        include_network: false,
        include_security: false,
        ..InspectOptions::default()
    };
    let (report, _, _) = inspect_with(&image, off);
    let os = only_os(&report);
    assert!(os.applications.is_empty() && os.users.is_empty() && os.services.is_empty());
    assert!(os.network.interfaces.is_empty() && os.network.dns_servers.is_empty());
    assert_eq!(os.distro.as_deref(), Some("alpine"));
}

// --------------------------------------------------------------------------- Arch

const ARCH_PACKAGES: [(&str, &str); 3] = [
    ("linux", "6.7.4.arch1-1"),
    ("pacman", "6.0.2-9"),
    ("zlib", "1:1.3.1-1"),
];

/// The Arch-like guest (MBR, device-name fstab, swap, pacman database of
/// `ARCH_PACKAGES`) built in `dir`: its raw disk.
pub(crate) fn arch_like_disk(dir: &Path) -> PathBuf {
    let r = dir.join("root");
    write(&r, "/etc/arch-release", "");
    write(
        &r,
        "/etc/os-release",
        "NAME=\"Arch Linux\"\nPRETTY_NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n",
    );
    write(
        &r,
        "/etc/fstab",
        "# /dev/vda1\n/dev/vda1 / ext4 rw,relatime 0 1\n/dev/vda2 none swap defaults 0 0\n",
    );
    link(&r, "/bin", "usr/bin");
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy("/bin/sh", r.join("usr/bin/ls")).unwrap();
    write(&r, "/var/lib/pacman/local/ALPM_DB_VERSION", "9\n");
    for (name, version) in ARCH_PACKAGES {
        write(
            &r,
            &format!("/var/lib/pacman/local/{name}-{version}/desc"),
            format!("%NAME%\n{name}\n\n%VERSION%\n{version}\n\n%DESC%\nThe {name} package\n\n%ARCH%\nx86_64\n\n"),
        );
    }
    write(
        &r,
        "/etc/systemd/network/20-wired.network",
        "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n",
    );
    link(
        &r,
        "/etc/resolv.conf",
        "/run/systemd/resolve/stub-resolv.conf",
    );
    write(
        &r,
        "/etc/systemd/resolved.conf",
        "[Resolve]\nDNS=203.0.113.7\n",
    );
    write(&r, "/boot/vmlinuz-linux", "k");
    write(&r, "/usr/lib/modules/6.7.4-arch1-1/pkgbase", "linux\n");
    link(&r, "/lib", "usr/lib");

    let raw = dir.join("arch.raw");
    make_disk(
        &raw,
        "dos",
        &[
            format!("L:ext4:48:{}::", r.display()),
            "S:swap:8:-:0f0e0d0c-0b0a-4998-8776-554433221100:".to_string(),
        ],
    );
    raw
}

#[test]
fn arch_like_mbr_pacman_device_names() {
    let dir = tempdir();
    let raw = arch_like_disk(dir.path());
    let report = inspect(&raw);
    assert_eq!(report.partition_table.as_deref(), Some("mbr"));
    let types: Vec<(&str, &str)> = report
        .filesystems
        .iter()
        .map(|f| (f.device.as_str(), f.fs_type.as_str()))
        .collect();
    assert_eq!(types, vec![("/dev/sda1", "ext4"), ("/dev/sda2", "swap")]);
    assert_eq!(
        report.filesystems[1].uuid.as_deref(),
        Some("0f0e0d0c-0b0a-4998-8776-554433221100")
    );
    assert_eq!(report.warnings, Vec::<String>::new());
    let os = only_os(&report);
    assert_eq!(
        (
            os.distro.as_deref(),
            os.major_version,
            os.osinfo.as_deref(),
            os.package_management.as_deref()
        ),
        // Rolling: 0.0, as virt-inspector reports it.
        (
            Some("archlinux"),
            Some(0),
            Some("archlinux"),
            Some("pacman")
        )
    );
    assert_eq!(os.arch.as_deref(), Some(host_arch().as_str()));
    let mps: Vec<(&str, &str)> = os
        .mountpoints
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(mps, vec![("/", "/dev/sda1")]);
    // The oracle: the packages this test wrote, version as pacman prints it.
    let ours: Vec<(String, String)> = os
        .applications
        .iter()
        .map(|a| {
            // pacman does not print epoch 0 (what we report for a version without one).
            let mut v = a
                .epoch
                .filter(|&e| e != 0)
                .map(|e| format!("{e}:"))
                .unwrap_or_default();
            v.push_str(&a.version);
            if let Some(r) = &a.release {
                v.push_str(&format!("-{r}"));
            }
            (a.name.clone(), v)
        })
        .collect();
    let want: Vec<(String, String)> = ARCH_PACKAGES
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(ours, want);
    assert_eq!(os.network.interfaces.len(), 1);
    assert_eq!(os.network.interfaces[0].method.as_deref(), Some("dhcp"));
    assert_eq!(os.network.dns_servers, vec!["203.0.113.7"]);
    let kernels: Vec<(&str, &str)> = os
        .kernels
        .iter()
        .map(|k| (k.version.as_str(), k.path.as_str()))
        .collect();
    assert_eq!(kernels, vec![("6.7.4-arch1-1", "/boot/vmlinuz-linux")]);
}

// --------------------------------------------------------------------------- /var apart

/// An Ubuntu-22.04-like root whose fstab mounts `/var` by label from the second
/// partition, which alone holds the dpkg database (this machine's status file), as a
/// qcow2 in `dir`. Returns the disk and the `/var` tree (the oracle's admindir is
/// `lib/dpkg` in it).
pub(crate) fn separate_var_disk(dir: &Path) -> (PathBuf, PathBuf) {
    let r = dir.join("root");
    let v = dir.join("var");
    write(&r, "/etc/os-release", "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n");
    write(&r, "/etc/hosts", "127.0.0.1 localhost\n");
    write(
        &r,
        "/etc/fstab",
        "LABEL=rootfs / ext4 defaults 0 1\nLABEL=varfs /var ext4 defaults 0 2\n",
    );
    std::fs::create_dir_all(r.join("bin")).unwrap();
    std::fs::create_dir_all(r.join("var")).unwrap();
    write(
        &r,
        "/etc/netplan/50-cloud-init.yaml",
        "network:\n  version: 2\n  ethernets:\n    ens3:\n      dhcp4: true\n      nameservers:\n        addresses: [192.0.2.1, 2001:db8::1]\n",
    );
    link(
        &r,
        "/etc/resolv.conf",
        "../run/systemd/resolve/stub-resolv.conf",
    );
    write(&r, "/etc/ufw/ufw.conf", "ENABLED=yes\nLOGLEVEL=low\n");
    // The package database lives only on the /var filesystem: a real dpkg status (this
    // machine's), so the oracle is dpkg-query over the same bytes.
    std::fs::create_dir_all(v.join("lib/dpkg")).unwrap();
    std::fs::copy("/var/lib/dpkg/status", v.join("lib/dpkg/status")).unwrap();
    // dpkg-query wants the rest of an admindir to exist.
    for d in ["info", "updates"] {
        std::fs::create_dir_all(v.join("lib/dpkg").join(d)).unwrap();
    }

    let raw = dir.join("split.raw");
    make_disk(
        &raw,
        "dos",
        &[
            format!("L:ext4:24:{}::rootfs", r.display()),
            format!("L:ext4:48:{}::varfs", v.display()),
        ],
    );
    (to_qcow2(&raw), v)
}

#[test]
fn separate_var_partition_is_read_through_fstab() {
    let dir = tempdir();
    let (disk, v) = separate_var_disk(dir.path());
    let report = inspect(&disk);
    assert_eq!(report.warnings, Vec::<String>::new());
    let os = only_os(&report);
    let mps: Vec<(&str, &str)> = os
        .mountpoints
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(mps, vec![("/", "/dev/sda1"), ("/var", "/dev/sda2")]);
    assert_eq!(
        (os.distro.as_deref(), os.osinfo.as_deref()),
        (Some("ubuntu"), Some("ubuntu22.04"))
    );
    let oracle = dpkg_query(&v.join("lib/dpkg"));
    assert!(!oracle.is_empty());
    assert_eq!(ours_deb(os), oracle);
    assert_eq!(os.network.interfaces.len(), 1);
    assert_eq!(os.network.interfaces[0].method.as_deref(), Some("dhcp"));
    assert_eq!(os.network.dns_servers, vec!["192.0.2.1", "2001:db8::1"]);
    assert_eq!(os.security.firewall.as_deref(), Some("ufw"));
}

// --------------------------------------------------------------------------- limits

#[test]
fn read_budget_fails_the_job_with_its_kind() {
    let dir = tempdir();
    let r = dir.path().join("root");
    write(&r, "/etc/hosts", "x\n");
    write(&r, "/etc/os-release", "ID=debian\nVERSION_ID=12\n");
    std::fs::create_dir_all(r.join("bin")).unwrap();
    write(
        &r,
        "/var/lib/dpkg/status",
        "Package: a\nStatus: install ok installed\nVersion: 1\n\n".repeat(20000),
    );
    let raw = dir.path().join("b.raw");
    make_disk(&raw, "gpt", &[format!("L:ext4:32:{}::", r.display())]);
    let opts = InspectOptions {
        image_roots: vec![dir.path().to_path_buf()],
        read_budget: 256 * 1024,
        ..Default::default()
    };
    let err = pipeline::inspect_with_stats(&raw, &opts)
        .map(|(r, _)| r)
        .unwrap_err();
    assert_eq!(err.kind(), "read_budget_exceeded", "{err}");
    // The same image within a generous budget.
    let os = only_os(&inspect(&raw)).clone();
    assert_eq!(os.applications.len(), 20000);
}

/// A measuring tool, not a test: inspects `$GUESTKIT_INSPECT_IMAGE` ten times and prints
/// the timings and the report. `GUESTKIT_INSPECT_IMAGE=disk.qcow2 cargo test --release
/// --test integration inspect_os::time_image -- --ignored --nocapture`
#[test]
#[ignore]
fn time_image() {
    let Some(image) = std::env::var_os("GUESTKIT_INSPECT_IMAGE") else {
        panic!("set GUESTKIT_INSPECT_IMAGE to the image to inspect");
    };
    let image = PathBuf::from(image);
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        let (report, stats, t) = inspect_with(&image, InspectOptions::default());
        times.push(t);
        last = Some((report, stats));
    }
    times.sort();
    let (report, stats) = last.unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    eprintln!(
        "{}: min {:.1} ms, median {:.1} ms, max {:.1} ms; {} guest bytes read",
        image.display(),
        times[0].as_secs_f64() * 1e3,
        times[5].as_secs_f64() * 1e3,
        times[9].as_secs_f64() * 1e3,
        stats.bytes_read
    );
}

/// A vfat partition (MBR type 7) with only Windows' markers: `Windows/System32` with
/// `cmd.exe`, a SOFTWARE "hive" of four bytes, `Program Files`.
pub(crate) fn windows_markers_disk(dir: &Path) -> PathBuf {
    let t = dir.join("win");
    write(&t, "/Windows/System32/config/SOFTWARE", "regf");
    write(&t, "/Windows/System32/cmd.exe", "MZ");
    write(&t, "/Program Files/x.txt", "x");
    let raw = dir.join("win.raw");
    make_disk(
        &raw,
        "dos",
        &[format!("7:vfat:40:{}:5A5A0101:WIN", t.display())],
    );
    raw
}

#[test]
fn windows_root_is_recognised_by_its_markers() {
    let dir = tempdir();
    let raw = windows_markers_disk(dir.path());
    let report = inspect(&raw);
    let os = only_os(&report);
    assert_eq!(
        (os.root.as_str(), os.os_type.as_str()),
        ("/dev/sda1", "windows")
    );
    assert_eq!(os.distro.as_deref(), Some("windows"));
    assert!(
        report.warnings.iter().any(|w| w.contains("registry")),
        "{:?}",
        report.warnings
    );
}

/// Deterministic xorshift, so a failing mutation reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Damaged metadata (superblock, group descriptors, inode tables, directory blocks, the
/// partition table) must give a report or a typed error from the whole pipeline, never
/// a panic; the read budget bounds the work.
#[test]
fn mutated_images_give_a_report_or_an_error() {
    use std::os::unix::fs::FileExt;
    let dir = tempdir();
    let r = dir.path().join("root");
    write(
        &r,
        "/etc/os-release",
        "ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"Debian\"\n",
    );
    write(&r, "/etc/hosts", "127.0.0.1 localhost\n");
    write(
        &r,
        "/etc/fstab",
        "LABEL=root / ext4 defaults 0 1\nLABEL=efi /boot/efi vfat defaults 0 1\n",
    );
    write(&r, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    write(
        &r,
        "/var/lib/dpkg/status",
        "Package: a\nStatus: install ok installed\nVersion: 1.0-1\n\n",
    );
    for i in 0..40 {
        write(
            &r,
            &format!("/etc/systemd/system/multi-user.target.wants/s{i}.service"),
            "",
        );
    }
    link(&r, "/bin", "usr/bin");
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy("/bin/sh", r.join("usr/bin/sh")).unwrap();
    let raw = dir.path().join("m.raw");
    make_disk(
        &raw,
        "gpt",
        &[
            "U:vfat:2:-::efi".to_string(),
            format!("L:ext4:6:{}::root", r.display()),
        ],
    );
    let pristine = std::fs::read(&raw).unwrap();
    let report = inspect(&raw);
    assert_eq!(only_os(&report).applications.len(), 1);

    // Offsets worth hitting: the tables at the start, each partition's first 256 KiB
    // (boot sector / superblock / descriptors / inode table / root directory).
    let mut regions: Vec<(u64, u64)> = vec![(0, 34 * 512)];
    for p in &report.partitions {
        regions.push((p.start, 256 * 1024));
    }
    let file = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
    let opts = InspectOptions {
        image_roots: vec![dir.path().to_path_buf()],
        read_budget: 64 * 1024 * 1024,
        ..Default::default()
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut same, mut changed, mut failed) = (0, 0, 0);
    for _ in 0..300 {
        let mut touched = Vec::new();
        for _ in 0..1 + rng.next() % 8 {
            let (start, len) = regions[(rng.next() % regions.len() as u64) as usize];
            let off = start + rng.next() % len;
            let byte = (rng.next() & 0xff) as u8;
            file.write_at(&[byte], off).unwrap();
            touched.push(off);
        }
        match pipeline::inspect_with_stats(&raw, &opts).map(|(r, _)| r) {
            Ok(r) if r == report => same += 1,
            Ok(_) => changed += 1,
            Err(_) => failed += 1,
        }
        for off in touched {
            file.write_at(&pristine[off as usize..off as usize + 1], off)
                .unwrap();
        }
    }
    eprintln!(
        "mutations: {same} unchanged reports, {changed} changed reports, {failed} typed errors"
    );
    // The mutations must reach something that matters, or the test proves nothing.
    assert!(
        changed + failed > 30,
        "only {changed} + {failed} mutations had an effect"
    );
}

/// Damage in the image format met while reading files (here: qcow2 L2 entries made
/// unaligned) fails the job as an image error even though the filesystem and OS layers
/// only see failed reads.
#[test]
fn qcow2_damage_under_the_filesystem_fails_the_job() {
    use std::os::unix::fs::FileExt;
    let dir = tempdir();
    let r = dir.path().join("root");
    write(&r, "/etc/hosts", "127.0.0.1 localhost\n");
    write(&r, "/etc/os-release", "ID=alpine\nVERSION_ID=3.19.1\n");
    std::fs::create_dir_all(r.join("bin")).unwrap();
    for i in 0..64 {
        write(&r, &format!("/usr/share/data/f{i}"), vec![i as u8; 70_000]);
    }
    let raw = dir.path().join("d.raw");
    make_disk(&raw, "none", &[format!("L:ext4:16:{}::", r.display())]);
    let qcow = dir.path().join("d.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow));
    assert_eq!(only_os(&inspect(&qcow)).distro.as_deref(), Some("alpine"));

    // Header: l1_size at 36 (be32), l1_table_offset at 40 (be64); cluster_bits at 20.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&qcow)
        .unwrap();
    let be = |off: u64, len: usize| {
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, off).unwrap();
        b.iter().fold(0u64, |acc, &x| acc << 8 | x as u64)
    };
    let cluster_bits = be(20, 4);
    let l1 = be(40, 8);
    let l2 = be(l1, 8) & 0x00ff_ffff_ffff_fe00;
    assert!(l2 != 0);
    // Every allocated cluster after the first (which holds the superblock): offset + 512.
    let mut damaged = 0;
    for i in 1..(1u64 << (cluster_bits - 3)) {
        let entry = be(l2 + i * 8, 8);
        if entry & 0x00ff_ffff_ffff_fe00 != 0 {
            f.write_at(&(entry + 512).to_be_bytes(), l2 + i * 8)
                .unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let opts = InspectOptions {
        image_roots: vec![dir.path().to_path_buf()],
        ..Default::default()
    };
    let err = pipeline::inspect_with_stats(&qcow, &opts)
        .map(|(r, _)| r)
        .unwrap_err();
    assert_eq!(err.kind(), "image_error", "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("qcow2") && msg.contains("not cluster aligned"),
        "{msg}"
    );
}
