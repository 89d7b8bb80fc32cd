//! Errors of the image layer (and of every byte read, since all reads end here).

use std::path::PathBuf;

/// Why bytes could not be read from an image. Carries the format and offset so a
/// `failed` result can say exactly where a corrupt image went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
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
    Remote(super::http::HttpError),
}
