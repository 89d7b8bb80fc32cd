//! The child side: the hidden `isolated-job` subcommand. Reads one request on stdin,
//! applies the limits to itself, runs the operation on this (single) thread, writes
//! the reply on stdout, exits. No async runtime: nothing runs here but the job.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use guestkit_job_spec::ErrorKind;
use serde::Serialize;

use super::limits::{self, Limits, Sandbox};
use super::protocol::{Reply, ReplyError, Request};
use crate::config::IsolatedJobArgs;
use crate::inspect::source::CancelFlag;
use crate::ops::image_request::ImageRequest;
use crate::ops::OpError;
use crate::progress::Progress;

/// Largest request accepted on stdin: a job payload is at most `--max-message-bytes`
/// (1 MiB by default); this only stops a broken parent from feeding us forever.
const MAX_REQUEST_BYTES: u32 = 64 << 20;

/// Runs the subcommand. The exit code is 0 whenever a reply was written (the reply
/// says whether the job failed); anything else means the reply is missing.
pub fn main(args: &IsolatedJobArgs) -> ExitCode {
    // Stdin is a socket: one request frame from the parent, then (for a remote image)
    // the channel to the parent's fetcher.
    let channel = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            return fail(
                None,
                OpError::fatal(ErrorKind::Internal, format!("stdin: {e}")),
            )
        }
    };
    // Zeroed when dropped: the request may carry LUKS passphrases.
    let input = match crate::inspect::image::remote::read_frame(&mut &channel, MAX_REQUEST_BYTES) {
        Ok(Some(frame)) => zeroize::Zeroizing::new(frame),
        Ok(None) => {
            return fail(
                None,
                OpError::fatal(ErrorKind::Internal, "no request on stdin"),
            )
        }
        Err(e) => {
            return fail(
                None,
                OpError::fatal(ErrorKind::Internal, format!("reading the request: {e}")),
            )
        }
    };
    let request: Request = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                None,
                OpError::fatal(ErrorKind::Internal, format!("bad request: {e}")),
            )
        }
    };
    drop(input);
    let limits = Limits {
        memory_bytes: args.memory_limit,
        cpu_seconds: args.cpu_seconds,
        open_files: args.open_files,
        parent_pid: args.parent_pid,
        sandbox: !args.no_sandbox,
    };
    let roots: Vec<PathBuf> = request
        .image_roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .collect();
    let sandbox = match limits::apply(&limits, &roots) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                None,
                OpError::fatal(
                    ErrorKind::Internal,
                    format!("cannot confine the inspection: {e}"),
                ),
            )
        }
    };
    // A panic fails this job with its message, like the in-process panic guard did.
    let outcome = std::panic::catch_unwind(|| run(&request, channel));
    let outcome = outcome.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "operation panicked".into());
        Err(OpError::fatal(
            ErrorKind::Panic,
            format!("internal error: {msg}"),
        ))
    });
    match outcome {
        Ok(Done::Inspect(report, bytes_read)) => reply(&Reply {
            output: Some(report),
            error: None,
            bytes_read,
            sandbox: Some(sandbox),
        }),
        Ok(Done::Profile(output)) => {
            let bytes_read = output.bytes_read;
            reply(&Reply {
                output: Some(output),
                error: None,
                bytes_read,
                sandbox: Some(sandbox),
            })
        }
        Err(e) => fail(Some(sandbox), e),
    }
}

/// What an operation produced.
enum Done {
    Inspect(Box<crate::inspect::report::Report>, u64),
    Profile(Box<crate::profile::ProfileOutput>),
}

fn run(request: &Request, channel: UnixStream) -> Result<Done, OpError> {
    let mut image = ImageRequest::from_data(&request.data, &request.image_roots)?;
    if image.url.is_some() {
        image.options.remote = Some(crate::inspect::image::remote::RemoteClient::new(channel));
    }
    image.options.luks_keys = request.luks_keys.clone();
    let progress = Progress::lines();
    // Never set: the parent ends this process instead of asking.
    let cancel = CancelFlag::default();
    match request.operation.as_str() {
        "guestkit.inspect" => {
            let (report, bytes) = crate::ops::inspect::run_blocking(&image, &progress, &cancel)?;
            Ok(Done::Inspect(Box::new(report), bytes))
        }
        "guestkit.profile" => {
            let profile = crate::ops::profile::profile_request(&request.data)?;
            let output = crate::ops::profile::run_blocking(&image, &profile, &progress, &cancel)?;
            Ok(Done::Profile(Box::new(output)))
        }
        other => Err(OpError::fatal(
            ErrorKind::Internal,
            format!("operation {other:?} does not run in an isolated process"),
        )),
    }
}

fn fail(sandbox: Option<Sandbox>, e: OpError) -> ExitCode {
    reply(&Reply::<()> {
        output: None,
        error: Some(ReplyError::from(e)),
        bytes_read: 0,
        sandbox,
    })
}

fn reply<T: Serialize>(reply: &Reply<T>) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = serde_json::to_writer(&mut out, reply)
        .map_err(std::io::Error::from)
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // The parent is gone or the output could not be serialized: nothing to tell.
        Err(e) => {
            eprintln!("cannot write the reply: {e}");
            ExitCode::FAILURE
        }
    }
}
