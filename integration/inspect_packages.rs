//! Package-database parsers against independent oracles.
//!
//! - dpkg: this machine's own `/var/lib/dpkg/status` (and a copy with packages put in
//!   other states: held, removed with config-files, half-configured, unpacked, ...)
//!   against `dpkg-query --admindir`.
//! - rpm: a real `rpmdb.sqlite` built by Debian's `rpm` from packages built by `rpmbuild`
//!   (epochs, noarch and x86_64, long summaries, headers larger than a page, enough rows
//!   for an interior b-tree page), against `rpm -qa --qf`; plus a real write-ahead log
//!   left un-checkpointed by holding a reader open while rpm installs more packages.
//! - rpm < 4.16: the same real headers loaded into Berkeley DB hash files by the real
//!   `db5.3_load` (Debian package `db5.3-util`), against the same `rpm -qa` output.
//! - rpm ndb (SUSE's `Packages.db`): Debian's rpm has no ndb backend, so rpm is built
//!   from Debian's source with `--enable-ndb` (`fixtures/rpm-ndb.sh`); the same packages
//!   installed, some erased and one installed again, against that rpm's `rpm -qa`.
//! - apk and pacman: no tool on this machine writes those databases, so the fixtures are
//!   hand-written from the formats' documentation and the expected values are written
//!   next to them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use guestkit_worker::inspect::os::packages::{
    parse_apk_installed, parse_dpkg_status, parse_pacman_desc, parse_rpm_header, parse_rpmdb_bdb,
    parse_rpmdb_ndb, parse_rpmdb_sqlite, parse_rpmdb_sqlite_with_wal,
};
use guestkit_worker::inspect::report::Application;

use crate::common::{fixture_cache, fixtures, run, sh, tempdir};

// ---------------------------------------------------------------------------- dpkg

/// `[epoch:]version[-release]`, the form dpkg prints (epoch 0, which we report for a
/// version without one, is not printed).
fn deb_version(app: &Application) -> String {
    let mut v = String::new();
    if let Some(e) = app.epoch.filter(|&e| e != 0) {
        v.push_str(&format!("{e}:"));
    }
    v.push_str(&app.version);
    if let Some(r) = &app.release {
        v.push_str(&format!("-{r}"));
    }
    v
}

/// One installed package as `dpkg-query` prints it: name, full version, arch, summary
/// (`${binary:Summary}`), homepage, source package (`${source:Package}`, which is the
/// package's own name when it has no `Source` field) and the long description (the
/// continuation lines of `${Description}`, unfolded here: dpkg prints them as stored).
type DebRow = (String, String, String, String, String, String, String);

/// Every package `dpkg-query` says is installed (state letter `i` in
/// `${db:Status-Abbrev}`).
fn dpkg_query_installed(admindir: &Path) -> BTreeSet<DebRow> {
    // Records end with RS (0x1e): a long description spans lines.
    let out = run(Command::new("dpkg-query").arg(format!("--admindir={}", admindir.display())).args([
        "-W",
        "-f",
        "${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\t${binary:Summary}\t${Homepage}\t${source:Package}\t${Description}\x1e",
    ]));
    String::from_utf8_lossy(&out)
        .split('\u{1e}')
        .filter(|r| !r.is_empty())
        .filter_map(|record| {
            let f: Vec<&str> = record.splitn(8, '\t').collect();
            assert_eq!(f.len(), 8, "dpkg-query record {record:?}");
            let long: Vec<&str> = f[7]
                .lines()
                .skip(1)
                .map(|l| {
                    let l = l.strip_prefix([' ', '\t']).unwrap_or(l);
                    if l.trim_end() == "." {
                        ""
                    } else {
                        l
                    }
                })
                .collect();
            // Our summaries are trimmed; dpkg keeps a trailing space some packages have.
            (f[3].as_bytes().get(1) == Some(&b'i')).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[4].trim().to_string(),
                    f[5].trim().to_string(),
                    f[6].to_string(),
                    long.join("\n").trim().to_string(),
                )
            })
        })
        .collect()
}

/// Asserts two sets are equal, printing only their differences.
fn assert_same<T: Ord + std::fmt::Debug>(ours: &BTreeSet<T>, oracle: &BTreeSet<T>) {
    let only_ours: Vec<_> = ours.difference(oracle).collect();
    let only_oracle: Vec<_> = oracle.difference(ours).collect();
    assert!(
        only_ours.is_empty() && only_oracle.is_empty(),
        "only in ours: {only_ours:#?}\nonly in the oracle: {only_oracle:#?}"
    );
}

/// A dpkg admin directory (what `dpkg-query --admindir` reads) holding `status`.
fn admindir_with(status: &[u8]) -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("updates")).unwrap();
    std::fs::write(dir.path().join("status"), status).unwrap();
    dir
}

