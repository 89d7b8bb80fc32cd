//! The operation registry: operation name -> handler, one file per operation.

pub mod echo;
pub mod image_request;
pub mod inspect;
pub mod profile;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use guestkit_job_spec::{ErrorKind, JobDocument};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::progress::Progress;

/// What an operation returns: its `output`, or why it failed.
pub type OpFuture = Pin<Box<dyn Future<Output = Result<Value, OpError>> + Send>>;

/// A failure of an operation that ran (a `failed` result), with whether trying again
/// could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub kind: ErrorKind,
    pub message: String,
    pub retryable: bool,
}

impl OpError {
    /// A failure that another attempt may not repeat (broker hiccup, busy host).
    pub fn retryable(kind: ErrorKind, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure another attempt would repeat (corrupt image, bad checksum).
    pub fn fatal(kind: ErrorKind, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            message: message.into(),
            retryable: false,
        }
    }
}

/// Why a payload can never work: the job is `rejected` with this reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The `error.kind` and metrics label (`invalid_payload`, `image_outside_root`, ...).
    pub reason: ErrorKind,
    pub message: String,
}

impl Invalid {
    /// A payload of the wrong shape.
    pub fn payload(message: impl Into<String>) -> Invalid {
        Invalid {
            reason: ErrorKind::InvalidPayload,
            message: message.into(),
        }
    }
}

/// A payload found invalid only once the job runs (in an isolated child, say) fails it.
impl From<Invalid> for OpError {
    fn from(e: Invalid) -> OpError {
        OpError::fatal(e.reason, e.message)
    }
}

/// Worker-wide settings an operation may need.
pub struct OpEnv {
    pub image_roots: Vec<PathBuf>,
    pub metrics: Option<Arc<Metrics>>,
    /// Runs image-reading operations in child processes (the daemon); `None` runs them
    /// in this process (library use, tests).
    pub isolation: Option<Arc<crate::isolation::Isolation>>,
    /// Remote images (`image.url`): allow-list and HTTP client; `None` refuses every URL.
    pub remote: Option<Arc<crate::inspect::image::http::RemoteConfig>>,
}

/// Everything one run of an operation gets.
pub struct OpContext {
    pub job: Arc<JobDocument>,
    pub progress: Progress,
    /// Cancelled on timeout or when the worker gives up on the job; blocking work polls it.
    pub cancel: CancellationToken,
    pub env: Arc<OpEnv>,
    /// The time the job may run (the executor enforces it; an isolated child also gets
    /// it as its CPU-time limit).
    pub timeout: std::time::Duration,
}

impl OpContext {
    /// The job's timeout in whole seconds, rounded up (for RLIMIT_CPU).
    pub fn timeout_seconds(&self) -> u64 {
        self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0)
    }
}

/// One operation. `validate` runs before anything else and turns a payload that can
/// never work (bad shape, image outside the roots) into a `rejected` result; `run`
/// does the work.
pub trait Operation: Send + Sync {
    /// The operation name in `job.operation`.
    fn name(&self) -> &'static str;
    /// Checks `payload.data`; an `Err` is returned to the publisher as a rejection.
    fn validate(&self, _data: &Value, _env: &OpEnv) -> Result<(), Invalid> {
        Ok(())
    }
    /// Runs the job.
    fn run(&self, ctx: OpContext) -> OpFuture;
}

/// Operation name -> handler.
pub struct Registry {
    ops: HashMap<&'static str, Arc<dyn Operation>>,
}

impl Registry {
    /// The operations this build ships.
    pub fn standard() -> Registry {
        let mut reg = Registry {
            ops: HashMap::new(),
        };
        reg.add(Arc::new(echo::Echo));
        reg.add(Arc::new(inspect::Inspect));
        reg.add(Arc::new(profile::Profile));
        reg
    }

    fn add(&mut self, op: Arc<dyn Operation>) {
        self.ops.insert(op.name(), op);
    }

    /// The handler of `name`, if this worker has one.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Operation>> {
        self.ops.get(name).cloned()
    }

    /// Names of every operation, sorted (for error messages).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.ops.keys().copied().collect();
        names.sort_unstable();
        names
    }
}
