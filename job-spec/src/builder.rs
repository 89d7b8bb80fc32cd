//! A builder so publishers write valid jobs without knowing every rule.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::job::{JobDocument, Payload, DEFAULT_ATTEMPT, DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY};
use crate::sections::{Execution, Observability, Routing};
use crate::validate::ValidationErrors;
use crate::{KIND_VM_OPERATION, PROTOCOL_VERSION};

/// Builds a [`JobDocument`] for one operation: mints the id, stamps the time,
/// fills the envelope and validates the result.
///
/// The built document always carries `execution.attempt`,
/// `execution.max_attempts` and `execution.priority` explicitly, so it means
/// the same thing to readers whose defaults differ (the original protocol
/// defaulted `max_attempts` to 1, this crate to 3).
#[derive(Debug, Clone)]
pub struct JobBuilder {
    operation: String,
    job_id: Option<String>,
    data: Value,
    payload_version: u32,
    routing: Routing,
    execution: Execution,
    observability: Observability,
}

impl JobBuilder {
    /// Start a job for `operation` (e.g. `guestkit.inspect`) with empty data
    /// and payload version 1.
    pub fn new(operation: impl Into<String>) -> Self {
        JobBuilder {
            operation: operation.into(),
            job_id: None,
            data: Value::Object(Default::default()),
            payload_version: 1,
            routing: Routing::default(),
            execution: Execution::default(),
            observability: Observability::default(),
        }
    }

    /// Use this id instead of a fresh `job-<ULID>` (for publishers that derive
    /// ids from their own records).
    pub fn job_id(mut self, job_id: impl Into<String>) -> Self {
        self.job_id = Some(job_id.into());
        self
    }

    /// The operation's parameters (`payload.data`).
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// The `N` of `payload.type` = `<operation>.v<N>`.
    pub fn payload_version(mut self, version: u32) -> Self {
        self.payload_version = version;
        self
    }

    /// `routing.worker_pool`: the pool (and routing key) the job is meant for.
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.routing.worker_pool = Some(pool.into());
        self
    }

    /// `execution.priority`, 1..=10.
    pub fn priority(mut self, priority: u8) -> Self {
        self.execution.priority = Some(priority);
        self
    }

    /// `execution.max_attempts`.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.execution.max_attempts = Some(max_attempts);
        self
    }

    /// `execution.timeout_seconds`.
    pub fn timeout_seconds(mut self, seconds: u64) -> Self {
        self.execution.timeout_seconds = Some(seconds);
        self
    }

    /// `execution.deadline`.
    pub fn deadline(mut self, deadline: DateTime<Utc>) -> Self {
        self.execution.deadline = Some(deadline);
        self
    }

    /// `execution.idempotency_key`.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.execution.idempotency_key = Some(key.into());
        self
    }

    /// `observability.correlation_id`.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.observability.correlation_id = Some(id.into());
        self
    }

    /// `observability.trace_id`.
    pub fn trace_id(mut self, id: impl Into<String>) -> Self {
        self.observability.trace_id = Some(id.into());
        self
    }

    /// Assemble and validate the document.
    pub fn build(self) -> Result<JobDocument, ValidationErrors> {
        let mut execution = self.execution;
        execution.attempt = Some(DEFAULT_ATTEMPT);
        execution.max_attempts.get_or_insert(DEFAULT_MAX_ATTEMPTS);
        execution.priority.get_or_insert(DEFAULT_PRIORITY);
        let payload_type = format!("{}.v{}", self.operation, self.payload_version);
        let job = JobDocument {
            schema: None,
            version: PROTOCOL_VERSION.to_string(),
            job_id: self.job_id.unwrap_or_else(JobDocument::new_job_id),
            created_at: Some(Utc::now()),
            kind: KIND_VM_OPERATION.to_string(),
            operation: self.operation,
            payload: Payload {
                payload_type,
                data: self.data,
            },
            metadata: None,
            execution: Some(execution),
            constraints: None,
            routing: (self.routing != Routing::default()).then_some(self.routing),
            observability: (self.observability != Observability::default())
                .then_some(self.observability),
            audit: None,
        };
        job.validate()?;
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn minimal_build_is_valid_and_complete() {
        let before = Utc::now();
        let job = JobBuilder::new("guestkit.inspect").build().unwrap();
        assert_eq!(job.validate(), Ok(()));
        assert_eq!(job.version, "1.0");
        assert_eq!(job.kind, "VMOperation");
        assert_eq!(job.payload.payload_type, "guestkit.inspect.v1");
        assert_eq!(job.payload.data, json!({}));
        let created = job.created_at.expect("created_at set");
        assert!(created >= before && created <= Utc::now());

        let ulid = job.job_id.strip_prefix("job-").expect("job- prefix");
        assert_eq!(ulid.len(), 26);
        let ulid = ulid::Ulid::from_string(ulid).expect("a real ULID");
        // The ULID's timestamp is the minting time (millisecond precision).
        assert!(ulid.timestamp_ms() >= before.timestamp_millis() as u64);

        let ex = job.execution.as_ref().unwrap();
        assert_eq!(
            (ex.attempt, ex.max_attempts, ex.priority),
            (Some(1), Some(DEFAULT_MAX_ATTEMPTS), Some(DEFAULT_PRIORITY))
        );
        assert!(job.routing.is_none() && job.observability.is_none());
    }

    #[test]
    fn every_setter_lands_in_its_field() {
        let deadline = Utc::now() + chrono::Duration::hours(1);
        let job = JobBuilder::new("system.echo")
            .job_id("my-own-id-1")
            .data(json!({"sleep_ms": 5}))
            .payload_version(2)
            .pool("fast")
            .priority(9)
            .max_attempts(7)
            .timeout_seconds(30)
            .deadline(deadline)
            .idempotency_key("idem")
            .correlation_id("corr")
            .trace_id("trace")
            .build()
            .unwrap();
        assert_eq!(job.job_id, "my-own-id-1");
        assert_eq!(job.payload.payload_type, "system.echo.v2");
        assert_eq!(job.payload_version(), Some(2));
        assert_eq!(job.payload.data["sleep_ms"], 5);
        assert_eq!(job.worker_pool(), Some("fast"));
        assert_eq!(job.priority(), 9);
        assert_eq!(job.max_attempts(), 7);
        assert_eq!(job.attempt(), 1);
        assert_eq!(job.timeout_seconds(), Some(30));
        assert_eq!(job.deadline(), Some(deadline));
        assert_eq!(job.idempotency_key(), Some("idem"));
        assert_eq!(job.correlation_id(), Some("corr"));
        assert_eq!(job.trace_id(), Some("trace"));
    }

    #[test]
    fn invalid_input_is_refused_with_reasons() {
        let errs = JobBuilder::new("Echo")
            .priority(0)
            .pool("no spaces please")
            .build()
            .unwrap_err();
        for field in ["operation", "execution.priority", "routing.worker_pool"] {
            assert!(errs.has_field(field), "{field} missing from: {errs}");
        }
        let errs = JobBuilder::new("system.echo")
            .payload_version(0)
            .build()
            .unwrap_err();
        assert!(errs.has_field("payload.type"), "{errs}");
        let errs = JobBuilder::new("system.echo")
            .data(json!([1, 2]))
            .build()
            .unwrap_err();
        assert!(errs.has_field("payload.data"), "{errs}");
    }
}
