//! Semantic rules a well-formed job document must also satisfy.
//!
//! Parsing only checks the shape; these rules check the values. Every problem
//! found is reported (not just the first), each as one message that names the
//! field, so a publisher can fix a document in one round trip.

use std::fmt;

use serde_json::Value;

use crate::job::JobDocument;
use crate::{KIND_VM_OPERATION, PROTOCOL_VERSION};

/// Shortest accepted `job_id`, as in the original protocol.
pub const JOB_ID_MIN_LEN: usize = 8;
/// Longest accepted `job_id`: it travels in AMQP headers and result routing.
pub const JOB_ID_MAX_LEN: usize = 128;
/// Longest accepted `operation`: it ends up in the result routing key, which
/// AMQP limits to 255 bytes (`<pool>.<status>.<operation>`).
pub const OPERATION_MAX_LEN: usize = 128;
/// Longest accepted `routing.worker_pool`: it names queues and prefixes
/// routing keys, both limited to 255 bytes.
pub const WORKER_POOL_MAX_LEN: usize = 64;

/// Longest user-supplied value quoted back in a message, so that a hostile
/// document cannot make error texts (and the results carrying them) huge.
const QUOTE_MAX: usize = 64;

/// One broken rule. `field` is the dotted path of the offending field (for
/// programs); `message` is the full sentence, starting with that path (for
/// people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted path, e.g. `execution.priority`.
    pub field: &'static str,
    /// Complete message, e.g. `execution.priority must be 1..=10, got 0`.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every rule a document broke, in document order. It is an error type of its
/// own so that callers get all problems at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// The individual problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ValidationError> {
        self.0.iter()
    }

    /// Whether some problem concerns `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Quote a user-supplied string for a message, cut to [`QUOTE_MAX`] chars.
pub(crate) fn quote(s: &str) -> String {
    clip(&format!("{s:?}"), QUOTE_MAX)
}

/// Cut `s` to at most `max` chars, marking the cut with `...`.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

fn is_job_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

fn is_operation_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
}

fn is_pool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Collects problems while the rules run.
struct Problems(Vec<ValidationError>);

impl Problems {
    fn add(&mut self, field: &'static str, message: String) {
        self.0.push(ValidationError { field, message });
    }
}