fn ours_dpkg(status: &[u8]) -> BTreeSet<DebRow> {
    parse_dpkg_status(status)
        .expect("parse dpkg status")
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                deb_version(a),
                a.arch.clone().unwrap_or_default(),
                a.summary.clone().unwrap_or_default(),
                a.url.clone().unwrap_or_default(),
                // dpkg's ${source:Package} falls back to the package name; we report null.
                a.source_package.clone().unwrap_or_else(|| a.name.clone()),
                a.description.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn dpkg_status_of_this_machine_matches_dpkg_query() {
    // A private copy, so a concurrent `apt-get install` cannot change it between our
    // parse and the oracle's.
    let status = std::fs::read("/var/lib/dpkg/status").expect("read /var/lib/dpkg/status");
    let admin = admindir_with(&status);
    let start = Instant::now();
    let apps = parse_dpkg_status(&status).unwrap();
    let elapsed = start.elapsed();
    eprintln!(
        "dpkg: parsed {} installed packages from {} bytes in {:.2} ms",
        apps.len(),
        status.len(),
        elapsed.as_secs_f64() * 1e3
    );
    let oracle = dpkg_query_installed(admin.path());
    assert!(
        oracle.len() > 50,
        "this machine has only {} packages?",
        oracle.len()
    );
    assert_same(&ours_dpkg(&status), &oracle);
    assert_eq!(apps.len(), oracle.len(), "duplicate packages in our list");
    let names: Vec<_> = apps.iter().map(|a| &a.name).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "sorted by name");
}

