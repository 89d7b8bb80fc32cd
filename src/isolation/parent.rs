//! The parent side: run one job in a child process and turn whatever happens to it
//! into the job's outcome.
//!
//! The child is the worker's own binary (`/proc/self/exe`, so an upgrade that replaces
//! the file on disk cannot mix versions) in a process group of its own, with an empty
//! environment (no broker credentials) and `/` as working directory. Dropping the
//! future of [`Isolation::run`] (the executor's timeout, a shutdown past its grace)
//! kills the group with SIGKILL at once; tokio reaps the process in the background.
//!
//! Spawned from an async task, never from a blocking-pool thread: the parent-death
//! signal fires when the *thread* that forked the child exits, and tokio's runtime
//! threads live as long as the worker, while blocking threads end after 10 s idle.
//!
//! The child's stdin is one end of a Unix socket pair: the parent's fetch thread writes
//! the request there (one frame) and, for a remote image (`image.url`), then serves the
//! child's reads on it (`inspect::image::remote`): the parent fetches, checks the
//! allow-list and holds the URL's credentials; the child, which has no network, gets
//! the URL without its query. The thread ends when the child's end closes (it exited
//! or was killed) and stops fetching when the run ends (a flag set on drop).

use guestkit_job_spec::ErrorKind;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::process::{Pid, Signal};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use super::limits::Sandbox;
use super::protocol::{Reply, Request, StderrLine};
use super::{show_bytes, OPEN_FILES};
use crate::inspect::image::http::{RemoteConfig, RemoteJob};
use crate::inspect::image::http_url::RemoteUrl;
use crate::inspect::image::remote;
use crate::inspect::source::CancelFlag;
use crate::ops::image_request::remote_error;
use crate::ops::OpError;
use crate::progress::Progress;

/// Largest reply read from a child; a larger one fails the job (`resource_limit`).
const MAX_REPLY_BYTES: u64 = 512 << 20;

/// Longest stderr line handled; the rest of a longer line is dropped.
const MAX_LINE_BYTES: usize = 64 << 10;

/// Raw (non-JSON) stderr text kept for the diagnosis of a child that died.
const TAIL_BYTES: usize = 4096;

/// How the worker runs isolated jobs.
#[derive(Debug)]
pub struct Isolation {
    /// The binary to run with the hidden `isolated-job` subcommand.
    pub program: PathBuf,
    /// RLIMIT_AS of each child (`--inspect-memory-limit`).
    pub memory_limit: u64,
    /// Set once the sandbox a child reported has been logged.
    sandbox_logged: AtomicBool,
    /// `--luks-keys-dir`, read for each job (a mounted Secret changes under us).
    pub luks_keys_dir: Option<PathBuf>,
    /// Landlock and seccomp applied by children (off: `--no-inspect-sandbox`).
    pub sandbox: bool,
    /// Remote images: the allow-list and HTTP client the parent fetches with.
    pub remote: Option<Arc<RemoteConfig>>,
}

/// A job's output, as the child produced it.
#[derive(Debug)]
pub struct ChildOutput {
    pub output: Value,
    pub bytes_read: u64,
    pub sandbox: Option<Sandbox>,
}

