//! libguestfs' `virt-inspector` as the oracle of whole-guest inspection: its XML for a
//! set of disks (cached, since its TCG appliance takes 30-90 s a launch), parsed and
//! flattened into `field -> value` pairs, next to ours flattened the same way, so a
//! test can diff every field it reports against ours.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use guestkit_worker::inspect::report::{OperatingSystem, Report};

use super::{fixture_cache, sha256sum};

/// One OS as a flat map: `product_name`, `mountpoint[/boot]`, `filesystem[/dev/sda1].uuid`,
/// `drive_mapping[C]`, `application[bash].version`, ... Absent or empty values are left
/// out (virt-inspector writes no element for them), so a field on one side only is a
/// difference like any other.
pub type Fields = BTreeMap<String, String>;

/// Where virt-inspector's answer for these disks, keys and options is cached: keyed by
/// the disks' sha256, the keys, the options and virt-inspector's version, so a changed
/// disk or tool runs it again and nothing else does.
fn cache_file(disks: &[PathBuf], keys: &[&str], applications: bool) -> PathBuf {
    let version =
        String::from_utf8(super::run(Command::new("virt-inspector").arg("--version"))).unwrap();
    let mut key = format!("v1 {} {applications}\n", version.trim());
    for d in disks {
        key.push_str(&sha256sum(d));
        key.push('\n');
    }
    for k in keys {
        key.push_str(k);
        key.push('\n');
    }
    let dir = fixture_cache().join("virt-inspector");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = super::tempdir();
    std::fs::write(tmp.path().join("key"), &key).unwrap();
    dir.join(format!("{}.xml", &sha256sum(&tmp.path().join("key"))[..32]))
}