#[test]
fn dpkg_status_with_other_states_matches_dpkg_query() {
    let status =
        std::fs::read_to_string("/var/lib/dpkg/status").expect("read /var/lib/dpkg/status");
    let unchanged = dpkg_query_installed(admindir_with(status.as_bytes()).path()).len();
    // Every 7th stanza gets another state dpkg accepts; the rest stay installed.
    let states = [
        "hold ok installed",
        "deinstall ok config-files",
        "install ok half-configured",
        "install ok unpacked",
        "install reinstreq half-installed",
        "deinstall ok installed",
    ];
    let stanzas: Vec<String> = status
        .split("\n\n")
        .enumerate()
        .map(|(i, stanza)| {
            if i % 7 != 3 {
                return stanza.to_string();
            }
            stanza
                .lines()
                .map(|l| {
                    if l.starts_with("Status: ") {
                        format!("Status: {}", states[(i / 7) % states.len()])
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let mutated = stanzas.join("\n\n");
    let dir = admindir_with(mutated.as_bytes());
    let oracle = dpkg_query_installed(dir.path());
    let ours = ours_dpkg(mutated.as_bytes());
    assert_same(&ours, &oracle);
    assert!(
        ours.len() < unchanged,
        "some packages must have left the installed state"
    );
}

// ----------------------------------------------------------------------------- rpm

/// One row of `rpm -qa --qf` in our Application shape (`(none)` means absent). rpm has
/// epochs, so a package without one has epoch 0 in our report; `source_package` is the
/// SOURCERPM without the `-VERSION-RELEASE.src.rpm` rpm itself reports for the package
/// (rpmbuild gives every subpackage its source's version and release).
fn rpm_qa(args: &[&str]) -> Vec<Application> {
    rpm_qa_with(Path::new("rpm"), args)
}

/// [`rpm_qa`] run by the `rpm` binary at `rpm`.
fn rpm_qa_with(rpm: &Path, args: &[&str]) -> Vec<Application> {
    // Records end with RS (0x1e): descriptions span lines.
    let out = run(Command::new(rpm).args(args).args([
        "-qa",
        "--qf",
        "%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SUMMARY}\t%{URL}\t%{SOURCERPM}\t%{DESCRIPTION}\x1e",
    ]));
    let none = |s: &str| (s != "(none)").then(|| s.to_string());
    let mut apps: Vec<Application> = String::from_utf8(out)
        .expect("rpm output is UTF-8")
        .split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|record| {
            let f: Vec<&str> = record.splitn(9, '\t').collect();
            assert_eq!(f.len(), 9, "rpm -qa record {record:?}");
            let source_package = none(f[7]).map(|srpm| {
                srpm.strip_suffix(&format!("-{}-{}.src.rpm", f[2], f[3]))
                    .unwrap_or_else(|| panic!("{srpm} is not {}'s source rpm", f[0]))
                    .to_string()
            });
            Application {
                name: f[0].to_string(),
                epoch: Some(none(f[1]).map_or(0, |e| e.parse().expect("numeric epoch"))),
                version: f[2].to_string(),
                release: none(f[3]),
                arch: none(f[4]),
                summary: none(f[5]),
                url: none(f[6]),
                source_package,
                description: none(f[8]).map(|d| d.trim().to_string()),
                ..Default::default()
            }
        })
        .collect();
    apps.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    apps
}

/// Writes a spec and builds its binary packages into `top/RPMS`.
fn rpmbuild(top: &Path, name: &str, spec: &str) {
    std::fs::create_dir_all(top).unwrap();
    let path = top.join(format!("{name}.spec"));
    std::fs::write(&path, spec).unwrap();
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg("_build_id_links none")
        .arg("-bb")
        .arg(&path));
}

/// Builds the test packages; returns (main set, packages installed later through the WAL).
fn build_rpms(top: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    // Epoch, noarch, a long summary, 300 files: a header far larger than a 4 KiB page.
    rpmbuild(
        top,
        "alpha",
        r#"Name: alpha
Version: 1.2.3
Release: 4.fc40
Epoch: 7
URL: https://example.org/alpha
Summary: Alpha is a test package whose summary is deliberately long, so that the string runs well past a hundred characters and exercises the data store of the rpm header
License: MIT
BuildArch: noarch
%description
Alpha.
%install
mkdir -p %{buildroot}/usr/share/alpha
for i in $(seq 1 300); do echo $i > %{buildroot}/usr/share/alpha/a-file-with-a-rather-long-name-$i.txt; done
%files
/usr/share/alpha
"#,
    );
    // Host arch, no epoch, a 40 KiB description: a multi-page overflow chain.
    let description: String = (0..500)
        .map(|i| format!("Line {i} of a long description that makes the header big.\n"))
        .collect();
    rpmbuild(
        top,
        "beta",
        &format!(
            "Name: beta\nVersion: 20240101\nRelease: 1\nSummary: Beta\nLicense: MIT\n%description\n{description}%files\n"
        ),
    );
    // Thirty subpackages: more rows than one leaf page holds, so the table b-tree gets an
    // interior page; a tilde version and a non-ASCII summary.
    let mut gamma = String::from(
        "Name: gamma\nVersion: 1.0~rc1\nRelease: 0.1\nURL: https://gamma.example/\nSummary: Gamma Ünïcödé\nLicense: MIT\n%description\nGamma.\n%files\n",
    );
    for i in 1..=30 {
        gamma.push_str(&format!(
            "%package -n many-{i:02}\nSummary: Subpackage {i}\n%description -n many-{i:02}\nSub.\n%files -n many-{i:02}\n"
        ));
    }
    rpmbuild(top, "gamma", &gamma);
    // Installed later, while a reader holds the database: lands in the WAL only.
    rpmbuild(
        top,
        "late",
        "Name: late\nVersion: 2\nRelease: 3\nEpoch: 0\nSummary: Installed through the WAL\nLicense: MIT\nBuildArch: noarch\n%description\nLate.\n%files\n",
    );
    let mut all: Vec<PathBuf> = Vec::new();
    // RPMS/noarch and RPMS/<host arch>.
    for arch in std::fs::read_dir(top.join("RPMS")).unwrap() {
        all.extend(
            std::fs::read_dir(arch.unwrap().path())
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
    }
    all.sort();
    let (late, main): (Vec<PathBuf>, Vec<PathBuf>) = all.into_iter().partition(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("late-")
    });
    assert_eq!(main.len(), 33, "built packages: {main:?}");
    assert_eq!(late.len(), 1);
    (main, late)
}

fn rpm_install(root: &Path, rpms: &[PathBuf]) -> Command {
    let mut cmd = Command::new("rpm");
    cmd.arg("--root").arg(root).args([
        "--dbpath",
        "/var/lib/rpm",
        "-i",
        "--justdb",
        "--nodeps",
        "--noscripts",
    ]);
    cmd.args(rpms);
    cmd
}

#[test]
fn rpmdb_sqlite_wal_and_berkeley_db_match_rpm_qa() {
    let dir = tempdir();
    let top = dir.path().join("rpmbuild");
    let (main, late) = build_rpms(&top);
    let root = dir.path().join("root");
    run(Command::new("rpm").arg("--root").arg(&root).args([
        "--dbpath",
        "/var/lib/rpm",
        "--initdb",
    ]));
    run(&mut rpm_install(&root, &main));
    let dbdir = root.join("var/lib/rpm");
    let dbfile = dbdir.join("rpmdb.sqlite");

    // 1. A cleanly closed database: everything is in the main file.
    let db = std::fs::read(&dbfile).unwrap();
    let start = Instant::now();
    let ours = parse_rpmdb_sqlite(&db).unwrap();
    eprintln!(
        "rpmdb.sqlite: {} packages from {} bytes in {:.2} ms",
        ours.applications.len(),
        db.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    assert!(ours.warnings.is_empty(), "{:?}", ours.warnings);
    let root_arg = root.to_str().unwrap();
    let oracle = rpm_qa(&["--root", root_arg, "--dbpath", "/var/lib/rpm"]);
    assert_eq!(oracle.len(), 33);
    assert_eq!(ours.applications, oracle);
    assert!(oracle
        .iter()
        .any(|a| a.epoch == Some(7) && a.arch.as_deref() == Some("noarch")));

    // 2. A database whose last transaction is only in the WAL: a reader holding a read
    // transaction open keeps rpm's closing checkpoint from copying it back.
    let snap = dir.path().join("snapshot");
    std::fs::create_dir(&snap).unwrap();
    let script = dir.path().join("install-late.sh");
    let late_args: Vec<String> = late.iter().map(|p| format!("'{}'", p.display())).collect();
    std::fs::write(
        &script,
        format!(
            "set -e\nrpm --root '{root}' --dbpath /var/lib/rpm -i --justdb --nodeps --noscripts {late}\ncp '{db}'/rpmdb.sqlite* '{snap}'/\n",
            root = root.display(),
            late = late_args.join(" "),
            db = dbdir.display(),
            snap = snap.display()
        ),
    )
    .unwrap();
    let out = run(Command::new("sqlite3").arg(&dbfile).args([
        "BEGIN;",
        "SELECT 'rows before', count(*) FROM Packages;",
        &format!(".shell bash {} && echo installed-late", script.display()),
        "COMMIT;",
    ]));
    assert!(
        String::from_utf8_lossy(&out).contains("installed-late"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let db = std::fs::read(snap.join("rpmdb.sqlite")).unwrap();
    let wal = std::fs::read(snap.join("rpmdb.sqlite-wal")).unwrap();
    assert!(
        !wal.is_empty(),
        "the fixture must leave un-checkpointed frames in the WAL"
    );
    let with_wal = parse_rpmdb_sqlite_with_wal(&db, Some(&wal)).unwrap();
    assert!(with_wal.warnings.is_empty(), "{:?}", with_wal.warnings);
    let without_wal = parse_rpmdb_sqlite(&db).unwrap();
    // Oracle on a copy, since rpm may checkpoint the copy it opens.
    let copy = dir.path().join("copy");
    sh(&format!("cp -r '{}' '{}'", snap.display(), copy.display()));
    let oracle_wal = rpm_qa(&["--dbpath", copy.to_str().unwrap()]);
    assert_eq!(oracle_wal.len(), 34);
    assert_eq!(with_wal.applications, oracle_wal);
    assert!(oracle_wal
        .iter()
        .any(|a| a.name == "late" && a.epoch == Some(0)));
    // The main file alone is the state before the WAL transaction.
    assert_eq!(without_wal.applications, oracle);

    // 3. Robustness on the real files: truncations and byte mutations give Ok or a typed
    // error, never a panic.
    mutate(&db, |bytes| {
        let _ = parse_rpmdb_sqlite_with_wal(bytes, Some(&wal));
    });
    mutate(&wal, |bytes| {
        let _ = parse_rpmdb_sqlite_with_wal(&db, Some(bytes));
    });

    // 4. Berkeley DB (rpm < 4.16): Debian's rpm cannot write one, so the same real headers
    // (read out with the sqlite3 tool) are loaded into a hash database by the real
    // `db5.3_load`, keyed by instance number as rpm did, in both byte orders, several
    // page sizes and with page checksums; the oracle is still `rpm -qa` of those headers.
    let rows = run(Command::new("sqlite3")
        .arg("-separator")
        .arg("\t")
        .arg(copy.join("rpmdb.sqlite"))
        .arg("SELECT hnum, hex(blob) FROM Packages ORDER BY hnum;"));
    let rows: Vec<(u32, String)> = String::from_utf8(rows)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, hex) = l.split_once('\t').expect("hnum<TAB>hex");
            (n.parse().unwrap(), hex.to_string())
        })
        .collect();
    assert_eq!(rows.len(), 34);
    for (config, big_endian) in [
        (&["db_pagesize=4096"][..], false),
        (&["db_pagesize=512"][..], false),
        (&["db_pagesize=65536"][..], false),
        (&["db_pagesize=1024", "db_lorder=4321"][..], true),
        (&["db_pagesize=4096", "chksum=1"][..], false),
    ] {
        let key = |n: u32| {
            if big_endian {
                n.to_be_bytes()
            } else {
                n.to_le_bytes()
            }
        };
        let escape = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| format!("\\{b:02x}"))
                .collect::<String>()
        };
        // db_load's printable format: one line per key, one per value, `\hh` escapes.
        let mut text = format!(
            "{}\n{}\n",
            escape(&key(0)),
            escape(&key(rows.len() as u32 + 1))
        );
        for (n, hex) in &rows {
            text.push_str(&escape(&key(*n)));
            text.push('\n');
            // db_load only understands lower-case hex escapes.
            text.extend(
                hex.to_ascii_lowercase()
                    .as_bytes()
                    .chunks(2)
                    .map(|h| format!("\\{}", std::str::from_utf8(h).unwrap())),
            );
            text.push('\n');
        }
        let input = dir.path().join("db_load.txt");
        std::fs::write(&input, text).unwrap();
        let packages = dir.path().join(format!("Packages-{}", config.join("-")));
        let mut cmd = Command::new("db5.3_load");
        cmd.args(["-T", "-t", "hash", "-f"]).arg(&input);
        for c in config {
            cmd.args(["-c", c]);
        }
        run(cmd.arg(&packages));
        let bytes = std::fs::read(&packages).unwrap();
        let start = Instant::now();
        let list = parse_rpmdb_bdb(&bytes).unwrap_or_else(|e| panic!("{config:?}: {e}"));
        eprintln!(
            "Berkeley DB {config:?}: {} packages from {} bytes in {:.2} ms",
            list.applications.len(),
            bytes.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
        assert!(list.warnings.is_empty(), "{config:?}: {:?}", list.warnings);
        assert_eq!(list.applications, oracle_wal, "{config:?}");
        mutate(&bytes, |b| {
            let _ = parse_rpmdb_bdb(b);
        });
    }
}

/// Calls `f` on truncations and on a few hundred single-byte mutations of `bytes`
/// (deterministic positions), so a failure reproduces.
fn mutate(bytes: &[u8], mut f: impl FnMut(&[u8])) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..64 {
        f(&bytes[..bytes.len() * i / 64]);
    }
    for _ in 0..400 {
        let mut b = bytes.to_vec();
        // Half the mutations in the first 8 KiB (headers, schema, root pages).
        let pos = if next() % 2 == 0 {
            next() as usize % b.len().min(8192)
        } else {
            next() as usize % b.len()
        };
        b[pos] = next() as u8;
        f(&b);
    }
}

#[test]
fn rpm_header_from_a_real_rpm_file() {
    // The header of an .rpm file (after the 96-byte lead and the signature header) has the
    // 8-byte magic: the same parser reads it.
    let dir = tempdir();
    let top = dir.path().join("rpmbuild");
    rpmbuild(
        &top,
        "solo",
        "Name: solo\nVersion: 3.1\nRelease: 9\nEpoch: 4\nSummary: Solo\nLicense: MIT\nBuildArch: noarch\n%description\nSolo.\n%files\n",
    );
    let rpm = std::fs::read(top.join("RPMS/noarch/solo-3.1-9.noarch.rpm")).unwrap();
    // Signature header: magic, il, dl, index, data, padded to 8 bytes.
    let sig = &rpm[96..];
    let be = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let sig_len = 16 + 16 * be(sig, 8) + be(sig, 12);
    let header = &sig[sig_len.div_ceil(8) * 8..];
    let app = parse_rpm_header(header).unwrap();
    let out = run(Command::new("rpm")
        .args([
            "-qp",
            "--qf",
            "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SUMMARY}",
        ])
        .arg(top.join("RPMS/noarch/solo-3.1-9.noarch.rpm")));
    let expected = format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        app.name,
        app.epoch.unwrap(),
        app.version,
        app.release.as_deref().unwrap(),
        app.arch.as_deref().unwrap(),
        app.summary.as_deref().unwrap()
    );
    assert_eq!(String::from_utf8_lossy(&out), expected);
}

