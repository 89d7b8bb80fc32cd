//! Turning message bytes into a validated job document.
//!
//! The stages are kept apart (JSON, object, version, shape, values) because a
//! consumer reports each differently: the reason becomes a metric label, and a
//! document in a future protocol version must not be blamed for a shape this
//! version does not know.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::job::{JobDocument, Payload};
use crate::sections::{Audit, Constraints, Execution, Metadata, Observability, Routing};
use crate::validate::{clip, ValidationErrors};
use crate::{ErrorKind, PROTOCOL_VERSION};

/// Longest serde message kept in [`ParseError::Schema`]: serde quotes the
/// offending value, which a hostile message can make arbitrarily long.
const SCHEMA_MESSAGE_MAX: usize = 300;

/// Longest `job_id` [`peek_job_id`] returns. Longer ids are invalid anyway
/// (128 is the limit); this only stops a hostile id from being echoed into
/// results and headers at full size.
pub const PEEK_JOB_ID_MAX_LEN: usize = 1024;

/// Why a message is not a usable job. Each variant is one stage of parsing, so
/// a consumer can count and report them separately.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The bytes are not JSON at all (or not UTF-8).
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object.
    #[error("job document must be a JSON object")]
    NotObject,
    /// An object with a `version` this crate does not speak (the value,
    /// cut to 64 characters).
    #[error("unsupported protocol version {0:?}, expected \"1.0\"")]
    BadVersion(String),
    /// An object of the wrong shape: a required field is missing or a field
    /// has the wrong type. The text is serde's, prefixed with the section.
    #[error("job document has the wrong shape: {0}")]
    Schema(String),
    /// Well-formed, but some values break the rules.
    #[error("job document is invalid: {0}")]
    Invalid(ValidationErrors),
}

