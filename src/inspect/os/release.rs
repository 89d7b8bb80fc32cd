//! Which distribution and version a Linux root is: `/etc/os-release` first, then the
//! older release files, in libguestfs's order.
//!
//! Deliberate differences from libguestfs, both to keep the nicer answer:
//! - `product_name` stays os-release's `PRETTY_NAME` even when a vendor file refines the
//!   version (libguestfs replaces it with the vendor file's first line, e.g. `12.5`).
//! - an unknown os-release `ID` is reported as itself (libguestfs says "unknown"), and its
//!   `ID_LIKE` still lets us derive the package format.

use super::context::Ctx;
use super::text::{content_lines, major_minor, shell_var, shell_vars, version_after};

/// What the release files say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// libguestfs-style distro name (`debian`, `rhel`, `archlinux`, ...); see
    /// [`distro_of_os_release_id`] for the one deviation (`alpine`).
    pub distro: Option<String>,
    pub product_name: Option<String>,
    /// os-release `VARIANT` (`Server Edition`, ...).
    pub product_variant: Option<String>,
    pub version: Option<(u32, u32)>,
    /// os-release `ID_LIKE`, lower-case words (`["rhel", "fedora"]`).
    pub id_like: Vec<String>,
}

/// Reads the release files of the root behind `ctx`.
pub fn detect(ctx: &mut Ctx) -> Release {
    let mut rel = Release::default();
    let os_release = if ctx.guest.exists("/etc/os-release") {
        ctx.read_text("/etc/os-release")
    } else {
        // The os-release spec's fallback location (symlinked from /etc on most distros).
        ctx.read_text("/usr/lib/os-release")
    };
    if let Some(text) = os_release {
        rel = parse_os_release(&text);
        if os_release_is_complete(&rel) {
            return rel;
        }
    }
    for (path, parse) in VENDOR_FILES {
        if !ctx.guest.is_file(path) {
            continue;
        }
        let Some(text) = ctx.read_text(path) else {
            continue;
        };
        if let Some(found) = parse(&text) {
            merge(&mut rel, found);
            return rel;
        }
    }
    rel
}

