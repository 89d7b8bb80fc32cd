//! The one byte-source trait every inspection layer reads through.
//!
//! An image format, a partition, a logical volume: each is a `ReadAt` over the layer
//! below, so an OS detector never knows whether its bytes came from qcow2 or raw.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::inspect::http_error::HttpError;

/// A read-only, random-access byte source of known size.
///
/// `&self` (not `&mut self`) so one source can be shared by many readers across threads;
/// implementations keep their caches behind a lock.
pub trait ReadAt: Send + Sync {
    /// Size in bytes of the source (the virtual size, for an image format).
    fn size(&self) -> u64;

    /// Fills all of `buf` with the bytes at `offset`. A read that would cross the end of
    /// the source is an error, never a short read, so callers need no length checks.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// Bytes produced by decompression so far, by this source and the ones below it.
    /// [`Budgeted`] charges them on top of the bytes read: a probe of a few KiB may
    /// inflate a whole 2 MiB qcow2 cluster, so bytes read alone would let a hostile image
    /// of thousands of compressed clusters spin the CPU inside its read budget. Formats
    /// without compression keep the default.
    fn inflated(&self) -> u64 {
        0
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read_exact_at(offset, buf)
    }
    fn inflated(&self) -> u64 {
        (**self).inflated()
    }
}

/// Checks that `[offset, offset + len)` lies inside a source of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<(), ReadError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ReadError::OutOfRange {
            offset,
            len: len as u64,
            size,
        }),
    }
}

/// Reads `len` bytes at `offset` into a new buffer, refusing lengths above `max` so a size
/// taken from disk can never drive an unbounded allocation.
pub fn read_vec(src: &dyn ReadAt, offset: u64, len: u64, max: u64) -> Result<Vec<u8>, ReadError> {
    if len > max {
        return Err(ReadError::TooLarge {
            what: "read",
            size: len,
            limit: max,
        });
    }
    let mut buf = vec![0u8; len as usize];
    src.read_exact_at(offset, &mut buf)?;
    Ok(buf)
}

/// A window `[start, start + len)` of another source: a partition or a logical volume.
pub struct Slice {
    inner: Arc<dyn ReadAt>,
    start: u64,
    len: u64,
}

impl Slice {
    /// Creates the window, clamping nothing: a window past the end of `inner` is an error
    /// here, so a lying partition table is caught once, not on every read.
    pub fn new(inner: Arc<dyn ReadAt>, start: u64, len: u64) -> Result<Slice, ReadError> {
        let end = start.checked_add(len).ok_or(ReadError::OutOfRange {
            offset: start,
            len,
            size: inner.size(),
        })?;
        if end > inner.size() {
            return Err(ReadError::OutOfRange {
                offset: start,
                len,
                size: inner.size(),
            });
        }
        Ok(Slice { inner, start, len })
    }
}

impl ReadAt for Slice {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.len)?;
        self.inner.read_exact_at(self.start + offset, buf)
    }
    fn inflated(&self) -> u64 {
        self.inner.inflated()
    }
}

/// Counts the bytes one job reads (plus the bytes the image layer inflated, see
/// [`ReadAt::inflated`]) and stops the job once they pass its cap, so a hostile image
/// cannot make a worker read forever (for example a directory loop that evades the
/// other checks).
pub struct Budgeted {
    inner: Arc<dyn ReadAt>,
    read: Arc<AtomicU64>,
    limit: u64,
    cancel: Option<CancelFlag>,
}

/// Set by the worker when a job times out: blocking inspection code cannot be killed,
/// so every read checks the flag and the job stops at its next read.
pub type CancelFlag = Arc<std::sync::atomic::AtomicBool>;

impl Budgeted {
    /// Wraps `inner`; `read` is shared so the caller can report the total afterwards.
    pub fn new(inner: Arc<dyn ReadAt>, read: Arc<AtomicU64>, limit: u64) -> Budgeted {
        Budgeted {
            inner,
            read,
            limit,
            cancel: None,
        }
    }

    /// Also stops reading once `cancel` is set.
    pub fn with_cancel(mut self, cancel: Option<CancelFlag>) -> Budgeted {
        self.cancel = cancel;
        self
    }
}

impl ReadAt for Budgeted {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(ReadError::Cancelled);
        }
        let total = self.read.fetch_add(buf.len() as u64, Ordering::Relaxed) + buf.len() as u64;
        if total.saturating_add(self.inner.inflated()) > self.limit {
            return Err(ReadError::BudgetExceeded { limit: self.limit });
        }
        self.inner.read_exact_at(offset, buf)
    }
    fn inflated(&self) -> u64 {
        self.inner.inflated()
    }
}

/// An in-memory source, for tests and for small structures already read.
pub struct MemSource(pub Vec<u8>);

impl ReadAt for MemSource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.0[start..start + buf.len()]);
        Ok(())
    }
}

/// Why bytes could not be read, or an image chain not opened. Every read of every layer
/// ends in an image, so this one enum is the byte source's error and the image layer's:
/// it lives here, below all layers, so none of them imports upwards to name it. Carries
/// the format and offset so a `failed` result can say where a corrupt image went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read of {len} bytes at offset {offset} is outside the source of {size} bytes")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("the inspection was cancelled (job timeout or shutdown)")]
    Cancelled,
    #[error("the job's read budget of {limit} bytes is exhausted")]
    BudgetExceeded { limit: u64 },
    #[error("corrupt {format} image at offset {offset}: {message}")]
    Corrupt {
        format: &'static str,
        offset: u64,
        message: String,
    },
    #[error("unsupported {format} image: {message}")]
    Unsupported {
        format: &'static str,
        message: String,
    },
    #[error("image format is {detected}, but the job asserted {asserted}")]
    FormatMismatch {
        detected: &'static str,
        asserted: String,
    },
    #[error("backing file {path} is not inside any image root")]
    BackingOutsideRoots { path: String },
    #[error("backing file {path} is {detected}, but its overlay declares {declared}")]
    BackingFormatMismatch {
        path: PathBuf,
        detected: &'static str,
        declared: String,
    },
    #[error("backing chain loops back to {path}")]
    BackingLoop { path: PathBuf },
    #[error("backing chain deeper than {limit} images")]
    BackingChainTooDeep { limit: usize },
    #[error("{format} extent file {path} is not inside any image root")]
    ExtentOutsideRoots { format: &'static str, path: String },
    #[error("parent image {path} is not the one its child was made from: {message}")]
    ParentMismatch { path: PathBuf, message: String },
    #[error("vhdx image {path} has a log that must be replayed before it can be read: {message}")]
    NeedsLogReplay { path: PathBuf, message: String },
    #[error("remote image: {0}")]
    Remote(HttpError),
}

impl From<HttpError> for ReadError {
    fn from(e: HttpError) -> ReadError {
        match e {
            // A missing object reads like a missing file, so the formats' parent searches
            // (VHD locators) try their next candidate.
            HttpError::Status { url, status: 404 } => ReadError::Io {
                path: url.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "HTTP status 404"),
            },
            HttpError::Cancelled => ReadError::Cancelled,
            e => ReadError::Remote(e),
        }
    }
}
