//! Facts derived from the distro and version alone, as libguestfs derives them: the
//! libosinfo short id and the package format and manager.
//!
//! libguestfs never looks at files for these (except Fedora's `/usr/bin/dnf`, which we
//! skip: dnf replaced yum in Fedora 22 whatever is installed). For a distro it does not
//! know we fall back on os-release `ID_LIKE`, so a derivative still gets its family's
//! package format.

use super::release::Release;

/// The libosinfo short id (`debian12`, `ubuntu22.04`, `rhel9.3`, `centos7.0`, `rocky9`,
/// `alpinelinux3.19`, `archlinux`, `opensuse15.5`), following libguestfs's
/// `inspect_get_osinfo`; `None` when it has no answer.
pub fn osinfo(rel: &Release) -> Option<String> {
    let distro = rel.distro.as_deref()?;
    let (major, minor) = rel.version.unwrap_or((0, 0));
    let named = |word: &str| {
        rel.product_name
            .as_deref()
            .is_some_and(|n| n.contains(word))
    };
    let stream = named("Stream");
    let id = match distro {
        "centos" if stream && major >= 8 => format!("centos-stream{major}"),
        "centos" if major >= 8 => format!("centos{major}"),
        "centos" if major == 7 => "centos7.0".to_string(),
        "centos" if major == 5 || major == 6 => format!("centos{major}.{minor}"),
        "centos" => return None,
        "rocky" | "almalinux" if major >= 8 => format!("{distro}{major}"),
        "circle" if major >= 8 => format!("circle{major}.{minor}"),
        "rocky" | "almalinux" | "circle" => return None,
        "debian" if major >= 4 => format!("debian{major}"),
        "debian" if major >= 1 => format!("debian{major}.{minor}"),
        "debian" => return None,
        "fedora" | "mageia" => format!("{distro}{major}"),
        // Rolling: its VERSION_ID is a date, not a release.
        "opensuse" if named("Tumbleweed") => "opensusetumbleweed".to_string(),
        // libosinfo names the SLE 15 family `sle` (server and desktop alike).
        "sles" if major >= 15 && minor == 0 => format!("sle{major}"),
        "sles" if major >= 15 => format!("sle{major}sp{minor}"),
        "sles" if minor == 0 => format!("sles{major}"),
        "sles" => format!("sles{major}sp{minor}"),
        "rhel" if major == 3 && minor == 0 => "rhel3".to_string(),
        "oraclelinux" if major > 0 => format!("ol{major}.{minor}"),
        "ubuntu" => format!("ubuntu{major}.{minor:02}"),
        "archlinux" | "gentoo" | "voidlinux" => distro.to_string(),
        // libosinfo has no Container Linux or Flatcar entry (its only CoreOS ids are
        // Fedora CoreOS streams, which os-release does not name).
        "coreos" | "flatcar" => return None,
        "altlinux" if major >= 8 => format!("alt{major}.{minor}"),
        // libosinfo's name for Alpine (we report the distro as "alpine").
        "alpine" if major > 0 || minor > 0 => format!("alpinelinux{major}.{minor}"),
        _ if major > 0 || minor > 0 => format!("{distro}{major}.{minor}"),
        _ => return None,
    };
    Some(id)
}

/// The version to report: the release's own, but 0.0 for rolling distributions, which
/// have none (Arch, Gentoo, Void) or only a snapshot date (openSUSE Tumbleweed), as
/// virt-inspector reports them.
pub fn version(rel: &Release) -> Option<(u32, u32)> {
    let rolling = match rel.distro.as_deref() {
        Some("archlinux" | "gentoo" | "voidlinux") => true,
        Some("opensuse") => rel
            .product_name
            .as_deref()
            .is_some_and(|n| n.contains("Tumbleweed")),
        _ => false,
    };
    if rolling {
        Some((0, 0))
    } else {
        rel.version
    }
}

/// Package families a distro belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    RedHat,
    Suse,
    Debian,
    Arch,
    Alpine,
    Gentoo,
    Void,
    Mandriva,
}

