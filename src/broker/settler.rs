//! Settling the deliveries of one consumer channel: ack, dead-letter or requeue, with
//! runs of finished deliveries acked by a single `basic.ack multiple`.
//!
//! Why: on a busy pool every ack is a frame for the broker to parse and, on a quorum
//! queue, a Raft command to log; and in lapin each ack is a hop through its internal
//! RPC task. Jobs finish roughly in delivery order, so most acks can go out as one
//! `multiple` ack covering a run of delivery tags.
//!
//! Why it is safe: a `multiple` ack settles *every* outstanding tag up to its own, so
//! it is only sent when every tag up to it was seen by this process and is finished
//! or already settled. Tags are consecutive per channel; a gap (a delivery we never
//! saw) turns batching off for the channel, and tags going back to a lower number mean
//! lapin recovered the channel, whose old deliveries the broker redelivers anyway (their
//! ackers are poisoned and settle nothing). Nacks are written before any `multiple` ack
//! that counts on them, because the settler task sends each settle in order and awaits
//! it before the next.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Acker;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// How a delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done: its result (or retry) is confirmed by the broker.
    Ack,
    /// Dead-letter (rejected message).
    Reject,
    /// Back to the queue (shutdown before it started, or its result could not be
    /// published).
    Requeue,
}

/// How long outcomes are gathered before they are sent: the acks of a busy worker go
/// out in runs of dozens instead of a few (measured: worker CPU per job down by a fifth,
/// broker CPU by a seventh). Nothing next to a real job's duration.
const GATHER: Duration = Duration::from_millis(1);

/// How long a finished delivery waits for the running ones before it, to be acked
/// with them, before it is acked on its own. Short next to any real job; it only
/// keeps a prefetch slot a little longer.
const HOLD: Duration = Duration::from_millis(5);

/// What the consume loop, the jobs and the settler task of one channel share.
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the settler task: a gathering began, a batch is full, or the last
    /// delivery of a closed settler is done.
    wake: Notify,
    /// Outcomes waiting that make a flush due at once.
    batch: usize,
}

