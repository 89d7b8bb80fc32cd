//! `system.echo`: returns its data. Exists so the whole job path (retries, timeouts,
//! shutdown, throughput) can be tested end to end without disk images.

use guestkit_job_spec::ErrorKind;
use std::time::Duration;

use serde_json::Value;

use super::{Invalid, OpContext, OpError, OpFuture, Operation};

/// Longest `sleep_ms` accepted, so a typo cannot park a worker slot for days.
const MAX_SLEEP_MS: u64 = 24 * 3600 * 1000;

/// The echo operation. Payload data keys it acts on:
/// - `sleep_ms`: wait this long first (cancellable);
/// - `fail`: `"retryable"` or `"fatal"`: fail on purpose;
/// - `succeed_on_attempt`: fail retryably until this attempt, then succeed.
pub struct Echo;

impl Operation for Echo {
    fn name(&self) -> &'static str {
        "system.echo"
    }

    fn validate(&self, data: &Value, _env: &super::OpEnv) -> Result<(), Invalid> {
        if let Some(v) = data.get("sleep_ms") {
            match v.as_u64() {
                Some(ms) if ms <= MAX_SLEEP_MS => {}
                _ => {
                    return Err(Invalid::payload(format!(
                        "payload.data.sleep_ms must be an integer from 0 to {MAX_SLEEP_MS}"
                    )))
                }
            }
        }
        match data.get("fail") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "retryable" || s == "fatal" => {}
            Some(_) => {
                return Err(Invalid::payload(
                    "payload.data.fail must be \"retryable\" or \"fatal\"",
                ))
            }
        }
        if let Some(v) = data.get("succeed_on_attempt") {
            if v.as_u64().is_none_or(|n| n == 0) {
                return Err(Invalid::payload(
                    "payload.data.succeed_on_attempt must be a positive integer",
                ));
            }
        }
        Ok(())
    }

    fn run(&self, ctx: OpContext) -> OpFuture {
        Box::pin(async move {
            let data = ctx.job.payload.data.clone();
            if let Some(ms) = data.get("sleep_ms").and_then(Value::as_u64) {
                ctx.progress.phase("sleep");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = ctx.cancel.cancelled() => return Err(OpError::fatal(ErrorKind::Cancelled, "echo cancelled while sleeping")),
                }
            }
            match data.get("fail").and_then(Value::as_str) {
                Some("retryable") => {
                    return Err(OpError::retryable(
                        ErrorKind::EchoFailure,
                        "echo asked to fail (retryable)",
                    ))
                }
                Some("fatal") => {
                    return Err(OpError::fatal(
                        ErrorKind::EchoFailure,
                        "echo asked to fail (fatal)",
                    ))
                }
                _ => {}
            }
            if let Some(n) = data.get("succeed_on_attempt").and_then(Value::as_u64) {
                let attempt = u64::from(ctx.job.attempt());
                if attempt < n {
                    return Err(OpError::retryable(
                        ErrorKind::EchoFailure,
                        format!("echo fails until attempt {n}; this is attempt {attempt}"),
                    ));
                }
            }
            Ok(data)
        })
    }
}
