//! pacman's `/var/lib/pacman/local/<name>-<version>/desc`: one installed package (Arch).
//!
//! The local database is a directory per package; its `desc` file is a list of sections,
//! each a `%KEY%` line followed by one value per line up to a blank line. We read
//! `%NAME%`, `%VERSION%` (`[epoch:]pkgver-pkgrel`), `%ARCH%`, `%DESC%` (the summary),
//! `%URL%` and `%BASE%` (the pkgbase: the source package). pacman keeps no long
//! description; it has epochs, so a version without one has epoch 0.

use super::{field_text, parse_epoch, summary_text, PackageError};
use crate::inspect::report::Application;

const DB: &str = "pacman desc";

/// The sections we read, so the value line after a `%KEY%` line knows where it goes.
#[derive(Clone, Copy)]
enum Section {
    Name,
    Version,
    Arch,
    Desc,
    Url,
    Base,
}

/// Parses one `desc` file. `%NAME%` and `%VERSION%` are mandatory (pacman writes both for
/// every package), and the version must carry a `-pkgrel`: a file without them is an error
/// naming the line, which the OS layer reports as a warning for that one package.
pub fn parse_pacman_desc(bytes: &[u8]) -> Result<Application, PackageError> {
    let mut name = None;
    let mut version = None;
    let mut arch = None;
    let mut desc = None;
    let mut url = None;
    let mut base = None;
    // The section whose first value line comes next, if any; later values are ignored.
    let mut pending: Option<Section> = None;
    let mut line_no = 0usize;
    for raw in bytes.split(|&b| b == b'\n') {
        line_no += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            pending = None;
            continue;
        }
        if let Some(section) = pending.take() {
            let slot = match section {
                Section::Name => &mut name,
                Section::Version => &mut version,
                Section::Arch => &mut arch,
                Section::Desc => &mut desc,
                Section::Url => &mut url,
                Section::Base => &mut base,
            };
            if slot.is_some() {
                return Err(syntax(line_no, "section appears twice"));
            }
            *slot = Some((line, line_no));
            continue;
        }
        if line.len() >= 2 && line.starts_with(b"%") && line.ends_with(b"%") {
            pending = match line {
                b"%NAME%" => Some(Section::Name),
                b"%VERSION%" => Some(Section::Version),
                b"%ARCH%" => Some(Section::Arch),
                b"%DESC%" => Some(Section::Desc),
                b"%URL%" => Some(Section::Url),
                b"%BASE%" => Some(Section::Base),
                _ => None,
            };
        }
        // Any other line is a further value of a multi-valued section (%LICENSE%,
        // %DEPENDS%, ...) that we do not read.
    }
    let (name, name_line) = name.ok_or_else(|| syntax(line_no, "no %NAME% section"))?;
    let name = field_text(name).ok_or_else(|| syntax(name_line, "name too long"))?;
    let (version, version_line) = version.ok_or_else(|| syntax(line_no, "no %VERSION% section"))?;
    let version = field_text(version).ok_or_else(|| syntax(version_line, "version too long"))?;
    let (epoch, rest) = match version.split_once(':') {
        Some((e, rest)) => (
            Some(parse_epoch(e).ok_or_else(|| {
                syntax(
                    version_line,
                    &format!("epoch of {version:?} is not a number"),
                )
            })?),
            rest,
        ),
        None => (None, version.as_str()),
    };
    let (pkgver, pkgrel) = rest
        .rsplit_once('-')
        .filter(|(v, r)| !v.is_empty() && !r.is_empty())
        .ok_or_else(|| {
            syntax(
                version_line,
                &format!("version {version:?} is not pkgver-pkgrel"),
            )
        })?;
    let arch = match arch {
        Some((a, l)) => Some(field_text(a).ok_or_else(|| syntax(l, "arch too long"))?),
        None => None,
    };
    Ok(Application {
        name,
        epoch: Some(epoch.unwrap_or(0)),
        version: pkgver.to_string(),
        release: Some(pkgrel.to_string()),
        arch,
        summary: desc.and_then(|(d, _)| summary_text(d)),
        url: url.and_then(|(u, _)| summary_text(u)),
        source_package: base
            .and_then(|(b, _)| field_text(b))
            .filter(|b| !b.is_empty()),
        ..Default::default()
    })
}

/// A syntax error of this database at `line`.
fn syntax(line: usize, message: &str) -> PackageError {
    PackageError::syntax(DB, line, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
%NAME%
openssl

%VERSION%
1:3.2.1-1

%BASE%
openssl

%DESC%
The Open Source toolkit for Secure Sockets Layer and Transport Layer Security

%URL%
https://www.openssl.org

%ARCH%
x86_64

%BUILDDATE%
1706692223

%LICENSE%
Apache-2.0

%DEPENDS%
glibc
sh

";

    #[test]
    fn parses_desc() {
        let app = parse_pacman_desc(SAMPLE.as_bytes()).unwrap();
        assert_eq!(app.name, "openssl");
        assert_eq!(app.epoch, Some(1));
        assert_eq!(app.version, "3.2.1");
        assert_eq!(app.release.as_deref(), Some("1"));
        assert_eq!(app.arch.as_deref(), Some("x86_64"));
        assert!(app.summary.unwrap().starts_with("The Open Source toolkit"));
        assert_eq!(app.url.as_deref(), Some("https://www.openssl.org"));
        assert_eq!(app.source_package.as_deref(), Some("openssl"));
        assert_eq!(app.description, None);
    }

    #[test]
    fn missing_fields_are_errors() {
        assert!(parse_pacman_desc(b"%NAME%\na\n").is_err());
        assert!(parse_pacman_desc(b"%VERSION%\n1-1\n").is_err());
        assert!(parse_pacman_desc(b"%NAME%\na\n\n%VERSION%\n1\n").is_err());
        assert!(parse_pacman_desc(b"%NAME%\na\n\n%VERSION%\nx:1-1\n").is_err());
        assert!(parse_pacman_desc(b"%NAME%\na\n\n%NAME%\nb\n").is_err());
        let app = parse_pacman_desc(b"%NAME%\na\n\n%VERSION%\n1.0-2\n").unwrap();
        assert_eq!((app.arch, app.summary, app.epoch), (None, None, Some(0)));
        assert_eq!((app.url, app.source_package), (None, None));
    }

    #[test]
    fn every_truncation_is_ok_or_error() {
        let bytes = SAMPLE.as_bytes();
        for end in 0..=bytes.len() {
            let _ = parse_pacman_desc(&bytes[..end]);
        }
    }
}
