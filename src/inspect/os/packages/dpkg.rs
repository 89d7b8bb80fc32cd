//! dpkg's `/var/lib/dpkg/status`: the installed-package database of Debian and Ubuntu.
//!
//! The file is a sequence of RFC822-style paragraphs ("stanzas") separated by blank
//! lines; each line is `Field: value` or a continuation line starting with a space or tab.
//! A stanza describes a package dpkg knows about, installed or not: only those whose
//! `Status` says the package is installed are applications.

use super::{field_text, parse_epoch, sort_applications, summary_text, PackageError, MAX_PACKAGES};
use crate::inspect::report::Application;

const DB: &str = "dpkg status";

/// The fields of one stanza we care about, as raw bytes plus the line they were on.
#[derive(Default)]
struct Stanza<'a> {
    first_line: usize,
    package: Option<(&'a [u8], usize)>,
    status: Option<&'a [u8]>,
    version: Option<(&'a [u8], usize)>,
    architecture: Option<&'a [u8]>,
    description: Option<&'a [u8]>,
    /// Whether any field line was seen, so a continuation line has something to continue.
    has_field: bool,
}

/// Parses a dpkg status file into the installed packages, sorted by name then version.
///
/// A package counts as installed when the third word of its `Status` field (`want flag
/// state`) is `installed`: so `install ok installed` and `hold ok installed` both count,
/// while `deinstall ok config-files` (removed, configuration kept), `half-installed`,
/// `unpacked` and the transient `triggers-*` states do not. This is what `dpkg-query`'s
/// `${db:Status-Abbrev}` reports as state `i`.
///
/// Stanzas of packages that are not installed are skipped without validation. An
/// installed stanza without `Package` or `Version`, or with a version that dpkg itself
/// would reject, is an error naming its line.
pub fn parse_dpkg_status(bytes: &[u8]) -> Result<Vec<Application>, PackageError> {
    let mut apps = Vec::new();
    let mut stanza = Stanza::default();
    let mut line_no = 0usize;
    for raw in bytes.split(|&b| b == b'\n') {
        line_no += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|&b| b == b' ' || b == b'\t') {
            finish(std::mem::take(&mut stanza), &mut apps)?;
            continue;
        }
        if stanza.first_line == 0 {
            stanza.first_line = line_no;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Continuation of the previous field (only Description's long text here,
            // which we do not keep).
            if !stanza.has_field {
                return Err(syntax(line_no, "continuation line before any field"));
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(syntax(
                line_no,
                "line is neither a field nor a continuation",
            ));
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        stanza.has_field = true;
        let slot_dup = |seen: bool, field: &str| {
            if seen {
                Err(syntax(line_no, &format!("duplicate {field} field")))
            } else {
                Ok(())
            }
        };
        if name.eq_ignore_ascii_case(b"Package") {
            slot_dup(stanza.package.is_some(), "Package")?;
            stanza.package = Some((value, line_no));
        } else if name.eq_ignore_ascii_case(b"Status") {
            slot_dup(stanza.status.is_some(), "Status")?;
            stanza.status = Some(value);
        } else if name.eq_ignore_ascii_case(b"Version") {
            slot_dup(stanza.version.is_some(), "Version")?;
            stanza.version = Some((value, line_no));
        } else if name.eq_ignore_ascii_case(b"Architecture") {
            slot_dup(stanza.architecture.is_some(), "Architecture")?;
            stanza.architecture = Some(value);
        } else if name.eq_ignore_ascii_case(b"Description") {
            slot_dup(stanza.description.is_some(), "Description")?;
            stanza.description = Some(value);
        }
    }
    finish(stanza, &mut apps)?;
    sort_applications(&mut apps);
    Ok(apps)
}

/// Turns a complete stanza into an application when it is an installed package.
fn finish(stanza: Stanza<'_>, apps: &mut Vec<Application>) -> Result<(), PackageError> {
    if !is_installed(stanza.status) {
        return Ok(());
    }
    let Some((package, package_line)) = stanza.package else {
        return Err(syntax(
            stanza.first_line,
            "installed package stanza without a Package field",
        ));
    };
    let name = field_text(package)
        .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
        .ok_or_else(|| syntax(package_line, "invalid package name"))?;
    let Some((version, version_line)) = stanza.version else {
        return Err(syntax(
            stanza.first_line,
            &format!("installed package {name} has no Version field"),
        ));
    };
    let version = field_text(version).ok_or_else(|| syntax(version_line, "version too long"))?;
    let (epoch, upstream, revision) = split_version(&version)
        .map_err(|why| syntax(version_line, &format!("version {version:?}: {why}")))?;
    let arch = match stanza.architecture {
        Some(a) => {
            Some(field_text(a).ok_or_else(|| syntax(stanza.first_line, "architecture too long"))?)
        }
        None => None,
    }
    .filter(|a| !a.is_empty());
    if apps.len() >= MAX_PACKAGES {
        return Err(PackageError::TooLarge {
            database: DB,
            what: "number of installed packages",
            size: apps.len() as u64 + 1,
            limit: MAX_PACKAGES as u64,
        });
    }
    apps.push(Application {
        name,
        epoch,
        version: upstream.to_string(),
        release: revision.map(str::to_string),
        arch,
        summary: stanza.description.and_then(summary_text),
        ..Default::default()
    });
    Ok(())
}

/// Whether a `Status: want flag state` value says the package is installed.
fn is_installed(status: Option<&[u8]>) -> bool {
    let Some(status) = status else { return false };
    let mut words = status
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    matches!(
        (words.next(), words.next(), words.next(), words.next()),
        (Some(_), Some(_), Some(b"installed"), None)
    )
}

/// Splits a Debian version `[epoch:]upstream[-revision]` the way Debian policy defines it:
/// the epoch is before the first `:`, the revision after the last `-`. Rejects what dpkg
/// rejects (empty parts, non-numeric epoch, embedded whitespace).
pub(crate) fn split_version(
    version: &str,
) -> Result<(Option<u32>, &str, Option<&str>), &'static str> {
    if version.is_empty() {
        return Err("empty version");
    }
    if version.contains(char::is_whitespace) {
        return Err("version contains whitespace");
    }
    let (epoch, rest) = match version.split_once(':') {
        Some((e, rest)) => (Some(parse_epoch(e).ok_or("epoch is not a number")?), rest),
        None => (None, version),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => {
            if r.is_empty() {
                return Err("empty revision");
            }
            (u, Some(r))
        }
        None => (rest, None),
    };
    if upstream.is_empty() {
        return Err("empty upstream version");
    }
    Ok((epoch, upstream, revision))
}

/// A syntax error of this database at `line`.
fn syntax(line: usize, message: &str) -> PackageError {
    PackageError::syntax(DB, line, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Package: zlib1g
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.
 .
 This package includes the shared library.

Package: removed-thing
Status: deinstall ok config-files
Architecture: all
Version: 2.0

Package: libc-bin
Status: hold ok installed
Architecture: amd64
Version: 2.36-9+deb12u4
Description: GNU C Library: Binaries

package: adduser
status: install ok installed
architecture: all
version: 3.134
description: add and remove users and groups
";

    #[test]
    fn parses_installed_packages_only() {
        let apps = parse_dpkg_status(SAMPLE.as_bytes()).unwrap();
        let names: Vec<_> = apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["adduser", "libc-bin", "zlib1g"]);
        let z = &apps[2];
        assert_eq!(z.epoch, Some(1));
        assert_eq!(z.version, "1.2.13.dfsg");
        assert_eq!(z.release.as_deref(), Some("1"));
        assert_eq!(z.arch.as_deref(), Some("amd64"));
        assert_eq!(z.summary.as_deref(), Some("compression library - runtime"));
        assert_eq!(apps[0].release, None);
        assert_eq!(apps[0].epoch, None);
        assert_eq!(apps[1].version, "2.36");
        assert_eq!(apps[1].release.as_deref(), Some("9+deb12u4"));
    }

    #[test]
    fn version_split_follows_policy() {
        assert_eq!(
            split_version("1:2.3-4-5"),
            Ok((Some(1), "2.3-4", Some("5")))
        );
        assert_eq!(split_version("2.3:4"), Err("epoch is not a number"));
        assert_eq!(split_version("0:1:2-3"), Ok((Some(0), "1:2", Some("3"))));
        assert!(split_version("1:").is_err());
        assert!(split_version("1.0-").is_err());
        assert!(split_version("").is_err());
    }

    #[test]
    fn installed_without_version_is_an_error_with_a_line() {
        let text = "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: install ok installed\n";
        let err = parse_dpkg_status(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse_dpkg_status(b"Package: a\n continuation\nbroken line\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(parse_dpkg_status(b" leading continuation\n").is_err());
        assert!(parse_dpkg_status(b"Package: a\nPackage: b\n").is_err());
    }

    #[test]
    fn status_needs_exactly_three_words() {
        assert!(is_installed(Some(b"install ok installed")));
        assert!(!is_installed(Some(b"install ok not-installed")));
        assert!(!is_installed(Some(b"installed")));
        assert!(!is_installed(Some(b"install ok installed extra")));
        assert!(!is_installed(None));
    }

    #[test]
    fn crlf_and_empty_input() {
        assert!(parse_dpkg_status(b"").unwrap().is_empty());
        let apps =
            parse_dpkg_status(b"Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\n")
                .unwrap();
        assert_eq!(apps[0].version, "1");
    }

    #[test]
    fn every_truncation_is_ok_or_error() {
        let bytes = SAMPLE.as_bytes();
        for end in 0..=bytes.len() {
            let _ = parse_dpkg_status(&bytes[..end]);
        }
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] = 0xff;
            let _ = parse_dpkg_status(&b);
        }
    }
}
