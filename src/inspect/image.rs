//! Image layer: disk-image formats turned into one flat virtual disk.
//!
//! [`open`] detects the format by magic bytes, checks it against the job's assertion, and
//! follows qcow2 backing chains, opening a backing file only when its canonical path lies
//! inside one of the image roots. The path of the top image itself is the caller's to
//! check (the `guestkit.inspect` operation does it before calling here).
//!
//! [`open_remote`] opens an image read over HTTP through [`remote`]: every file of its
//! chain is then a URL, resolved and checked against the allow-list by the fetcher.

pub mod detect;
pub mod http;
pub mod http_url;
pub mod qcow2;
pub mod raw;
mod read_map;
pub mod remote;
pub mod vdi;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub use detect::{detect, ImageFormat};
pub use qcow2::Qcow2;
pub use raw::RawImage;

use crate::inspect::source::{ReadAt, ReadError};

/// Backing chains longer than this are refused (qemu's own chains are rarely above a few).
pub const MAX_BACKING_DEPTH: usize = 16;

/// An image ready to read: the guest's virtual disk plus what the report says about it.
pub struct OpenedImage {
    pub format: ImageFormat,
    pub source: Arc<dyn ReadAt>,
    pub virtual_size: u64,
    /// Canonical paths of the backing files, nearest first (the top image is not included).
    pub backing_chain: Vec<PathBuf>,
    /// Things the report should mention (for example a qcow2 image marked corrupt).
    pub warnings: Vec<String>,
}

/// Opens the image at `path`. `asserted` is the job's `image.format` (a qemu-img name); a
/// different detected format is [`ReadError::FormatMismatch`], never a guess. Backing files
/// must resolve inside one of `roots` ([`ReadError::BackingOutsideRoots`] otherwise).
pub fn open(
    path: &Path,
    asserted: Option<&str>,
    roots: &[PathBuf],
) -> Result<OpenedImage, ReadError> {
    open_confined(path, asserted, roots, &[])
}

/// [`open`], where backing files may also be direct children of one of `dirs` (but not
/// of their subfolders): how the CLI trusts the folder of the image a person named
/// without trusting everything below it (a crafted image in `$HOME` must not reach
/// `$HOME/secrets/...`).
pub fn open_confined(
    path: &Path,
    asserted: Option<&str>,
    roots: &[PathBuf],
    dirs: &[PathBuf],
) -> Result<OpenedImage, ReadError> {
    let file = RawImage::open(path)?;
    let mut roots_all: Vec<PathBuf> = roots.to_vec();
    roots_all.extend(roots.iter().filter_map(|r| r.canonicalize().ok()));
    let mut dirs_all: Vec<PathBuf> = dirs.to_vec();
    dirs_all.extend(dirs.iter().filter_map(|d| d.canonicalize().ok()));
    let mut chain = Chain {
        roots: roots_all,
        dirs: dirs_all,
        seen: Vec::new(),
        backing: Vec::new(),
        warnings: Vec::new(),
        remote: None,
        urls: Vec::new(),
    };
    if let Ok(canonical) = path.canonicalize() {
        chain.seen.push(canonical);
    }
    open_top(chain, path, file, asserted)
}

/// Opens the job's remote image through `client` (see [`remote`]); backing files and
/// extents are names the fetcher resolves next to its URL and checks against the
/// allow-list. Paths in the result and in errors are URLs without their query.
pub fn open_remote(
    client: Arc<remote::RemoteClient>,
    asserted: Option<&str>,
) -> Result<OpenedImage, ReadError> {
    let (id, size, shown) = client.open(None, "")?;
    let shown = PathBuf::from(shown);
    let file = RawImage::remote(remote::RemoteFile::new(client.clone(), id, size), &shown);
    let chain = Chain {
        roots: Vec::new(),
        dirs: Vec::new(),
        seen: vec![shown.clone()],
        backing: Vec::new(),
        warnings: Vec::new(),
        remote: Some(client),
        urls: vec![(shown.clone(), id, size)],
    };
    open_top(chain, &shown, file, asserted)
}

