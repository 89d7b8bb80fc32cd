//! The result document the worker publishes for every job message.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ErrorKind;

/// How a job message ended. Publishers route on it (`<pool>.<status>.<op>`),
/// so the set is small and stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// The operation ran and succeeded.
    Completed,
    /// The operation ran and failed.
    Failed,
    /// The message was never a valid job for this worker.
    Rejected,
}

impl JobStatus {
    /// The wire spelling: `completed`, `failed` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Rejected => "rejected",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "completed" => Ok(JobStatus::Completed),
            "failed" => Ok(JobStatus::Failed),
            "rejected" => Ok(JobStatus::Rejected),
            other => Err(format!(
                "unknown job status {other:?}; expected completed, failed or rejected"
            )),
        }
    }
}

/// Why a job did not complete, in a form other services can act on: `kind`
/// is a stable machine label, `retryable` says whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Stable label, e.g. `timeout`, `invalid`, `io_error`.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the same job may succeed if run again.
    pub retryable: bool,
}

impl JobError {
    /// Shorthand constructor.
    pub fn new(kind: ErrorKind, message: impl Into<String>, retryable: bool) -> Self {
        JobError {
            kind,
            message: message.into(),
            retryable,
        }
    }
}

/// The body of a `json` result message. Shared here so publishers parse
/// results with the same type the worker writes them with.
///
/// Serialization: every field is always present except `error`, which only
/// appears when the status is not `completed`; `output` is `null` when there
/// is none (`Some(Value::Null)` therefore reads back as `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultDocument {
    /// The job's id; `null` only when the message had no readable `job_id`.
    pub job_id: Option<String>,
    /// How it ended.
    pub status: JobStatus,
    /// The worker that handled the message.
    pub worker_id: String,
    /// The pool (queue) the worker consumes.
    pub pool: String,
    /// The job's operation, when known.
    pub operation: Option<String>,
    /// Attempt number this result is for (1-based).
    pub attempt: u32,
    /// When the worker started handling the message.
    pub started_at: DateTime<Utc>,
    /// When the worker finished.
    pub finished_at: DateTime<Utc>,
    /// `finished_at - started_at` in milliseconds, measured with a monotonic
    /// clock by the worker.
    pub duration_ms: u64,
    /// The operation's data (for `guestkit.inspect`, the report).
    #[serde(default)]
    pub output: Option<Value>,
    /// What went wrong, when not completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

impl ResultDocument {
    /// The routing key on `guestkit.results`: `<pool>.<status>.<operation>`.
    ///
    /// An operation that is missing, or that is not a plausible operation name
    /// (at most 128 chars of `[a-z0-9._-]`, as validation requires), becomes
    /// `unknown`: a rejected message's operation is untrusted text, and an
    /// over-long routing key would make the broker close the channel.
    pub fn routing_key(&self) -> String {
        let operation = match self.operation.as_deref() {
            Some(op)
                if !op.is_empty()
                    && op.len() <= crate::validate::OPERATION_MAX_LEN
                    && op.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    }) =>
            {
                op
            }
            _ => "unknown",
        };
        format!("{}.{}.{}", self.pool, self.status.as_str(), operation)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn sample(status: JobStatus) -> ResultDocument {
        let started = Utc.with_ymd_and_hms(2026, 1, 30, 10, 0, 0).unwrap();
        ResultDocument {
            job_id: Some("job-01JAB3Y7X5K4M8F9W2T6".into()),
            status,
            worker_id: "01JWORKER".into(),
            pool: "default".into(),
            operation: Some("guestkit.inspect".into()),
            attempt: 1,
            started_at: started,
            finished_at: started + chrono::Duration::milliseconds(1500),
            duration_ms: 1500,
            output: None,
            error: None,
        }
    }

    #[test]
    fn completed_result_shape() {
        let mut doc = sample(JobStatus::Completed);
        doc.output = Some(json!({"os": "linux"}));
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["started_at"], "2026-01-30T10:00:00Z");
        assert_eq!(v["finished_at"], "2026-01-30T10:00:01.500Z");
        assert_eq!(v["output"], json!({"os": "linux"}));
        assert!(v.get("error").is_none(), "no error key when completed");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 10, "{keys:?}");
        assert_eq!(serde_json::from_value::<ResultDocument>(v).unwrap(), doc);
    }

    #[test]
    fn rejected_result_shape() {
        let mut doc = sample(JobStatus::Rejected);
        doc.job_id = None;
        doc.operation = None;
        doc.error = Some(JobError::new(
            ErrorKind::NotJson,
            "message is not valid JSON",
            false,
        ));
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["job_id"], Value::Null, "job_id present as null");
        assert_eq!(v["operation"], Value::Null);
        assert_eq!(v["output"], Value::Null, "output present as null");
        assert_eq!(
            v["error"],
            json!({"kind": "not_json", "message": "message is not valid JSON", "retryable": false})
        );
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<ResultDocument>(&text).unwrap(), doc);
    }

    #[test]
    fn reader_tolerates_missing_optional_keys_and_extras() {
        let text = r#"{"job_id": "job-12345678", "status": "failed", "worker_id": "w",
            "pool": "p", "attempt": 2, "started_at": "2026-01-30T10:00:00Z",
            "finished_at": "2026-01-30T10:00:02Z", "duration_ms": 2000,
            "error": {"kind": "timeout", "message": "too slow", "retryable": true},
            "new_field": 1}"#;
        let doc: ResultDocument = serde_json::from_str(text).unwrap();
        assert_eq!(doc.status, JobStatus::Failed);
        assert_eq!(doc.operation, None);
        assert_eq!(doc.output, None);
        assert!(doc.error.unwrap().retryable);
    }

    #[test]
    fn status_spellings() {
        for (s, text) in [
            (JobStatus::Completed, "completed"),
            (JobStatus::Failed, "failed"),
            (JobStatus::Rejected, "rejected"),
        ] {
            assert_eq!(s.as_str(), text);
            assert_eq!(s.to_string(), text);
            assert_eq!(text.parse::<JobStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(text));
        }
        assert!("Completed".parse::<JobStatus>().is_err());
    }

    #[test]
    fn routing_keys() {
        let doc = sample(JobStatus::Completed);
        assert_eq!(doc.routing_key(), "default.completed.guestkit.inspect");
        let mut doc = sample(JobStatus::Rejected);
        doc.operation = None;
        assert_eq!(doc.routing_key(), "default.rejected.unknown");
        for hostile in ["", "a#b", "x".repeat(129).as_str(), "Guestkit.Inspect"] {
            doc.operation = Some(hostile.to_string());
            assert_eq!(doc.routing_key(), "default.rejected.unknown", "{hostile}");
        }
    }
}