/// Writes `text` to `file` through a temporary name (a reader never sees half a file).
fn store(file: &std::path::Path, text: &str) {
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// One virt-inspector run (TCG appliance) on `disks`.
fn launch(disks: &[PathBuf], keys: &[&str], applications: bool) -> std::process::Output {
    let mut cmd = Command::new("virt-inspector");
    cmd.env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .arg("--no-icon");
    if !applications {
        cmd.arg("--no-applications");
    }
    for d in disks {
        let format = if d.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        cmd.arg(format!("--format={format}")).arg("-a").arg(d);
    }
    if !keys.is_empty() {
        cmd.arg("--keys-from-stdin");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("virt-inspector (libguestfs-tools) runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for k in keys {
            writeln!(stdin, "{k}").unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

/// virt-inspector's XML for `disks` (`/dev/sda`, `/dev/sdb`, ... in order; qcow2 by
/// extension, else raw), with `keys` sent on stdin for encrypted volumes and the
/// application list unless `applications` is false (it fails the whole run on an rpm
/// guest without the rpm configuration naming its database). Cached (see
/// [`cache_file`]); a run expected to fail is [`failure`].
pub fn xml(disks: &[PathBuf], keys: &[&str], applications: bool) -> String {
    let cached = cache_file(disks, keys, applications);
    if let Ok(xml) = std::fs::read_to_string(&cached) {
        return xml;
    }
    let out = launch(disks, keys, applications);
    assert!(
        out.status.success(),
        "virt-inspector on {disks:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = String::from_utf8(out.stdout).unwrap();
    store(&cached, &xml);
    xml
}

/// virt-inspector's error on `disks` where it is known to fail: asserts the run fails
/// and that its message contains `expected`, and returns the message. Only that failure
/// is cached (next to the XML, `.failed`): any other outcome (success, a different
/// error such as an appliance timeout) fails the test and is not kept.
pub fn failure(disks: &[PathBuf], keys: &[&str], applications: bool, expected: &str) -> String {
    let cached = cache_file(disks, keys, applications).with_extension("failed");
    if let Ok(message) = std::fs::read_to_string(&cached) {
        return message;
    }
    let out = launch(disks, keys, applications);
    let message = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "virt-inspector on {disks:?} was expected to fail ({expected}) but answered:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        message.contains(expected),
        "virt-inspector on {disks:?} failed, but not with {expected:?}: {}\n{message}",
        out.status
    );
    store(&cached, &message);
    message
}

/// Every OS of virt-inspector's XML by root: each text child of `<operatingsystem>` a
/// field by its tag (an empty element such as `<live/>` with an empty value), the lists
/// keyed as in [`Fields`].
pub fn parse(xml: &str) -> BTreeMap<String, Fields> {
    let doc = roxmltree::Document::parse(xml).expect("virt-inspector's XML parses");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "operatingsystems");
    let mut out = BTreeMap::new();
    for os in elements(root) {
        let mut f = Fields::new();
        for e in elements(os) {
            let tag = e.tag_name().name();
            match tag {
                "mountpoints" => {
                    for m in elements(e) {
                        f.insert(format!("mountpoint[{}]", text(m)), attr(m, "dev"));
                    }
                }
                "filesystems" => {
                    for fs in elements(e) {
                        let dev = attr(fs, "dev");
                        f.insert(format!("filesystem[{dev}]"), String::new());
                        for p in elements(fs) {
                            f.insert(
                                format!("filesystem[{dev}].{}", p.tag_name().name()),
                                text(p),
                            );
                        }
                    }
                }
                "drive_mappings" => {
                    for m in elements(e) {
                        f.insert(format!("drive_mapping[{}]", attr(m, "name")), text(m));
                    }
                }
                "applications" => {
                    for a in elements(e) {
                        let mut app = BTreeMap::new();
                        for p in elements(a) {
                            app.insert(p.tag_name().name().to_string(), text(p));
                        }
                        insert_app(&mut f, app);
                    }
                }
                _ => {
                    assert!(
                        elements(e).next().is_none(),
                        "virt-inspector element <{tag}> has children this parser does not know"
                    );
                    f.insert(tag.to_string(), text(e));
                }
            }
        }
        let root = f["root"].clone();
        out.insert(root, f);
    }
    out
}

fn elements<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn text(n: roxmltree::Node<'_, '_>) -> String {
    n.text().unwrap_or("").to_string()
}

fn attr(n: roxmltree::Node<'_, '_>, name: &str) -> String {
    n.attribute(name).unwrap_or_default().to_string()
}

/// Adds one application's fields under `application[name]` (`application[name#2]` for a
/// second package of the same name, e.g. two architectures). Epoch 0 is left out: its
/// XML cannot tell it from no epoch.
fn insert_app(f: &mut Fields, mut app: BTreeMap<String, String>) {
    if app.get("epoch").is_some_and(|e| e == "0") {
        app.remove("epoch");
    }
    let name = app.remove("name").unwrap_or_default();
    let mut key = format!("application[{name}]");
    let mut n = 1;
    while f.contains_key(&key) {
        n += 1;
        key = format!("application[{name}#{n}]");
    }
    f.insert(key.clone(), String::new());
    for (k, v) in app.into_iter().filter(|(_, v)| !v.is_empty()) {
        f.insert(format!("{key}.{k}"), v);
    }
}

/// Our report flattened like [`parse`]: every OS by root, with the filesystems of the
/// report that its mountpoints name (virt-inspector lists an OS's filesystems; our
/// report lists the job's once) plus those virt-inspector lists, when we know them.
pub fn ours(report: &Report, their_filesystems: &[String]) -> BTreeMap<String, Fields> {
    let mut out = BTreeMap::new();
    for os in &report.operating_systems {
        out.insert(os.root.clone(), os_fields(report, os, their_filesystems));
    }
    out
}

fn os_fields(report: &Report, os: &OperatingSystem, their_fs: &[String]) -> Fields {
    let mut f = Fields::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            f.insert(k.to_string(), v);
        }
    };
    put("root", Some(os.root.clone()));
    put("name", Some(os.os_type.clone()));
    put("arch", os.arch.clone());
    put("distro", os.distro.clone());
    put("product_name", os.product_name.clone());
    put("product_variant", os.product_variant.clone());
    put("major_version", os.major_version.map(|v| v.to_string()));
    put("minor_version", os.minor_version.map(|v| v.to_string()));
    put("package_format", os.package_format.clone());
    put("package_management", os.package_management.clone());
    put("hostname", os.hostname.clone());
    put("osinfo", os.osinfo.clone());
    put("build_id", os.build_id.clone());
    put("windows_systemroot", os.windows_systemroot.clone());
    put(
        "windows_current_control_set",
        os.windows_current_control_set.clone(),
    );
    for (mp, dev) in &os.mountpoints {
        f.insert(format!("mountpoint[{mp}]"), dev.clone());
    }
    for (letter, dev) in &os.drive_mappings {
        f.insert(format!("drive_mapping[{letter}]"), dev.clone());
    }
    let mut devices: Vec<&String> = os.mountpoints.values().collect();
    devices.extend(their_fs);
    for dev in devices {
        // A subvolume (`btrfsvol:/dev/sda2/root`) is listed by virt-inspector as a
        // filesystem of its own; ours is the btrfs filesystem holding it.
        let (fs_dev, subvolume) = match dev.strip_prefix("btrfsvol:") {
            Some(r) => match r.match_indices('/').nth(2) {
                Some((i, _)) => (&r[..i], Some(&r[i + 1..])),
                None => continue,
            },
            None => (dev.as_str(), None),
        };
        let Some(fs) = report.filesystems.iter().find(|fs| {
            fs.device == fs_dev
                && subvolume.is_none_or(|s| fs.subvolumes.iter().any(|v| v.path == s))
        }) else {
            continue;
        };
        let key = format!("filesystem[{dev}]");
        f.insert(key.clone(), String::new());
        for (k, v) in [
            ("type", Some(fs.fs_type.clone())),
            ("label", fs.label.clone()),
            ("uuid", fs.uuid.clone()),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                f.insert(format!("{key}.{k}"), v);
            }
        }
    }
    for a in &os.applications {
        let app: BTreeMap<String, String> = [
            ("name", Some(a.name.clone())),
            ("display_name", a.display_name.clone()),
            ("epoch", a.epoch.map(|e| e.to_string())),
            ("version", Some(a.version.clone())),
            ("release", a.release.clone()),
            ("arch", a.arch.clone()),
            ("install_path", a.install_path.clone()),
            ("publisher", a.publisher.clone()),
            ("url", a.url.clone()),
            ("source_package", a.source_package.clone()),
            ("summary", a.summary.clone()),
            ("description", a.description.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect();
        insert_app(&mut f, app);
    }
    f
}

/// The devices virt-inspector lists as `filesystem[...]` of one OS.
pub fn filesystems(fields: &Fields) -> Vec<String> {
    fields
        .keys()
        .filter_map(|k| k.strip_prefix("filesystem[")?.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

/// One field where the two differ (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub field: String,
    pub theirs: Option<String>,
    pub ours: Option<String>,
}

/// Every field of either side, compared: (fields compared, the differences).
pub fn diff(theirs: &Fields, ours: &Fields) -> (usize, Vec<Diff>) {
    let mut keys: Vec<&String> = theirs.keys().chain(ours.keys()).collect();
    keys.sort();
    keys.dedup();
    let diffs: Vec<Diff> = keys
        .iter()
        .filter(|k| theirs.get(**k) != ours.get(**k))
        .map(|k| Diff {
            field: k.to_string(),
            theirs: theirs.get(*k).cloned(),
            ours: ours.get(*k).cloned(),
        })
        .collect();
    (keys.len(), diffs)
}

/// virt-inspector names a btrfs subvolume `btrfsvol:/dev/sdXN/path` with the device
/// name its appliance's kernel gave (not translated back to the job's, unlike plain
/// device names; the appliance's own disk can take `sda`). Renames those devices to the
/// one of our report holding the filesystem of the same uuid; returns how many.
pub fn rename_btrfsvol(theirs: &mut BTreeMap<String, Fields>, report: &Report) -> usize {
    let mut renames = Vec::new();
    for fields in theirs.values() {
        for (k, uuid) in fields {
            let Some(dev) = k
                .strip_prefix("filesystem[btrfsvol:")
                .and_then(|r| r.strip_suffix("].uuid"))
                .and_then(|r| r.find("/dev/").map(|_| r))
                .and_then(|r| r.match_indices('/').nth(2).map(|(i, _)| &r[..i]))
            else {
                continue;
            };
            let ours = report
                .filesystems
                .iter()
                .find(|f| f.fs_type == "btrfs" && f.uuid.as_deref() == Some(uuid.as_str()));
            if let Some(f) = ours.filter(|f| f.device != dev) {
                let pair = (
                    format!("btrfsvol:{dev}/"),
                    format!("btrfsvol:{}/", f.device),
                );
                if !renames.contains(&pair) {
                    renames.push(pair);
                }
            }
        }
    }
    if renames.is_empty() {
        return 0;
    }
    let fix = |s: &str| {
        renames
            .iter()
            .fold(s.to_string(), |s, (from, to)| s.replace(from, to))
    };
    *theirs = std::mem::take(theirs)
        .into_iter()
        .map(|(root, fields)| {
            let fields = fields.iter().map(|(k, v)| (fix(k), fix(v))).collect();
            (fix(&root), fields)
        })
        .collect();
    renames.len()
}
