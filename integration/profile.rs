//! `guestkit.profile` on real disk images: trees written here, put on a GPT disk by
//! `mkfs.ext4 -d` (which keeps modes and owners) through `make-disk.sh`, and profiled
//! end to end (image -> partitions -> ext4 -> OS -> checks).
//!
//! - The insecure tree plants one weakness per setting and records, as it writes each
//!   file, the finding id, file and line that setting must produce: the profile must
//!   return exactly that set, with the written line as evidence.
//! - The hardened tree is the same OS with safe settings: no findings at all.
//! - The Debian minbase tree (debootstrap, cached) is checked against `find` and `grep`
//!   run on the tree itself.
//! - Through the broker: a profile job completes with its findings; an unknown profile
//!   name is rejected.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use guestkit_worker::inspect::pipeline::{self, InspectOptions};
use guestkit_worker::profile::{
    profile_image, ProfileKind, ProfileOutput, ProfileRequest, Severity,
};
use serde_json::json;

use crate::common::broker::{Pool, WorkerProcess, BROKER_LOCK};
use crate::common::{fixture_cache, fixtures, run, tempdir};

const ROOT_UUID: &str = "5e0c2a9b-7f41-4d3c-8a26-1b9e0f4c7d52";

/// (id, evidence file, evidence line)
type Key = (String, Option<String>, Option<u32>);

/// A tree being written, and the findings it must produce.
struct Tree {
    root: PathBuf,
    expected: BTreeSet<Key>,
    /// Expected evidence text of the findings that point at a line.
    texts: BTreeMap<Key, String>,
}

impl Tree {
    fn new(root: &Path) -> Tree {
        std::fs::create_dir_all(root).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        Tree {
            root: root.to_path_buf(),
            expected: BTreeSet::new(),
            texts: BTreeMap::new(),
        }
    }

    fn host(&self, guest: &str) -> PathBuf {
        self.root.join(guest.trim_start_matches('/'))
    }