struct Inner {
    book: Book<Acker>,
    /// [`Unsettled`] handles alive.
    live: usize,
    /// The consume loop dropped its [`Settler`]: no more deliveries.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The book stays consistent even if a holder panicked: each change is one step.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The consume loop's handle on the settler of one channel. Registering a delivery or
/// an outcome only takes a short lock; the settler task is woken a few times per
/// gathering, not per message.
pub struct Settler {
    shared: Arc<Shared>,
}

/// A delivery that still has to be settled. Settled exactly once: by
/// [`Unsettled::settle`], or, if its task ends without (a panic), requeued on drop.
pub struct Unsettled {
    tag: u64,
    acker: Option<Acker>,
    shared: Arc<Shared>,
}

impl Settler {
    /// Starts the settler task of a channel in `tracker`, so a drain waits for its
    /// last acks. The task ends when this handle and every [`Unsettled`] are gone.
    /// `prefetch` is the channel's basic.qos: outcomes are sent early once half of it
    /// waits, so gathering never starves the prefetch window.
    pub fn start(tracker: &TaskTracker, prefetch: u16) -> Settler {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                book: Book::new(),
                live: 0,
                closed: false,
            }),
            wake: Notify::new(),
            batch: usize::from(prefetch / 2).max(1),
        });
        tracker.spawn(run(shared.clone()));
        Settler { shared }
    }

    /// Registers a delivery as it arrives, in delivery order.
    pub fn track(&self, delivery: &Delivery) -> Unsettled {
        let mut inner = self.shared.lock();
        inner.book.delivered(delivery.delivery_tag);
        inner.live += 1;
        drop(inner);
        Unsettled {
            tag: delivery.delivery_tag,
            acker: Some(delivery.acker.clone()),
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Unsettled {
    /// Hands the delivery's outcome to the settler; it goes out with the next batch.
    pub fn settle(mut self, how: Settle) {
        self.send(how);
    }

    fn send(&mut self, how: Settle) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        let mut inner = self.shared.lock();
        inner.live -= 1;
        if acker.poisoned() {
            // The channel is gone: nothing to settle, and this tag must not be
            // mistaken for a tag of the recovered channel.
            tracing::warn!(
                delivery_tag = self.tag,
                "channel gone before settle; the broker redelivers this message"
            );
        } else {
            inner.book.done(self.tag, acker, how, Instant::now());
        }
        let waiting = inner.book.unflushed;
        let wake =
            waiting == 1 || waiting == self.shared.batch || (inner.closed && inner.live == 0);
        drop(inner);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        self.send(Settle::Requeue);
    }
}

/// What the broker is told; `A` is the acker (a lapin [`Acker`], or a tag in tests).
#[derive(Debug, PartialEq)]
enum Action<A> {
    Ack { acker: A, multiple: bool },
    Nack { acker: A, requeue: bool },
}

/// Where one tag stands. A settled tag leaves the book: every tag below `next_tag`
/// was seen, so a tag below it that is not in the book is settled.
enum Slot<A> {
    Running,
    Finished { acker: A, at: Instant },
}

/// The settler's bookkeeping, free of I/O so its rules can be tested directly.
struct Book<A> {
    /// Tags seen and not yet settled, in order.
    slots: BTreeMap<u64, Slot<A>>,
    /// The tag the next delivery should carry.
    next_tag: u64,
    /// False after a gap in the tags: a `multiple` ack could then settle a delivery
    /// this process never saw.
    batching: bool,
    /// Settles to send first at the next flush: nacks, and acks of unknown tags.
    first: Vec<Action<A>>,
    /// When the oldest outcome not yet flushed arrived, and how many there are.
    gathering: Option<Instant>,
    unflushed: usize,
}

impl<A> Book<A> {
    fn new() -> Book<A> {
        Book {
            slots: BTreeMap::new(),
            next_tag: 1,
            batching: true,
            first: Vec::new(),
            gathering: None,
            unflushed: 0,
        }
    }

    fn delivered(&mut self, tag: u64) {
        if tag < self.next_tag {
            // A recovered channel numbers from 1 again; the old channel's deliveries
            // come back from the broker, and their ackers settle nothing.
            self.slots.clear();
            self.batching = tag == 1;
        } else if tag > self.next_tag {
            self.batching = false;
        }
        self.slots.insert(tag, Slot::Running);
        self.next_tag = tag + 1;
    }

    /// Records an outcome, to be sent at the next [`Book::flush`].
    fn done(&mut self, tag: u64, acker: A, how: Settle, now: Instant) {
        self.gathering.get_or_insert(now);
        self.unflushed += 1;
        let requeue = match how {
            Settle::Ack => {
                match self.slots.get_mut(&tag) {
                    Some(slot @ Slot::Running) => *slot = Slot::Finished { acker, at: now },
                    // Not ours to batch (unknown tag): settle it alone.
                    _ => self.first.push(Action::Ack {
                        acker,
                        multiple: false,
                    }),
                }
                return;
            }
            Settle::Reject => false,
            Settle::Requeue => true,
        };
        self.slots.remove(&tag);
        self.first.push(Action::Nack { acker, requeue });
    }

    /// True when a flush is due: outcomes gathered for `GATHER`, or `batch` of them
    /// waiting, or a held tag waited `HOLD`.
    fn due(&self, now: Instant, batch: usize) -> bool {
        self.unflushed >= batch || self.wake_at().is_some_and(|at| at <= now)
    }

    /// When the next flush falls due if nothing else arrives.
    fn wake_at(&self) -> Option<Instant> {
        let gathered = self.gathering.map(|t| t + GATHER);
        match (gathered, self.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Acks what can be acked now: the run of finished tags at the front in one ack
    /// (every tag below it is settled), and finished tags behind a running one once
    /// they waited `HOLD` (all of them when `all`, for the final drain), each alone.
    fn flush(&mut self, now: Instant, all: bool, out: &mut Vec<Action<A>>) {
        self.gathering = None;
        self.unflushed = 0;
        out.append(&mut self.first);
        if self.batching {
            let mut last = None;
            let mut finished = 0;
            while let Some(entry) = self.slots.first_entry() {
                if matches!(entry.get(), Slot::Running) {
                    break;
                }
                if let Slot::Finished { acker, .. } = entry.remove() {
                    last = Some(acker);
                    finished += 1;
                }
            }
            if let Some(acker) = last {
                out.push(Action::Ack {
                    acker,
                    multiple: finished > 1,
                });
            }
        }
        let due: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, slot)| match slot {
                Slot::Finished { at, .. } => all || !self.batching || *at + HOLD <= now,
                Slot::Running => false,
            })
            .map(|(tag, _)| *tag)
            .collect();
        for tag in due {
            if let Some(Slot::Finished { acker, .. }) = self.slots.remove(&tag) {
                out.push(Action::Ack {
                    acker,
                    multiple: false,
                });
            }
        }
    }

    /// When the oldest finished tag behind a running one is due.
    fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| match s {
                Slot::Finished { at, .. } => Some(*at + HOLD),
                _ => None,
            })
            .min()
    }
}

