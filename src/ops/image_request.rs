//! The `image` and `options` parts of a payload, shared by every operation that reads a
//! disk image: where the image may live, which format it claims, which checksum it must
//! have, and which report sections are wanted.

use guestkit_job_spec::ErrorKind;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Invalid, OpError};
use crate::inspect::image::http::{HttpError, RemoteConfig, RemoteJob};
use crate::inspect::image::http_url::RemoteUrl;
use crate::inspect::pipeline::{DiskSpec, InspectOptions, MAX_DISKS};

/// Formats a job may assert in `image.format` (qemu-img names).
const KNOWN_FORMATS: &[&str] = &crate::inspect::image::ImageFormat::NAMES;

#[derive(Deserialize)]
struct ImageSpec {
    /// A local image; exactly one of `path` and `url`.
    #[serde(default)]
    path: Option<String>,
    /// A remote image (http or https), read with range requests by the trusted side.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
}

/// One entry of `data.disks`.
#[derive(Deserialize)]
struct DiskEntry {
    path: String,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OptionsSpec {
    include_applications: Option<bool>,
    include_users: Option<bool>,
    include_services: Option<bool>,
    include_network: Option<bool>,
    include_security: Option<bool>,
}

/// A validated image request: the image resolved inside an image root.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// Canonical path (symlinks resolved) of the image file; for a remote image its URL
    /// without the query.
    pub path: PathBuf,
    /// A remote image's URL (`Debug` shows it without the query).
    pub url: Option<RemoteUrl>,
    pub format: Option<String>,
    /// Expected sha256, lower-case hex.
    pub sha256: Option<String>,
    /// Inspection options from `payload.data.options` (each defaults to true).
    pub options: InspectOptions,
}

impl ImageRequest {
    /// Reads and checks `data.image` and `data.options`. The image must canonicalize to
    /// a regular file inside one of `roots`: a path that escapes them (by `..` or a
    /// symlink) is rejected, never read.
    pub fn from_data(data: &Value, roots: &[PathBuf]) -> Result<ImageRequest, Invalid> {
        let disks = disk_entries(data)?;
        let spec: ImageSpec = match (data.get("image"), disks.first()) {
            (Some(_), Some(_)) => {
                return Err(Invalid::payload(
                    "payload.data: give either image (one disk) or disks, not both",
                ))
            }
            (Some(image), None) => serde_json::from_value(image.clone())
                .map_err(|e| Invalid::payload(format!("payload.data.image: {e}")))?,
            (None, Some(first)) => ImageSpec {
                path: Some(first.path.clone()),
                url: None,
                format: first.format.clone(),
                checksum: None,
            },
            (None, None) => {
                return Err(Invalid::payload(
                    "payload.data.image (or payload.data.disks) is required",
                ))
            }
        };
        let opts: OptionsSpec = match data.get("options") {
            None | Some(Value::Null) => OptionsSpec::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| Invalid::payload(format!("payload.data.options: {e}")))?,
        };
        check_format(&spec.format, "payload.data.image.format")?;
        let sha256 = match &spec.checksum {
            None => None,
            Some(c) => Some(parse_checksum(c)?),
        };
        let (path, url) = match (&spec.path, &spec.url) {
            (Some(path), None) => (resolve_in_roots(Path::new(path), roots)?, None),
            (None, Some(url)) => {
                let url = RemoteUrl::parse(url).map_err(remote_invalid)?;
                (PathBuf::from(url.redacted()), Some(url))
            }
            _ => {
                return Err(Invalid::payload(
                    "payload.data.image needs exactly one of path and url",
                ))
            }
        };
        let mut extra_disks = Vec::new();
        for (i, d) in disks.iter().enumerate().skip(1) {
            check_format(&d.format, &format!("payload.data.disks[{i}].format"))?;
            extra_disks.push(DiskSpec {
                path: resolve_in_roots(Path::new(&d.path), roots)?,
                format: d.format.clone(),
            });
        }
        let options = InspectOptions {
            extra_disks,
            image_roots: roots.to_vec(),
            asserted_format: spec.format,
            include_applications: opts.include_applications.unwrap_or(true),
            include_users: opts.include_users.unwrap_or(true),
            include_services: opts.include_services.unwrap_or(true),
            include_network: opts.include_network.unwrap_or(true),
            include_security: opts.include_security.unwrap_or(true),
            ..InspectOptions::default()
        };
        Ok(ImageRequest {
            path,
            url,
            format: options.asserted_format.clone(),
            sha256,
            options,
        })
    }

    /// Streams the file through sha256 (blocking: call on a blocking thread) and
    /// compares it with the expected checksum, when there is one.
    pub fn verify_checksum(&self) -> Result<Option<String>, OpError> {
        let Some(expected) = &self.sha256 else {
            return Ok(None);
        };
        let actual = match &self.options.remote {
            // The fetcher streams the whole object (a full read).
            Some(client) => client
                .open(None, "")
                .and_then(|(id, _, _)| client.sha256(id))
                .map_err(|e| remote_error(&e))?,
            None => sha256_file(&self.path).map_err(|e| {
                OpError::retryable(
                    ErrorKind::IoError,
                    format!("reading {}: {e}", self.path.display()),
                )
            })?,
        };
        if &actual != expected {
            return Err(OpError::fatal(
                ErrorKind::ChecksumMismatch,
                format!(
                    "sha256 of {} is {actual}, the job expected {expected}",
                    self.path.display()
                ),
            ));
        }
        Ok(Some(actual))
    }

    /// For a remote image read in this process (no isolation: library use, tests): starts
    /// a fetcher thread for it (see `inspect::image::remote::serve_in_thread`) and
    /// attaches its channel. The thread ends when the request (its channel) is dropped.
    pub fn fetch_in_thread(
        &mut self,
        remote: Option<&std::sync::Arc<RemoteConfig>>,
        cancel: &crate::inspect::source::CancelFlag,
    ) -> Result<Option<std::thread::JoinHandle<()>>, OpError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let config = remote.ok_or_else(|| {
            remote_error(&HttpError::NotAllowed {
                url: url.redacted(),
            })
        })?;
        config.check(url).map_err(|e| remote_error(&e))?;
        let job = RemoteJob::new(config.clone(), Some(cancel.clone()));
        let (client, handle) = crate::inspect::image::remote::serve_in_thread(job, url.clone())
            .map_err(|e| OpError::retryable(ErrorKind::Internal, format!("remote fetcher: {e}")))?;
        self.options.remote = Some(client);
        Ok(Some(handle))
    }

    /// Refuses a remote image unless `remote` (the worker's settings) allows its URL:
    /// `image_url_not_allowed`, checked before anything is fetched.
    pub fn check_remote(&self, remote: Option<&RemoteConfig>) -> Result<(), Invalid> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let not_allowed = HttpError::NotAllowed {
            url: url.redacted(),
        };
        match remote {
            Some(config) => config.check(url).map_err(remote_invalid),
            None => Err(remote_invalid(not_allowed)),
        }
    }
}

