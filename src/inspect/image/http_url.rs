//! URLs of remote images and the allow-list that guards them.
//!
//! Our own small parser rather than a general one: we accept only what we can reason
//! about (http/https, a host, a path without encoded dots or slashes, no user info), so
//! a prefix match on the normalized form is a real confinement, as the image roots are
//! for local files. The query (a pre-signed URL's credentials) is kept only to build the
//! request; everything shown to people uses [`RemoteUrl::redacted`].

use super::http::HttpError;

/// Is `s` meant as a remote image (an `http://` or `https://` URL)?
pub fn is_remote(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// A parsed, normalized http(s) URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    https: bool,
    /// Host (lower-cased) and optional port.
    authority: String,
    /// Starts with `/`; dot segments resolved.
    path: String,
    /// Without the `?`; never shown.
    query: Option<String>,
}

impl std::fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs too: never the query.
        write!(f, "{}", self.redacted())
    }
}

impl RemoteUrl {
    /// Parses and normalizes `s`, refusing what could hide where it points.
    pub fn parse(s: &str) -> Result<RemoteUrl, HttpError> {
        let bad = |why: &str| HttpError::BadUrl {
            message: why.to_string(),
        };
        if s.len() > 8192 {
            return Err(bad("URL longer than 8192 bytes"));
        }
        if s.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') {
            return Err(bad(
                "URL contains a space, a control character or a backslash",
            ));
        }
        let (https, rest) = if s.len() >= 8 && s[..8].eq_ignore_ascii_case("https://") {
            (true, &s[8..])
        } else if s.len() >= 7 && s[..7].eq_ignore_ascii_case("http://") {
            (false, &s[7..])
        } else {
            return Err(bad("only http:// and https:// URLs are supported"));
        };
        // A fragment is never sent to a server.
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(
                "URL carries user info (credentials); use a pre-signed URL instead",
            ));
        }
        let authority = authority.to_ascii_lowercase();
        let host = match authority.rfind(':') {
            Some(i) if !authority.ends_with(']') => {
                let port = &authority[i + 1..];
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
                    return Err(bad("URL port is not a number"));
                }
                &authority[..i]
            }
            _ => &authority[..],
        };
        if host.is_empty() {
            return Err(bad("URL has no host"));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (rest, None),
        };
        Ok(RemoteUrl {
            https,
            authority,
            path: normalize_path(if path.is_empty() { "/" } else { path })?,
            query: query.filter(|q| !q.is_empty()),
        })
    }

    /// The URL as requested (with the query).
    pub fn full(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.redacted()),
            None => self.redacted(),
        }
    }

    /// Scheme, host and path: what logs, errors and reports may show.
    pub fn redacted(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }

    /// The host (and port), for log lines.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Resolves `name` (a backing file or extent name stored in an image, or a redirect's
    /// `Location`) against this URL: an absolute URL as is, `/x` on the same host, else
    /// next to this file. The query is not carried over (it signs this object only).
    pub fn join(&self, name: &str) -> Result<RemoteUrl, HttpError> {
        if is_remote(name) {
            return RemoteUrl::parse(name);
        }
        let scheme = if self.https { "https" } else { "http" };
        if name.starts_with("//") {
            return RemoteUrl::parse(&format!("{scheme}:{name}"));
        }
        let path = if name.starts_with('/') {
            name.to_string()
        } else {
            let dir = &self.path[..self.path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{name}")
        };
        RemoteUrl::parse(&format!("{scheme}://{}{path}", self.authority))
    }
}

