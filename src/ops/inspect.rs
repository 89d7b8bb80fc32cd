//! `guestkit.inspect`: the inspection report of one disk image.

use serde_json::Value;

use super::image_request::ImageRequest;
use super::{Invalid, OpContext, OpEnv, OpError, OpFuture, Operation};
use crate::inspect::image::ImageError;
use crate::inspect::pipeline::{inspect_with_stats, InspectError};
use crate::inspect::source::CancelFlag;

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
            let mut request = ImageRequest::from_data(&ctx.job.payload.data, &ctx.env.image_roots)
                .map_err(|e| OpError::fatal(e.reason, e.message))?;
            let progress = ctx.progress.clone();
            let flag = cancel_flag(&ctx.cancel);
            let _fetcher = request.fetch_in_thread(ctx.env.remote.as_ref(), &flag)?;
            let blocking_flag = flag.clone();
            let joined = tokio::task::spawn_blocking(move || {
                run_blocking(&request, &progress, &blocking_flag)
            })
            .await;
            let (report, bytes_read) = joined
                .map_err(|e| OpError::fatal("panic", format!("inspection task failed: {e}")))??;
            if let Some(metrics) = &ctx.env.metrics {
                metrics.inspect_bytes_read_total.inc_by(bytes_read);
            }
            serde_json::to_value(report).map_err(|e| OpError::fatal("internal", e.to_string()))
        })
    }
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
    progress: &crate::progress::Progress,
    cancel: &CancelFlag,
) -> Result<(crate::inspect::report::Report, u64), OpError> {
    if request.sha256.is_some() {
        progress.phase("checksum");
    }
    let verified = request.verify_checksum()?;
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(OpError::fatal("cancelled", "inspection cancelled"));
    }
    progress.phase("inspect");
    let mut options = request.options.clone();
    options.cancel = Some(cancel.clone());
    let (mut report, stats) = inspect_with_stats(&request.path, &options).map_err(inspect_error)?;
    report.image.sha256 = verified;
    Ok((report, stats.bytes_read))
}

/// Maps pipeline errors to result errors: I/O on the image file may be transient
/// (network storage), everything about the image's content is not.
pub fn inspect_error(err: InspectError) -> OpError {
    let message = err.to_string();
    match &err {
        InspectError::Image {
            source: ImageError::Io { .. },
            ..
        } => OpError::retryable("io_error", message),
        InspectError::Image {
            source: ImageError::Cancelled,
            ..
        } => OpError::fatal("cancelled", message),
        InspectError::Image {
            source: ImageError::Remote(e),
            ..
        } => {
            let mut e = super::image_request::remote_error(e);
            e.message = message;
            e
        }
        InspectError::Image { .. } => OpError::fatal("image_error", message),
        InspectError::Partition { .. } => OpError::fatal("partition_error", message),
        InspectError::Budget { .. } => OpError::fatal("read_budget_exceeded", message),
        InspectError::Resources { .. } => OpError::fatal("resource_limit", message),
    }
}
