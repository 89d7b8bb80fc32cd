//! `guestkit.inspect`: the inspection report of one disk image.

use guestkit_job_spec::ErrorKind;
use serde_json::Value;

use super::image_request::ImageRequest;
use super::{Invalid, OpContext, OpEnv, OpError, OpFuture, Operation};
use crate::inspect::pipeline::{inspect_with_stats, InspectError};
use crate::inspect::source::CancelFlag;
use crate::progress::Progress;

const OPERATION: &str = "guestkit.inspect";

/// The inspect operation. Payload: `{ image: { path, format?, checksum? }, options:
/// { include_applications, include_users, include_services, include_network,
/// include_security }, output }`.
pub struct Inspect;

impl Operation for Inspect {
    fn name(&self) -> &'static str {
        OPERATION
    }

    fn validate(&self, data: &Value, env: &OpEnv) -> Result<(), Invalid> {
        ImageRequest::from_data(data, &env.image_roots)?.check_remote(env.remote.as_deref())
    }

    fn run(&self, ctx: OpContext) -> OpFuture {
        Box::pin(async move {
            if let Some(isolation) = &ctx.env.isolation {
                return run_isolated(OPERATION, isolation, &ctx).await;
            }
            let mut request = ImageRequest::from_data(&ctx.job.payload.data, &ctx.env.image_roots)?;
            let flag = cancel_flag(&ctx.cancel);
            // The fetcher thread (remote images only) ends when `request` is dropped.
            request.fetch_in_thread(ctx.env.remote.as_ref(), &flag)?;
            run_in_process("inspection", &ctx, flag, move |progress, flag| {
                run_blocking(&request, progress, flag)
            })
            .await
        })
    }
}

/// Runs the blocking part of an image-reading operation on tokio's blocking pool, under
/// `flag` (set when the job is cancelled): a
/// panic there fails the job as `panic`, the guest bytes it read (the `u64`) go to the
/// worker's metric, its output becomes the result's.
pub async fn run_in_process<T, F>(
    what: &str,
    ctx: &OpContext,
    flag: CancelFlag,
    blocking: F,
) -> Result<Value, OpError>
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce(&Progress, &CancelFlag) -> Result<(T, u64), OpError> + Send + 'static,
{
    let progress = ctx.progress.clone();
    let joined = tokio::task::spawn_blocking(move || blocking(&progress, &flag)).await;
    let (output, bytes_read) = joined
        .map_err(|e| OpError::fatal(ErrorKind::Panic, format!("{what} task failed: {e}")))??;
    if let Some(metrics) = &ctx.env.metrics {
        metrics.inspect_bytes_read_total.inc_by(bytes_read);
    }
    serde_json::to_value(output).map_err(|e| OpError::fatal(ErrorKind::Internal, e.to_string()))
}

/// Runs an image-reading operation in a child process (see `crate::isolation`):
/// the output it sent, its guest bytes counted in the worker's metric.
pub async fn run_isolated(
    operation: &str,
    isolation: &crate::isolation::Isolation,
    ctx: &OpContext,
) -> Result<Value, OpError> {
    let done = isolation
        .run(
            operation,
            &ctx.job.payload.data,
            &ctx.env.image_roots,
            ctx.timeout_seconds(),
            &ctx.progress,
            &ctx.cancel,
        )
        .await?;
    if let Some(metrics) = &ctx.env.metrics {
        metrics.inspect_bytes_read_total.inc_by(done.bytes_read);
    }
    Ok(done.output)
}

/// A flag the blocking pipeline polls, set when the job's token is cancelled. The
/// bridging task ends with the token or when the job is dropped.
pub fn cancel_flag(token: &tokio_util::sync::CancellationToken) -> CancelFlag {
    let flag = CancelFlag::default();
    let (set, token) = (flag.clone(), token.clone());
    tokio::spawn(async move {
        token.cancelled().await;
        set.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    flag
}

/// The blocking part: checksum, then the pipeline. Returns the report and the guest
/// bytes read.
pub fn run_blocking(
    request: &ImageRequest,
    progress: &Progress,
    cancel: &CancelFlag,
) -> Result<(crate::inspect::report::Report, u64), OpError> {
    if request.sha256.is_some() {
        progress.phase("checksum");
    }
    let verified = request.verify_checksum()?;
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(OpError::fatal(ErrorKind::Cancelled, "inspection cancelled"));
    }
    progress.phase("inspect");
    let mut options = request.options.clone();
    options.cancel = Some(cancel.clone());
    let (mut report, stats) = inspect_with_stats(&request.path, &options).map_err(inspect_error)?;
    report.image.sha256 = verified;
    Ok((report, stats.bytes_read))
}

/// A pipeline error as a result error, with the kind the pipeline gives it.
pub fn inspect_error(err: InspectError) -> OpError {
    OpError {
        kind: err.kind(),
        retryable: err.retryable(),
        message: err.to_string(),
    }
}
