//! The job document: the envelope every job message carries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sections::{Audit, Constraints, Execution, Metadata, Observability, Routing};

/// `execution.attempt` when the document does not say.
pub const DEFAULT_ATTEMPT: u32 = 1;
/// `execution.max_attempts` when the document does not say.
///
/// The original protocol defaulted to 1 (no retries); this project's contract
/// retries retryable failures, so an unspecified limit allows 3 attempts.
/// Publishers that care should set the field: the builder always does.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// `execution.priority` when the document does not say.
pub const DEFAULT_PRIORITY: u8 = 5;

/// One job, as published on `guestkit.jobs`. It exists so that publishers and
/// the worker share one definition of the wire format (protocol v1.0).
///
/// Only `version`, `job_id`, `kind`, `operation` and `payload` are required;
/// `created_at` may be missing (the original protocol required it; accepting
/// its absence costs nothing). Unknown fields are ignored everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDocument {
    /// JSON-schema URL some publishers add; kept so documents round-trip.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Protocol version; must be `"1.0"`.
    pub version: String,
    /// Publisher-chosen unique id, 8 to 128 characters of `[A-Za-z0-9._:-]`.
    pub job_id: String,
    /// When the publisher created the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Always `"VMOperation"` in v1.
    pub kind: String,
    /// Namespaced operation name, e.g. `guestkit.inspect`.
    pub operation: String,
    /// Operation-specific input.
    pub payload: Payload,
    /// Names and labels for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Retry, timeout and priority policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// What the worker must offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    /// Where the job should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    /// Trace and correlation ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
    /// Who submitted the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// The operation's input, versioned on its own so an operation can change its
/// input without a new envelope version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// `<operation>.v<N>`, e.g. `guestkit.inspect.v1`.
    #[serde(rename = "type")]
    pub payload_type: String,
    /// Operation parameters: a JSON object, or `null` meaning "no parameters"
    /// (`null.get("x")` is `None`, exactly as for `{}`).
    pub data: Value,
}

impl JobDocument {
    /// A fresh job id: `job-` followed by a 26-character ULID, so ids sort by
    /// creation time.
    pub fn new_job_id() -> String {
        format!("job-{}", ulid::Ulid::new())
    }

    /// Current attempt number, [`DEFAULT_ATTEMPT`] (1) when absent.
    pub fn attempt(&self) -> u32 {
        self.execution
            .as_ref()
            .and_then(|e| e.attempt)
            .unwrap_or(DEFAULT_ATTEMPT)
    }

    /// Allowed attempts in total, [`DEFAULT_MAX_ATTEMPTS`] (3) when absent.
    pub fn max_attempts(&self) -> u32 {
        self.execution
            .as_ref()
            .and_then(|e| e.max_attempts)
            .unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// Per-attempt timeout; `None` lets the worker apply its own default.
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.execution.as_ref().and_then(|e| e.timeout_seconds)
    }