// ----------------------------------------------------------------------- apk, pacman

/// Hand-written from the apk database format (apk-tools' `installed` file: one paragraph
/// per package, `X:value` lines); no tool here produces it.
const APK_INSTALLED: &str = "\
C:Q1p78yvTLG094tjE3+kvBvQn0uU9I=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1695302357
c:c2a8e0fa42e33e1a5c4a9e9e2ee4b9d1d4b6d9d0
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1x2JqvT1HZ0iG3ycYVJkzEGkXbcA=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1Q8pIgJzyTFpW3gNr3+qzO5tfYEE=
P:busybox
V:1.36.1-r15
A:x86_64
S:507831
I:946176
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1700491406
c:f98ba1de1e7a8e2d3e5cf9e9d1b0a2f6c5d4e3b2
D:so:libc.musl-x86_64.so.1
p:/bin/sh cmd:busybox=1.36.1-r15 cmd:sh=1.36.1-r15
r:busybox-initscripts
F:bin
R:busybox
a:0:0:755
Z:Q1nUE1gqRfPwIiPVt8u5z1LuZGvnc=

C:Q1uR7RK/EtF/WcLoWdmYMtPszgSmM=
P:alpine-baselayout-data
V:3.4.3-r2
A:x86_64
S:11664
I:77824
T:Alpine base dir structure and init scripts
U:https://git.alpinelinux.org/cgit/aports/tree/main/alpine-baselayout
L:GPL-2.0-only
o:alpine-baselayout
m:Natanael Copa <ncopa@alpinelinux.org>
t:1695302357
c:5dd2ea6e8a9b4d3e5f2a1b0c9d8e7f6a5b4c3d2e
r:alpine-baselayout
q:1000
F:etc
R:fstab
Z:Q11Q7hNe8QpDS531guqCdrXBzoA/o=