/// Why a remote image request is refused: `image_url_not_allowed`, or `invalid_payload`
/// for a malformed URL; the message shows the URL's host and path only.
fn remote_invalid(e: HttpError) -> Invalid {
    Invalid {
        reason: match e {
            HttpError::NotAllowed { .. } => ErrorKind::ImageUrlNotAllowed,
            _ => ErrorKind::InvalidPayload,
        },
        message: format!("payload.data.image.url: {e}"),
    }
}

/// A failed fetch as a result error: transient ones may be retried.
pub fn remote_error(e: &HttpError) -> OpError {
    if e.transient() {
        OpError::retryable(e.kind(), e.to_string())
    } else {
        OpError::fatal(e.kind(), e.to_string())
    }
}

/// `data.disks`, when present: 1 to `MAX_DISKS` entries.
fn disk_entries(data: &Value) -> Result<Vec<DiskEntry>, Invalid> {
    let disks: Vec<DiskEntry> = match data.get("disks") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Invalid::payload(format!("payload.data.disks: {e}")))?,
    };
    if disks.is_empty() || disks.len() > MAX_DISKS {
        return Err(Invalid::payload(format!(
            "payload.data.disks must list 1 to {MAX_DISKS} disks, got {}",
            disks.len()
        )));
    }
    Ok(disks)
}

