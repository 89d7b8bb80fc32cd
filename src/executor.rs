//! From delivery bytes to a decision: decode and validate the job, run its operation
//! under a timeout and a panic guard, and say what must happen to the message.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use guestkit_job_spec::{
    parse_job, peek_job_id, ErrorKind, JobDocument, JobError, JobStatus, OutputSpec, ResultDocument,
};
use tokio_util::sync::CancellationToken;

use crate::ops::{OpContext, OpEnv, OpError, Operation, Registry};
use crate::progress::Progress;

/// Why a message is not a job this worker will run: it becomes a `rejected` result and
/// goes to the dead-letter queue.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The `error.kind` and metrics label (`not_json`, `unknown_operation`, ...).
    pub reason: ErrorKind,
    pub message: String,
    pub job_id: Option<String>,
    pub operation: Option<String>,
    pub attempt: u32,
}

/// A job that passed every check and can run.
pub struct Accepted {
    pub job: Arc<JobDocument>,
    pub op: Arc<dyn Operation>,
    pub output: OutputSpec,
}

/// The checks of the contract, in order; the first failure decides the reason.
pub fn accept(
    body: &[u8],
    max_bytes: usize,
    pool: &str,
    registry: &Registry,
    env: &OpEnv,
) -> Result<Accepted, Rejection> {
    let reject = |reason, message: String, job: Option<&JobDocument>| Rejection {
        reason,
        message,
        job_id: job.map(|j| j.job_id.clone()),
        operation: job.map(|j| j.operation.clone()),
        attempt: job.map(|j| j.attempt()).unwrap_or(1),
    };
    if body.len() > max_bytes {
        // Not parsed at all: a huge body must not cost a huge parse.
        return Err(reject(
            ErrorKind::TooLarge,
            format!(
                "message body of {} bytes exceeds the limit of {max_bytes} bytes",
                body.len()
            ),
            None,
        ));
    }
    let job = match parse_job(body) {
        Ok(job) => job,
        Err(err) => {
            return Err(Rejection {
                reason: err.reason(),
                message: err.to_string(),
                job_id: peek_job_id(body),
                operation: None,
                attempt: 1,
            })
        }
    };
    if let Some(wanted) = job.worker_pool() {
        if wanted != pool {
            return Err(reject(
                ErrorKind::WrongPool,
                format!("routing.worker_pool is {wanted:?} but this worker serves pool {pool:?}"),
                Some(&job),
            ));
        }
    }
    if !job.allows_pool(pool) {
        return Err(reject(
            ErrorKind::WrongPool,
            format!("constraints.allowed_worker_pools does not include pool {pool:?}"),
            Some(&job),
        ));
    }
    let Some(op) = registry.get(&job.operation) else {
        return Err(reject(
            ErrorKind::UnknownOperation,
            format!(
                "unknown operation {:?}; this worker runs: {}",
                job.operation,
                registry.names().join(", ")
            ),
            Some(&job),
        ));
    };
    let output = match OutputSpec::from_data(&job.payload.data) {
        Ok(spec) => spec,
        Err(msg) => return Err(reject(ErrorKind::InvalidOutput, msg, Some(&job))),
    };
    if let Err(invalid) = op.validate(&job.payload.data, env) {
        return Err(reject(invalid.reason, invalid.message, Some(&job)));
    }
    Ok(Accepted {
        job: Arc::new(job),
        op,
        output,
    })
}

/// The time a job may run: the job's own `timeout_seconds`, capped by the worker's
/// `--max-job-timeout`.
pub fn job_timeout(job: &JobDocument, max: Duration) -> Duration {
    match job.timeout_seconds() {
        Some(secs) => Duration::from_secs(secs).min(max),
        None => max,
    }
}

/// Runs the operation in the caller's task, under a panic guard (a panic fails the job,
/// not the worker) and the timeout; on timeout the job's cancel token fires so blocking
/// work stops too.
pub async fn run(
    accepted: &Accepted,
    progress: Progress,
    env: Arc<OpEnv>,
    timeout: Duration,
) -> Result<serde_json::Value, OpError> {
    if let Some(deadline) = accepted.job.deadline() {
        if deadline < Utc::now() {
            return Err(OpError::fatal(
                ErrorKind::DeadlineExceeded,
                format!("the job's deadline {deadline} has passed"),
            ));
        }
    }
    let cancel = CancellationToken::new();
    // Cancelled however the run ends, so helpers waiting on the token always finish.
    let _cancel_on_exit = cancel.clone().drop_guard();
    let ctx = OpContext {
        job: accepted.job.clone(),
        progress,
        cancel: cancel.clone(),
        env,
        timeout,
    };
    // The panic guard: a panicking operation fails its job, never the worker. Polled
    // in place (no task of its own: one spawn per job is enough).
    let guarded = std::panic::AssertUnwindSafe(accepted.op.run(ctx)).catch_unwind();
    match tokio::time::timeout(timeout, guarded).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "operation panicked".into());
            tracing::error!(job_id = %accepted.job.job_id, panic = %msg, "operation panicked");
            Err(OpError::fatal(
                ErrorKind::Panic,
                format!("internal error: {msg}"),
            ))
        }
        Err(_) => {
            // Dropping the future stops async work; blocking work sees the token.
            cancel.cancel();
            Err(OpError::fatal(
                ErrorKind::Timeout,
                format!(
                    "the job did not finish within its timeout of {} s",
                    timeout.as_secs_f64()
                ),
            ))
        }
    }
}

