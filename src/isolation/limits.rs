//! The limits a process applies to itself before it reads a hostile image: the child
//! of every inspection job, and the `inspect` CLI.
//!
//! Applied while the process has a single thread (threads started later inherit the
//! per-thread parts: no-new-privs, Landlock, seccomp). The one exception is on purpose:
//! the `inspect` CLI starts a remote image's fetch thread (trusted code, see
//! `inspect::image::remote`) just before, so that thread keeps its network while the
//! inspecting thread and any thread it starts have none. The rlimits, no-new-privs and the
//! parent-death signal are always enforced (failing to set one fails the job); Landlock
//! and seccomp depend on the kernel (and on the container's own seccomp profile) and
//! degrade to "unavailable", which [`Sandbox`] reports so the caller can log it.
//!
//! No `unsafe`: rustix wraps setrlimit and prctl, the landlock and seccompiler crates
//! wrap their syscalls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};
use rustix::process::{Resource, Rlimit};
use seccompiler::{SeccompAction, SeccompFilter, SeccompRule, TargetArch};
use serde::{Deserialize, Serialize};

/// What to limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space the inspection may add to what the process already has
    /// (`--inspect-memory-limit`): RLIMIT_AS is set to the current size plus this, so
    /// the limit means the same for a debug and a release binary.
    pub memory_bytes: u64,
    /// RLIMIT_CPU soft limit in seconds (SIGXCPU); the hard limit (SIGKILL) is one
    /// second later.
    pub cpu_seconds: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// The process that must stay our parent: with it set, the parent-death signal is
    /// armed (SIGKILL) and a parent already gone ends this process at once.
    pub parent_pid: Option<u32>,
    /// Landlock and seccomp applied (`false`: `--no-inspect-sandbox`, reported as
    /// `disabled`).
    pub sandbox: bool,
}

/// Why limits could not be applied (the job fails rather than run unconfined).
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("setrlimit({resource}): {source}")]
    Rlimit {
        resource: &'static str,
        source: std::io::Error,
    },
    #[error("prctl({what}): {source}")]
    Prctl {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the worker (pid {expected}) is gone; this inspection has no one to report to")]
    ParentGone { expected: u32 },
}

/// What is enforced, as checked after applying: reported by the child to the worker,
/// which logs it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Sandbox {
    /// `enforced`, `partial` (an older Landlock ABI: some rights not handled),
    /// `unavailable` or `disabled` (`--no-inspect-sandbox`).
    pub landlock: String,
    /// `enforced`, `unavailable` or `disabled`.
    pub seccomp: String,
    /// Why something is unavailable (empty when everything is enforced).
    pub notes: Vec<String>,
    /// A file outside the image roots could not be opened after the limits were applied
    /// (the Landlock rules checked for real, not only reported).
    pub outside_read_denied: bool,
    /// Creating an IP socket failed after the limits were applied (the seccomp filter
    /// checked for real).
    pub socket_denied: bool,
}

impl Sandbox {
    /// Landlock and seccomp both enforced and both checked.
    pub fn complete(&self) -> bool {
        self.landlock == "enforced"
            && self.seccomp == "enforced"
            && self.outside_read_denied
            && self.socket_denied
    }

    /// One line for logs.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "landlock {} (outside read denied: {}), seccomp {} (socket denied: {})",
            self.landlock, self.outside_read_denied, self.seccomp, self.socket_denied
        );
        if !self.notes.is_empty() {
            s.push_str("; ");
            s.push_str(&self.notes.join("; "));
        }
        s
    }
}

