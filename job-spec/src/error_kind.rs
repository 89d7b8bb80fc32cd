//! The one vocabulary of `error.kind`: why a job was `rejected` or `failed`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable machine label of a failure, serialised as the snake_case strings of the
/// contract (`io_error`, `timeout`, ...). Services act on these, so a variant's string
/// never changes; new variants may appear in a minor version, and a reader built
/// against an older list reads them as [`ErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    // `rejected`: the message was never a job this worker runs.
    /// Body over the size limit; not parsed.
    TooLarge,
    NotJson,
    NotObject,
    BadVersion,
    /// JSON of the wrong shape for a v1 job.
    Schema,
    /// A field breaks a validation rule.
    Invalid,
    WrongPool,
    UnknownOperation,
    InvalidOutput,
    InvalidPayload,
    ImageOutsideRoot,
    ImageUrlNotAllowed,
    /// A remote image's URL is malformed.
    ImageUrlInvalid,
    // `failed`: the operation ran and failed.
    Timeout,
    /// `execution.deadline` had passed before the job started.
    DeadlineExceeded,
    Cancelled,
    /// The operation panicked; the worker survived.
    Panic,
    /// A fault of the worker itself (child process, serialisation).
    Internal,
    /// The isolated child hit its memory or CPU limit.
    ResourceLimit,
    /// Reading the image file failed; may be transient (network storage).
    IoError,
    ImageError,
    PartitionError,
    ReadBudgetExceeded,
    ChecksumMismatch,
    LuksKeys,
    // `failed`, remote images (`image.url`, read with HTTP range requests).
    RemoteStatus,
    /// The server answered a range request with the whole object (200).
    RemoteRangeIgnored,
    RemoteBadContentRange,
    RemoteShortBody,
    /// The object's ETag or Last-Modified changed during the job.
    RemoteImageChanged,
    /// Connecting or transferring failed (retryable).
    RemoteUnavailable,
    RemoteRedirectRefused,
    RemoteTls,
    /// The channel between the isolated inspection and its fetcher failed.
    RemoteChannel,
    /// `system.echo` asked to fail.
    EchoFailure,
    /// A kind this version does not know (sent by a newer worker).
    #[serde(other)]
    Other,
}

impl ErrorKind {
    /// Every kind, for documentation and tests.
    pub const ALL: [ErrorKind; 36] = [
        ErrorKind::TooLarge,
        ErrorKind::NotJson,
        ErrorKind::NotObject,
        ErrorKind::BadVersion,
        ErrorKind::Schema,
        ErrorKind::Invalid,
        ErrorKind::WrongPool,
        ErrorKind::UnknownOperation,
        ErrorKind::InvalidOutput,
        ErrorKind::InvalidPayload,
        ErrorKind::ImageOutsideRoot,
        ErrorKind::ImageUrlNotAllowed,
        ErrorKind::ImageUrlInvalid,
        ErrorKind::Timeout,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Cancelled,
        ErrorKind::Panic,
        ErrorKind::Internal,
        ErrorKind::ResourceLimit,
        ErrorKind::IoError,
        ErrorKind::ImageError,
        ErrorKind::PartitionError,
        ErrorKind::ReadBudgetExceeded,
        ErrorKind::ChecksumMismatch,
        ErrorKind::LuksKeys,
        ErrorKind::RemoteStatus,
        ErrorKind::RemoteRangeIgnored,
        ErrorKind::RemoteBadContentRange,
        ErrorKind::RemoteShortBody,
        ErrorKind::RemoteImageChanged,
        ErrorKind::RemoteUnavailable,
        ErrorKind::RemoteRedirectRefused,
        ErrorKind::RemoteTls,
        ErrorKind::RemoteChannel,
        ErrorKind::EchoFailure,
        ErrorKind::Other,
    ];

    /// The wire string (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NotJson => "not_json",
            ErrorKind::NotObject => "not_object",
            ErrorKind::BadVersion => "bad_version",
            ErrorKind::Schema => "schema",
            ErrorKind::Invalid => "invalid",
            ErrorKind::WrongPool => "wrong_pool",
            ErrorKind::UnknownOperation => "unknown_operation",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::InvalidPayload => "invalid_payload",
            ErrorKind::ImageOutsideRoot => "image_outside_root",
            ErrorKind::ImageUrlNotAllowed => "image_url_not_allowed",
            ErrorKind::ImageUrlInvalid => "image_url_invalid",
            ErrorKind::Timeout => "timeout",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Panic => "panic",
            ErrorKind::Internal => "internal",
            ErrorKind::ResourceLimit => "resource_limit",
            ErrorKind::IoError => "io_error",
            ErrorKind::ImageError => "image_error",
            ErrorKind::PartitionError => "partition_error",
            ErrorKind::ReadBudgetExceeded => "read_budget_exceeded",
            ErrorKind::ChecksumMismatch => "checksum_mismatch",
            ErrorKind::LuksKeys => "luks_keys",
            ErrorKind::RemoteStatus => "remote_status",
            ErrorKind::RemoteRangeIgnored => "remote_range_ignored",
            ErrorKind::RemoteBadContentRange => "remote_bad_content_range",
            ErrorKind::RemoteShortBody => "remote_short_body",
            ErrorKind::RemoteImageChanged => "remote_image_changed",
            ErrorKind::RemoteUnavailable => "remote_unavailable",
            ErrorKind::RemoteRedirectRefused => "remote_redirect_refused",
            ErrorKind::RemoteTls => "remote_tls",
            ErrorKind::RemoteChannel => "remote_channel",
            ErrorKind::EchoFailure => "echo_failure",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn serde_and_as_str_agree_and_unknown_kinds_read_as_other() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
        let newer: ErrorKind = serde_json::from_str("\"disk_on_fire\"").unwrap();
        assert_eq!(newer, ErrorKind::Other);
    }
}
