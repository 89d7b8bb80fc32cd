//! Alpine's `/lib/apk/db/installed`: apk's database of installed packages.
//!
//! Paragraphs separated by blank lines, one per package; every line is `X:value` where
//! the single letter `X` names the field (`P` name, `V` version, `A` arch, `T` description,
//! and many we do not need: `C` checksum, `D` dependencies, `F`/`R` directories and files,
//! ...). Unlike dpkg, the file lists only installed packages.

use super::{field_text, sort_applications, summary_text, PackageError, MAX_PACKAGES};
use crate::inspect::report::Application;

const DB: &str = "apk installed database";

/// The fields of one package paragraph, with the line each was on.
#[derive(Default)]
struct Record<'a> {
    first_line: usize,
    name: Option<&'a [u8]>,
    version: Option<(&'a [u8], usize)>,
    arch: Option<&'a [u8]>,
    description: Option<&'a [u8]>,
    url: Option<&'a [u8]>,
    origin: Option<&'a [u8]>,
}

/// Parses an apk `installed` database into applications sorted by name then version.
///
/// An apk version is `pkgver-rN`: like libguestfs, the `-rN` suffix becomes the release
/// `N` (without the `r`) and the rest the version; apk has no epochs (epoch is null).
/// `T:` is the summary, `U:` the url and `o:` (origin, the APKBUILD's name) the source
/// package; apk keeps no long description. A line that is not
/// `X:value`, or a paragraph without `P` or `V`, is an error naming its line (apk itself
/// rejects such a database).
pub fn parse_apk_installed(bytes: &[u8]) -> Result<Vec<Application>, PackageError> {
    let mut apps = Vec::new();
    let mut record = Record::default();
    let mut line_no = 0usize;
    for raw in bytes.split(|&b| b == b'\n') {
        line_no += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            finish(std::mem::take(&mut record), &mut apps)?;
            continue;
        }
        if record.first_line == 0 {
            record.first_line = line_no;
        }
        let (key, value) = match line {
            [key, b':', value @ ..] => (*key, value),
            _ => return Err(syntax(line_no, "line is not of the form X:value")),
        };
        match key {
            b'P' => record.name = Some(value),
            b'V' => record.version = Some((value, line_no)),
            b'A' => record.arch = Some(value),
            b'T' => record.description = Some(value),
            b'U' => record.url = Some(value),
            b'o' => record.origin = Some(value),
            _ => {}
        }
    }
    finish(record, &mut apps)?;
    sort_applications(&mut apps);
    Ok(apps)
}

/// Turns one complete paragraph into an application.
fn finish(record: Record<'_>, apps: &mut Vec<Application>) -> Result<(), PackageError> {
    if record.first_line == 0 {
        return Ok(());
    }
    let name = record
        .name
        .and_then(field_text)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| syntax(record.first_line, "package without a valid P: (name) line"))?;
    let (version, line) = record.version.ok_or_else(|| {
        syntax(
            record.first_line,
            &format!("package {name} has no V: (version) line"),
        )
    })?;
    let version = field_text(version)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| syntax(line, "empty or over-long version"))?;
    let (version, release) = split_release(&version);
    if apps.len() >= MAX_PACKAGES {
        return Err(PackageError::TooLarge {
            database: DB,
            what: "number of packages",
            size: apps.len() as u64 + 1,
            limit: MAX_PACKAGES as u64,
        });
    }
    apps.push(Application {
        name,
        epoch: None,
        version: version.to_string(),
        release: release.map(str::to_string),
        arch: record.arch.and_then(field_text).filter(|a| !a.is_empty()),
        summary: record.description.and_then(summary_text),
        url: record.url.and_then(summary_text),
        source_package: record.origin.and_then(field_text).filter(|o| !o.is_empty()),
        ..Default::default()
    });
    Ok(())
}

/// Splits `1.2.3-r4` into (`1.2.3`, `4`); a version without a `-rN` suffix has no release.
fn split_release(version: &str) -> (&str, Option<&str>) {
    match version.rsplit_once("-r") {
        Some((v, r)) if !v.is_empty() && !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
            (v, Some(r))
        }
        _ => (version, None),
    }
}

/// A syntax error of this database at `line`.
fn syntax(line: usize, message: &str) -> PackageError {
    PackageError::syntax(DB, line, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
C:Q1ZL1dZ6dPdr5uVtJ8rSPRpLJbzYE=
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
c:46aa2e3bb4b1a4d5e4bf86c3a4ccfba4abcb1a04
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1O2JDBlOc7nkEC6NPwMM2DqBCKk0=

C:Q1abc=
P:alpine-baselayout-data
V:3.4.3-r1
A:x86_64
T:Alpine base dir structure and init scripts
";

    #[test]
    fn parses_packages() {
        let apps = parse_apk_installed(SAMPLE.as_bytes()).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].name, "alpine-baselayout-data");
        assert_eq!(apps[1].name, "musl");
        assert_eq!(apps[1].version, "1.2.4");
        assert_eq!(apps[1].release.as_deref(), Some("2"));
        assert_eq!(apps[1].arch.as_deref(), Some("x86_64"));
        assert_eq!(
            apps[1].summary.as_deref(),
            Some("the musl c library (libc) implementation")
        );
        assert_eq!(apps[1].epoch, None);
        assert_eq!(apps[1].url.as_deref(), Some("https://musl.libc.org/"));
        assert_eq!(apps[1].source_package.as_deref(), Some("musl"));
        assert_eq!(
            (apps[0].url.as_deref(), apps[0].source_package.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn release_split() {
        assert_eq!(split_release("1.0-r0"), ("1.0", Some("0")));
        assert_eq!(split_release("1.0_rc1"), ("1.0_rc1", None));
        assert_eq!(split_release("1.0-rc"), ("1.0-rc", None));
        assert_eq!(split_release("-r1"), ("-r1", None));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_apk_installed(b"P:a\nV:1\n\nbad\n").unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
        let err = parse_apk_installed(b"P:a\nA:x\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(parse_apk_installed(b"").unwrap().is_empty());
        assert!(parse_apk_installed(b"\n\n\n").unwrap().is_empty());
    }

    #[test]
    fn every_truncation_is_ok_or_error() {
        let bytes = SAMPLE.as_bytes();
        for end in 0..=bytes.len() {
            let _ = parse_apk_installed(&bytes[..end]);
        }
    }
}