/// The process group of a running child; dropping the guard kills the group.
struct GroupKill(Option<Pid>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (already gone) is fine.
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Isolation {
    /// Children run `program` with an address-space limit of `memory_limit` bytes.
    pub fn new(program: impl Into<PathBuf>, memory_limit: u64) -> Isolation {
        Isolation {
            program: program.into(),
            memory_limit,
            sandbox_logged: AtomicBool::new(false),
            luks_keys_dir: None,
            sandbox: true,
            remote: None,
        }
    }

    /// Serves the children's remote images with `remote` (`--image-url-allow`).
    pub fn with_remote(mut self, remote: Option<Arc<RemoteConfig>>) -> Isolation {
        self.remote = remote;
        self
    }

    /// The remote image of `data`, if any: its URL (checked against the allow-list
    /// again) and settings; `data.image.url` is replaced by the URL without its query,
    /// so the child never sees credentials.
    fn remote_image(
        &self,
        data: &mut Value,
    ) -> Result<Option<(Arc<RemoteConfig>, RemoteUrl)>, OpError> {
        let Some(url) = data.pointer_mut("/image/url") else {
            return Ok(None);
        };
        let text = url.as_str().unwrap_or_default();
        let parsed = RemoteUrl::parse(text).map_err(|e| remote_error(&e))?;
        let not_allowed = crate::inspect::image::http::HttpError::NotAllowed {
            url: parsed.redacted(),
        };
        let config = self
            .remote
            .clone()
            .ok_or_else(|| remote_error(&not_allowed))?;
        config.check(&parsed).map_err(|e| remote_error(&e))?;
        *url = Value::String(parsed.redacted());
        Ok(Some((config, parsed)))
    }

    /// Children skip Landlock and seccomp (`--no-inspect-sandbox`) when `off`.
    pub fn without_sandbox(mut self, off: bool) -> Isolation {
        self.sandbox = !off;
        self
    }

    /// Passes the passphrases of `dir` (`--luks-keys-dir`) to every child.
    pub fn with_luks_keys_dir(mut self, dir: Option<PathBuf>) -> Isolation {
        self.luks_keys_dir = dir;
        self
    }

    /// The daemon's isolation: its own binary.
    pub fn own_binary(memory_limit: u64) -> Isolation {
        Isolation::new("/proc/self/exe", memory_limit)
    }

    /// Runs `operation` on `data` in a child limited to `cpu_seconds` of CPU time.
    /// Progress events of the child go to `progress`; `cancel` kills the child.
    pub async fn run(
        &self,
        operation: &str,
        data: &Value,
        image_roots: &[PathBuf],
        cpu_seconds: u64,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<ChildOutput, OpError> {
        let mut data = data.clone();
        let remote_image = self.remote_image(&mut data)?;
        let luks_keys = match &self.luks_keys_dir {
            Some(dir) => crate::inspect::volume::luks::open::LuksKeys::from_dir(dir)
                .map_err(|e| OpError::retryable(ErrorKind::LuksKeys, e.to_string()))?,
            None => Default::default(),
        };
        let request = zeroize::Zeroizing::new(
            serde_json::to_vec(&Request {
                operation: operation.to_string(),
                data,
                image_roots: image_roots.to_vec(),
                luks_keys,
            })
            .map_err(|e| OpError::fatal(ErrorKind::Internal, e.to_string()))?,
        );
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| OpError::retryable(ErrorKind::Internal, format!("socket pair: {e}")))?;
        let mut command = self.command(cpu_seconds);
        command.stdin(std::process::Stdio::from(OwnedFd::from(theirs)));
        let spawned = command.spawn();
        // Our copy of the child's end must close, or the fetch thread never sees its end.
        drop(command);
        let mut child = spawned.map_err(|e| {
            // Out of processes or memory on the host: another attempt may succeed.
            OpError::retryable(
                ErrorKind::Internal,
                format!(
                    "cannot start the inspection process {}: {e}",
                    self.program.display()
                ),
            )
        })?;
        let pgid = child.id().and_then(|p| Pid::from_raw(p as i32));
        let mut group = GroupKill(pgid);
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(OpError::fatal(ErrorKind::Internal, "child without pipes"));
        };
        // Set when this run ends, however it ends: the fetch thread stops fetching.
        let stop = StopOnDrop(CancelFlag::default());
        let fetch =
            remote_image.map(|(config, url)| (RemoteJob::new(config, Some(stop.0.clone())), url));
        std::thread::Builder::new()
            .name("job-fetch".into())
            .spawn(move || {
                let mut ours = ours;
                // A child that died early closes its end: its exit status says why.
                if remote::write_frame(&mut ours, &[&request]).is_err() {
                    return;
                }
                if let Some((job, url)) = fetch {
                    remote::serve(ours, job, url);
                }
            })
            .map_err(|e| OpError::retryable(ErrorKind::Internal, format!("fetch thread: {e}")))?;
        let waited = async {
            let status = child.wait().await;
            // A child that forked must not leave its group behind.
            if let Some(pgid) = pgid {
                let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
            }
            status
        };
        let exchange = async {
            tokio::join!(
                read_capped(stdout, MAX_REPLY_BYTES),
                read_stderr(stderr, progress),
                waited
            )
        };
        let (out, tail, status) = tokio::select! {
            done = exchange => done,
            _ = cancel.cancelled() => {
                group.kill();
                return Err(OpError::fatal(ErrorKind::Cancelled, "inspection cancelled; its process was killed"));
            }
        };
        // Reaped: its pid may be reused, so the guard must not signal it any more.
        group.0 = None;
        let status = status.map_err(|e| {
            OpError::fatal(
                ErrorKind::Internal,
                format!("waiting for the inspection process: {e}"),
            )
        })?;
        let out = out.map_err(|e| {
            OpError::fatal(
                ErrorKind::Internal,
                format!("reading the inspection's reply: {e}"),
            )
        })?;
        if out.len() as u64 > MAX_REPLY_BYTES {
            return Err(OpError::fatal(
                ErrorKind::ResourceLimit,
                format!(
                    "the inspection's output exceeds {}",
                    show_bytes(MAX_REPLY_BYTES)
                ),
            ));
        }
        if !status.success() || out.is_empty() {
            return Err(self.died(status, &tail, cpu_seconds));
        }
        let reply: Reply<Value> = serde_json::from_slice(&out).map_err(|e| {
            OpError::fatal(
                ErrorKind::Internal,
                format!("the inspection process sent an unreadable reply: {e}"),
            )
        })?;
        if let Some(sandbox) = &reply.sandbox {
            self.log_sandbox(sandbox);
        }
        match (reply.output, reply.error) {
            (_, Some(err)) => Err(err.into()),
            (Some(output), None) => Ok(ChildOutput {
                output,
                bytes_read: reply.bytes_read,
                sandbox: reply.sandbox,
            }),
            (None, None) => Err(OpError::fatal(
                ErrorKind::Internal,
                "the inspection process replied with neither output nor error",
            )),
        }
    }

    fn command(&self, cpu_seconds: u64) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args([
            "--log-format",
            "json",
            "--log-level",
            "warn",
            "isolated-job",
        ])
        .arg("--memory-limit")
        .arg(self.memory_limit.to_string())
        .arg("--cpu-seconds")
        .arg(cpu_seconds.max(1).to_string())
        .arg("--open-files")
        .arg(OPEN_FILES.to_string())
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .args((!self.sandbox).then_some("--no-sandbox"))
        .env_clear()
        // mimalloc would otherwise reserve a 1 GiB arena at start, before the child
        // sets its limits: reserved address space counts as already mapped and the
        // heap could grow into it unchecked. Without it the heap's segments are
        // mapped on demand, each under RLIMIT_AS.
        .env("MIMALLOC_ARENA_RESERVE", "0")
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
        cmd
    }

    /// Why a child ended without a reply.
    fn died(&self, status: ExitStatus, tail: &str, cpu_seconds: u64) -> OpError {
        use std::os::unix::process::ExitStatusExt;
        let last = tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let memory = || {
            OpError::fatal(
                ErrorKind::ResourceLimit,
                format!(
                    "the inspection exceeded its memory limit of {} (--inspect-memory-limit) and was stopped: {last}",
                    show_bytes(self.memory_limit)
                ),
            )
        };
        if allocation_failed(tail) {
            return memory();
        }
        match status.signal() {
            Some(libc::SIGXCPU) => OpError::fatal(
                ErrorKind::ResourceLimit,
                format!(
                    "the inspection used its CPU-time limit of {cpu_seconds} s (the job's timeout) and was stopped"
                ),
            ),
            // Not ours (ours end the run before the exit is seen): the CPU hard limit
            // (one second past the soft one) or the host's out-of-memory killer.
            Some(libc::SIGKILL) => OpError::fatal(
                ErrorKind::ResourceLimit,
                format!(
                    "the inspection process was killed (SIGKILL): its CPU-time hard limit of {} s or the host's out-of-memory killer",
                    cpu_seconds + 1
                ),
            ),
            Some(sig) => OpError::fatal(
                ErrorKind::Internal,
                format!("the inspection process died of signal {sig}: {last}"),
            ),
            None => OpError::fatal(
                ErrorKind::Internal,
                format!("the inspection process ended without a reply ({status}): {last}"),
            ),
        }
    }

    fn log_sandbox(&self, sandbox: &Sandbox) {
        if self.sandbox_logged.swap(true, Ordering::Relaxed) {
            return;
        }
        if sandbox.complete() {
            tracing::info!(sandbox = %sandbox.describe(), "inspections run in isolated processes");
        } else {
            tracing::warn!(
                sandbox = %sandbox.describe(),
                "inspections run in isolated processes with rlimits only where the kernel lacks Landlock or seccomp"
            );
        }
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(CancelFlag);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An allocation failure as Rust's default handler, the allocator or an OS error word
/// it.
fn allocation_failed(tail: &str) -> bool {
    let t = tail.to_ascii_lowercase();
    t.contains("memory allocation of")
        || t.contains("cannot allocate memory")
        || t.contains("out of memory")
        || t.contains("os error 12")
}

/// Reads `from` to its end, keeping at most `cap + 1` bytes (one more than allowed, so
/// the caller sees the excess).
async fn read_capped(from: impl AsyncRead + Unpin, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut limited = from.take(cap + 1);
    limited.read_to_end(&mut out).await?;
    // Drain the rest so the child never blocks on a full pipe.
    let mut rest = limited.into_inner();
    tokio::io::copy(&mut rest, &mut tokio::io::sink()).await?;
    Ok(out)
}

/// Reads the child's stderr line by line until it closes: progress lines become the
/// job's events, log lines the worker's logs; returns the tail of the raw text.
async fn read_stderr(mut from: impl AsyncRead + Unpin, progress: &Progress) -> String {
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut tail_len = 0;
    let mut line = Vec::new();
    let mut skipping = false;
    let mut chunk = vec![0u8; 8192];
    let mut handle = |bytes: &[u8]| {
        if let Some(text) = handle_line(bytes, progress) {
            tail_len += text.len();
            tail.push_back(text);
            while tail_len > TAIL_BYTES && tail.len() > 1 {
                tail_len -= tail.pop_front().map_or(0, |t| t.len());
            }
        }
    };
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in chunk[..n].split_inclusive(|b| *b == b'\n') {
            let ends = piece.last() == Some(&b'\n');
            if skipping {
                skipping = !ends;
                continue;
            }
            line.extend_from_slice(piece);
            if ends {
                line.pop();
                handle(&line);
                line.clear();
            } else if line.len() > MAX_LINE_BYTES {
                line.truncate(MAX_LINE_BYTES);
                handle(&line);
                line.clear();
                skipping = true;
            }
        }
    }
    if !line.is_empty() {
        handle(&line);
    }
    Vec::from(tail).join("\n")
}

