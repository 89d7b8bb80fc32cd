//! The guestkit job protocol, version 1.0: the documents other services
//! exchange with `guestkit-worker` over RabbitMQ.
//!
//! A publisher builds a [`JobDocument`] (usually with [`JobBuilder`]), sends
//! it as JSON to the `guestkit.jobs` exchange with the pool as routing key,
//! and later reads a [`ResultDocument`] from `guestkit.results`. The worker
//! reads jobs with [`parse_job`], which checks JSON, shape and every rule of
//! [`JobDocument::validate`], and tells the stages apart in [`ParseError`].
//!
//! Documents are forward compatible: unknown fields are ignored everywhere,
//! and every section except the envelope is optional.
//!
//! This crate has no broker or runtime dependency, so any service can use it.
//!
//! # Publishing a job
//!
//! ```
//! use guestkit_job_spec::{parse_job, JobBuilder, OutputFormat, OutputSpec};
//! use serde_json::json;
//!
//! let job = JobBuilder::new("guestkit.inspect")
//!     .data(json!({
//!         "image": { "path": "/var/lib/guestkit/images/web-01.qcow2" },
//!         "output": { "format": "yaml" }
//!     }))
//!     .pool("default")
//!     .timeout_seconds(600)
//!     .correlation_id("nightly-scan")
//!     .build()
//!     .expect("a valid job");
//!
//! // Body of a persistent message to exchange `guestkit.jobs`, routing key = the pool.
//! let body = serde_json::to_vec(&job).unwrap();
//! let routing_key = job.worker_pool().unwrap_or("default");
//! assert_eq!(routing_key, "default");
//!
//! // What the worker does with it.
//! let received = parse_job(&body).unwrap();
//! assert_eq!(received, job);
//! let wanted = OutputSpec::from_data(&received.payload.data).unwrap();
//! assert_eq!(wanted.format, OutputFormat::Yaml);
//! assert_eq!(wanted.format.content_type(), "application/yaml");
//! ```

#![forbid(unsafe_code)]

mod builder;
mod error_kind;
mod job;
mod output;
mod parse;
mod result;
mod sections;
#[cfg(test)]
mod testutil;
mod validate;

pub use builder::JobBuilder;
pub use error_kind::ErrorKind;
pub use job::{JobDocument, Payload, DEFAULT_ATTEMPT, DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY};
pub use output::{OutputFormat, OutputSpec, OutputTemplate};
pub use parse::{parse_job, peek_job_id, ParseError, PEEK_JOB_ID_MAX_LEN};
pub use result::{JobError, JobStatus, ResultDocument};
pub use sections::{
    Audit, Authorization, Constraints, Execution, Metadata, Observability, Routing,
};
pub use validate::{
    ValidationError, ValidationErrors, JOB_ID_MAX_LEN, JOB_ID_MIN_LEN, OPERATION_MAX_LEN,
    WORKER_POOL_MAX_LEN,
};

/// The protocol version this crate reads and writes.
pub const PROTOCOL_VERSION: &str = "1.0";

/// The only job `kind` of protocol v1.
pub const KIND_VM_OPERATION: &str = "VMOperation";