    /// Deadline for the result, if any.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.execution.as_ref().and_then(|e| e.deadline)
    }

    /// Priority 1..=10, [`DEFAULT_PRIORITY`] (5) when absent.
    pub fn priority(&self) -> u8 {
        self.execution
            .as_ref()
            .and_then(|e| e.priority)
            .unwrap_or(DEFAULT_PRIORITY)
    }

    /// Whether the job may be cancelled; `true` when absent, as in the
    /// original protocol.
    pub fn cancellable(&self) -> bool {
        self.execution
            .as_ref()
            .and_then(|e| e.cancellable)
            .unwrap_or(true)
    }

    /// The idempotency key, if the publisher gave one.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.execution.as_ref()?.idempotency_key.as_deref()
    }

    /// The pool the publisher aimed at; `None` means "whichever queue it was
    /// sent to".
    pub fn worker_pool(&self) -> Option<&str> {
        self.routing.as_ref()?.worker_pool.as_deref()
    }

    /// `observability.correlation_id`, if any.
    pub fn correlation_id(&self) -> Option<&str> {
        self.observability.as_ref()?.correlation_id.as_deref()
    }

    /// `observability.trace_id`, if any.
    pub fn trace_id(&self) -> Option<&str> {
        self.observability.as_ref()?.trace_id.as_deref()
    }

    /// The `N` of `payload.type` = `<operation>.v<N>`; `None` when the type
    /// does not have that shape (which validation reports).
    pub fn payload_version(&self) -> Option<u32> {
        let rest = self
            .payload
            .payload_type
            .strip_prefix(self.operation.as_str())?
            .strip_prefix(".v")?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse::<u32>().ok().filter(|n| *n >= 1)
    }

    /// Whether `constraints.allowed_worker_pools` lets `pool` run the job
    /// (absent list: any pool may).
    pub fn allows_pool(&self, pool: &str) -> bool {
        match self
            .constraints
            .as_ref()
            .and_then(|c| c.allowed_worker_pools.as_ref())
        {
            Some(pools) => pools.iter().any(|p| p == pool),
            None => true,
        }
    }

    /// A copy with `execution.attempt = attempt`, for republishing a retry.
    /// Everything else, `job_id` included, is kept so the retry is the same
    /// job.
    pub fn with_attempt(&self, attempt: u32) -> JobDocument {
        let mut next = self.clone();
        next.execution
            .get_or_insert_with(Execution::default)
            .attempt = Some(attempt);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sections::Constraints;
    use crate::testutil::minimal;

    #[test]
    fn getters_default_without_execution() {
        let job = minimal();
        assert!(job.execution.is_none());
        assert_eq!(job.attempt(), 1);
        assert_eq!(job.max_attempts(), 3);
        assert_eq!(job.timeout_seconds(), None);
        assert_eq!(job.deadline(), None);
        assert_eq!(job.priority(), 5);
        assert!(job.cancellable());
        assert_eq!(job.idempotency_key(), None);
        assert_eq!(job.worker_pool(), None);
        assert_eq!(job.correlation_id(), None);
        assert_eq!(job.trace_id(), None);
    }

    #[test]
    fn getters_default_with_empty_sections() {
        let mut job = minimal();
        job.execution = Some(Execution::default());
        job.routing = Some(Routing::default());
        job.observability = Some(Observability::default());
        assert_eq!(
            (job.attempt(), job.max_attempts(), job.priority()),
            (1, 3, 5)
        );
        assert_eq!(job.worker_pool(), None);
        assert_eq!(job.correlation_id(), None);
    }

    #[test]
    fn with_attempt_changes_only_the_attempt() {
        let job = minimal();
        let retry = job.with_attempt(2);
        assert_eq!(retry.attempt(), 2);
        assert_eq!(job.attempt(), 1, "the original is untouched");
        let mut back = retry.clone();
        back.execution = None;
        assert_eq!(back, job, "nothing else changed");

        let mut job = minimal();
        job.execution = Some(Execution {
            max_attempts: Some(5),
            priority: Some(8),
            attempt: Some(1),
            ..Default::default()
        });
        let retry = job.with_attempt(3);
        assert_eq!(
            (retry.attempt(), retry.max_attempts(), retry.priority()),
            (3, 5, 8)
        );
        assert_eq!(retry.job_id, job.job_id);
        assert_eq!(retry.validate(), Ok(()));
    }

    #[test]
    fn payload_version_parses_suffix() {
        let mut job = minimal();
        assert_eq!(job.payload_version(), Some(1));
        job.payload.payload_type = "system.echo.v42".into();
        assert_eq!(job.payload_version(), Some(42));
        for bad in [
            "system.echo.v0",
            "system.echo.v+1",
            "system.echo.v99999999999",
            "system.echov1",
        ] {
            job.payload.payload_type = bad.into();
            assert_eq!(job.payload_version(), None, "{bad}");
        }
    }

    #[test]
    fn allows_pool_follows_constraints() {
        let mut job = minimal();
        assert!(job.allows_pool("anything"));
        job.constraints = Some(Constraints {
            allowed_worker_pools: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        });
        assert!(job.allows_pool("b"));
        assert!(!job.allows_pool("c"));
    }

    #[test]
    fn new_job_ids_are_unique_and_ulid_shaped() {
        let a = JobDocument::new_job_id();
        let b = JobDocument::new_job_id();
        assert_ne!(a, b);
        let ulid = a.strip_prefix("job-").expect("job- prefix");
        assert_eq!(ulid.len(), 26);
        ulid::Ulid::from_string(ulid).expect("a real ULID");
    }
}