impl JobDocument {
    /// Check every value rule of protocol v1.0.
    ///
    /// Rules: `version` is `"1.0"`; `job_id` is 8..=128 chars of
    /// `[A-Za-z0-9._:-]`; `kind` is `"VMOperation"`; `operation` is non-empty,
    /// at most 128 chars of `[a-z0-9._-]` and contains a dot; `payload.type`
    /// is `<operation>.v<N>` with N >= 1; `payload.data` is an object or
    /// `null` (the original protocol typed every payload as an object, and
    /// `null` reads like `{}`); `execution.priority` is 1..=10; `attempt` and
    /// `max_attempts` are >= 1 and `attempt <= max_attempts` (defaults
    /// included); `timeout_seconds` >= 1; `deadline` is not before
    /// `created_at`; `routing.worker_pool` is 1..=64 chars of
    /// `[A-Za-z0-9._-]`; `constraints.minimum_worker_version` is not empty
    /// (a rule of the original protocol).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut p = Problems(Vec::new());
        self.check_envelope(&mut p);
        self.check_payload(&mut p);
        self.check_execution(&mut p);
        self.check_routing_and_constraints(&mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(p.0))
        }
    }

    fn check_envelope(&self, p: &mut Problems) {
        if self.version != PROTOCOL_VERSION {
            p.add(
                "version",
                format!(
                    "version must be \"{PROTOCOL_VERSION}\", got {}",
                    quote(&self.version)
                ),
            );
        }

        let id_len = self.job_id.chars().count();
        if !(JOB_ID_MIN_LEN..=JOB_ID_MAX_LEN).contains(&id_len) {
            p.add(
                "job_id",
                format!(
                    "job_id must be {JOB_ID_MIN_LEN} to {JOB_ID_MAX_LEN} characters long, got {id_len}"
                ),
            );
        }
        if let Some(bad) = self.job_id.chars().find(|c| !is_job_id_char(*c)) {
            p.add(
                "job_id",
                format!("job_id may only contain [A-Za-z0-9._:-], found {bad:?}"),
            );
        }

        if self.kind != KIND_VM_OPERATION {
            p.add(
                "kind",
                format!(
                    "kind must be \"{KIND_VM_OPERATION}\", got {}",
                    quote(&self.kind)
                ),
            );
        }

        let op = self.operation.as_str();
        if op.is_empty() {
            p.add("operation", "operation must not be empty".to_string());
            return;
        }
        let op_len = op.chars().count();
        if op_len > OPERATION_MAX_LEN {
            p.add(
                "operation",
                format!(
                    "operation must be at most {OPERATION_MAX_LEN} characters long, got {op_len}"
                ),
            );
        }
        if !op.contains('.') {
            p.add(
                "operation",
                format!(
                    "operation must be namespaced as <tool>.<name> (e.g. \"guestkit.inspect\"), got {}",
                    quote(op)
                ),
            );
        }
        if let Some(bad) = op.chars().find(|c| !is_operation_char(*c)) {
            p.add(
                "operation",
                format!("operation may only contain [a-z0-9._-], found {bad:?}"),
            );
        }
    }

    fn check_payload(&self, p: &mut Problems) {
        if self.payload_version().is_none() {
            p.add(
                "payload.type",
                format!(
                    "payload.type must be \"{}.v<N>\" with N a positive integer, got {}",
                    clip(&self.operation, QUOTE_MAX),
                    quote(&self.payload.payload_type)
                ),
            );
        }
        match &self.payload.data {
            Value::Object(_) | Value::Null => {}
            other => p.add(
                "payload.data",
                format!(
                    "payload.data must be a JSON object (or null), got {}",
                    json_kind(other)
                ),
            ),
        }
    }

    fn check_execution(&self, p: &mut Problems) {
        let Some(ex) = &self.execution else {
            return;
        };
        if let Some(prio) = ex.priority {
            if !(1..=10).contains(&prio) {
                p.add(
                    "execution.priority",
                    format!("execution.priority must be 1..=10, got {prio}"),
                );
            }
        }
        if ex.attempt == Some(0) {
            p.add(
                "execution.attempt",
                "execution.attempt must be at least 1, got 0".to_string(),
            );
        }
        if ex.max_attempts == Some(0) {
            p.add(
                "execution.max_attempts",
                "execution.max_attempts must be at least 1, got 0".to_string(),
            );
        }
        let (attempt, max) = (self.attempt(), self.max_attempts());
        if max >= 1 && attempt > max {
            let max_note = if ex.max_attempts.is_none() {
                " (the default)"
            } else {
                ""
            };
            p.add(
                "execution.attempt",
                format!(
                    "execution.attempt ({attempt}) must not exceed execution.max_attempts ({max}{max_note})"
                ),
            );
        }
        if ex.timeout_seconds == Some(0) {
            p.add(
                "execution.timeout_seconds",
                "execution.timeout_seconds must be at least 1, got 0".to_string(),
            );
        }
        if let (Some(deadline), Some(created)) = (ex.deadline, self.created_at) {
            if deadline < created {
                p.add(
                    "execution.deadline",
                    format!(
                        "execution.deadline ({}) must not be before created_at ({})",
                        deadline.to_rfc3339(),
                        created.to_rfc3339()
                    ),
                );
            }
        }
    }

    fn check_routing_and_constraints(&self, p: &mut Problems) {
        if let Some(pool) = self.worker_pool() {
            let len = pool.chars().count();
            if len == 0 || len > WORKER_POOL_MAX_LEN {
                p.add(
                    "routing.worker_pool",
                    format!(
                        "routing.worker_pool must be 1 to {WORKER_POOL_MAX_LEN} characters long, got {len}"
                    ),
                );
            }
            if let Some(bad) = pool.chars().find(|c| !is_pool_char(*c)) {
                p.add(
                    "routing.worker_pool",
                    format!("routing.worker_pool may only contain [A-Za-z0-9._-], found {bad:?}"),
                );
            }
        }
        let min_version = self
            .constraints
            .as_ref()
            .and_then(|c| c.minimum_worker_version.as_deref());
        if min_version.is_some_and(|v| v.trim().is_empty()) {
            p.add(
                "constraints.minimum_worker_version",
                "constraints.minimum_worker_version must not be empty".to_string(),
            );
        }
    }
}