fn family_of(distro: &str) -> Option<Family> {
    Some(match distro {
        "fedora" | "rhel" | "centos" | "rocky" | "almalinux" | "oraclelinux"
        | "scientificlinux" | "redhat-based" | "circle" | "neokylin" | "meego" | "amzn"
        | "altlinux" => Family::RedHat,
        "opensuse" | "sles" | "suse-based" => Family::Suse,
        "debian" | "ubuntu" | "linuxmint" | "kalilinux" => Family::Debian,
        "archlinux" => Family::Arch,
        "alpine" => Family::Alpine,
        "gentoo" => Family::Gentoo,
        "voidlinux" => Family::Void,
        "mageia" | "mandriva" => Family::Mandriva,
        _ => return None,
    })
}

/// The distro's family, or for an unknown distro the first family its `ID_LIKE` names.
fn family(rel: &Release) -> Option<(Family, bool)> {
    if let Some(f) = rel.distro.as_deref().and_then(family_of) {
        return Some((f, true));
    }
    rel.id_like.iter().find_map(|like| {
        let d = match like.as_str() {
            "arch" => "archlinux",
            "suse" | "opensuse" => "opensuse",
            other => other,
        };
        family_of(d).map(|f| (f, false))
    })
}

/// `deb`, `rpm`, `apk`, `pacman`, `ebuild`, `xbps`.
pub fn package_format(rel: &Release) -> Option<&'static str> {
    Some(match family(rel)?.0 {
        Family::RedHat | Family::Suse | Family::Mandriva => "rpm",
        Family::Debian => "deb",
        Family::Arch => "pacman",
        Family::Alpine => "apk",
        Family::Gentoo => "ebuild",
        Family::Void => "xbps",
    })
}

