//! Running out of memory or threads is not damage in the image.
//!
//! A layer that cannot start a thread or get memory from the OS (EAGAIN or ENOMEM, as
//! under the inspection's address-space limit) could only turn that into a warning about
//! one filesystem, and the job would end `completed` with a report that silently lacks
//! it. Instead it records the exhaustion here, and the pipeline fails the job with it
//! (`InspectError::Resources`, kind
//! `resource_limit`), naming the limit in force.
//!
//! Process-wide on purpose: the limits are the process's (each inspection job runs in a
//! process of its own), so whichever inspection looks next is the one that ran out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The first exhaustion not yet reported.
static EXHAUSTED: Mutex<Option<String>> = Mutex::new(None);

/// The address-space limit this process set itself (`--inspect-memory-limit`); 0 when
/// none was set.
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);

/// Remembers the memory limit applied to this process, for the messages.
pub fn set_memory_limit(bytes: u64) {
    MEMORY_LIMIT.store(bytes, Ordering::Relaxed);
}

/// Whether `e` means the process is out of memory or threads (EAGAIN from a thread
/// spawn is how glibc reports a stack it could not map).
pub fn is_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOMEM))
        || e.kind() == std::io::ErrorKind::OutOfMemory
}

/// Records that `what` failed with `e` for lack of resources; returns the message.
pub fn record(what: &str, e: &std::io::Error) -> String {
    let limit = MEMORY_LIMIT.load(Ordering::Relaxed);
    let message = if limit > 0 {
        format!(
            "{what}: {e}: out of memory or threads under the inspection's memory limit of {} \
             (--inspect-memory-limit)",
            crate::isolation::show_bytes(limit)
        )
    } else {
        format!("{what}: {e}: the process is out of memory or threads")
    };
    let mut first = EXHAUSTED.lock().unwrap_or_else(|p| p.into_inner());
    first.get_or_insert(message.clone());
    message
}

/// The exhaustion recorded since the last call, if any.
pub fn take() -> Option<String> {
    EXHAUSTED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_and_memory_errors_are_exhaustion() {
        assert!(is_exhaustion(&std::io::Error::from_raw_os_error(
            libc::EAGAIN
        )));
        assert!(is_exhaustion(&std::io::Error::from_raw_os_error(
            libc::ENOMEM
        )));
        assert!(!is_exhaustion(&std::io::Error::from_raw_os_error(
            libc::EIO
        )));
    }
}