/// The JSON type name of `v`, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::sections::{Constraints, Execution, Routing};
    use crate::testutil::minimal;

    /// Validate `job`, expecting exactly one problem, on `field`; return its
    /// message.
    fn only_problem(job: &JobDocument, field: &str) -> String {
        let errs = job.validate().expect_err("document should be invalid");
        assert_eq!(errs.0.len(), 1, "expected one problem, got: {errs}");
        assert_eq!(errs.0[0].field, field, "{errs}");
        assert!(
            errs.0[0].message.starts_with(field),
            "message should name the field: {}",
            errs.0[0].message
        );
        errs.0[0].message.clone()
    }

    fn with_execution(ex: Execution) -> JobDocument {
        let mut job = minimal();
        job.execution = Some(ex);
        job
    }

    #[test]
    fn minimal_document_is_valid() {
        assert_eq!(minimal().validate(), Ok(()));
    }

    #[test]
    fn version_must_be_1_0() {
        let mut job = minimal();
        job.version = "2.0".into();
        let msg = only_problem(&job, "version");
        assert_eq!(msg, r#"version must be "1.0", got "2.0""#);
    }

    #[test]
    fn job_id_length_bounds() {
        let mut job = minimal();
        job.job_id = "a".repeat(8);
        assert_eq!(job.validate(), Ok(()));
        job.job_id = "a".repeat(128);
        assert_eq!(job.validate(), Ok(()));

        job.job_id = "a".repeat(7);
        let msg = only_problem(&job, "job_id");
        assert!(msg.contains("8 to 128") && msg.ends_with("got 7"), "{msg}");
        job.job_id = "a".repeat(129);
        assert!(only_problem(&job, "job_id").ends_with("got 129"));
        job.job_id = String::new();
        assert!(only_problem(&job, "job_id").ends_with("got 0"));
    }

    #[test]
    fn job_id_charset() {
        let mut job = minimal();
        job.job_id = "Job-01:ab_c.D".into();
        assert_eq!(job.validate(), Ok(()));
        job.job_id = "job id with spaces".into();
        let msg = only_problem(&job, "job_id");
        assert!(
            msg.contains("[A-Za-z0-9._:-]") && msg.contains("' '"),
            "{msg}"
        );
        job.job_id = "job-12345/../x".into();
        assert!(only_problem(&job, "job_id").contains("'/'"));
    }

    #[test]
    fn kind_must_be_vm_operation() {
        let mut job = minimal();
        job.kind = "Pod".into();
        assert_eq!(
            only_problem(&job, "kind"),
            r#"kind must be "VMOperation", got "Pod""#
        );
    }

    #[test]
    fn operation_must_not_be_empty() {
        let mut job = minimal();
        job.operation = String::new();
        // payload.type cannot match an empty operation either.
        let errs = job.validate().unwrap_err();
        assert!(errs.has_field("operation"), "{errs}");
        assert!(errs.to_string().contains("operation must not be empty"));
    }

    #[test]
    fn operation_must_be_namespaced() {
        let mut job = minimal();
        job.operation = "echo".into();
        job.payload.payload_type = "echo.v1".into();
        let msg = only_problem(&job, "operation");
        assert!(msg.contains("namespaced"), "{msg}");
    }

    #[test]
    fn operation_charset() {
        let mut job = minimal();
        job.operation = "system.health-check_2".into();
        job.payload.payload_type = "system.health-check_2.v1".into();
        assert_eq!(job.validate(), Ok(()));
        job.operation = "System.Echo".into();
        job.payload.payload_type = "System.Echo.v1".into();
        let msg = only_problem(&job, "operation");
        assert!(msg.contains("[a-z0-9._-]") && msg.contains("'S'"), "{msg}");
    }

    #[test]
    fn operation_length_bound() {
        let mut job = minimal();
        job.operation = format!("system.{}", "e".repeat(121));
        job.payload.payload_type = format!("{}.v1", job.operation);
        assert_eq!(job.validate(), Ok(()));
        job.operation.push('e');
        job.payload.payload_type = format!("{}.v1", job.operation);
        assert!(only_problem(&job, "operation").contains("at most 128"));
    }

    #[test]
    fn payload_type_must_be_operation_dot_version() {
        let mut job = minimal();
        for good in ["system.echo.v1", "system.echo.v2", "system.echo.v10"] {
            job.payload.payload_type = good.into();
            assert_eq!(job.validate(), Ok(()), "{good}");
        }
        for bad in [
            "system.echo",
            "system.echo.v",
            "system.echo.v0",
            "system.echo.vx",
            "system.echo.v-1",
            "system.echo.1",
            "guestkit.inspect.v1",
            "system.echo.v1.extra",
            "",
        ] {
            job.payload.payload_type = bad.into();
            let msg = only_problem(&job, "payload.type");
            assert!(msg.contains(r#""system.echo.v<N>""#), "{bad}: {msg}");
        }
    }

    #[test]
    fn payload_data_must_be_object_or_null() {
        let mut job = minimal();
        job.payload.data = json!({"a": 1});
        assert_eq!(job.validate(), Ok(()));
        job.payload.data = serde_json::Value::Null;
        assert_eq!(job.validate(), Ok(()));
        for (bad, kind) in [
            (json!([1]), "an array"),
            (json!("x"), "a string"),
            (json!(3), "a number"),
            (json!(true), "a boolean"),
        ] {
            job.payload.data = bad;
            let msg = only_problem(&job, "payload.data");
            assert!(msg.ends_with(kind), "{msg}");
        }
    }

    #[test]
    fn priority_range() {
        for good in [1u8, 5, 10] {
            let job = with_execution(Execution {
                priority: Some(good),
                ..Default::default()
            });
            assert_eq!(job.validate(), Ok(()));
        }
        for bad in [0u8, 11, 255] {
            let job = with_execution(Execution {
                priority: Some(bad),
                ..Default::default()
            });
            assert_eq!(
                only_problem(&job, "execution.priority"),
                format!("execution.priority must be 1..=10, got {bad}")
            );
        }
    }

    #[test]
    fn attempt_must_be_positive() {
        let job = with_execution(Execution {
            attempt: Some(0),
            ..Default::default()
        });
        assert_eq!(
            only_problem(&job, "execution.attempt"),
            "execution.attempt must be at least 1, got 0"
        );
    }

    #[test]
    fn max_attempts_must_be_positive() {
        let job = with_execution(Execution {
            max_attempts: Some(0),
            ..Default::default()
        });
        assert_eq!(
            only_problem(&job, "execution.max_attempts"),
            "execution.max_attempts must be at least 1, got 0"
        );
    }

    #[test]
    fn attempt_must_not_exceed_max_attempts() {
        let ok = with_execution(Execution {
            attempt: Some(2),
            max_attempts: Some(2),
            ..Default::default()
        });
        assert_eq!(ok.validate(), Ok(()));
        let job = with_execution(Execution {
            attempt: Some(3),
            max_attempts: Some(2),
            ..Default::default()
        });
        assert_eq!(
            only_problem(&job, "execution.attempt"),
            "execution.attempt (3) must not exceed execution.max_attempts (2)"
        );
        // The default limit applies when max_attempts is absent.
        let job = with_execution(Execution {
            attempt: Some(4),
            ..Default::default()
        });
        assert!(only_problem(&job, "execution.attempt").contains("(3 (the default))"));
    }

    #[test]
    fn timeout_must_be_positive() {
        let ok = with_execution(Execution {
            timeout_seconds: Some(1),
            ..Default::default()
        });
        assert_eq!(ok.validate(), Ok(()));
        let job = with_execution(Execution {
            timeout_seconds: Some(0),
            ..Default::default()
        });
        assert_eq!(
            only_problem(&job, "execution.timeout_seconds"),
            "execution.timeout_seconds must be at least 1, got 0"
        );
    }

    #[test]
    fn deadline_not_before_created_at() {
        let created = Utc.with_ymd_and_hms(2026, 1, 30, 10, 0, 0).unwrap();
        let mut job = with_execution(Execution {
            deadline: Some(created),
            ..Default::default()
        });
        job.created_at = Some(created);
        assert_eq!(job.validate(), Ok(()), "equal instants are fine");

        job.execution.as_mut().unwrap().deadline = Some(created - Duration::seconds(1));
        let msg = only_problem(&job, "execution.deadline");
        assert!(msg.contains("must not be before created_at"), "{msg}");

        // Without created_at there is nothing to compare against.
        job.created_at = None;
        assert_eq!(job.validate(), Ok(()));
    }

    #[test]
    fn worker_pool_charset_and_length() {
        let mut job = minimal();
        for good in ["default", "pool-prod", "a.b_C-9", &"p".repeat(64)] {
            job.routing = Some(Routing {
                worker_pool: Some(good.to_string()),
                ..Default::default()
            });
            assert_eq!(job.validate(), Ok(()), "{good}");
        }
        for (bad, needle) in [
            ("", "1 to 64"),
            ("pool prod", "' '"),
            ("pool#", "'#'"),
            ("p\u{e9}", "'\u{e9}'"),
            (&"p".repeat(65)[..], "got 65"),
        ] {
            job.routing = Some(Routing {
                worker_pool: Some(bad.to_string()),
                ..Default::default()
            });
            let msg = only_problem(&job, "routing.worker_pool");
            assert!(msg.contains(needle), "{bad}: {msg}");
        }
    }

    #[test]
    fn minimum_worker_version_must_not_be_empty() {
        let mut job = minimal();
        job.constraints = Some(Constraints {
            minimum_worker_version: Some("0.4.0".into()),
            ..Default::default()
        });
        assert_eq!(job.validate(), Ok(()));
        job.constraints = Some(Constraints {
            minimum_worker_version: Some(" ".into()),
            ..Default::default()
        });
        only_problem(&job, "constraints.minimum_worker_version");
    }

    #[test]
    fn all_problems_are_reported_joined_by_semicolons() {
        let mut job = minimal();
        job.version = "0.9".into();
        job.kind = "Other".into();
        job.execution = Some(Execution {
            priority: Some(0),
            ..Default::default()
        });
        let errs = job.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["version", "kind", "execution.priority"]);
        assert_eq!(
            errs.to_string(),
            r#"version must be "1.0", got "0.9"; kind must be "VMOperation", got "Other"; execution.priority must be 1..=10, got 0"#
        );
    }

    #[test]
    fn quoted_values_are_clipped() {
        let mut job = minimal();
        job.kind = "K".repeat(100_000);
        let msg = only_problem(&job, "kind");
        assert!(msg.len() < 200, "message is {} bytes", msg.len());
        assert!(msg.ends_with("..."));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("h\u{e9}llo", 2), "h\u{e9}...");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("", 0), "");
    }
}