impl ParseError {
    /// A stable, low-cardinality label for metrics and logs.
    pub fn reason(&self) -> ErrorKind {
        match self {
            ParseError::NotJson(_) => ErrorKind::NotJson,
            ParseError::NotObject => ErrorKind::NotObject,
            ParseError::BadVersion(_) => ErrorKind::BadVersion,
            ParseError::Schema(_) => ErrorKind::Schema,
            ParseError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// Parse and validate one job message body.
///
/// Unknown fields are ignored; a missing `created_at` is accepted. A well-formed
/// document is read once, straight into the typed structs; anything else is read
/// again into a `serde_json::Value` (serde_json bounds the nesting depth both
/// ways), so the cost stays linear in the message size; bounding that size is the
/// transport's job.
pub fn parse_job(bytes: &[u8]) -> Result<JobDocument, ParseError> {
    // The common case in one pass instead of two.
    // Both ways accept and reject the same documents; the second names the problem.
    if let Ok(job) = serde_json::from_slice::<JobDocument>(bytes) {
        if job.version != PROTOCOL_VERSION {
            return Err(ParseError::BadVersion(clip(&job.version, 64)));
        }
        job.validate().map_err(ParseError::Invalid)?;
        return Ok(job);
    }
    parse_via_value(bytes)
}

/// The two-step read: a `Value` first, so every failure can be named.
fn parse_via_value(bytes: &[u8]) -> Result<JobDocument, ParseError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(ParseError::NotObject);
    };
    // The version decides how to read everything else, so check it first.
    match object.get("version") {
        None => return Err(ParseError::Schema("missing field `version`".to_string())),
        Some(Value::String(v)) if v != PROTOCOL_VERSION => {
            return Err(ParseError::BadVersion(clip(v, 64)));
        }
        Some(Value::String(_)) => {}
        Some(_) => {
            return Err(ParseError::Schema(format!(
                "version: expected a string such as \"{PROTOCOL_VERSION}\""
            )));
        }
    }
    let job = match JobDocument::deserialize(&value) {
        Ok(job) => job,
        Err(e) => return Err(ParseError::Schema(locate(object, &e))),
    };
    job.validate().map_err(ParseError::Invalid)?;
    Ok(job)
}

/// The `job_id` of a message, if it is a JSON object with a string `job_id`
/// of at most [`PEEK_JOB_ID_MAX_LEN`] bytes, however broken the rest is. Lets a
/// consumer name the job in a `rejected` result.
pub fn peek_job_id(bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    match value.get("job_id")? {
        Value::String(id) if id.len() <= PEEK_JOB_ID_MAX_LEN => Some(id.clone()),
        _ => None,
    }
}

/// serde's message for the whole document does not say which section failed
/// ("invalid type: string \"high\", expected u8"). Re-reading the fields one
/// by one finds the first that fails, so the message can name it. Only runs
/// on the error path.
fn locate(object: &Map<String, Value>, whole: &serde_json::Error) -> String {
    type Check = fn(&Value) -> Result<(), serde_json::Error>;
    const FIELDS: [(&str, Check); 12] = [
        ("$schema", check::<Option<String>>),
        ("job_id", check::<String>),
        ("created_at", check::<Option<chrono::DateTime<chrono::Utc>>>),
        ("kind", check::<String>),
        ("operation", check::<String>),
        ("payload", check::<Payload>),
        ("metadata", check::<Option<Metadata>>),
        ("execution", check::<Option<Execution>>),
        ("constraints", check::<Option<Constraints>>),
        ("routing", check::<Option<Routing>>),
        ("observability", check::<Option<Observability>>),
        ("audit", check::<Option<Audit>>),
    ];
    let message = FIELDS
        .iter()
        .find_map(|(name, check)| {
            let value = object.get(*name)?;
            check(value).err().map(|e| format!("{name}: {e}"))
        })
        .unwrap_or_else(|| whole.to_string());
    clip(&message, SCHEMA_MESSAGE_MAX)
}

fn check<T: DeserializeOwned>(value: &Value) -> Result<(), serde_json::Error> {
    T::deserialize(value).map(|_| ())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::testutil::{minimal, MINIMAL, ORIGINAL_FULL_EXAMPLE};
    use crate::JobBuilder;

    #[test]
    fn the_one_pass_read_decides_like_the_two_step_read() {
        let docs: Vec<Vec<u8>> = vec![
            MINIMAL.into(),
            ORIGINAL_FULL_EXAMPLE.into(),
            minimal_with("version", Some(json!("2.0"))),
            minimal_with("version", Some(json!(1.0))),
            minimal_with("version", None),
            minimal_with("job_id", Some(json!("short"))),
            minimal_with("created_at", None),
            minimal_with("created_at", Some(json!("yesterday"))),
            minimal_with("extra", Some(json!({"anything": [1, 2]}))),
            // Duplicate keys: the typed read refuses them, the Value read keeps the last.
            MINIMAL
                .replacen('{', r#"{"job_id":"job-first-0001","#, 1)
                .into(),
            format!("{MINIMAL} trailing").into(),
            b"[1]".to_vec(),
        ];
        for doc in docs {
            assert_eq!(
                format!("{:?}", parse_job(&doc)),
                format!("{:?}", parse_via_value(&doc)),
                "{}",
                String::from_utf8_lossy(&doc)
            );
        }
    }

    /// `MINIMAL` with one top-level field replaced (or removed, for `None`).
    fn minimal_with(key: &str, value: Option<Value>) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(MINIMAL).unwrap();
        let obj = v.as_object_mut().unwrap();
        match value {
            Some(x) => obj.insert(key.to_string(), x),
            None => obj.remove(key),
        };
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn original_full_example_parses_and_validates() {
        let job = parse_job(ORIGINAL_FULL_EXAMPLE.as_bytes()).expect("valid");
        assert_eq!(
            job.schema.as_deref(),
            Some("https://guestkit.dev/schemas/job-v1.json")
        );
        assert_eq!(job.job_id, "job-550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(
            job.created_at,
            Some(Utc.with_ymd_and_hms(2026, 1, 30, 10, 0, 0).unwrap())
        );
        assert_eq!(job.operation, "guestkit.inspect");
        assert_eq!(job.payload_version(), Some(1));
        assert_eq!(job.attempt(), 1);
        assert_eq!(job.max_attempts(), 3);
        assert_eq!(job.timeout_seconds(), Some(7200));
        assert_eq!(
            job.deadline(),
            Some(Utc.with_ymd_and_hms(2026, 1, 30, 14, 0, 0).unwrap())
        );
        assert_eq!(job.priority(), 5);
        assert!(job.cancellable());
        assert_eq!(job.idempotency_key(), Some("scan-2026-01-30-weekly"));
        assert_eq!(job.worker_pool(), Some("pool-prod"));
        assert_eq!(job.correlation_id(), Some("weekly-scan-batch-2026-w04"));
        assert_eq!(job.trace_id(), Some("550e8400-e29b-41d4-a716-446655440001"));
        assert!(job.allows_pool("pool-prod") && !job.allows_pool("default"));

        let meta = job.metadata.as_ref().unwrap();
        assert_eq!(meta.labels.as_ref().unwrap()["cost-center"], "engineering");
        assert_eq!(
            meta.annotations.as_ref().unwrap()["requested_by"],
            "alice@company.com"
        );
        let c = job.constraints.as_ref().unwrap();
        assert_eq!(c.required_capabilities.as_ref().unwrap().len(), 3);
        assert_eq!(c.maximum_disk_size_gb, Some(1000));
        assert_eq!(c.require_privileged, Some(true));
        let r = job.routing.as_ref().unwrap();
        assert_eq!(r.worker_id, None);
        assert_eq!(
            r.anti_affinity.as_ref().unwrap()["concurrent_jobs"],
            json!(["job-abc123"])
        );
        let o = job.observability.as_ref().unwrap();
        assert_eq!(o.span_id.as_deref(), Some("446655440001"));
        assert_eq!(o.parent_span_id, None);
        let a = job.audit.as_ref().unwrap();
        assert_eq!(a.submitted_from.as_deref(), Some("10.0.1.50"));
        let auth = a.authorization.as_ref().unwrap();
        assert_eq!(auth.method.as_deref(), Some("bearer_token"));
        assert_eq!(auth.subject.as_deref(), Some("service-account-scanner"));
        assert_eq!(
            job.payload.data["image"]["size_bytes"],
            json!(42949672960u64)
        );
    }

    #[test]
    fn original_example_round_trips() {
        let job = parse_job(ORIGINAL_FULL_EXAMPLE.as_bytes()).unwrap();
        let bytes = serde_json::to_vec(&job).unwrap();
        assert_eq!(parse_job(&bytes).unwrap(), job);
        // Everything the original said survives, except explicit nulls,
        // which are omitted (they mean the same as absent).
        let mut original: Value = serde_json::from_str(ORIGINAL_FULL_EXAMPLE).unwrap();
        original["routing"]
            .as_object_mut()
            .unwrap()
            .remove("worker_id");
        original["observability"]
            .as_object_mut()
            .unwrap()
            .remove("parent_span_id");
        let reserialized: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reserialized, original);
    }

    #[test]
    fn built_job_round_trips() {
        let job = JobBuilder::new("guestkit.inspect")
            .data(json!({"image": {"path": "/x.qcow2"}}))
            .pool("default")
            .priority(9)
            .max_attempts(4)
            .timeout_seconds(30)
            .idempotency_key("k-1")
            .correlation_id("c-1")
            .trace_id("t-1")
            .build()
            .unwrap();
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(parse_job(text.as_bytes()).unwrap(), job);
        // Serialization skips absent sections entirely.
        let v: Value = serde_json::from_str(&text).unwrap();
        for absent in ["$schema", "metadata", "constraints", "audit"] {
            assert!(v.get(absent).is_none(), "{absent} present in {text}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_everywhere() {
        let text = r#"{
          "version": "1.0", "job_id": "job-unknown-fields",
          "kind": "VMOperation", "operation": "system.echo",
          "future_top_level": {"x": [1, 2]},
          "payload": {"type": "system.echo.v1", "data": {"k": 1}, "encoding": "none"},
          "metadata": {"name": "n", "owner": "someone"},
          "execution": {"attempt": 2, "max_attempts": 5, "backoff": "exp"},
          "constraints": {"gpu": true},
          "routing": {"worker_pool": "default", "zone": "eu-1"},
          "observability": {"trace_id": "t", "baggage": {"a": "b"}},
          "audit": {"submitted_by": "me", "ticket": 7,
                    "authorization": {"method": "mtls", "scopes": ["x"]}},
          "signature": {"algorithm": "ed25519", "value": "..."}
        }"#;
        let job = parse_job(text.as_bytes()).expect("unknown fields ignored");
        assert_eq!(job.attempt(), 2);
        assert_eq!(job.max_attempts(), 5);
        assert_eq!(job.worker_pool(), Some("default"));
        assert_eq!(job.trace_id(), Some("t"));
        assert_eq!(job.payload.data, json!({"k": 1}));
    }

    #[test]
    fn missing_created_at_is_accepted() {
        let job = parse_job(&minimal_with("created_at", None)).expect("accepted");
        assert_eq!(job.created_at, None);
        // And it stays absent when written back.
        let v = serde_json::to_value(&job).unwrap();
        assert!(v.get("created_at").is_none());
    }

    #[test]
    fn null_data_is_accepted() {
        let mut v: Value = serde_json::from_str(MINIMAL).unwrap();
        v["payload"]["data"] = Value::Null;
        let job = parse_job(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(job.payload.data.get("anything").is_none());
    }

    #[test]
    fn original_worker_examples_parse() {
        // Shapes of the original project's example jobs: partial execution
        // sections, ids that are not ULIDs, output options of another shape.
        let echo = r#"{"$schema": "https://guestkit.dev/schemas/job-v1.json",
          "version": "1.0", "job_id": "echo-test-001",
          "created_at": "2026-01-30T16:00:00Z", "kind": "VMOperation",
          "operation": "system.echo", "metadata": {"name": "echo-test"},
          "execution": {"timeout_seconds": 60, "priority": 5},
          "payload": {"type": "system.echo.v1", "data": {"message": "hi",
            "test_data": {"nested": {"value": 42}}}}}"#;
        let job = parse_job(echo.as_bytes()).unwrap();
        assert_eq!((job.attempt(), job.timeout_seconds()), (1, Some(60)));

        let fix = r#"{"version": "1.0", "job_id": "job-01JAB5D9XAMBNCPDQERF",
          "created_at": "2026-01-30T12:00:00Z", "kind": "VMOperation",
          "operation": "guestkit.fix",
          "execution": {"idempotency_key": "fix-1", "priority": 9,
            "timeout_seconds": 10800, "max_attempts": 1, "cancellable": false},
          "constraints": {"required_capabilities": ["guestkit.fix", "fs.fsck"],
            "required_features": ["lvm", "ext4"], "require_privileged": true},
          "payload": {"type": "guestkit.fix.v1", "data": {
            "operations": [{"type": "fsck", "options": {"auto_repair": true}}],
            "output": {"fixed_image": "/vms/x-fixed.qcow2", "report_format": "json"}}}}"#;
        let job = parse_job(fix.as_bytes()).unwrap();
        assert_eq!(job.max_attempts(), 1);
        assert!(!job.cancellable());
    }

    #[test]
    fn not_json() {
        for bad in [
            &b""[..],
            b"{",
            b"not json",
            b"{\"a\":1} trailing",
            b"\xff\xfe",
        ] {
            let err = parse_job(bad).unwrap_err();
            assert!(matches!(err, ParseError::NotJson(_)), "{bad:?}: {err:?}");
            assert_eq!(err.reason(), "not_json");
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_not_overflowed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_job(deep.as_bytes()).unwrap_err().reason(), "not_json");
    }

    #[test]
    fn not_object() {
        for bad in ["[]", "[1, 2]", "\"job\"", "42", "null", "true"] {
            let err = parse_job(bad.as_bytes()).unwrap_err();
            assert_eq!(err, ParseError::NotObject, "{bad}");
            assert_eq!(err.reason(), "not_object");
        }
    }

    #[test]
    fn bad_version() {
        // A future version is reported as such even when its shape is alien.
        let err = parse_job(br#"{"version": "2.0", "job": {"id": 1}}"#).unwrap_err();
        assert_eq!(err, ParseError::BadVersion("2.0".into()));
        assert_eq!(err.reason(), "bad_version");
        assert_eq!(
            err.to_string(),
            r#"unsupported protocol version "2.0", expected "1.0""#
        );
        let err = parse_job(&minimal_with("version", Some(json!("1")))).unwrap_err();
        assert_eq!(err, ParseError::BadVersion("1".into()));
    }

    #[test]
    fn schema_missing_or_mistyped_fields() {
        let cases: [(Vec<u8>, &str); 7] = [
            (minimal_with("version", None), "missing field `version`"),
            (
                minimal_with("version", Some(json!(1.0))),
                "version: expected a string",
            ),
            (minimal_with("job_id", None), "missing field `job_id`"),
            (minimal_with("payload", None), "missing field `payload`"),
            (
                minimal_with("job_id", Some(json!(12345678))),
                "job_id: invalid type: integer",
            ),
            (
                minimal_with("execution", Some(json!({"priority": "high"}))),
                "execution: invalid type: string \"high\", expected u8",
            ),
            (
                minimal_with("created_at", Some(json!("yesterday"))),
                "created_at: ",
            ),
        ];
        for (bytes, needle) in cases {
            let err = parse_job(&bytes).unwrap_err();
            assert_eq!(err.reason(), "schema", "{err}");
            let ParseError::Schema(msg) = &err else {
                unreachable!()
            };
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
        // Wrong type inside the payload, and an out-of-range number.
        let mut v: Value = serde_json::from_str(MINIMAL).unwrap();
        v["payload"] = json!({"type": 1, "data": {}});
        let err = parse_job(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(&err, ParseError::Schema(m) if m.starts_with("payload: ")),
            "{err}"
        );
        let err =
            parse_job(&minimal_with("execution", Some(json!({"priority": 300})))).unwrap_err();
        assert!(
            matches!(&err, ParseError::Schema(m) if m.starts_with("execution: ")),
            "{err}"
        );
    }

    #[test]
    fn schema_message_is_clipped() {
        let huge = "x".repeat(1_000_000);
        let bytes = minimal_with("execution", Some(json!({"priority": huge})));
        let ParseError::Schema(msg) = parse_job(&bytes).unwrap_err() else {
            panic!("expected a schema error")
        };
        assert!(
            msg.chars().count() <= SCHEMA_MESSAGE_MAX + 3,
            "{} chars",
            msg.len()
        );
    }

    #[test]
    fn invalid_values() {
        let bytes = minimal_with("kind", Some(json!("Job")));
        let err = parse_job(&bytes).unwrap_err();
        assert_eq!(err.reason(), "invalid");
        let ParseError::Invalid(errs) = &err else {
            unreachable!()
        };
        assert!(errs.has_field("kind"));
        assert_eq!(
            err.to_string(),
            r#"job document is invalid: kind must be "VMOperation", got "Job""#
        );
    }

    #[test]
    fn minimal_is_valid() {
        assert_eq!(minimal().operation, "system.echo");
    }

    #[test]
    fn peek_job_id_cases() {
        assert_eq!(
            peek_job_id(MINIMAL.as_bytes()).as_deref(),
            Some("job-0001-test")
        );
        // Named even when the rest is invalid or of the wrong shape.
        assert_eq!(
            peek_job_id(br#"{"job_id": "x", "version": 7}"#).as_deref(),
            Some("x")
        );
        assert_eq!(
            peek_job_id(br#"{"job_id": "job-abcdefgh", "kind": "Nope"}"#).as_deref(),
            Some("job-abcdefgh")
        );
        assert_eq!(peek_job_id(br#"{"job_id": 5}"#), None);
        assert_eq!(peek_job_id(br#"{"version": "1.0"}"#), None);
        assert_eq!(peek_job_id(br#"["job_id"]"#), None);
        assert_eq!(peek_job_id(br#"{"job_id": "truncated"#), None);
        assert_eq!(peek_job_id(b"\x00\x01"), None);
        let long = format!(r#"{{"job_id": "{}"}}"#, "a".repeat(PEEK_JOB_ID_MAX_LEN + 1));
        assert_eq!(peek_job_id(long.as_bytes()), None);
        let at_limit = format!(r#"{{"job_id": "{}"}}"#, "a".repeat(PEEK_JOB_ID_MAX_LEN));
        assert_eq!(
            peek_job_id(at_limit.as_bytes()).map(|s| s.len()),
            Some(PEEK_JOB_ID_MAX_LEN)
        );
    }
}