/// Applies `limits` to this process, and confines file reads to `read_roots` (read
/// only: no write, no exec, no other path) where Landlock is available. Call while
/// the process has one thread.
pub fn apply(limits: &Limits, read_roots: &[PathBuf]) -> Result<Sandbox, LimitError> {
    let address_space = current_address_space().saturating_add(limits.memory_bytes);
    crate::inspect::resources::set_memory_limit(limits.memory_bytes);
    set_rlimit("RLIMIT_AS", Resource::As, address_space, address_space)?;
    let cpu = limits.cpu_seconds.max(1);
    set_rlimit("RLIMIT_CPU", Resource::Cpu, cpu, cpu.saturating_add(1))?;
    set_rlimit(
        "RLIMIT_NOFILE",
        Resource::Nofile,
        limits.open_files,
        limits.open_files,
    )?;
    rustix::thread::set_no_new_privs(true).map_err(|e| LimitError::Prctl {
        what: "PR_SET_NO_NEW_PRIVS",
        source: e.into(),
    })?;
    if let Some(expected) = limits.parent_pid {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(|e| LimitError::Prctl {
                what: "PR_SET_PDEATHSIG",
                source: e.into(),
            })?;
        // The parent may have died between our fork and the prctl: then no signal will
        // ever come, and our parent is now someone else.
        let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32);
        if parent != Some(expected) {
            return Err(LimitError::ParentGone { expected });
        }
    }

    let mut sandbox = Sandbox::default();
    if !limits.sandbox {
        sandbox.landlock = "disabled".into();
        sandbox.seccomp = "disabled".into();
        sandbox
            .notes
            .push("Landlock and seccomp disabled by --no-inspect-sandbox".into());
    } else {
        confine(read_roots, &mut sandbox);
    }
    // Check, not trust: try what must now fail.
    let probe = Path::new("/proc/self/status");
    sandbox.outside_read_denied = !read_roots.iter().any(|r| probe.starts_with(r))
        && matches!(std::fs::File::open(probe), Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied);
    sandbox.socket_denied = std::net::UdpSocket::bind(("127.0.0.1", 0)).is_err();
    Ok(sandbox)
}

/// Applies Landlock and seccomp where the kernel allows, noting in `sandbox` what holds.
fn confine(read_roots: &[PathBuf], sandbox: &mut Sandbox) {
    match landlock(read_roots) {
        Ok((state, notes)) => {
            sandbox.landlock = state.into();
            sandbox.notes.extend(notes);
        }
        Err(e) => {
            sandbox.landlock = "unavailable".into();
            sandbox.notes.push(format!("landlock: {e}"));
        }
    }
    match seccomp() {
        Ok(()) => sandbox.seccomp = "enforced".into(),
        Err(e) => {
            sandbox.seccomp = "unavailable".into();
            sandbox.notes.push(format!("seccomp: {e}"));
        }
    }
}

/// Bytes of address space mapped now (the binary, the allocator's first arena, the
/// stack), from `/proc/self/statm`; 0 when unreadable (the limit is then absolute).
fn current_address_space() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |pages| {
            pages.saturating_mul(rustix::param::page_size() as u64)
        })
}

fn set_rlimit(
    name: &'static str,
    resource: Resource,
    soft: u64,
    hard: u64,
) -> Result<(), LimitError> {
    // Never above the hard limit we were given: raising it needs privileges.
    let current = rustix::process::getrlimit(resource);
    let cap = |v: u64| current.maximum.map_or(v, |m| v.min(m));
    rustix::process::setrlimit(
        resource,
        Rlimit {
            current: Some(cap(soft)),
            maximum: Some(cap(hard)),
        },
    )
    .map_err(|e| LimitError::Rlimit {
        resource: name,
        source: e.into(),
    })
}

/// Read-only access beneath each root; every other file-system access right that the
/// kernel knows (up to ABI 2) is denied, including execute and write anywhere.
fn landlock(roots: &[PathBuf]) -> Result<(&'static str, Vec<String>), landlock::RulesetError> {
    let abi = ABI::V2;
    let mut notes = Vec::new();
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?;
    for root in roots {
        match PathFd::new(root) {
            Ok(fd) => {
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, AccessFs::ReadFile | AccessFs::ReadDir))?;
            }
            // A root that does not exist holds no image either: nothing to allow.
            Err(e) => notes.push(format!("image root {} not allowed: {e}", root.display())),
        }
    }
    let status = ruleset.restrict_self()?;
    let state = match status.ruleset {
        RulesetStatus::FullyEnforced => "enforced",
        RulesetStatus::PartiallyEnforced => "partial",
        RulesetStatus::NotEnforced => {
            notes.push(format!(
                "landlock not enforced by this kernel ({:?})",
                status.landlock
            ));
            "unavailable"
        }
    };
    Ok((state, notes))
}

/// Denies (EPERM) creating sockets, executing programs, and reaching into other
/// processes (ptrace, their memory, signals by pid: the worker holds the broker's
/// credentials); everything else passes. An inspection reads an image through files it
/// opens under the roots: it needs no network, no other program, no other process.
/// (Rust's abort raises its signal with tgkill, which stays allowed.)
fn seccomp() -> Result<(), String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let denied: BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_socket,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kill,
        libc::SYS_pidfd_send_signal,
    ]
    .into_iter()
    .map(|nr| (nr, Vec::new()))
    .collect();
    let filter = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}