fn check_format(format: &Option<String>, field: &str) -> Result<(), Invalid> {
    match format {
        Some(f) if !KNOWN_FORMATS.contains(&f.as_str()) => Err(Invalid::payload(format!(
            "{field} {f:?} is not one of {}",
            KNOWN_FORMATS.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn parse_checksum(c: &str) -> Result<String, Invalid> {
    let hex = c.strip_prefix("sha256:").ok_or_else(|| {
        Invalid::payload(format!(
            "payload.data.image.checksum must be sha256:<hex>, got {c:.80?}"
        ))
    })?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Invalid::payload(
            "payload.data.image.checksum: sha256 needs 64 hex digits",
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

/// Canonicalizes `path` and checks it is a regular file under one canonical root.
pub fn resolve_in_roots(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, Invalid> {
    let outside = |why: String| Invalid {
        reason: ErrorKind::ImageOutsideRoot,
        message: why,
    };
    let canonical = path.canonicalize().map_err(|e| {
        outside(format!(
            "image path {} cannot be resolved ({e}); it must be a file inside an image root",
            path.display()
        ))
    })?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| canonical.starts_with(&root));
    if !inside {
        let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(outside(format!(
            "image path {} resolves to {}, which is not inside any image root ({})",
            path.display(),
            canonical.display(),
            roots.join(", ")
        )));
    }
    if !canonical.is_file() {
        return Err(outside(format!(
            "image path {} is not a regular file",
            canonical.display()
        )));
    }
    Ok(canonical)
}

/// Hex sha256 of a file, streamed in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_must_resolve_inside_a_root() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let inside = root.path().join("disk.raw");
        std::fs::write(&inside, b"x").unwrap();
        let secret = other.path().join("secret");
        std::fs::write(&secret, b"x").unwrap();
        std::os::unix::fs::symlink(&secret, root.path().join("escape")).unwrap();
        let roots = vec![root.path().to_path_buf()];

        let ok = ImageRequest::from_data(&json!({"image": {"path": inside}}), &roots).unwrap();
        assert_eq!(ok.path, inside.canonicalize().unwrap());
        assert!(ok.options.include_applications);
        for bad in [
            root.path().join("escape"),
            root.path()
                .join("../")
                .join(other.path().file_name().unwrap())
                .join("secret"),
            PathBuf::from("/etc/shadow"),
            root.path().join("missing"),
        ] {
            let err =
                ImageRequest::from_data(&json!({"image": {"path": bad}}), &roots).unwrap_err();
            assert_eq!(err.reason, "image_outside_root", "{bad:?}: {err:?}");
        }
        let err =
            ImageRequest::from_data(&json!({"image": {"path": root.path()}}), &roots).unwrap_err();
        assert!(err.message.contains("not a regular file"));

        // Several disks: each confined to the roots like `image`.
        let second = root.path().join("disk2.raw");
        std::fs::write(&second, b"y").unwrap();
        let req = ImageRequest::from_data(
            &json!({"disks": [{"path": inside}, {"path": second, "format": "raw"}]}),
            &roots,
        )
        .unwrap();
        assert_eq!(req.path, inside.canonicalize().unwrap());
        assert_eq!(
            req.options.extra_disks,
            vec![DiskSpec {
                path: second.canonicalize().unwrap(),
                format: Some("raw".into())
            }]
        );
        let err = ImageRequest::from_data(
            &json!({"disks": [{"path": inside}, {"path": secret}]}),
            &roots,
        )
        .unwrap_err();
        assert_eq!(err.reason, "image_outside_root");
        for bad in [
            json!({"disks": []}),
            json!({"disks": [{"path": inside, "format": "iso"}, {"path": second, "format": "iso"}]}),
            json!({"image": {"path": inside}, "disks": [{"path": second}]}),
        ] {
            assert_eq!(
                ImageRequest::from_data(&bad, &roots).unwrap_err().reason,
                "invalid_payload",
                "{bad}"
            );
        }
    }

    #[test]
    fn checksum_options_and_format_are_checked() {
        let root = tempfile::tempdir().unwrap();
        let img = root.path().join("d");
        std::fs::write(&img, b"abc").unwrap();
        let roots = vec![root.path().to_path_buf()];
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let req = ImageRequest::from_data(
            &json!({"image": {"path": img, "checksum": format!("sha256:{abc}")}, "options": {"include_users": false}}),
            &roots,
        )
        .unwrap();
        assert!(!req.options.include_users && req.options.include_network);
        assert_eq!(req.verify_checksum().unwrap().as_deref(), Some(abc));
        let wrong = format!("sha256:{}", "0".repeat(64));
        let req =
            ImageRequest::from_data(&json!({"image": {"path": img, "checksum": wrong}}), &roots)
                .unwrap();
        assert_eq!(req.verify_checksum().unwrap_err().kind, "checksum_mismatch");
        for bad in [
            json!({"image": {"path": img, "checksum": "md5:00"}}),
            json!({"image": {"path": img, "format": "iso"}}),
            json!({}),
        ] {
            assert_eq!(
                ImageRequest::from_data(&bad, &roots).unwrap_err().reason,
                "invalid_payload"
            );
        }
    }

    #[test]
    fn urls_need_the_allow_list() {
        let cfg = RemoteConfig::new(
            &["https://images.example/vm/".into()],
            None,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let req = |image: Value| ImageRequest::from_data(&json!({ "image": image }), &[]);
        let ok = req(json!({"url": "https://images.example/vm/a.qcow2?sig=SECRET"})).unwrap();
        ok.check_remote(Some(&cfg)).unwrap();
        assert_eq!(ok.path, PathBuf::from("https://images.example/vm/a.qcow2"));
        assert!(!format!("{ok:?}").contains("SECRET"));
        for (image, remote, reason) in [
            (
                json!({"url": "https://images.example/vm/a"}),
                None,
                "image_url_not_allowed",
            ),
            (
                json!({"url": "https://images.example/other/a?sig=SECRET"}),
                Some(&cfg),
                "image_url_not_allowed",
            ),
            (
                json!({"url": "https://images.example.evil/vm/a"}),
                Some(&cfg),
                "image_url_not_allowed",
            ),
            (
                json!({"url": "https://images.example/vm/../x"}),
                Some(&cfg),
                "image_url_not_allowed",
            ),
            (
                json!({"url": "https://u:p@images.example/vm/a"}),
                Some(&cfg),
                "invalid_payload",
            ),
            (
                json!({"url": "file:///etc/passwd"}),
                Some(&cfg),
                "invalid_payload",
            ),
            (
                json!({"url": "https://images.example/vm/a", "path": "/x"}),
                Some(&cfg),
                "invalid_payload",
            ),
            (json!({}), Some(&cfg), "invalid_payload"),
        ] {
            let e = req(image.clone())
                .and_then(|r| r.check_remote(remote))
                .unwrap_err();
            assert_eq!(e.reason, reason, "{image}: {e:?}");
            assert!(!e.message.contains("SECRET"), "{}", e.message);
        }
    }
}
