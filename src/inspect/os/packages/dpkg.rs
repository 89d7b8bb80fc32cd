//! dpkg's `/var/lib/dpkg/status`: the installed-package database of Debian and Ubuntu.
//!
//! The file is a sequence of RFC822-style paragraphs ("stanzas") separated by blank
//! lines; each line is `Field: value` or a continuation line starting with a space or tab.
//! A stanza describes a package dpkg knows about, installed or not: only those whose
//! `Status` says the package is installed are applications.

use super::{
    description_text, field_text, parse_epoch, sort_applications, summary_text, PackageError,
    PackageList, MAX_DESCRIPTION_LEN, MAX_PACKAGES,
};
use crate::inspect::report::Application;

const DB: &str = "dpkg status";

/// The fields of one stanza we care about, as raw bytes plus the line they were on.
#[derive(Default)]
struct Stanza<'a> {
    first_line: usize,
    package: Option<(&'a [u8], usize)>,
    status: Option<(&'a [u8], usize)>,
    version: Option<(&'a [u8], usize)>,
    architecture: Option<&'a [u8]>,
    description: Option<&'a [u8]>,
    homepage: Option<&'a [u8]>,
    source: Option<&'a [u8]>,
    /// The long description, unfolded: continuation lines of `Description` without their
    /// leading space, ` .` as an empty line. Bounded by [`MAX_DESCRIPTION_LEN`] (plus one
    /// line), so a hostile stanza cannot grow it without end.
    long_description: Vec<u8>,
    /// Whether the last field line was `Description`, so its continuation lines are kept.
    in_description: bool,
    /// Whether any field line was seen, so a continuation line has something to continue.
    has_field: bool,
}

/// Parses a dpkg status file into the installed packages, sorted by name then version;
/// the warnings of [`parse_dpkg_status_list`] are dropped.
pub fn parse_dpkg_status(bytes: &[u8]) -> Result<Vec<Application>, PackageError> {
    parse_dpkg_status_list(bytes).map(|list| list.applications)
}

/// Parses a dpkg status file into the installed packages, sorted by name then version,
/// plus warnings.
///
/// A package counts as installed when the third word of its `Status` field (`want flag
/// state`) is exactly `installed`: so `install ok installed` and `hold ok installed` both
/// count, while `deinstall ok config-files` (removed, configuration kept),
/// `half-installed`, `not-installed`, `unpacked` and the transient `triggers-*` states do
/// not. This is what `dpkg-query`'s `${db:Status-Abbrev}` reports as state `i` (stricter
/// than libguestfs, which looks for the substring). A `Status` that is not such a triple
/// (dpkg never writes one, but a hand-edited or damaged file may) counts as installed
/// when one of its words is exactly `installed`, with a warning naming the line.
///
/// Besides name, version and arch, each application gets `url` (`Homepage`),
/// `source_package` (`Source` without its version in parentheses; null when absent),
/// `summary` (the first line of `Description`) and `description` (its continuation
/// lines, unfolded). dpkg has epochs, so a version without one has epoch 0.
///
/// Stanzas of packages that are not installed are skipped without validation. An
/// installed stanza without `Package` or `Version`, or with a version that dpkg itself
/// would reject, is an error naming its line.
pub fn parse_dpkg_status_list(bytes: &[u8]) -> Result<PackageList, PackageError> {
    let mut list = PackageList::default();
    let mut stanza = Stanza::default();
    let mut line_no = 0usize;
    for raw in bytes.split(|&b| b == b'\n') {
        line_no += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|&b| b == b' ' || b == b'\t') {
            finish(std::mem::take(&mut stanza), &mut list)?;
            continue;
        }
        if stanza.first_line == 0 {
            stanza.first_line = line_no;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Continuation of the previous field: only Description's long text is kept.
            if !stanza.has_field {
                return Err(syntax(line_no, "continuation line before any field"));
            }
            if stanza.in_description && stanza.long_description.len() <= MAX_DESCRIPTION_LEN {
                let text = &line[1..];
                if !stanza.long_description.is_empty() {
                    stanza.long_description.push(b'\n');
                }
                if text.trim_ascii_end() != b"." {
                    let room = MAX_DESCRIPTION_LEN + 1 - stanza.long_description.len();
                    stanza
                        .long_description
                        .extend_from_slice(&text[..text.len().min(room)]);
                }
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
        stanza.in_description = false;
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
            stanza.status = Some((value, line_no));
        } else if name.eq_ignore_ascii_case(b"Version") {
            slot_dup(stanza.version.is_some(), "Version")?;
            stanza.version = Some((value, line_no));
        } else if name.eq_ignore_ascii_case(b"Architecture") {
            slot_dup(stanza.architecture.is_some(), "Architecture")?;
            stanza.architecture = Some(value);
        } else if name.eq_ignore_ascii_case(b"Description") {
            slot_dup(stanza.description.is_some(), "Description")?;
            stanza.description = Some(value);
            stanza.in_description = true;
        } else if name.eq_ignore_ascii_case(b"Homepage") {
            slot_dup(stanza.homepage.is_some(), "Homepage")?;
            stanza.homepage = Some(value);
        } else if name.eq_ignore_ascii_case(b"Source") {
            slot_dup(stanza.source.is_some(), "Source")?;
            stanza.source = Some(value);
        }
    }
    finish(stanza, &mut list)?;
    sort_applications(&mut list.applications);
    Ok(list)
}

/// Turns a complete stanza into an application when it is an installed package.
fn finish(stanza: Stanza<'_>, list: &mut PackageList) -> Result<(), PackageError> {
    match installed(stanza.status.map(|(s, _)| s)) {
        Installed::No => return Ok(()),
        Installed::Yes => {}
        Installed::Loosely => {
            let (status, line) = stanza.status.unwrap_or_default();
            list.warn(format!(
                "line {line}: Status {:?} is not a `want flag status` triple; counted as \
                 installed because one of its words is `installed`",
                String::from_utf8_lossy(&status[..status.len().min(200)])
            ));
        }
    }
    let apps = &mut list.applications;
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
    // `Source: name (version)` when the source version differs from the binary's.
    let source_package = stanza
        .source
        .and_then(|s| s.split(|b| b.is_ascii_whitespace()).next())
        .and_then(field_text)
        .filter(|s| !s.is_empty());
    apps.push(Application {
        name,
        // dpkg has epochs: none written means epoch 0 (libguestfs reports it so).
        epoch: Some(epoch.unwrap_or(0)),
        version: upstream.to_string(),
        release: revision.map(str::to_string),
        arch,
        summary: stanza.description.and_then(summary_text),
        url: stanza.homepage.and_then(summary_text),
        source_package,
        description: description_text(&stanza.long_description),
        ..Default::default()
    });
    Ok(())
}

/// What a `Status` value says about installation.
#[derive(Debug, PartialEq, Eq)]
enum Installed {
    No,
    Yes,
    /// Not a `want flag status` triple, but one word is `installed`: counted, with a
    /// warning.
    Loosely,
}

/// Whether a `Status: want flag status` value says the package is installed.
fn installed(status: Option<&[u8]>) -> Installed {
    let Some(status) = status else {
        return Installed::No;
    };
    let words: Vec<&[u8]> = status
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .take(64)
        .collect();
    match words.as_slice() {
        [_, _, b"installed"] => Installed::Yes,
        [_, _, _] => Installed::No,
        w if w.iter().any(|w| *w == b"installed") => Installed::Loosely,
        _ => Installed::No,
    }
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
        assert_eq!(apps[0].epoch, Some(0));
        assert_eq!(z.source_package.as_deref(), Some("zlib"));
        assert_eq!(
            z.description.as_deref(),
            Some(
                "zlib is a library implementing the deflate compression method found\n\
                 in gzip and PKZIP.\n\nThis package includes the shared library."
            )
        );
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
    fn status_triples_are_strict_and_others_warn() {
        assert_eq!(installed(Some(b"install ok installed")), Installed::Yes);
        assert_eq!(installed(Some(b"hold ok installed")), Installed::Yes);
        for s in [
            &b"install ok not-installed"[..],
            b"install ok half-installed",
            b"deinstall ok config-files",
            b"installed ok unpacked",
            b"install ok installedx",
            b"",
        ] {
            assert_eq!(installed(Some(s)), Installed::No, "{s:?}");
        }
        assert_eq!(installed(Some(b"installed")), Installed::Loosely);
        assert_eq!(installed(Some(b"install installed")), Installed::Loosely);
        assert_eq!(
            installed(Some(b"install ok installed extra")),
            Installed::Loosely
        );
        assert_eq!(installed(None), Installed::No);

        let text = "Package: a\nStatus: install ok installed\nVersion: 1\n\n\
                    Package: b\nStatus: installed\nVersion: 2\n\n\
                    Package: c\nStatus: install ok half-installed\nVersion: 3\n";
        let list = parse_dpkg_status_list(text.as_bytes()).unwrap();
        let names: Vec<_> = list.applications.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(list.warnings.len(), 1);
        assert!(
            list.warnings[0].starts_with("line 6: "),
            "{:?}",
            list.warnings
        );
        assert!(
            list.warnings[0].contains("\"installed\""),
            "{:?}",
            list.warnings
        );
    }

    #[test]
    fn homepage_source_and_long_description() {
        let text = "Package: p\nStatus: install ok installed\nVersion: 1.0-2\n\
                    Source: src (1.0-1)\nHomepage: https://example.org/p\n\
                    Description: short one\n first paragraph\n .\n  verbatim line\n\
                    Tag: after\n continuation of Tag\n\n\
                    Package: q\nStatus: install ok installed\nVersion: 0:2\nSource: qsrc\n";
        let apps = parse_dpkg_status(text.as_bytes()).unwrap();
        let p = &apps[0];
        assert_eq!(p.url.as_deref(), Some("https://example.org/p"));
        assert_eq!(p.source_package.as_deref(), Some("src"));
        assert_eq!(p.summary.as_deref(), Some("short one"));
        assert_eq!(
            p.description.as_deref(),
            Some("first paragraph\n\n verbatim line")
        );
        assert_eq!(p.epoch, Some(0));
        let q = &apps[1];
        assert_eq!(q.source_package.as_deref(), Some("qsrc"));
        assert_eq!((q.url.as_deref(), q.summary.as_deref()), (None, None));
        assert_eq!(q.description, None);
    }

    #[test]
    fn long_description_is_bounded() {
        let mut text =
            b"Package: p\nStatus: install ok installed\nVersion: 1\nDescription: s\n".to_vec();
        for _ in 0..20_000 {
            text.extend_from_slice(" \u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\n".as_bytes());
        }
        text.extend_from_slice(&[b' ', 0xc3, b'\n']);
        let apps = parse_dpkg_status(&text).unwrap();
        let d = apps[0].description.as_deref().unwrap();
        assert!(d.len() <= MAX_DESCRIPTION_LEN, "{}", d.len());
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