/// Detects the top image's format, checks the job's assertion, opens the chain.
fn open_top(
    mut chain: Chain,
    path: &Path,
    file: RawImage,
    asserted: Option<&str>,
) -> Result<OpenedImage, ReadError> {
    let format = detect(&file)?;
    if let Some(asserted) = asserted {
        if ImageFormat::from_name(asserted) != Some(format) {
            return Err(ReadError::FormatMismatch {
                detected: format.as_str(),
                asserted: asserted.to_string(),
            });
        }
    }
    let (source, _) = chain.open_format(path, file, format, 0)?;
    Ok(OpenedImage {
        format,
        virtual_size: source.size(),
        source,
        backing_chain: chain.backing,
        warnings: chain.warnings,
    })
}

/// Opens an image held by any [`ReadAt`] (the fuzz targets and the mutation tests use
/// memory) without touching the filesystem: extent files are refused, and a parent is
/// left unattached, so reading what it would hold is an error.
pub fn open_source(src: Arc<dyn ReadAt>) -> Result<(ImageFormat, Arc<dyn ReadAt>), ReadError> {
    let format = detect(src.as_ref())?;
    let opened: Arc<dyn ReadAt> = match format {
        ImageFormat::Raw => src,
        ImageFormat::Qcow2 => Arc::new(Qcow2::from_source(src)?),
        ImageFormat::Vmdk => Arc::new(vmdk::Vmdk::open(src, |_| {
            Err(ReadError::Unsupported {
                format: "vmdk",
                message: "extent files cannot be opened from memory".into(),
            })
        })?),
        ImageFormat::Vhd => Arc::new(vhd::Vhd::from_source(src)?),
        ImageFormat::Vhdx => Arc::new(vhdx::Vhdx::from_source(src)?),
        ImageFormat::Vdi => Arc::new(vdi::Vdi::from_source(src)?),
    };
    Ok((format, opened))
}

/// What an image is known by, so a child image can check that the parent it found is the
/// one it was made from (a parent edited or replaced since would give mixed guest data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    None,
    /// VMDK content id (`CID` of the descriptor), checked against the child's `parentCID`.
    VmdkCid(u32),
    /// VHD footer unique id, checked against the child's dynamic header.
    Vhd([u8; 16]),
    /// VHDX data write GUID, checked against the child's `parent_linkage`.
    Vhdx([u8; 16]),
    /// VDI creation UUID, checked against the child's link UUID.
    Vdi([u8; 16]),
}

/// State of one `open` call while it walks down a backing chain.
pub(crate) struct Chain {
    /// The roots as given and canonicalized.
    roots: Vec<PathBuf>,
    /// Folders whose direct children only are allowed, as given and canonicalized.
    dirs: Vec<PathBuf>,
    /// Canonical paths already in the chain, to refuse loops.
    seen: Vec<PathBuf>,
    backing: Vec<PathBuf>,
    warnings: Vec<String>,
    /// Set when the top image is remote: every file of the chain is then a URL that the
    /// fetcher resolves and checks against the allow-list, instead of the roots.
    remote: Option<Arc<remote::RemoteClient>>,
    /// The remote files opened, by their shown URL (the `PathBuf`s the formats pass
    /// around), with the fetcher's id and the size.
    urls: Vec<(PathBuf, u32, u64)>,
}

impl Chain {
    /// Is the chain read over HTTP?
    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Opens a file [`Chain::confine`] returned: a local file, or a URL of a remote chain.
    pub(crate) fn open_file(&self, resolved: &Path) -> Result<RawImage, ReadError> {
        let found = self.urls.iter().find(|(p, _, _)| p == resolved);
        match (&self.remote, found) {
            (Some(client), Some(&(_, id, size))) => Ok(RawImage::remote(
                remote::RemoteFile::new(client.clone(), id, size),
                resolved,
            )),
            _ => RawImage::open(resolved),
        }
    }