C:Q1NlRmPoUOp8eVwf6hMvTaTvtNXe0=
P:tzdata
V:2024a_git20240201-r0
A:noarch
S:170000
I:500000
T:Timezone data
U:https://www.iana.org/time-zones
L:Public-Domain
o:tzdata
";

#[test]
fn apk_installed_hand_written_fixture() {
    let apps = parse_apk_installed(APK_INSTALLED.as_bytes()).unwrap();
    let expected = [
        (
            "alpine-baselayout-data",
            "3.4.3",
            "2",
            "x86_64",
            "Alpine base dir structure and init scripts",
        ),
        (
            "busybox",
            "1.36.1",
            "15",
            "x86_64",
            "Size optimized toolbox of many common UNIX utilities",
        ),
        (
            "musl",
            "1.2.4",
            "2",
            "x86_64",
            "the musl c library (libc) implementation",
        ),
        (
            "tzdata",
            "2024a_git20240201",
            "0",
            "noarch",
            "Timezone data",
        ),
    ];
    let got: Vec<_> = apps
        .iter()
        .map(|a| {
            assert_eq!(a.epoch, None);
            (
                a.name.as_str(),
                a.version.as_str(),
                a.release.as_deref().unwrap(),
                a.arch.as_deref().unwrap(),
                a.summary.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // U: (url) and o: (origin), as written above.
    let links: Vec<_> = apps
        .iter()
        .map(|a| {
            (
                a.url.as_deref().unwrap(),
                a.source_package.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        links,
        [
            (
                "https://git.alpinelinux.org/cgit/aports/tree/main/alpine-baselayout",
                "alpine-baselayout"
            ),
            ("https://busybox.net/", "busybox"),
            ("https://musl.libc.org/", "musl"),
            ("https://www.iana.org/time-zones", "tzdata"),
        ]
    );
    assert!(apps.iter().all(|a| a.description.is_none()));
    mutate(APK_INSTALLED.as_bytes(), |b| {
        let _ = parse_apk_installed(b);
    });
}

/// Hand-written from pacman's local database format (`desc`: `%KEY%` sections separated
/// by blank lines); no tool here produces it. With the values each should yield.
/// (name, epoch, version, release, arch, summary) expected from a desc file.
type PacmanExpected = (
    &'static str,
    Option<u32>,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const PACMAN_DESCS: &[(&str, PacmanExpected)] = &[
    (
        "%NAME%\nzlib\n\n%VERSION%\n1:1.3.1-1\n\n%BASE%\nzlib\n\n%DESC%\nCompression library implementing the deflate compression method found in gzip and PKZIP\n\n%URL%\nhttps://www.zlib.net/\n\n%ARCH%\nx86_64\n\n%BUILDDATE%\n1705706233\n\n%INSTALLDATE%\n1714036000\n\n%PACKAGER%\nLevente Polyak <anthraxx@archlinux.org>\n\n%SIZE%\n358061\n\n%REASON%\n1\n\n%LICENSE%\nZlib\n\n%VALIDATION%\npgp\n\n%DEPENDS%\nglibc\n\n%PROVIDES%\nlibz.so=1-64\n\n",
        ("zlib", Some(1), "1.3.1", "1", "x86_64", "Compression library implementing the deflate compression method found in gzip and PKZIP"),
    ),
    (
        "%NAME%\nca-certificates\n\n%VERSION%\n20220905-1\n\n%BASE%\nca-certificates\n\n%DESC%\nCommon CA certificates (default providers)\n\n%URL%\nhttps://src.fedoraproject.org/rpms/ca-certificates\n\n%ARCH%\nany\n\n%BUILDDATE%\n1662560061\n\n%LICENSE%\nGPL2\n\n%DEPENDS%\nca-certificates-mozilla\n\n",
        ("ca-certificates", Some(0), "20220905", "1", "any", "Common CA certificates (default providers)"),
    ),
    (
        "%NAME%\nlinux\n\n%VERSION%\n6.8.9.arch1-2\n\n%BASE%\nlinux\n\n%DESC%\nThe Linux kernel and modules\n\n%URL%\nhttps://github.com/archlinux/linux\n\n%ARCH%\nx86_64\n\n%LICENSE%\nGPL-2.0-only\n\n%DEPENDS%\ncoreutils\nkmod\ninitramfs\n\n%OPTDEPENDS%\nwireless-regdb: to set the correct wireless channels of your country\nlinux-firmware: firmware images needed for some devices\n\n",
        ("linux", Some(0), "6.8.9.arch1", "2", "x86_64", "The Linux kernel and modules"),
    ),
];

#[test]
fn pacman_desc_hand_written_fixtures() {
    for (text, (name, epoch, version, release, arch, summary)) in PACMAN_DESCS {
        let app = parse_pacman_desc(text.as_bytes()).unwrap();
        assert_eq!(app.name, *name);
        assert_eq!(app.epoch, *epoch);
        assert_eq!(app.version, *version);
        assert_eq!(app.release.as_deref(), Some(*release));
        assert_eq!(app.arch.as_deref(), Some(*arch));
        assert_eq!(app.summary.as_deref(), Some(*summary));
        // %URL% and %BASE% as written in the text (every fixture has both).
        let section = |key: &str| {
            let (_, rest) = text.split_once(&format!("%{key}%\n")).unwrap();
            rest.lines().next().unwrap()
        };
        assert_eq!(app.url.as_deref(), Some(section("URL")));
        assert_eq!(app.source_package.as_deref(), Some(section("BASE")));
        mutate(text.as_bytes(), |b| {
            let _ = parse_pacman_desc(b);
        });
    }
}

// -------------------------------------------------------------------------------- ndb

/// rpm built with its ndb backend from Debian's source (`fixtures/rpm-ndb.sh`, cached:
/// the first run compiles rpm, a few minutes).
pub(crate) fn rpm_ndb() -> PathBuf {
    let out = run(Command::new(fixtures().join("rpm-ndb.sh")).arg(fixture_cache()));
    PathBuf::from(String::from_utf8(out).unwrap().trim())
}

/// `rpm` with the ndb backend on the database in `dbpath`.
pub(crate) fn rpm_ndb_cmd(rpm: &Path, dbpath: &Path) -> Command {
    let mut cmd = Command::new(rpm);
    cmd.args(["--define", "_db_backend ndb", "--dbpath"])
        .arg(dbpath);
    cmd
}

#[test]
fn rpmdb_ndb_matches_rpm_qa() {
    let rpm = rpm_ndb();
    let dir = tempdir();
    let top = dir.path().join("rpmbuild");
    let (main, late) = build_rpms(&top);
    let dbpath = dir.path().join("Packages-ndb");
    run(rpm_ndb_cmd(&rpm, &dbpath).arg("--initdb"));
    let install = |rpms: &[PathBuf]| {
        run(rpm_ndb_cmd(&rpm, &dbpath)
            .args(["-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch"])
            .args(rpms));
    };
    install(&main);
    let qa = || {
        rpm_qa_with(
            &rpm,
            &[
                "--define",
                "_db_backend ndb",
                "--dbpath",
                dbpath.to_str().unwrap(),
            ],
        )
    };
    let check = |what: &str, want: usize| {
        let bytes = std::fs::read(dbpath.join("Packages.db")).unwrap();
        let start = Instant::now();
        let ours = parse_rpmdb_ndb(&bytes).unwrap();
        eprintln!(
            "Packages.db ({what}): {} packages from {} bytes in {:.2} ms",
            ours.applications.len(),
            bytes.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
        assert!(ours.warnings.is_empty(), "{what}: {:?}", ours.warnings);
        let oracle = qa();
        assert_eq!(oracle.len(), want, "{what}");
        assert_eq!(ours.applications, oracle, "{what}");
        bytes
    };
    check("installed", 33);
    // Erased packages leave free slots and holes that later installs reuse.
    run(rpm_ndb_cmd(&rpm, &dbpath).args([
        "-e",
        "--justdb",
        "--nodeps",
        "--noscripts",
        "many-05",
        "many-17",
        "beta",
    ]));
    check("after erase", 30);
    install(&late);
    let bytes = check("after a later install", 31);
    // Robustness on the real file: truncations and byte mutations give Ok or a typed
    // error, never a panic.
    mutate(&bytes, |b| {
        let _ = parse_rpmdb_ndb(b);
    });
}

const SLES_15_SP6: &str = r#"NAME="SLES"
VERSION="15-SP6"
VERSION_ID="15.6"
PRETTY_NAME="SUSE Linux Enterprise Server 15 SP6"
ID="sles"
ID_LIKE="suse"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:suse:sles:15:sp6"
DOCUMENTATION_URL="https://documentation.suse.com/"
"#;

const LEAP_15_6: &str = r#"NAME="openSUSE Leap"
VERSION="15.6"
ID="opensuse-leap"
ID_LIKE="suse opensuse"
VERSION_ID="15.6"
PRETTY_NAME="openSUSE Leap 15.6"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:opensuse:leap:15.6"
BUG_REPORT_URL="https://bugs.opensuse.org"
HOME_URL="https://www.opensuse.org/"
DOCUMENTATION_URL="https://en.opensuse.org/Portal:Leap"
LOGO="distributor-logo-Leap"
"#;

const TUMBLEWEED: &str = r#"NAME="openSUSE Tumbleweed"
# VERSION="20241120"
ID="opensuse-tumbleweed"
ID_LIKE="opensuse suse"
VERSION_ID="20241120"
PRETTY_NAME="openSUSE Tumbleweed"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:opensuse:tumbleweed:20241120"
BUG_REPORT_URL="https://bugzilla.opensuse.org"
SUPPORT_URL="https://bugs.opensuse.org"
HOME_URL="https://www.opensuse.org"
DOCUMENTATION_URL="https://en.opensuse.org/Portal:Tumbleweed"
LOGO="distributor-logo-Tumbleweed"
"#;

/// An ndb rpm database in `dir/db` holding `build_rpms`' main packages, written by rpm
/// built with ndb; with the oracle's reading of it (`rpm -qa` through that rpm).
pub(crate) fn suse_ndb_database(dir: &Path) -> (PathBuf, Vec<Application>) {
    let rpm = rpm_ndb();
    let (main, _) = build_rpms(&dir.join("rpmbuild"));
    let dbpath = dir.join("db");
    run(rpm_ndb_cmd(&rpm, &dbpath).arg("--initdb"));
    run(rpm_ndb_cmd(&rpm, &dbpath)
        .args(["-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch"])
        .args(&main));
    let oracle = rpm_qa_with(
        &rpm,
        &[
            "--define",
            "_db_backend ndb",
            "--dbpath",
            dbpath.to_str().unwrap(),
        ],
    );
    (dbpath, oracle)
}

/// The SUSE releases of the ndb guests, by their published os-release.
pub(crate) const SUSE_RELEASES: [&str; 3] = [SLES_15_SP6, LEAP_15_6, TUMBLEWEED];

/// SUSE guest number `i` (one ext4 partition, fstab by UUID) with `release` as its
/// os-release and the ndb database of `dbpath` where SUSE ships it:
/// `/usr/lib/sysimage/rpm/Packages.db` and `Index.db`, `/var/lib/rpm` a link to it, and
/// the rpm configuration naming them (`/usr/lib/rpm/macros`: `%_dbpath`, `%_db_backend
/// ndb`), as SUSE's rpm package ships it.
pub(crate) fn suse_disk(dir: &Path, i: usize, release: &str, dbpath: &Path) -> PathBuf {
    use crate::inspect_usr::{link, make_disk, write};
    let r = dir.join(format!("root{i}"));
    write(&r, "/usr/lib/os-release", release);
    write(
        &r,
        "/usr/lib/rpm/rpmrc",
        "# rpmrc: the defaults of rpm itself\n",
    );
    write(
        &r,
        "/usr/lib/rpm/macros",
        "%_usr\t\t/usr\n%_dbpath\t\t%{_usr}/lib/sysimage/rpm\n%_db_backend\t\tndb\n",
    );
    link(&r, "/etc/os-release", "../usr/lib/os-release");
    let uuid = format!("5e5e5e5e-0000-4000-8000-00000000000{i}");
    write(
        &r,
        "/etc/fstab",
        &format!("UUID={uuid} / ext4 defaults 0 1\n"),
    );
    write(&r, "/etc/hostname", &format!("suse-{i}\n"));
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy("/bin/sh", r.join("usr/bin/sh")).unwrap();
    link(&r, "/bin", "usr/bin");
    let sysimage = r.join("usr/lib/sysimage/rpm");
    std::fs::create_dir_all(&sysimage).unwrap();
    for f in ["Packages.db", "Index.db"] {
        std::fs::copy(dbpath.join(f), sysimage.join(f)).unwrap();
    }
    link(&r, "/var/lib/rpm", "../../usr/lib/sysimage/rpm");
    let disk = dir.join(format!("suse{i}.raw"));
    make_disk(&disk, &[format!("L:ext4:48:{}:{uuid}:", r.display())]);
    disk
}

/// Whole SUSE guests (SLES 15 SP6, Leap 15.6, Tumbleweed: their published os-release)
/// whose rpm database is ndb, as they ship it (see [`suse_disk`]). Applications against
/// `rpm -qa`; distro, version and osinfo from the os-release written here (libosinfo's
/// id where its database has the release).
#[test]
fn suse_guests_with_an_ndb_rpm_database() {
    use crate::inspect_usr::{check_osinfo, inspect, os_release};
    let dir = tempdir();
    let (dbpath, oracle) = suse_ndb_database(dir.path());
    assert_eq!(oracle.len(), 33);
    for (i, release) in SUSE_RELEASES.into_iter().enumerate() {
        let disk = suse_disk(dir.path(), i, release, &dbpath);
        let report = inspect(&disk);
        assert_eq!(report.operating_systems.len(), 1);
        let os = &report.operating_systems[0];
        let rel = os_release(release);
        let id = rel["ID"].as_str();
        // libguestfs's names: `sles`, and `opensuse` for every openSUSE flavour.
        let distro = if id.starts_with("opensuse") {
            "opensuse"
        } else {
            id
        };
        assert_eq!(os.distro.as_deref(), Some(distro), "{id}");
        assert_eq!(
            os.product_name.as_deref(),
            Some(rel["PRETTY_NAME"].as_str())
        );
        let rolling = rel["NAME"].contains("Tumbleweed");
        let version: Vec<u32> = rel["VERSION_ID"]
            .split('.')
            .map(|v| v.parse().unwrap())
            .collect();
        let (major, minor) = if rolling {
            (0, 0)
        } else {
            (version[0], version[1])
        };
        assert_eq!(
            (os.major_version, os.minor_version),
            (Some(major), Some(minor)),
            "{id}"
        );
        assert_eq!(os.package_format.as_deref(), Some("rpm"));
        assert_eq!(os.package_management.as_deref(), Some("zypper"));
        // libosinfo's names: `sle` for SLES 15, `opensuse` for Leap and Tumbleweed; its
        // Tumbleweed entry has the version `tumbleweed`.
        let db_distro = if id == "sles" { "sle" } else { "opensuse" };
        let db_version = if rolling {
            "tumbleweed"
        } else {
            rel["VERSION_ID"].as_str()
        };
        check_osinfo(os.osinfo.as_deref(), db_distro, db_version);
        assert_eq!(os.applications, oracle, "{id}");
        assert!(
            !report.warnings.iter().any(|w| w.contains("rpm")),
            "{:?}",
            report.warnings
        );
    }
}
