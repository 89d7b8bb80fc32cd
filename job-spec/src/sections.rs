//! The optional sections of a job document.
//!
//! Every field here is optional: the v1 protocol lets a publisher send any
//! subset, and a reader fills the gaps with the defaults documented on the
//! getters of [`JobDocument`](crate::JobDocument). Unknown fields are ignored
//! (no `deny_unknown_fields`) so that a newer publisher can talk to an older
//! worker.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Descriptive labels that let people find and group jobs; never interpreted
/// by the worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Human-readable job name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Logical namespace (tenant, environment) the job belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Key/value labels for filtering. A `BTreeMap` keeps the serialized order
    /// stable, which makes documents diffable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Free-form annotations (ticket numbers, descriptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// How the job should be run and retried. Kept separate from the payload
/// because it is the same for every operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// Lets a consumer recognise a job it has already run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// 1-based attempt number; the worker raises it on each retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// How many attempts in total the publisher allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Wall-clock limit for one attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Point in time after which the result is no longer wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// 1 (lowest) to 10 (most urgent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Whether the publisher allows the job to be cancelled once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellable: Option<bool>,
}

/// What a worker must offer to take the job. The worker may use these to
/// refuse work it cannot do; the protocol itself does not interpret them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    /// Capabilities the worker must advertise (e.g. `guestkit.inspect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_capabilities: Option<Vec<String>>,
    /// System features the worker must have (e.g. `lvm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_features: Option<Vec<String>>,
    /// Lowest acceptable worker version (semver text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_worker_version: Option<String>,
    /// Largest disk, in GB, the job may need the worker to handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_disk_size_gb: Option<u64>,
    /// Whether the job needs a privileged worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_privileged: Option<bool>,
    /// Pools allowed to run the job; absent means any pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_worker_pools: Option<Vec<String>>,
}

/// Where the job should run. `worker_pool` selects the queue; the rest are
/// scheduling hints the protocol carries but does not define further.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    /// Pin to one worker (use sparingly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Target pool: the routing key on `guestkit.jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_pool: Option<String>,
    /// Scheduling preferences; the protocol only says "object", so any object
    /// is kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Map<String, Value>>,
    /// Scheduling anti-preferences; any object, as for `affinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<Map<String, Value>>,
}

/// Tracing and correlation identifiers, so a job can be followed across
/// services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observability {
    /// Distributed trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Span id of the publisher within the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Parent span id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// Groups related jobs (a batch, a request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// Who submitted the job, recorded for people reviewing what ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Submitter identity (service or person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// Submitter address or host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_from: Option<String>,
    /// How the submitter was authorised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

/// The authorisation the submitter presented. Both fields are optional here
/// (the original made them required) because a reader gains nothing by
/// refusing a job over an incomplete audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// Method, e.g. `bearer_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Subject or principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}