/// `apt`, `dnf`, `yum`, `up2date`, `zypper`, `urpmi`, `apk`, `pacman`, `portage`, `xbps`.
/// dnf from Fedora 22 and RHEL-family 8, yum before (up2date before RHEL 5).
pub fn package_management(rel: &Release) -> Option<&'static str> {
    let (family, own) = family(rel)?;
    let distro = rel.distro.as_deref().unwrap_or("");
    let major = rel.version.map(|v| v.0).unwrap_or(0);
    Some(match family {
        Family::RedHat if distro == "altlinux" => "apt",
        Family::RedHat if distro == "meego" => "yum",
        Family::RedHat if distro == "neokylin" => "dnf",
        // Amazon Linux 2 (yum), then 2022/2023 (dnf).
        Family::RedHat if distro == "amzn" => match major {
            0 => return None,
            1..=2021 => "yum",
            _ => "dnf",
        },
        Family::RedHat if distro == "fedora" => match major {
            0 => return None,
            1..=21 => "yum",
            _ => "dnf",
        },
        // A derivative's own version numbers say nothing about yum vs dnf.
        Family::RedHat if !own => return None,
        Family::RedHat => match major {
            8.. => "dnf",
            5..=7 => "yum",
            2..=4 => "up2date",
            _ => return None,
        },
        Family::Suse => "zypper",
        Family::Debian => "apt",
        Family::Arch => "pacman",
        Family::Alpine => "apk",
        Family::Gentoo => "portage",
        Family::Void => "xbps",
        Family::Mandriva => "urpmi",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(distro: &str, version: Option<(u32, u32)>) -> Release {
        Release {
            distro: Some(distro.into()),
            version,
            ..Release::default()
        }
    }

    #[test]
    fn osinfo_ids_match_libosinfo() {
        let cases = [
            ("debian", Some((12, 5)), Some("debian12")),
            ("ubuntu", Some((22, 4)), Some("ubuntu22.04")),
            ("fedora", Some((39, 0)), Some("fedora39")),
            ("rhel", Some((9, 3)), Some("rhel9.3")),
            ("centos", Some((7, 9)), Some("centos7.0")),
            ("centos", Some((6, 10)), Some("centos6.10")),
            ("centos", Some((8, 5)), Some("centos8")),
            ("rocky", Some((9, 3)), Some("rocky9")),
            ("alpine", Some((3, 19)), Some("alpinelinux3.19")),
            ("archlinux", None, Some("archlinux")),
            ("opensuse", Some((15, 5)), Some("opensuse15.5")),
            ("sles", Some((15, 0)), Some("sle15")),
            ("sles", Some((15, 4)), Some("sle15sp4")),
            ("oraclelinux", Some((8, 4)), Some("ol8.4")),
            ("circle", Some((8, 5)), Some("circle8.5")),
            ("sles", Some((12, 5)), Some("sles12sp5")),
            ("debian", None, None),
            ("pop", None, None),
            ("flatcar", Some((3815, 2)), None),
            ("coreos", Some((2512, 3)), None),
        ];
        for (d, v, want) in cases {
            assert_eq!(osinfo(&rel(d, v)).as_deref(), want, "{d} {v:?}");
        }
    }

    #[test]
    fn rolling_distributions_are_version_0_0() {
        assert_eq!(version(&rel("archlinux", None)), Some((0, 0)));
        assert_eq!(version(&rel("voidlinux", None)), Some((0, 0)));
        assert_eq!(version(&rel("gentoo", Some((2, 15)))), Some((0, 0)));
        let tumbleweed = Release {
            product_name: Some("openSUSE Tumbleweed".into()),
            ..rel("opensuse", Some((20241120, 0)))
        };
        assert_eq!(version(&tumbleweed), Some((0, 0)));
        assert_eq!(version(&rel("opensuse", Some((15, 5)))), Some((15, 5)));
        assert_eq!(version(&rel("debian", None)), None);
    }

    #[test]
    fn rolling_and_stream_releases_are_told_by_their_name() {
        let named = |d: &str, v, name: &str| Release {
            product_name: Some(name.into()),
            ..rel(d, Some(v))
        };
        let cases = [
            (
                named("opensuse", (20241120, 0), "openSUSE Tumbleweed"),
                "opensusetumbleweed",
            ),
            (named("centos", (9, 0), "CentOS Stream 9"), "centos-stream9"),
            (named("centos", (8, 0), "CentOS Linux 8"), "centos8"),
            (
                named("opensuse", (15, 5), "openSUSE Leap 15.5"),
                "opensuse15.5",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(osinfo(&r).as_deref(), Some(want), "{r:?}");
        }
    }

    #[test]
    fn package_manager_by_version() {
        let pm = |d, v| package_management(&rel(d, Some((v, 0))));
        assert_eq!(pm("rhel", 9), Some("dnf"));
        assert_eq!(pm("rhel", 7), Some("yum"));
        assert_eq!(pm("centos", 8), Some("dnf"));
        assert_eq!(pm("fedora", 21), Some("yum"));
        assert_eq!(pm("fedora", 39), Some("dnf"));
        assert_eq!(pm("debian", 12), Some("apt"));
        assert_eq!(pm("opensuse", 15), Some("zypper"));
        assert_eq!(package_format(&rel("alpine", None)), Some("apk"));
        assert_eq!(package_format(&rel("archlinux", None)), Some("pacman"));
        assert_eq!(package_format(&rel("rocky", None)), Some("rpm"));
    }

    #[test]
    fn unknown_distro_uses_id_like() {
        let r = Release {
            distro: Some("pop".into()),
            id_like: vec!["ubuntu".into(), "debian".into()],
            ..Release::default()
        };
        assert_eq!(
            (package_format(&r), package_management(&r)),
            (Some("deb"), Some("apt"))
        );
        let r = Release {
            distro: Some("foo".into()),
            id_like: vec!["rhel".into()],
            ..Release::default()
        };
        assert_eq!(
            (package_format(&r), package_management(&r)),
            (Some("rpm"), None)
        );
    }
}

/// Every id [`osinfo`] gives for a release libosinfo knows must be one of libosinfo's own
/// ids: read from the `osinfo-db` Debian package's XML (`<short-id>`, `<distro>`,
/// `<version>`), so an invented id cannot slip in. Releases newer than the installed
/// database cannot be checked this way; the unit cases above cover those.
#[cfg(test)]
mod libosinfo_db {
    use std::collections::BTreeSet;

    use super::*;

    const DB: &str = "/usr/share/osinfo/os";

    /// Our distro name for a libosinfo `<distro>`, where we report that distro at all.
    fn ours(db_distro: &str) -> Option<&'static str> {
        Some(match db_distro {
            "almalinux" => "almalinux",
            "alpinelinux" => "alpine",
            "altlinux" | "alt" => "altlinux",
            "archlinux" => "archlinux",
            "centos" => "centos",
            "circle" => "circle",
            "debian" => "debian",
            "fedora" => "fedora",
            "gentoo" => "gentoo",
            "mageia" => "mageia",
            "ol" => "oraclelinux",
            "opensuse" => "opensuse",
            "rhel" => "rhel",
            "rocky" => "rocky",
            "scientificlinux" => "scientificlinux",
            "sle" | "sles" => "sles",
            "ubuntu" => "ubuntu",
            "voidlinux" => "voidlinux",
            _ => return None,
        })
    }

    fn tag<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        xml.split(open.as_str())
            .skip(1)
            .filter_map(|rest| rest.split(close.as_str()).next())
            .collect()
    }

    /// One OS of the database: its `<distro>`, `<version>`, `<name>` and short ids.
    struct Entry(String, Option<String>, Option<String>, Vec<String>);

    fn entries() -> Vec<Entry> {
        let vendors = std::fs::read_dir(DB)
            .unwrap_or_else(|e| panic!("{DB}: {e} (install the osinfo-db Debian package)"));
        let mut out = Vec::new();
        for vendor in vendors {
            for file in std::fs::read_dir(vendor.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_none_or(|e| e != "xml") {
                    continue;
                }
                let xml = std::fs::read_to_string(&path).unwrap();
                // The OS's own fields come before its media and trees.
                let head = xml.split("<media").next().unwrap_or(&xml);
                let distro = tag(head, "distro").first().map(|s| s.to_string());
                let Some(distro) = distro else { continue };
                out.push(Entry(
                    distro,
                    tag(head, "version").first().map(|s| s.to_string()),
                    tag(head, "name").first().map(|s| s.to_string()),
                    tag(head, "short-id")
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                ));
            }
        }
        out
    }

    #[test]
    fn every_id_we_give_for_a_known_release_is_libosinfos() {
        let entries = entries();
        let all: BTreeSet<&str> = entries
            .iter()
            .flat_map(|e| e.3.iter().map(String::as_str))
            .collect();
        assert!(all.len() > 500, "only {} ids read from {DB}", all.len());
        let mut checked = 0;
        let mut wrong = Vec::new();
        for Entry(db_distro, version, name, ids) in &entries {
            let Some(distro) = ours(db_distro) else {
                continue;
            };
            let version = match version.as_deref() {
                None => None,
                Some(v) => match super::super::text::major_minor(v) {
                    Some(v) => Some(v),
                    // "unknown", "testing", "8-unknown", "p9": not a release we report.
                    None => continue,
                },
            };
            if version.is_none() && !matches!(distro, "archlinux" | "gentoo" | "voidlinux") {
                continue;
            }
            // Placeholders for releases libosinfo does not know yet.
            if version.is_some_and(|(major, _)| major == 0)
                || name.as_deref().is_some_and(|n| n.contains("Unknown"))
            {
                continue;
            }
            let rel = Release {
                distro: Some(distro.to_string()),
                version,
                product_name: name.clone(),
                ..Release::default()
            };
            checked += 1;
            match osinfo(&rel) {
                Some(id) if all.contains(id.as_str()) => {}
                got => wrong.push(format!(
                    "{db_distro} {version:?} {name:?} (libosinfo: {ids:?}): we say {got:?}"
                )),
            }
        }
        assert!(checked > 300, "only {checked} releases checked");
        // We give Container Linux and Flatcar no id because libosinfo has none.
        let coreos: Vec<&&str> = all
            .iter()
            .filter(|id| id.contains("flatcar") || id.contains("container-linux"))
            .collect();
        assert!(coreos.is_empty(), "libosinfo now knows {coreos:?}");
        assert!(
            wrong.is_empty(),
            "{} of {checked}:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}