    /// [`Chain::confine`] for a remote chain: the fetcher resolves `name` next to the
    /// overlay's URL and refuses it unless the allow-list covers it.
    fn confine_url(
        &mut self,
        client: &remote::RemoteClient,
        overlay: &Path,
        format: &'static str,
        name: &[u8],
        outside: impl Fn(String) -> ReadError,
    ) -> Result<PathBuf, ReadError> {
        let name = std::str::from_utf8(name).map_err(|_| ReadError::Unsupported {
            format,
            message: "file name of a remote image is not UTF-8".into(),
        })?;
        let &(_, base, _) = self
            .urls
            .iter()
            .find(|(p, _, _)| p == overlay)
            .ok_or_else(|| ReadError::Unsupported {
                format,
                message: format!("no URL known for {}", overlay.display()),
            })?;
        let (id, size, shown) = match client.open(Some(base), name) {
            Err(http::HttpError::NotAllowed { url }) => return Err(outside(url)),
            // A name that is no URL next to the image (another machine's `C:\...`) is
            // a file that is not there, so parent searches try their next name.
            Err(http::HttpError::BadUrl { message }) => {
                return Err(ReadError::Io {
                    path: PathBuf::from(name),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, message),
                })
            }
            r => r?,
        };
        let shown = PathBuf::from(shown);
        if !self.urls.iter().any(|(p, _, _)| *p == shown) {
            self.urls.push((shown.clone(), id, size));
        }
        Ok(shown)
    }

    fn open_format(
        &mut self,
        path: &Path,
        file: RawImage,
        format: ImageFormat,
        depth: usize,
    ) -> Result<(Arc<dyn ReadAt>, Identity), ReadError> {
        match format {
            ImageFormat::Raw => Ok((Arc::new(file), Identity::None)),
            ImageFormat::Qcow2 => {
                let mut q = Qcow2::from_source(Arc::new(file))?;
                if q.header().is_corrupt() {
                    self.warnings.push(format!(
                        "qcow2 image {} is marked corrupt by qemu; its data may be inconsistent",
                        path.display()
                    ));
                }
                if let Some(name) = q.backing_file() {
                    let (backing, _) = self.open_backing(
                        path,
                        "qcow2",
                        name,
                        q.backing_format(),
                        depth + 1,
                        Identity::None,
                    )?;
                    q.attach_backing(backing);
                }
                Ok((Arc::new(q), Identity::None))
            }
            ImageFormat::Vmdk => vmdk::open(self, path, file, depth),
            ImageFormat::Vhd => vhd::open(self, path, file, depth),
            ImageFormat::Vhdx => vhdx::open(self, path, file, depth),
            ImageFormat::Vdi => vdi::open(self, path, file, depth),
        }
    }

    /// Resolves the file `name` stored in the image at `overlay` (relative names are
    /// relative to its directory) and confines it to the roots. `outside` builds the error
    /// for a name outside them.
    pub(crate) fn confine(
        &mut self,
        overlay: &Path,
        format: &'static str,
        name: &[u8],
        outside: impl Fn(String) -> ReadError,
    ) -> Result<PathBuf, ReadError> {
        if let Some(client) = self.remote.clone() {
            return self.confine_url(&client, overlay, format, name, outside);
        }
        let shown = String::from_utf8_lossy(name).into_owned();
        if name.is_empty() || name.starts_with(b"json:") || name.windows(3).any(|w| w == b"://") {
            return Err(ReadError::Unsupported {
                format,
                message: format!("file name {shown:?} is not a local path"),
            });
        }
        let name = Path::new(OsStr::from_bytes(name));
        let joined = match overlay.parent() {
            Some(dir) if name.is_relative() => dir.join(name),
            _ => name.to_path_buf(),
        };
        let joined = std::path::absolute(&joined).map_err(|source| ReadError::Io {
            path: joined.clone(),
            source,
        })?;
        // A lexical check first, so a hostile name cannot probe the host's files through
        // "not found" versus "outside the roots"; then the real check on the canonical path.
        if !self.inside_roots(&lexical_normalize(&joined)) {
            return Err(outside(shown));
        }
        let canonical = joined.canonicalize().map_err(|source| ReadError::Io {
            path: joined.clone(),
            source,
        })?;
        if !self.inside_roots(&canonical) {
            return Err(outside(format!(
                "{shown} (resolves to {})",
                canonical.display()
            )));
        }
        Ok(canonical)
    }

    /// Opens the parent a differencing image names in several places (VHD and VHDX
    /// parent locators): the first name that exists wins. A name of a file that is
    /// not there (another machine's path) is skipped; any other error stops the search.
    pub(crate) fn open_first_parent(
        &mut self,
        overlay: &Path,
        format: &'static str,
        names: &[Vec<u8>],
        depth: usize,
        expected: Identity,
    ) -> Result<Arc<dyn ReadAt>, ReadError> {
        let mut last = None;
        for name in names {
            match self.open_backing(overlay, format, name, Some(format), depth, expected) {
                Ok((parent, _)) => return Ok(parent),
                Err(ReadError::Io { path, source })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    last = Some(ReadError::Io { path, source });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ReadError::Unsupported {
            format,
            message: format!(
                "differencing disk {} names no usable parent",
                overlay.display()
            ),
        }))
    }

    /// Resolves, confines and opens the backing (parent) file `name` of the image at
    /// `overlay`, and checks it is the parent the overlay expects when `expected` says.
    pub(crate) fn open_backing(
        &mut self,
        overlay: &Path,
        format: &'static str,
        name: &[u8],
        declared: Option<&str>,
        depth: usize,
        expected: Identity,
    ) -> Result<(Arc<dyn ReadAt>, PathBuf), ReadError> {
        if depth > MAX_BACKING_DEPTH {
            return Err(ReadError::BackingChainTooDeep {
                limit: MAX_BACKING_DEPTH,
            });
        }
        let canonical = self.confine(overlay, format, name, |path| {
            ReadError::BackingOutsideRoots { path }
        })?;
        if self.seen.contains(&canonical) {
            return Err(ReadError::BackingLoop { path: canonical });
        }
        self.seen.push(canonical.clone());
        self.backing.push(canonical.clone());

        let file = self.open_file(&canonical)?;
        let format = detect(&file)?;
        if let Some(declared) = declared {
            if ImageFormat::from_name(declared) != Some(format) {
                return Err(ReadError::BackingFormatMismatch {
                    path: canonical,
                    detected: format.as_str(),
                    declared: declared.to_string(),
                });
            }
        }
        let (source, identity) = self.open_format(&canonical, file, format, depth)?;
        if expected != Identity::None && identity != expected {
            return Err(ReadError::ParentMismatch {
                path: canonical,
                message: format!("the child expects {expected:?}, the parent is {identity:?}"),
            });
        }
        Ok((source, canonical))
    }

    /// Adds a line to the report's warnings.
    pub(crate) fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    fn inside_roots(&self, path: &Path) -> bool {
        path.is_absolute()
            && (self.roots.iter().any(|root| path.starts_with(root))
                || self
                    .dirs
                    .iter()
                    .any(|dir| path.parent() == Some(dir.as_path())))
    }
}

