//! The typed error of a remote (HTTP range) read, shared by the fetcher in the parent
//! and the inspection in the child.
//!
//! Layer-neutral, beside `source::ReadError` (which wraps it): it is one of the ways a
//! byte read fails, and the byte source's error must not reach up into the image layer
//! that does the fetching.

use guestkit_job_spec::ErrorKind;

/// Why a remote read failed. `Clone` so the pipeline can keep the first failure; serde
/// so it crosses the process boundary typed (see [`super::remote`]).
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum HttpError {
    #[error("image URL {url} is not in the worker's --image-url-allow list")]
    NotAllowed { url: String },
    #[error("invalid image URL: {message}")]
    BadUrl { message: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the server ignored the Range header (status 200); refusing a whole download")]
    RangeIgnored { url: String },
    #[error("{url}: asked for {asked}, the server answered Content-Range {got:?}")]
    BadContentRange {
        url: String,
        asked: String,
        got: String,
    },
    #[error("{url}: body ended after {got} of {expected} bytes")]
    ShortBody {
        url: String,
        expected: u64,
        got: u64,
    },
    #[error("{url}: the image changed during the job ({message})")]
    Changed { url: String, message: String },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: redirect refused: {message}")]
    Redirect { url: String, message: String },
    #[error("TLS set-up: {message}")]
    Tls { message: String },
    /// The channel between the inspection and its fetcher failed or was misused.
    #[error("remote channel: {message}")]
    Channel { message: String },
    #[error("remote fetch cancelled")]
    Cancelled,
}

impl HttpError {
    /// Stable label for results and metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HttpError::NotAllowed { .. } => ErrorKind::ImageUrlNotAllowed,
            HttpError::BadUrl { .. } => ErrorKind::ImageUrlInvalid,
            HttpError::Status { .. } => ErrorKind::RemoteStatus,
            HttpError::RangeIgnored { .. } => ErrorKind::RemoteRangeIgnored,
            HttpError::BadContentRange { .. } => ErrorKind::RemoteBadContentRange,
            HttpError::ShortBody { .. } => ErrorKind::RemoteShortBody,
            HttpError::Changed { .. } => ErrorKind::RemoteImageChanged,
            HttpError::Transport { .. } => ErrorKind::RemoteUnavailable,
            HttpError::Redirect { .. } => ErrorKind::RemoteRedirectRefused,
            HttpError::Tls { .. } => ErrorKind::RemoteTls,
            HttpError::Channel { .. } => ErrorKind::RemoteChannel,
            HttpError::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// Worth another try (the server or the network may recover).
    pub fn transient(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            HttpError::Transport { .. } | HttpError::ShortBody { .. } => true,
            _ => false,
        }
    }
}