/// Identity fields of every result this worker writes.
pub struct ResultStamp<'a> {
    pub worker_id: &'a str,
    pub pool: &'a str,
    pub started_at: DateTime<Utc>,
    pub started: tokio::time::Instant,
}

impl ResultStamp<'_> {
    fn document(
        &self,
        job_id: Option<String>,
        operation: Option<String>,
        attempt: u32,
        status: JobStatus,
    ) -> ResultDocument {
        ResultDocument {
            job_id,
            status,
            worker_id: self.worker_id.to_string(),
            pool: self.pool.to_string(),
            operation,
            attempt,
            started_at: self.started_at,
            finished_at: Utc::now(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            output: None,
            error: None,
        }
    }

    /// The result of a job that ran.
    pub fn finished(
        &self,
        job: &JobDocument,
        outcome: Result<serde_json::Value, OpError>,
    ) -> ResultDocument {
        let ok = outcome.is_ok();
        let status = if ok {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        };
        let mut doc = self.document(
            Some(job.job_id.clone()),
            Some(job.operation.clone()),
            job.attempt(),
            status,
        );
        match outcome {
            Ok(output) => doc.output = Some(output),
            Err(err) => doc.error = Some(JobError::new(err.kind, err.message, err.retryable)),
        }
        doc
    }

    /// The result of a message that was never a valid job.
    pub fn rejected(&self, rejection: &Rejection) -> ResultDocument {
        let mut doc = self.document(
            rejection.job_id.clone(),
            rejection.operation.clone(),
            rejection.attempt,
            JobStatus::Rejected,
        );
        doc.error = Some(JobError::new(
            rejection.reason,
            rejection.message.clone(),
            false,
        ));
        doc
    }
}

/// Exponential backoff before attempt `next_attempt`: 1 s, 2 s, 4 s ... capped at 60 s.
/// A few whole-second tiers keep the head-of-line wait of the single retry queue short
/// (per-message TTLs only expire at the head of a queue).
pub fn retry_delay(next_attempt: u32) -> Duration {
    let exp = next_attempt.saturating_sub(2).min(6);
    Duration::from_secs((1u64 << exp).min(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> OpEnv {
        OpEnv {
            image_roots: vec![],
            metrics: None,
            isolation: None,
            remote: None,
        }
    }

    fn job(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"version":"1.0","job_id":"job-test-0001","kind":"VMOperation","operation":"system.echo",
               "payload":{{"type":"system.echo.v1","data":{{}}}}{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn accept_checks_in_contract_order() {
        let reg = Registry::standard();
        assert!(accept(&job(""), 1 << 20, "p", &reg, &env()).is_ok());
        let r = accept(&job(""), 10, "p", &reg, &env()).err().unwrap();
        assert_eq!(r.reason, "too_large");
        let r = accept(b"nope", 1 << 20, "p", &reg, &env()).err().unwrap();
        assert_eq!(r.reason, "not_json");
        let r = accept(b"[1]", 1 << 20, "p", &reg, &env()).err().unwrap();
        assert_eq!(r.reason, "not_object");
        let r = accept(
            &job(r#","routing":{"worker_pool":"other"}"#),
            1 << 20,
            "p",
            &reg,
            &env(),
        )
        .err()
        .unwrap();
        assert_eq!(
            (r.reason.as_str(), r.job_id.as_deref()),
            ("wrong_pool", Some("job-test-0001"))
        );
        let unknown = String::from_utf8(job(""))
            .unwrap()
            .replace("system.echo", "system.nope");
        let r = accept(unknown.as_bytes(), 1 << 20, "p", &reg, &env())
            .err()
            .unwrap();
        assert_eq!(r.reason, "unknown_operation");
        assert!(r.message.contains("system.echo"), "{}", r.message);
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(2));
        assert_eq!(retry_delay(4), Duration::from_secs(4));
        assert_eq!(retry_delay(100), Duration::from_secs(60));
    }
}