    /// Creates the parent directories of `guest` with mode 0755 (whatever the umask).
    fn parents(&self, guest: &str) {
        let mut p = self.root.clone();
        let comps: Vec<&str> = guest.split('/').filter(|c| !c.is_empty()).collect();
        for c in &comps[..comps.len() - 1] {
            p.push(c);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }

    fn dir(&self, guest: &str, mode: u32) {
        self.parents(&format!("{guest}/x"));
        std::fs::set_permissions(self.host(guest), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Writes a file of `lines`; a line tagged with an id must produce that finding at
    /// that line, with the line as evidence.
    fn lines(&mut self, guest: &str, lines: &[(&str, Option<&str>)]) {
        let mut text = String::new();
        for (i, (line, id)) in lines.iter().enumerate() {
            text.push_str(line);
            text.push('\n');
            if let Some(id) = id {
                let key = (id.to_string(), Some(guest.to_string()), Some(i as u32 + 1));
                self.expected.insert(key.clone());
                self.texts.insert(key, line.trim().to_string());
            }
        }
        self.file(guest, &text, 0o644);
    }

    fn file(&self, guest: &str, content: &str, mode: u32) {
        self.parents(guest);
        std::fs::write(self.host(guest), content).unwrap();
        std::fs::set_permissions(self.host(guest), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn link(&self, guest: &str, target: &str) {
        self.parents(guest);
        symlink(target, self.host(guest)).unwrap();
    }

    fn owner(&self, guest: &str, uid: u32, gid: u32) {
        chown(self.host(guest), Some(uid), Some(gid)).unwrap();
    }

    /// A finding about a file as a whole, or about something missing.
    fn expect(&mut self, id: &str, file: Option<&str>) {
        self.expected
            .insert((id.to_string(), file.map(str::to_string), None));
    }

    /// The same Debian-like base in both trees: release files, usr-merge links, a
    /// shell, the files that make it a root.
    fn base(&mut self, hostname: &str) {
        self.file(
            "/etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
            0o644,
        );
        self.file("/etc/debian_version", "12.5\n", 0o644);
        self.file("/etc/hostname", &format!("{hostname}\n"), 0o644);
        self.file("/etc/hosts", "127.0.0.1 localhost\n", 0o644);
        self.file(
            "/etc/shells",
            "/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n",
            0o644,
        );
        self.link("/bin", "usr/bin");
        self.link("/sbin", "usr/sbin");
        self.link("/lib", "usr/lib");
        self.dir("/usr/sbin", 0o755);
        self.file("/usr/bin/bash", "#!ELF stand-in\n", 0o755);
        self.file("/usr/bin/passwd", "#!ELF stand-in\n", 0o4755);
        self.file(
            "/usr/lib/systemd/system/ssh.service",
            "[Service]\nExecStart=/usr/sbin/sshd -D\n",
            0o644,
        );
        self.file(
            "/usr/lib/systemd/system/auditd.service",
            "[Service]\nExecStart=/sbin/auditd\n",
            0o644,
        );
        self.file(
            "/var/lib/dpkg/status",
            "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u5\n\
             Description: Debian base system miscellaneous files\n\n\
             Package: auditd\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:3.0.9-1\n\
             Description: User space tools for security auditing\n",
            0o644,
        );
        self.dir("/tmp", 0o1777);
        self.dir("/etc/sticky", 0o1777);
        self.dir("/root", 0o700);
    }
}

/// Every weakness the checks know, one per setting.
fn insecure_tree(root: &Path) -> Tree {
    let mut t = Tree::new(root);
    t.base("insecure-01");
    let fstab = [
        (
            format!("UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1"),
            None,
        ),
        ("tmpfs /tmp tmpfs defaults 0 0".into(), Some("MNT-001")),
    ];
    let fstab: Vec<(&str, Option<&str>)> = fstab.iter().map(|(l, i)| (l.as_str(), *i)).collect();
    t.lines("/etc/fstab", &fstab);

    t.lines(
        "/etc/passwd",
        &[
            ("root:x:0:0:root:/root:/bin/bash", None),
            ("daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin", None),
            ("toor:x:0:0:second root:/root:/bin/bash", Some("ACC-001")),
            ("alice:x:1000:1000:Alice:/home/alice:/bin/bash", None),
            ("guest:x:1001:1001::/home/guest:/bin/bash", None),
            ("bob:x:1000:1000::/home/bob:/bin/sh", Some("ACC-003")),
            (
                "legacy:$6$c2FsdA$planted.hash.in.passwd:1002:1002::/home/legacy:/usr/sbin/nologin",
                Some("ACC-005"),
            ),
        ],
    );
    // The hash never leaves the worker: the evidence quotes the line redacted.
    let key = (
        "ACC-005".to_string(),
        Some("/etc/passwd".to_string()),
        Some(7),
    );
    t.texts.insert(
        key,
        "legacy:<redacted>:1002:1002::/home/legacy:/usr/sbin/nologin".into(),
    );
    t.lines(
        "/etc/shadow",
        &[
            ("root:$6$c2FsdA$root.hash:19700:0:99999:7:::", None),
            ("daemon:*:19700:0:99999:7:::", None),
            ("toor:$6$c2FsdA$toor.hash:19700:0:99999:7:::", None),
            ("alice:$6$c2FsdA$alice.hash:19700:0:99999:7:::", None),
            ("guest::19700:0:99999:7:::", Some("ACC-002")),
            ("bob:!:19700:0:99999:7:::", None),
        ],
    );
    // Written 0644 by `lines`: world-readable.
    t.expect("ACC-004", Some("/etc/shadow"));

    t.lines(
        "/etc/ssh/sshd_config",
        &[
            ("# planted weaknesses", None),
            ("Include /etc/ssh/sshd_config.d/*.conf", None),
            ("PermitRootLogin yes", Some("SSH-001")),
            ("PasswordAuthentication no", None),
            ("PermitEmptyPasswords yes", Some("SSH-003")),
            ("X11Forwarding yes", Some("SSH-005")),
            ("MaxAuthTries 10", Some("SSH-006")),
            ("Match User backup", None),
            ("    PermitRootLogin no", None),
        ],
    );
    // Included first, so it wins over the main file's `PasswordAuthentication no`.
    t.lines(
        "/etc/ssh/sshd_config.d/10.conf",
        &[
            ("PasswordAuthentication yes", Some("SSH-002")),
            ("Protocol 1", Some("SSH-004")),
        ],
    );
    t.file("/etc/ssh/ssh_host_ed25519_key", "not a real key\n", 0o644);
    t.expect("SSH-010", Some("/etc/ssh/ssh_host_ed25519_key"));

    t.lines(
        "/etc/selinux/config",
        &[
            ("# SELinux", None),
            ("SELINUX=permissive", Some("MAC-002")),
            ("SELINUXTYPE=targeted", None),
        ],
    );

    // sysctl: the vendor file's ASLR=0 is overridden by /etc to 1, still weak; its
    // protected_symlinks=0 is overridden to 1 by /etc/sysctl.conf, which is fine.
    t.lines(
        "/usr/lib/sysctl.d/10-base.conf",
        &[
            ("kernel.randomize_va_space = 0", None),
            ("net.ipv4.ip_forward = 1", Some("SYS-001")),
            ("fs.protected_symlinks = 0", None),
        ],
    );
    t.lines(
        "/etc/sysctl.d/90-override.conf",
        &[
            ("kernel.randomize_va_space = 1", Some("SYS-006")),
            ("net/ipv4/tcp_syncookies = 0", Some("SYS-005")),
        ],
    );
    t.lines(
        "/etc/sysctl.conf",
        &[
            ("fs.protected_symlinks = 1", None),
            ("kernel.dmesg_restrict = 0", Some("SYS-008")),
        ],
    );

    t.lines(
        "/etc/login.defs",
        &[
            ("# shadow password suite configuration", None),
            ("PASS_MAX_DAYS\t99999", Some("LOG-001")),
            ("PASS_MIN_DAYS\t0", Some("LOG-002")),
            ("PASS_WARN_AGE\t7", None),
            ("UMASK\t\t022", Some("LOG-004")),
            ("ENCRYPT_METHOD SHA512", None),
        ],
    );

    t.lines(
        "/etc/xinetd.d/telnet",
        &[
            ("service telnet", None),
            ("{", None),
            ("    socket_type = stream", None),
            ("    server = /usr/sbin/in.telnetd", None),
            ("    disable = no", Some("SVC-002")),
            ("}", None),
        ],
    );
    t.lines(
        "/etc/inetd.conf",
        &[
            (
                "#telnet stream tcp nowait root /usr/sbin/tcpd /usr/sbin/in.telnetd",
                None,
            ),
            (
                "ftp stream tcp nowait root /usr/sbin/tcpd /usr/sbin/in.ftpd",
                Some("SVC-003"),
            ),
        ],
    );
    t.file(
        "/usr/lib/systemd/system/rsh.socket",
        "[Socket]\nListenStream=514\n",
        0o644,
    );
    t.link(
        "/etc/systemd/system/sockets.target.wants/rsh.socket",
        "/usr/lib/systemd/system/rsh.socket",
    );
    t.expect(
        "SVC-001",
        Some("/etc/systemd/system/sockets.target.wants/rsh.socket"),
    );

    // ufw installed but off: no firewall.
    t.lines("/etc/ufw/ufw.conf", &[("ENABLED=no", None)]);
    t.expect("FW-001", None);
    // auditd's unit is in the base, not enabled.
    t.expect("AUD-001", Some("/usr/lib/systemd/system/auditd.service"));

    t.file("/usr/bin/rootshell", "#!ELF stand-in\n", 0o4755);
    t.expect("SUID-001", Some("/usr/bin/rootshell"));
    t.file("/usr/local/bin/games-helper", "#!ELF stand-in\n", 0o2755);
    t.expect("SUID-002", Some("/usr/local/bin/games-helper"));

    t.file(
        "/etc/cron.d/job",
        "* * * * * root /usr/local/bin/job\n",
        0o666,
    );
    t.expect("WW-001", Some("/etc/cron.d/job"));
    t.file(
        "/usr/lib/systemd/system/backdoor.service",
        "[Service]\n",
        0o666,
    );
    t.expect("WW-001", Some("/usr/lib/systemd/system/backdoor.service"));
    t.file("/etc/crontab", "SHELL=/bin/sh\n", 0o644);
    t.expect("CRON-001", Some("/etc/cron.allow"));
    t.expect("CRON-002", Some("/etc/crontab"));
    t.file("/etc/at.deny", "nobody\n", 0o640);
    t.expect("AT-001", Some("/etc/at.allow"));

    t.lines(
        "/etc/sudoers",
        &[
            ("root ALL=(ALL:ALL) ALL", None),
            ("@includedir /etc/sudoers.d", None),
        ],
    );
    t.lines(
        "/etc/sudoers.d/90-cloud",
        &[("alice ALL=(ALL) NOPASSWD:ALL", Some("SUDO-001"))],
    );
    t.lines("/etc/hosts.equiv", &[("+", Some("TRUST-001"))]);
    t.lines("/home/alice/.rhosts", &[("+ +", Some("TRUST-002"))]);
    t
}

/// The same OS with every setting safe.
fn hardened_tree(root: &Path) -> Tree {
    let mut t = Tree::new(root);
    t.base("hardened-01");
    t.file(
        "/etc/fstab",
        &format!("UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\ntmpfs /tmp tmpfs defaults,nodev,nosuid,noexec 0 0\n"),
        0o644,
    );
    t.file(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
         alice:x:1000:1000:Alice:/home/alice:/bin/bash\nsvc:x:999:999::/nonexistent:/usr/sbin/nologin\n",
        0o644,
    );
    t.file(
        "/etc/shadow",
        "root:$6$c2FsdA$root.hash:19700:1:90:14:::\ndaemon:*:19700:1:90:14:::\nalice:$6$c2FsdA$alice.hash:19700:1:90:14:::\nsvc:!:19700::::::\n",
        0o640,
    );
    t.owner("/etc/shadow", 0, 42);
    t.file(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\nPasswordAuthentication no\nX11Forwarding no\nMaxAuthTries 4\n",
        0o644,
    );
    t.file(
        "/etc/ssh/sshd_config.d/10.conf",
        "PermitEmptyPasswords no\nIgnoreRhosts yes\n",
        0o644,
    );
    t.file("/etc/ssh/ssh_host_ed25519_key", "not a real key\n", 0o600);
    t.file(
        "/etc/selinux/config",
        "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
        0o644,
    );
    // A weak vendor value overridden by /etc.
    t.file(
        "/usr/lib/sysctl.d/10-base.conf",
        "kernel.randomize_va_space = 0\nfs.protected_symlinks = 1\n",
        0o644,
    );
    t.file(
        "/etc/sysctl.d/90-hardening.conf",
        "kernel.randomize_va_space = 2\nnet.ipv4.tcp_syncookies = 1\nkernel.kptr_restrict = 2\n",
        0o644,
    );
    t.file(
        "/etc/login.defs",
        "PASS_MAX_DAYS 90\nPASS_MIN_DAYS 1\nPASS_WARN_AGE 14\nUMASK 027\nENCRYPT_METHOD YESCRYPT\n",
        0o644,
    );
    t.file(
        "/etc/xinetd.d/telnet",
        "service telnet\n{\n    disable = yes\n}\n",
        0o644,
    );
    t.file(
        "/etc/inetd.conf",
        "#ftp stream tcp nowait root /usr/sbin/tcpd in.ftpd\n",
        0o644,
    );
    t.file("/etc/ufw/ufw.conf", "ENABLED=yes\nLOGLEVEL=low\n", 0o644);
    t.link(
        "/etc/systemd/system/multi-user.target.wants/auditd.service",
        "/usr/lib/systemd/system/auditd.service",
    );
    t.file("/etc/crontab", "SHELL=/bin/sh\n", 0o600);
    t.file("/etc/cron.allow", "root\n", 0o600);
    t.file("/etc/at.deny", "nobody\n", 0o640);
    t.file("/etc/at.allow", "root\n", 0o600);
    t.file(
        "/etc/sudoers",
        "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
        0o440,
    );
    t.file("/etc/sudoers.d/README", "# nothing\n", 0o440);
    t.file(
        "/etc/cron.d/job",
        "* * * * * root /usr/local/bin/job\n",
        0o644,
    );
    t
}

/// Puts `tree` on a GPT disk (one ext4 partition) with make-disk.sh; qcow2 when asked.
fn disk(dir: &Path, tree: &Tree, name: &str, qcow2: bool) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let raw = images.join(format!("{name}.raw"));
    run(Command::new(fixtures().join("make-disk.sh"))
        .arg(&raw)
        .arg("gpt")
        .arg(format!(
            "L:ext4:48:{}:{ROOT_UUID}:{name}",
            tree.root.display()
        )));
    if !qcow2 {
        return raw;
    }
    let out = images.join(format!("{name}.qcow2"));
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-O", "qcow2"])
        .arg(&raw)
        .arg(&out));
    std::fs::remove_file(&raw).unwrap();
    out
}

fn profile(image: &Path, request: &ProfileRequest) -> (ProfileOutput, Duration) {
    let opts = InspectOptions {
        image_roots: vec![image.parent().unwrap().to_path_buf()],
        ..InspectOptions::default()
    };
    let start = Instant::now();
    let out = profile_image(image, &opts, request)
        .unwrap_or_else(|e| panic!("profile {}: {e}", image.display()));
    (out, start.elapsed())
}

fn keys(out: &ProfileOutput) -> BTreeSet<Key> {
    out.findings
        .iter()
        .map(|f| (f.id.clone(), f.evidence.file.clone(), f.evidence.line))
        .collect()
}

/// The summary must count exactly the findings listed.
fn assert_summary(out: &ProfileOutput) {
    let count = |s: Severity| out.findings.iter().filter(|f| f.severity == s).count();
    let s = &out.summary;
    assert_eq!(
        (s.critical, s.high, s.medium, s.low, s.info, s.total),
        (
            count(Severity::Critical),
            count(Severity::High),
            count(Severity::Medium),
            count(Severity::Low),
            count(Severity::Info),
            out.findings.len()
        )
    );
    // Sorted: most severe first, then by id.
    let order: Vec<(std::cmp::Reverse<Severity>, &str)> = out
        .findings
        .iter()
        .map(|f| (std::cmp::Reverse(f.severity), f.id.as_str()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[test]
fn insecure_image_yields_exactly_the_planted_findings() {
    let dir = tempdir();
    let tree = insecure_tree(&dir.path().join("tree"));
    let image = disk(dir.path(), &tree, "insecure", true);

    let (out, took) = profile(&image, &ProfileRequest::default());
    eprintln!(
        "profile of the insecure qcow2: {:.1} ms, {} findings, {} guest bytes read by the inspection",
        took.as_secs_f64() * 1000.0,
        out.findings.len(),
        out.bytes_read
    );
    let os = &out.inspection.operating_systems;
    assert_eq!(os.len(), 1);
    assert_eq!(
        (os[0].distro.as_deref(), os[0].hostname.as_deref()),
        (Some("debian"), Some("insecure-01"))
    );
    assert_eq!(out.inspection.warnings, Vec::<String>::new());

    let got = keys(&out);
    let missing: Vec<_> = tree.expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&tree.expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nunexpected: {extra:#?}"
    );
    assert_eq!(
        out.findings.len(),
        tree.expected.len(),
        "one finding per planted setting"
    );
    for f in &out.findings {
        assert_eq!(f.os_root, "/dev/sda1");
        assert!(!f.title.is_empty() && !f.remediation.is_empty(), "{f:?}");
        let key = (f.id.clone(), f.evidence.file.clone(), f.evidence.line);
        if let Some(text) = tree.texts.get(&key) {
            assert_eq!(&f.evidence.text, text, "{}", f.id);
        }
    }
    // Absence findings say what was looked for.
    let fw = out.findings.iter().find(|f| f.id == "FW-001").unwrap();
    assert!(
        fw.evidence.text.contains("ufw") && fw.evidence.text.contains("firewalld"),
        "{fw:?}"
    );
    // Password hashes on the image never reach the result.
    let json = serde_json::to_string(&out).unwrap();
    assert!(!json.contains("$6$"), "a hash leaked");
    assert_eq!(
        serde_json::to_value(&out).unwrap()["summary"]["total"],
        out.findings.len()
    );
    assert_summary(&out);
    assert!(
        out.summary.critical >= 3 && out.summary.info >= 1,
        "{:?}",
        out.summary
    );

    // The threshold drops exactly the findings below it.
    let high = ProfileRequest {
        threshold: Severity::High,
        ..ProfileRequest::default()
    };
    let (filtered, _) = profile(&image, &high);
    let want: BTreeSet<Key> = out
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .map(|f| (f.id.clone(), f.evidence.file.clone(), f.evidence.line))
        .collect();
    assert_eq!(keys(&filtered), want);
    assert!(want.len() < got.len() && !want.is_empty());
    assert_eq!(filtered.severity_threshold, Severity::High);
    assert_summary(&filtered);

    // Each profile alone returns exactly its part of the full run.
    for kind in ProfileKind::ALL {
        let request = ProfileRequest {
            profiles: vec![kind],
            ..ProfileRequest::default()
        };
        let (part, _) = profile(&image, &request);
        let want: BTreeSet<Key> = out
            .findings
            .iter()
            .filter(|f| f.profile == kind)
            .map(|f| (f.id.clone(), f.evidence.file.clone(), f.evidence.line))
            .collect();
        assert!(!want.is_empty(), "{kind}");
        assert_eq!(keys(&part), want, "{kind}");
        assert_eq!(part.profiles, vec![kind]);
    }
}

#[test]
fn hardened_image_yields_no_findings() {
    let dir = tempdir();
    let tree = hardened_tree(&dir.path().join("tree"));
    assert!(tree.expected.is_empty());
    let image = disk(dir.path(), &tree, "hardened", false);
    let (out, took) = profile(&image, &ProfileRequest::default());
    eprintln!(
        "profile of the hardened raw image: {:.1} ms",
        took.as_secs_f64() * 1000.0
    );
    let os = &out.inspection.operating_systems[0];
    // The facts the absence checks rely on were really found.
    assert_eq!(os.security.firewall.as_deref(), Some("ufw"));
    assert_eq!(os.security.selinux.as_deref(), Some("enforcing"));
    assert!(os
        .services
        .iter()
        .any(|s| s.name == "auditd.service" && s.enabled));
    assert_eq!(out.findings, Vec::new(), "{:#?}", out.findings);
    assert_eq!(out.summary.total, 0);
    assert_eq!(out.inspection.warnings, Vec::<String>::new());
}

// ---------------------------------------------------------------- Debian minbase

/// `find` over the tree: paths (guest form) under `roots` matching `tests`.
fn find(tree: &Path, roots: &[&str], tests: &[&str]) -> BTreeSet<String> {
    let mut cmd = Command::new("find");
    for r in roots {
        let p = tree.join(r.trim_start_matches('/'));
        if p.is_dir() && !p.is_symlink() {
            cmd.arg(p);
        }
    }
    cmd.args(tests);
    let out = run(&mut cmd);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| format!("/{}", Path::new(l).strip_prefix(tree).unwrap().display()))
        .collect()
}

/// 1-based line of the first `^KEY\s` in a file, by grep.
fn grep_line(file: &Path, key: &str) -> Option<u32> {
    let out = Command::new("grep")
        .arg("-n")
        .arg("-E")
        .arg(format!("^{key}[[:space:]]"))
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()?
        .split(':')
        .next()?
        .parse()
        .ok()
}

#[test]
fn debian_minbase_findings_match_the_tree() {
    let dir = tempdir();
    run(Command::new(fixtures().join("debian-disk.sh"))
        .arg("bookworm")
        .arg(fixture_cache())
        .arg(dir.path()));
    let tree = dir.path().join("root");
    let image = dir.path().join("disk.qcow2");
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..3 {
        let (o, took) = profile(&image, &ProfileRequest::default());
        best = best.min(took);
        out = Some(o);
    }
    let out = out.unwrap();
    let opts = InspectOptions {
        image_roots: vec![dir.path().to_path_buf()],
        ..InspectOptions::default()
    };
    let mut inspect_best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        pipeline::inspect_with_stats(&image, &opts)
            .map(|(r, _)| r)
            .unwrap();
        inspect_best = inspect_best.min(start.elapsed());
    }
    eprintln!(
        "debian qcow2 inspection alone: best of 3 {:.1} ms",
        inspect_best.as_secs_f64() * 1000.0
    );
    let by_id = |id: &str| {
        out.findings
            .iter()
            .filter(|f| f.id == id)
            .collect::<Vec<_>>()
    };
    eprintln!(
        "debian qcow2 profile: best of 3 {:.1} ms, {} findings: {:?}",
        best.as_secs_f64() * 1000.0,
        out.findings.len(),
        out.findings
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>()
    );
    assert_summary(&out);

    // World-writable entries: what find says, under the walked trees (usr-merged:
    // /bin and /sbin are links into /usr).
    let ww_roots = [
        "/etc",
        "/usr/bin",
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/usr/lib/systemd",
        "/var/spool/cron",
    ];
    let ww = find(
        &tree,
        &ww_roots,
        &[
            "-perm", "-0002", "!", "-type", "l", "!", "(", "-type", "d", "-perm", "-1000", ")",
        ],
    );
    let reported: BTreeSet<String> = by_id("WW-001")
        .iter()
        .filter_map(|f| f.evidence.file.clone())
        .collect();
    assert_eq!(reported, ww);

    // Set-id files: every one reported is set-id per find, with the right kind.
    let setid_roots = [
        "/usr/bin",
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/usr/lib",
        "/usr/libexec",
        "/usr/local/lib",
        "/opt",
    ];
    let setuid = find(&tree, &setid_roots, &["-type", "f", "-perm", "-4000"]);
    let setgid = find(
        &tree,
        &setid_roots,
        &["-type", "f", "-perm", "-2000", "!", "-perm", "-4000"],
    );
    eprintln!("set-id files by find: setuid {setuid:?}, setgid {setgid:?}");
    for f in by_id("SUID-001") {
        assert!(setuid.contains(f.evidence.file.as_ref().unwrap()), "{f:?}");
    }
    for f in by_id("SUID-002") {
        assert!(setgid.contains(f.evidence.file.as_ref().unwrap()), "{f:?}");
    }
    assert!(
        !setuid.is_empty(),
        "minbase has su/passwd/mount: the walk saw none?"
    );

    // login.defs: Debian ships PASS_MAX_DAYS 99999, PASS_MIN_DAYS 0 and UMASK 022.
    let defs = tree.join("etc/login.defs");
    for (id, key) in [
        ("LOG-001", "PASS_MAX_DAYS"),
        ("LOG-002", "PASS_MIN_DAYS"),
        ("LOG-004", "UMASK"),
    ] {
        let line =
            grep_line(&defs, key).unwrap_or_else(|| panic!("{key} in the tree's login.defs"));
        let found = by_id(id);
        assert_eq!(found.len(), 1, "{id}");
        assert_eq!(
            (found[0].evidence.file.as_deref(), found[0].evidence.line),
            (Some("/etc/login.defs"), Some(line))
        );
    }
    // /etc/cron.d exists (e2fsprogs drops a job there) but cron is not installed.
    assert!(tree.join("etc/cron.d").is_dir() && !tree.join("usr/bin/crontab").exists());
    assert!(by_id("CRON-001").is_empty());
    // No firewall and no MAC in minbase; the shadow file is 0640.
    assert_eq!(by_id("FW-001").len(), 1);
    assert_eq!(by_id("MAC-003").len(), 1);
    assert!(by_id("ACC-004").is_empty());
    let shadow_mode = std::fs::metadata(tree.join("etc/shadow"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(shadow_mode & 0o006, 0);
    // Accounts: root is locked (`*`) and alice has a hash, as debian-disk.sh wrote.
    assert!(
        out.findings.iter().all(|f| !f.id.starts_with("ACC-")),
        "{:#?}",
        out.findings
    );
}

// ---------------------------------------------------------------- broker

fn profile_job(job_id: &str, data: serde_json::Value) -> serde_json::Value {
    json!({
        "version": "1.0", "job_id": job_id, "kind": "VMOperation",
        "operation": "guestkit.profile",
        "payload": { "type": "guestkit.profile.v1", "data": data },
        "execution": { "max_attempts": 1 },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_jobs_through_the_broker() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let tree = insecure_tree(&dir.path().join("tree"));
    let image = disk(dir.path(), &tree, "insecure", true);
    let roots = dir.path().join("images");

    let pool = Pool::new("profile").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--image-root", roots.to_str().unwrap()]);
    pool.publish(&profile_job(
        "job-profile-good",
        json!({"image": {"path": image, "format": "qcow2"}, "profiles": ["security", "hardening"], "options": {"severity_threshold": "medium"}}),
    ))
    .await;
    pool.publish(&profile_job(
        "job-profile-unknown",
        json!({"image": {"path": image}, "profiles": ["security", "pci-dss"]}),
    ))
    .await;
    let results = pool.results(2, Duration::from_secs(120)).await;
    let get = |id: &str| {
        results
            .iter()
            .find(|r| r.body["job_id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };

    let good = get("job-profile-good");
    assert_eq!(good.body["status"], "completed", "{:#}", good.body);
    assert_eq!(
        good.routing_key,
        format!("{}.completed.guestkit.profile", pool.pool())
    );
    let output = &good.body["output"];
    assert_eq!(output["profiles"], json!(["security", "hardening"]));
    assert_eq!(output["severity_threshold"], "medium");
    let findings = output["findings"].as_array().unwrap();
    // Exactly the planted findings of those profiles at medium or above.
    let want: BTreeSet<Key> = {
        let request = ProfileRequest {
            profiles: vec![ProfileKind::Security, ProfileKind::Hardening],
            threshold: Severity::Medium,
        };
        keys(&profile(&image, &request).0)
    };
    let got: BTreeSet<Key> = findings
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["evidence"]["file"].as_str().map(str::to_string),
                f["evidence"]["line"].as_u64().map(|l| l as u32),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        got.iter().all(|k| tree.expected.contains(k)),
        "only planted findings"
    );
    assert!(got.contains(&(
        "SSH-001".to_string(),
        Some("/etc/ssh/sshd_config".to_string()),
        Some(3)
    )));
    assert_eq!(output["summary"]["total"], findings.len());
    for sev in ["critical", "high", "medium", "low", "info"] {
        let n = findings.iter().filter(|f| f["severity"] == sev).count();
        assert_eq!(output["summary"][sev], n, "{sev}");
    }
    assert_eq!(output["summary"]["low"], 0);
    assert_eq!(
        output["inspection"]["operating_systems"][0]["hostname"],
        "insecure-01"
    );

    let bad = get("job-profile-unknown");
    assert_eq!(bad.body["status"], "rejected", "{:#}", bad.body);
    assert_eq!(bad.body["error"]["kind"], "invalid_payload");
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pci-dss"),
        "{:#}",
        bad.body
    );
    pool.cleanup().await;
}