/// The settler task: sends outcomes when due, sleeps until the next is.
async fn run(shared: Arc<Shared>) {
    let mut actions = Vec::new();
    loop {
        let (wake_at, last) = {
            let mut inner = shared.lock();
            let now = Instant::now();
            let last = inner.closed && inner.live == 0;
            if last || inner.book.due(now, shared.batch) {
                inner.book.flush(now, last, &mut actions);
            }
            (inner.book.wake_at(), last)
        };
        send(&mut actions).await;
        if last {
            return;
        }
        // A notification sent while we were busy is kept, so none is lost here.
        match wake_at {
            Some(at) => tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(at) => {}
            },
            None => shared.wake.notified().await,
        }
    }
}

/// Sends the actions in order, each awaited (so a nack is written before a `multiple`
/// ack that passes its tag). A failed settle is not success: the broker redelivers.
async fn send(actions: &mut Vec<Action<Acker>>) {
    for action in actions.drain(..) {
        let result = match &action {
            Action::Ack { acker, multiple } => {
                acker
                    .ack(BasicAckOptions {
                        multiple: *multiple,
                    })
                    .await
            }
            Action::Nack { acker, requeue } => {
                acker
                    .nack(BasicNackOptions {
                        requeue: *requeue,
                        multiple: false,
                    })
                    .await
            }
        };
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "settle skipped: channel gone; the broker redelivers the messages it covered"
            ),
            Err(err) => tracing::warn!(
                error = %err,
                "settle failed; the broker redelivers the messages it covered"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs messages through a book and flushes once; ackers are their tags.
    fn book_after(delivered: &[u64], done: &[(u64, Settle)]) -> (Book<u64>, Vec<Action<u64>>) {
        let mut book = Book::new();
        let mut out = Vec::new();
        let now = Instant::now();
        for &t in delivered {
            book.delivered(t);
        }
        for &(t, how) in done {
            book.done(t, t, how, now);
        }
        book.flush(now, false, &mut out);
        (book, out)
    }

    fn ack(tag: u64, multiple: bool) -> Action<u64> {
        Action::Ack {
            acker: tag,
            multiple,
        }
    }

    #[test]
    fn a_finished_run_at_the_front_is_one_multiple_ack() {
        let (book, out) = book_after(
            &[1, 2, 3, 4],
            &[(2, Settle::Ack), (1, Settle::Ack), (3, Settle::Ack)],
        );
        assert_eq!(out, vec![ack(3, true)]);
        assert_eq!(book.slots.len(), 1);
        let (_, out) = book_after(&[1, 2], &[(1, Settle::Ack)]);
        assert_eq!(out, vec![ack(1, false)]);
    }

    #[test]
    fn outcomes_wait_for_the_gathering_or_a_full_batch() {
        let mut book = Book::new();
        let t0 = Instant::now();
        for t in 1..=3 {
            book.delivered(t);
        }
        assert_eq!(book.wake_at(), None, "nothing to send");
        book.done(1, 1, Settle::Ack, t0);
        assert!(!book.due(t0, 8));
        assert_eq!(book.wake_at(), Some(t0 + GATHER));
        assert!(book.due(t0 + GATHER, 8));
        book.done(2, 2, Settle::Ack, t0);
        assert!(book.due(t0, 2), "a full batch goes at once");
        let mut out = Vec::new();
        book.flush(t0, false, &mut out);
        assert_eq!(out, vec![ack(2, true)]);
        assert_eq!(book.wake_at(), None);
    }

    #[test]
    fn a_running_tag_holds_later_ones_until_due() {
        let (mut book, out) = book_after(&[1, 2, 3], &[(2, Settle::Ack), (3, Settle::Ack)]);
        assert!(out.is_empty());
        let due = book.wake_at().expect("a finished tag waits");
        assert_eq!(due, book.next_due().unwrap());
        let mut out = Vec::new();
        book.flush(due, false, &mut out);
        assert_eq!(out, vec![ack(2, false), ack(3, false)]);
        // Tag 1 finishes: nothing else is outstanding, so a lone ack suffices.
        let mut out = Vec::new();
        book.done(1, 1, Settle::Ack, due);
        book.flush(due, false, &mut out);
        assert_eq!(out, vec![ack(1, false)]);
        assert!(book.slots.is_empty());
    }

    #[test]
    fn nacks_go_first_and_a_later_run_passes_them() {
        let (book, out) = book_after(
            &[1, 2, 3, 4],
            &[
                (1, Settle::Ack),
                (2, Settle::Reject),
                (3, Settle::Ack),
                (4, Settle::Requeue),
            ],
        );
        assert_eq!(
            out,
            vec![
                Action::Nack {
                    acker: 2,
                    requeue: false
                },
                Action::Nack {
                    acker: 4,
                    requeue: true
                },
                ack(3, true),
            ]
        );
        assert!(book.slots.is_empty());
    }

    #[test]
    fn settled_tags_leave_the_book() {
        let tags: Vec<u64> = (1..=1000).collect();
        let done: Vec<(u64, Settle)> = (2..=1000).map(|t| (t, Settle::Ack)).collect();
        let (mut book, out) = book_after(&tags, &done);
        assert!(out.is_empty(), "held behind tag 1");
        let mut out = Vec::new();
        book.flush(book.wake_at().unwrap(), false, &mut out);
        assert_eq!(out.len(), 999);
        assert_eq!(book.slots.len(), 1, "only the running tag stays");
    }

    #[test]
    fn a_gap_in_the_tags_turns_batching_off() {
        let (book, out) = book_after(&[1, 3], &[(3, Settle::Ack), (1, Settle::Ack)]);
        assert!(!book.batching);
        assert_eq!(out, vec![ack(1, false), ack(3, false)]);
        let (book, _) = book_after(&[2], &[]);
        assert!(!book.batching, "the first tag of a channel is 1");
    }

    #[test]
    fn a_recovered_channel_starts_a_new_book() {
        let (mut book, _) = book_after(&[1, 2, 3], &[(2, Settle::Ack)]);
        book.delivered(1);
        assert!(book.batching);
        assert_eq!(book.slots.len(), 1);
        let mut out = Vec::new();
        let now = Instant::now();
        book.done(1, 1, Settle::Ack, now);
        book.flush(now, false, &mut out);
        assert_eq!(out, vec![ack(1, false)]);
    }

    #[test]
    fn unknown_tags_are_settled_alone() {
        let (_, out) = book_after(&[1, 2], &[(7, Settle::Ack), (1, Settle::Ack)]);
        assert_eq!(out, vec![ack(7, false), ack(1, false)]);
    }

    #[test]
    fn the_final_drain_acks_everything_finished() {
        let (mut book, out) = book_after(&[1, 2, 3], &[(3, Settle::Ack)]);
        assert!(out.is_empty());
        let mut out = Vec::new();
        book.flush(Instant::now(), true, &mut out);
        assert_eq!(out, vec![ack(3, false)]);
    }
}
