//! What crosses the process boundary, all JSON:
//!
//! - stdin, parent to child: one [`Request`];
//! - stdout, child to parent: one [`Reply`] (the operation's output or its typed error);
//! - stderr, child to parent: lines; a [`ProgressLine`] is a progress event, a line with
//!   a `level` is one of the child's log events (tracing's JSON format), anything else
//!   is raw text (a panic or an allocator's abort message, kept for the diagnosis).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::Sandbox;
use crate::ops::OpError;

/// The job as the child needs it: the operation, the payload data (already validated
/// by the parent, checked again by the child) and the image roots.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub operation: String,
    pub data: Value,
    pub image_roots: Vec<PathBuf>,
    /// LUKS passphrases (`--luks-keys-dir`): only ever on the child's stdin.
    #[serde(default)]
    pub luks_keys: crate::inspect::volume::luks::open::LuksKeys,
}

/// The child's answer. `output` is the operation's output document.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply<T> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
    /// Guest bytes read (for the worker's metric).
    #[serde(default)]
    pub bytes_read: u64,
    /// What the child could enforce on itself.
    #[serde(default)]
    pub sandbox: Option<Sandbox>,
}

/// An [`OpError`] on the wire: the kind survives the boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyError {
    pub kind: guestkit_job_spec::ErrorKind,
    pub message: String,
    pub retryable: bool,
}

impl From<OpError> for ReplyError {
    fn from(e: OpError) -> ReplyError {
        ReplyError {
            kind: e.kind,
            message: e.message,
            retryable: e.retryable,
        }
    }
}

impl From<ReplyError> for OpError {
    fn from(e: ReplyError) -> OpError {
        OpError {
            kind: e.kind,
            message: e.message,
            retryable: e.retryable,
        }
    }
}

/// A progress event from the child: `phase` (with `phase`) or `progress` (with
/// `percent`). The parent re-emits it with the job's identity.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProgressLine<'a> {
    pub progress: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
}

/// Any stderr line that is JSON: a progress event or a log event.
#[derive(Debug, Deserialize)]
pub struct StderrLine {
    #[serde(default)]
    pub progress: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub percent: Option<u8>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}