/// One stderr line: re-emitted as progress or a log; raw text is returned for the tail.
fn handle_line(bytes: &[u8], progress: &Progress) -> Option<String> {
    if bytes.first() == Some(&b'{') {
        if let Ok(parsed) = serde_json::from_slice::<StderrLine>(bytes) {
            match (parsed.progress.as_deref(), parsed.level.as_deref()) {
                (Some("phase"), _) => {
                    if let Some(phase) = &parsed.phase {
                        progress.phase(phase);
                    }
                }
                (Some("progress"), _) => {
                    if let Some(p) = parsed.percent {
                        progress.percent(p);
                    }
                }
                (Some(_), _) => {}
                (None, Some("WARN" | "ERROR")) => tracing::warn!(
                    job_id = %progress.job_id(),
                    "inspection: {}",
                    parsed.message.as_deref().unwrap_or("")
                ),
                (None, _) => tracing::debug!(
                    job_id = %progress.job_id(),
                    "inspection: {}",
                    parsed.message.as_deref().unwrap_or("")
                ),
            }
            return None;
        }
    }
    let text = String::from_utf8_lossy(bytes).into_owned();
    tracing::warn!(job_id = %progress.job_id(), "inspection process: {text}");
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_failures_are_recognised() {
        assert!(allocation_failed(
            "memory allocation of 1048576 bytes failed"
        ));
        assert!(allocation_failed(
            "Error: Cannot allocate memory (os error 12)"
        ));
        assert!(!allocation_failed("thread 'main' panicked at src/x.rs:1:1"));
    }

    #[tokio::test]
    async fn stderr_lines_are_split_capped_and_tailed() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"progress\":\"phase\",\"phase\":\"inspect\"}\n");
        input.extend_from_slice(&vec![b'x'; MAX_LINE_BYTES * 2]);
        input.extend_from_slice(b"\nlast words\n");
        let tail = read_stderr(&input[..], &Progress::disabled()).await;
        assert!(tail.ends_with("last words"), "{tail:.80}");
        assert!(tail.len() <= MAX_LINE_BYTES + 16, "a long line is cut");
        assert!(
            !tail.contains("progress"),
            "progress lines are not raw text"
        );
    }
}