/// Removes `.` and resolves `..` without touching the filesystem (symlinks are left to the
/// canonical check that follows).
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize() {
        assert_eq!(
            lexical_normalize(Path::new("/a/b/../c/./d")),
            Path::new("/a/c/d")
        );
        assert_eq!(
            lexical_normalize(Path::new("/a/../../etc")),
            Path::new("/etc")
        );
    }

    #[test]
    fn open_raw_and_assertions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        std::fs::write(&p, vec![3u8; 4096]).unwrap();
        let img = open(&p, Some("raw"), &[]).unwrap();
        assert_eq!((img.format, img.virtual_size), (ImageFormat::Raw, 4096));
        let e = open(&p, Some("qcow2"), &[]).err().unwrap();
        assert!(
            matches!(
                e,
                ReadError::FormatMismatch {
                    detected: "raw",
                    ..
                }
            ),
            "{e}"
        );
        let e = open(&p, Some("nonsense"), &[]).err().unwrap();
        assert!(matches!(e, ReadError::FormatMismatch { .. }), "{e}");
        let mut vhdx = b"vhdxfile".to_vec();
        vhdx.resize(4096, 0);
        std::fs::write(&p, vhdx).unwrap();
        let e = open(&p, None, &[]).err().unwrap();
        // Detected as vhdx by its identifier, then refused for its missing headers.
        assert!(
            matches!(e, ReadError::Corrupt { format: "vhdx", .. }),
            "{e}"
        );
    }
}