/// Parses os-release. `product_name` is `PRETTY_NAME`, else `NAME VERSION`.
pub fn parse_os_release(text: &str) -> Release {
    let vars = shell_vars(text);
    let get = |k: &str| shell_var(&vars, k).filter(|v| !v.is_empty());
    let distro = get("ID").map(|id| distro_of_os_release_id(&id));
    let product_name = get("PRETTY_NAME").or_else(|| match (get("NAME"), get("VERSION")) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, _) => n,
    });
    Release {
        distro,
        product_name,
        product_variant: get("VARIANT"),
        version: get("VERSION_ID").and_then(|v| major_minor(&v)),
        id_like: get("ID_LIKE")
            .map(|s| {
                s.split_whitespace()
                    .map(|w| w.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// libguestfs stops at os-release only when it gave a distro, a product name and a
/// version, and (for Debian and CentOS, whose `VERSION_ID` is only the major number) a
/// version with a minor part; otherwise it goes on to the vendor files.
fn os_release_is_complete(rel: &Release) -> bool {
    match (&rel.distro, &rel.product_name, rel.version) {
        (Some(d), Some(_), Some((_, 0))) if d == "debian" || d == "centos" => false,
        (Some(_), Some(_), Some(_)) => true,
        _ => false,
    }
}

/// Combines what os-release said with what a vendor file said: os-release's names win;
/// the vendor version fills a missing one or refines `12` into `12.5` (same major only).
fn merge(rel: &mut Release, found: Release) {
    if rel.distro.is_none() {
        rel.distro = found.distro;
    }
    if rel.product_name.is_none() {
        rel.product_name = found.product_name;
    }
    rel.version = match (rel.version, found.version) {
        (None, v) => v,
        (Some((major, 0)), Some((m, minor))) if m == major => Some((major, minor)),
        (v, _) => v,
    };
}

/// Maps os-release `ID` to the distro name we report. libguestfs's names, except
/// `alpine` (libguestfs says `alpinelinux`; INSPECTION.md lists `alpine`). Unknown IDs
/// are kept (sanitised) rather than lost.
pub fn distro_of_os_release_id(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    let known = match id.as_str() {
        "arch" => "archlinux",
        "kali" => "kalilinux",
        "void" => "voidlinux",
        "pld" => "pldlinux",
        "ol" => "oraclelinux",
        "sled" => "sles",
        s if s.starts_with("opensuse") => "opensuse",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

type VendorParser = fn(&str) -> Option<Release>;

/// The vendor release files, in libguestfs's order (derivatives before the file they
/// also ship, e.g. oracle/centos/rocky before redhat-release).
const VENDOR_FILES: &[(&str, VendorParser)] = &[
    ("/etc/lsb-release", parse_lsb_release),
    ("/etc/oracle-release", |t| {
        release_line(t, "oraclelinux", &["Oracle Linux"])
    }),
    ("/etc/centos-release", |t| {
        release_line(t, "centos", &["CentOS"])
    }),
    ("/etc/rocky-release", |t| {
        release_line(t, "rocky", &["Rocky"])
    }),
    ("/etc/almalinux-release", |t| {
        release_line(t, "almalinux", &["AlmaLinux"])
    }),
    ("/etc/altlinux-release", |t| generic(t, "altlinux")),
    ("/etc/redhat-release", parse_redhat_release),
    ("/etc/fedora-release", |t| {
        release_line(t, "fedora", &["Fedora"])
    }),
    ("/etc/debian_version", |t| generic(t, "debian")),
    ("/etc/arch-release", |_| {
        Some(Release {
            distro: Some("archlinux".into()),
            ..Release::default()
        })
    }),
    ("/etc/gentoo-release", |t| generic(t, "gentoo")),
    ("/etc/SuSE-release", parse_suse_release),
    ("/etc/alpine-release", |t| generic(t, "alpine")),
];

/// `DISTRIB_ID` / `DISTRIB_RELEASE` / `DISTRIB_DESCRIPTION`; only the IDs libguestfs
/// knows count (a bare `LSB_VERSION` file, as on RHEL, is not an answer).
fn parse_lsb_release(text: &str) -> Option<Release> {
    let vars = shell_vars(text);
    let distro = match shell_var(&vars, "DISTRIB_ID")?.as_str() {
        "Ubuntu" => "ubuntu",
        "LinuxMint" => "linuxmint",
        "Mageia" => "mageia",
        "CoreOS" => "coreos",
        _ => return None,
    };
    Some(Release {
        distro: Some(distro.into()),
        product_name: shell_var(&vars, "DISTRIB_DESCRIPTION").filter(|s| !s.is_empty()),
        version: shell_var(&vars, "DISTRIB_RELEASE").and_then(|v| major_minor(&v)),
        ..Release::default()
    })
}

/// First non-empty line of a release file: the product name.
fn first_line(text: &str) -> Option<&str> {
    content_lines(text).next()
}

/// Any other release file: distro fixed, product name its first line, version best
/// effort (`12.5`, `3.19.1`; none for `trixie/sid`).
fn generic(text: &str, distro: &str) -> Option<Release> {
    let line = first_line(text)?;
    Some(Release {
        distro: Some(distro.into()),
        product_name: Some(line.to_string()),
        version: major_minor(line).or_else(|| version_after(line, " ")),
        ..Release::default()
    })
}

/// `<Vendor> ... release N[.M] ...` (also the old `release N (Update M)` form); the line
/// must name the vendor, as libguestfs's regexes require.
fn release_line(text: &str, distro: &str, vendors: &[&str]) -> Option<Release> {
    let line = first_line(text)?;
    if !vendors.iter().any(|v| line.contains(v)) {
        return None;
    }
    let mut version = version_after(line, "release ");
    if let (Some((major, _)), Some((update, _))) = (version, version_after(line, "Update ")) {
        version = Some((major, update));
    }
    Some(Release {
        distro: Some(distro.into()),
        product_name: Some(line.to_string()),
        version,
        ..Release::default()
    })
}

/// `/etc/redhat-release` is shared by Fedora, RHEL, CentOS, Scientific Linux and
/// derivatives; the vendor in its first line decides, else "redhat-based".
fn parse_redhat_release(text: &str) -> Option<Release> {
    let candidates: &[(&str, &[&str])] = &[
        ("fedora", &["Fedora"]),
        ("rhel", &["Red Hat"]),
        ("centos", &["CentOS"]),
        ("scientificlinux", &["Scientific Linux"]),
        ("rocky", &["Rocky"]),
        ("almalinux", &["AlmaLinux"]),
    ];
    for (distro, vendors) in candidates {
        if let Some(r) = release_line(text, distro, vendors) {
            return Some(r);
        }
    }
    let line = first_line(text);
    Some(Release {
        distro: Some("redhat-based".into()),
        product_name: line.map(str::to_string),
        version: line.and_then(|l| version_after(l, "release ")),
        ..Release::default()
    })
}

/// `/etc/SuSE-release`: first line names the product; SLES gives `VERSION = N` and
/// `PATCHLEVEL = M` lines, openSUSE a `VERSION = N.M` line.
fn parse_suse_release(text: &str) -> Option<Release> {
    let line = first_line(text)?;
    let field = |key: &str| {
        content_lines(text).find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let (distro, version) = if line.starts_with("SUSE Linux Enterprise")
        || line.starts_with("SUSE LINUX Enterprise")
        || line.starts_with("Novell Linux Desktop")
    {
        let major = field("VERSION").and_then(|v| major_minor(&v)).map(|v| v.0);
        let minor = field("PATCHLEVEL")
            .and_then(|v| major_minor(&v))
            .map(|v| v.0)
            .unwrap_or(0);
        ("sles", major.map(|m| (m, minor)))
    } else if line.starts_with("openSUSE")
        || line.starts_with("SuSE Linux")
        || line.starts_with("SUSE LINUX")
    {
        ("opensuse", field("VERSION").and_then(|v| major_minor(&v)))
    } else {
        ("suse-based", None)
    };
    Some(Release {
        distro: Some(distro.into()),
        product_name: Some(line.to_string()),
        version,
        ..Release::default()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    fn detect_in(fs: MemFs) -> Release {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let r = detect(&mut ctx);
        assert!(ctx.into_warnings().is_empty());
        r
    }

    const DEBIAN: &str =
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
        VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

    #[test]
    fn debian_minor_comes_from_debian_version() {
        let r = detect_in(
            MemFs::new()
                .file("/etc/os-release", DEBIAN)
                .file("/etc/debian_version", "12.5\n"),
        );
        assert_eq!(r.distro.as_deref(), Some("debian"));
        assert_eq!(r.version, Some((12, 5)));
        assert_eq!(
            r.product_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn os_release_link_into_usr_lib() {
        let r = detect_in(
            MemFs::new()
                .symlink("/etc/os-release", "../usr/lib/os-release")
                .file("/usr/lib/os-release", "ID=fedora\nVERSION_ID=39\nPRETTY_NAME=\"Fedora Linux 39 (Server Edition)\"\nVARIANT=\"Server Edition\"\nID_LIKE=\"\"\n"),
        );
        assert_eq!(r.distro.as_deref(), Some("fedora"));
        assert_eq!(r.version, Some((39, 0)));
        assert_eq!(r.product_variant.as_deref(), Some("Server Edition"));
    }

    #[test]
    fn debian_testing_has_no_version() {
        let r = detect_in(
            MemFs::new()
                .file(
                    "/etc/os-release",
                    "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nID=debian\n",
                )
                .file("/etc/debian_version", "trixie/sid\n"),
        );
        assert_eq!((r.distro.as_deref(), r.version), (Some("debian"), None));
    }

    #[test]
    fn fallbacks_without_os_release() {
        let r =
            detect_in(MemFs::new().file("/etc/redhat-release", "CentOS release 6.10 (Final)\n"));
        assert_eq!(
            (r.distro.as_deref(), r.version),
            (Some("centos"), Some((6, 10)))
        );
        let r = detect_in(MemFs::new().file(
            "/etc/redhat-release",
            "Red Hat Enterprise Linux AS release 4 (Nahant Update 9)\n",
        ));
        assert_eq!(
            (r.distro.as_deref(), r.version),
            (Some("rhel"), Some((4, 9)))
        );
        let r = detect_in(MemFs::new().file("/etc/alpine-release", "3.19.1\n"));
        assert_eq!(
            (r.distro.as_deref(), r.version),
            (Some("alpine"), Some((3, 19)))
        );
        let r = detect_in(MemFs::new().file("/etc/arch-release", ""));
        assert_eq!((r.distro.as_deref(), r.version), (Some("archlinux"), None));
        let r = detect_in(MemFs::new().file(
            "/etc/lsb-release",
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=10.04\nDISTRIB_DESCRIPTION=\"Ubuntu 10.04.1 LTS\"\n",
        ));
        assert_eq!(
            (r.distro.as_deref(), r.version),
            (Some("ubuntu"), Some((10, 4)))
        );
        let r = detect_in(MemFs::new().file(
            "/etc/SuSE-release",
            "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n",
        ));
        assert_eq!(
            (r.distro.as_deref(), r.version),
            (Some("sles"), Some((11, 4)))
        );
        let r = detect_in(MemFs::new().file(
            "/etc/SuSE-release",
            "openSUSE 13.1 (x86_64)\nVERSION = 13.1\n",
        ));
        assert_eq!(
            (r.distro.as_deref(), r.version),
            (Some("opensuse"), Some((13, 1)))
        );
    }

    #[test]
    fn centos7_minor_from_centos_release() {
        let r = detect_in(
            MemFs::new()
                .file(
                    "/etc/os-release",
                    "ID=\"centos\"\nVERSION_ID=\"7\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\n",
                )
                .file(
                    "/etc/centos-release",
                    "CentOS Linux release 7.9.2009 (Core)\n",
                ),
        );
        assert_eq!(
            (r.distro.as_deref(), r.version),
            (Some("centos"), Some((7, 9)))
        );
    }

    #[test]
    fn ids() {
        assert_eq!(distro_of_os_release_id("opensuse-leap"), "opensuse");
        assert_eq!(distro_of_os_release_id("arch"), "archlinux");
        assert_eq!(distro_of_os_release_id("Pop"), "pop");
        assert_eq!(distro_of_os_release_id("a b$c"), "abc");
    }
}