/// Resolves `.` and `..` segments; `..` above the root and encoded dots or slashes
/// (which a server would decode after our check) are refused.
fn normalize_path(path: &str) -> Result<String, HttpError> {
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(HttpError::BadUrl {
            message: "URL path contains an encoded dot, slash, backslash or NUL".into(),
        });
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.pop().is_none() {
                    return Err(HttpError::BadUrl {
                        message: "URL path climbs above the root".into(),
                    });
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// The URL prefixes a worker may fetch images from (`--image-url-allow`). Empty: remote
/// images are disabled.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    prefixes: Vec<String>,
    /// Folders (ending in `/`) whose direct files only are allowed: how the CLI trusts
    /// the folder of the URL a person named, as it does for a local image.
    folders: Vec<String>,
}

impl AllowList {
    /// Normalizes each prefix like a URL, so `HTTPS://Host/a/./b` allows what it says.
    pub fn new(prefixes: &[String]) -> Result<AllowList, HttpError> {
        let prefixes = prefixes
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let u = RemoteUrl::parse(p.trim())?;
                if u.query.is_some() {
                    return Err(HttpError::BadUrl {
                        message: "an allow-list prefix cannot have a query".into(),
                    });
                }
                Ok(u.redacted())
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowList {
            prefixes,
            folders: Vec::new(),
        })
    }

    /// Also allows the files directly in the folder of `url` (not its subfolders).
    pub fn add_folder_of(&mut self, url: &RemoteUrl) {
        let u = url.redacted();
        let folder = &u[..u.rfind('/').map_or(u.len(), |i| i + 1)];
        self.folders.push(folder.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.folders.is_empty()
    }

    /// Does a prefix cover `url`? A prefix ends at a path boundary: `https://h/img`
    /// allows `https://h/img/x` but not `https://h/img-other` or `https://h.evil/`.
    pub fn allows(&self, url: &RemoteUrl) -> bool {
        let u = url.redacted();
        let in_folder = |f: &String| {
            u.strip_prefix(f.as_str())
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        };
        self.folders.iter().any(in_folder)
            || self.prefixes.iter().any(|p| {
                u.strip_prefix(p.as_str()).is_some_and(|rest| {
                    p.ends_with('/') || rest.is_empty() || rest.starts_with('/')
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_redact() {
        let u = RemoteUrl::parse(
            "HTTPS://Bucket.S3.example.com:8443/a/./b/../img.qcow2?X-Amz-Signature=abc#frag",
        )
        .unwrap();
        assert_eq!(
            u.redacted(),
            "https://bucket.s3.example.com:8443/a/img.qcow2"
        );
        assert_eq!(
            u.full(),
            "https://bucket.s3.example.com:8443/a/img.qcow2?X-Amz-Signature=abc"
        );
        assert!(!format!("{u:?}").contains("Signature"));
        for bad in [
            "ftp://h/x",
            "https://user:pw@h/x",
            "https:///x",
            "https://h/../x",
            "https://h/a/%2e%2e/x",
            "https://h/a%2Fb",
            "https://h/a b",
            "https://h:port/x",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn join_relative_names() {
        let u = RemoteUrl::parse("http://h/dir/top.qcow2?sig=1").unwrap();
        assert_eq!(
            u.join("base.qcow2").unwrap().full(),
            "http://h/dir/base.qcow2"
        );
        assert_eq!(u.join("../o/b").unwrap().full(), "http://h/o/b");
        assert_eq!(u.join("/x").unwrap().full(), "http://h/x");
        assert_eq!(u.join("//other/x").unwrap().full(), "http://other/x");
        assert_eq!(u.join("https://z/y").unwrap().full(), "https://z/y");
        assert!(u.join("../../../x").is_err());
    }

    #[test]
    fn allow_list_boundaries() {
        let a = AllowList::new(&["https://h/img".into(), "http://127.0.0.1:8080/".into()]).unwrap();
        let ok = |s: &str| a.allows(&RemoteUrl::parse(s).unwrap());
        assert!(ok("https://h/img/x.qcow2?sig"));
        assert!(ok("https://H/img"));
        assert!(ok("http://127.0.0.1:8080/anything"));
        assert!(!ok("https://h/img-other/x"));
        assert!(!ok("https://h.evil/img/x"));
        assert!(!ok("http://h/img/x"));
        assert!(!ok("http://127.0.0.1:80800/x"));
        assert!(!ok("https://h/img/../etc/x"));
        assert!(AllowList::new(&[]).unwrap().is_empty());
        let mut f = AllowList::new(&[]).unwrap();
        f.add_folder_of(&RemoteUrl::parse("https://h/d/top.qcow2?sig").unwrap());
        let ok = |s: &str| f.allows(&RemoteUrl::parse(s).unwrap());
        assert!(ok("https://h/d/base.qcow2"));
        assert!(!ok("https://h/d/sub/x") && !ok("https://h/d/") && !ok("https://h/x"));
    }
}
