//! At most [`MAX_LIVE`] ext4 reader threads per process.
//!
//! Each opened ext4 filesystem is served by a thread holding ext4-view's state and block
//! cache (see [`worker`](super::worker)). A disk of many partitions (a hostile GPT of
//! 64 distinct ones, say) would otherwise keep one thread and cache per filesystem alive
//! until the end of the job. So the threads form a least-recently-used set: starting or
//! using one moves it to the back, and starting one past the cap closes the one at the
//! front (its handle drops the thread's job sender; the thread finishes what it was
//! sent and ends). A closed filesystem is loaded again on its next use.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::thread::JoinHandle;

use super::worker::{Job, Shared};

/// Reader threads alive at once. A guest has a handful of ext4 filesystems (root,
/// `/boot`, `/home`, `/var`), all read in turn by the OS layer: they stay loaded.
pub const MAX_LIVE: usize = 8;

/// A filesystem's running thread.
pub(super) struct Running {
    pub jobs: mpsc::Sender<Job>,
    pub thread: JoinHandle<()>,
    pub shared: Arc<Shared>,
}

/// Where a filesystem's running thread takes jobs; `None` while closed.
pub(super) type Slot = Mutex<Option<Running>>;

/// The live slots, least recently used first.
static LIVE: Mutex<VecDeque<Weak<Slot>>> = Mutex::new(VecDeque::new());

/// Makes room for a thread about to start: closes the least recently used ones down to
/// [`MAX_LIVE`] - 1. Called before the start, so the bound holds while it loads.
pub(super) fn reserve() {
    close_past(MAX_LIVE - 1, None);
}

/// Marks `slot` (whose thread is running) as just used, and closes the least recently
/// used threads past [`MAX_LIVE`].
pub(super) fn touch(slot: &Arc<Slot>) {
    close_past(MAX_LIVE, Some(slot));
}

/// Moves `used` (if any) to the back and closes the threads at the front past `keep`.
/// Never called with a live slot's lock held: closing locks the victims' slots.
fn close_past(keep: usize, used: Option<&Arc<Slot>>) {
    let victims: Vec<Arc<Slot>> = {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| {
            w.strong_count() > 0 && used.is_none_or(|u| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(u)))
        });
        if let Some(used) = used {
            live.push_back(Arc::downgrade(used));
        }
        let excess = live.len().saturating_sub(keep);
        live.drain(..excess).filter_map(|w| w.upgrade()).collect()
    };
    for victim in victims {
        let running = victim.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Running {
            jobs,
            thread,
            shared,
        }) = running
        {
            // Without a sender the thread ends once it has served what it was sent
            // (nothing, when the pipeline's one thread is the caller here). Waiting for
            // it keeps the bound exact; a thread given up on (still looping on hostile
            // metadata) is not waited for.
            drop(jobs);
            if shared.failure().is_none() {
                let _ = thread.join();
            }
        }
    }
}
