//! `guestkit.profile`: the inspection of one disk image plus the security, compliance
//! and hardening checks of `crate::profile` over its files.

use guestkit_job_spec::ErrorKind;
use serde_json::Value;

use super::image_request::ImageRequest;
use super::inspect::{cancel_flag, inspect_error, run_in_process, run_isolated};
use super::{Invalid, OpContext, OpEnv, OpError, OpFuture, Operation};
use crate::inspect::source::CancelFlag;
use crate::profile::{
    profile_image, ProfileError, ProfileKind, ProfileOutput, ProfileRequest, Severity,
};

const OPERATION: &str = "guestkit.profile";

/// The profile operation. Payload: `{ image: { path, format?, checksum? }, profiles:
/// ["security", "compliance", "hardening"] (default all), options: {
/// severity_threshold: "info" | "low" | "medium" | "high" | "critical" (default info)
/// }, output }`.
pub struct Profile;

impl Operation for Profile {
    fn name(&self) -> &'static str {
        OPERATION
    }

    fn validate(&self, data: &Value, env: &OpEnv) -> Result<(), Invalid> {
        profile_request(data)?;
        ImageRequest::from_data(data, &env.image_roots)?.check_remote(env.remote.as_deref())
    }

    fn run(&self, ctx: OpContext) -> OpFuture {
        Box::pin(async move {
            if let Some(isolation) = &ctx.env.isolation {
                return run_isolated(OPERATION, isolation, &ctx).await;
            }
            let data = &ctx.job.payload.data;
            let profile = profile_request(data)?;
            let mut request = ImageRequest::from_data(data, &ctx.env.image_roots)?;
            let flag = cancel_flag(&ctx.cancel);
            // The fetcher thread (remote images only) ends when `request` is dropped.
            request.fetch_in_thread(ctx.env.remote.as_ref(), &flag)?;
            run_in_process("profile", &ctx, flag, move |progress, flag| {
                run_blocking(&request, &profile, progress, flag).map(|out| {
                    let bytes_read = out.bytes_read;
                    (out, bytes_read)
                })
            })
            .await
        })
    }
}

/// `profiles` and `options.severity_threshold` of a payload.
pub fn profile_request(data: &Value) -> Result<ProfileRequest, Invalid> {
    let mut request = ProfileRequest::default();
    match data.get("profiles") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) => {
            if names.is_empty() {
                return Err(Invalid::payload(
                    "payload.data.profiles is empty; name at least one of security, compliance, hardening",
                ));
            }
            request.profiles.clear();
            for name in names {
                let kind: ProfileKind = name
                    .as_str()
                    .ok_or_else(|| {
                        Invalid::payload(format!("payload.data.profiles: {name} is not a string"))
                    })?
                    .parse()
                    .map_err(|e| Invalid::payload(format!("payload.data.profiles: {e}")))?;
                if !request.profiles.contains(&kind) {
                    request.profiles.push(kind);
                }
            }
        }
        Some(other) => {
            return Err(Invalid::payload(format!(
                "payload.data.profiles must be a list of profile names, got {other}"
            )))
        }
    }
    match data
        .get("options")
        .and_then(|o| o.get("severity_threshold"))
    {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            request.threshold = s.parse::<Severity>().map_err(|e| {
                Invalid::payload(format!("payload.data.options.severity_threshold: {e}"))
            })?;
        }
        Some(other) => {
            return Err(Invalid::payload(format!(
                "payload.data.options.severity_threshold must be a string, got {other}"
            )))
        }
    }
    Ok(request)
}

/// The blocking part: checksum, inspection, checks.
pub fn run_blocking(
    request: &ImageRequest,
    profile: &ProfileRequest,
    progress: &crate::progress::Progress,
    cancel: &CancelFlag,
) -> Result<ProfileOutput, OpError> {
    if request.sha256.is_some() {
        progress.phase("checksum");
    }
    let verified = request.verify_checksum()?;
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(OpError::fatal(ErrorKind::Cancelled, "profile cancelled"));
    }
    progress.phase("profile");
    let mut options = request.options.clone();
    options.cancel = Some(cancel.clone());
    let mut output = profile_image(&request.path, &options, profile).map_err(|e| match e {
        ProfileError::Inspect(e) => inspect_error(e),
        ProfileError::Cancelled => OpError::fatal(ErrorKind::Cancelled, "profile cancelled"),
    })?;
    output.inspection.image.sha256 = verified;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profiles_and_threshold_are_parsed_strictly() {
        let r = profile_request(&json!({})).unwrap();
        assert_eq!(r, ProfileRequest::default());
        let r = profile_request(&json!({"profiles": ["hardening", "security", "hardening"], "options": {"severity_threshold": "high"}}))
            .unwrap();
        assert_eq!(
            r.profiles,
            vec![ProfileKind::Hardening, ProfileKind::Security]
        );
        assert_eq!(r.threshold, Severity::High);
        for bad in [
            json!({"profiles": ["security", "pci"]}),
            json!({"profiles": []}),
            json!({"profiles": "security"}),
            json!({"profiles": [1]}),
            json!({"options": {"severity_threshold": "urgent"}}),
            json!({"options": {"severity_threshold": 3}}),
        ] {
            let e = profile_request(&bad).unwrap_err();
            assert_eq!(e.reason, "invalid_payload", "{bad}");
        }
        let e = profile_request(&json!({"profiles": ["pci"]})).unwrap_err();
        assert!(
            e.message.contains("\"pci\"") && e.message.contains("security"),
            "{}",
            e.message
        );
    }
}
