//! The per-job *work* budget: CPU-heavy steps that read no new disk bytes.
//!
//! The read budget ([`Budgeted`](super::source::Budgeted)) and the cancel flag are only
//! looked at when a read reaches the image, but some hostile inputs make the OS layer
//! spin on data already in memory: an `Include d/* d/* ...` line repeated over 16 MiB
//! lists one cached directory millions of times, a YAML alias fans out to millions of
//! nodes. So the steps that can multiply (directory entries visited by a listing or a
//! glob, files opened through includes, YAML nodes after alias expansion) are charged
//! here, and every charge also looks at the job's cancel flag, so a timed-out job
//! stops at its next step even when it never touches the disk again.
//!
//! Past the budget the OS layer reads nothing more and says so in a warning: the report
//! keeps what was found so far.

use std::sync::atomic::{AtomicU64, Ordering};

use super::source::CancelFlag;

/// Default work budget of one job, in units (one directory entry visited, one file
/// opened, one YAML node, ...). A large real guest spends well under a million (a few
/// thousand files listed and opened); the budget stops only runaway fan-out, at roughly
/// a few seconds of CPU.
pub const DEFAULT_WORK_BUDGET: u64 = 5_000_000;

/// Why a step was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkStop {
    #[error("work budget of {limit} steps exhausted (glob, include or YAML fan-out, or LUKS key derivation?)")]
    Exhausted { limit: u64 },
    #[error("inspection cancelled")]
    Cancelled,
}

/// Counts the work of one job; shared (`&self`) by every reader of the job.
#[derive(Debug)]
pub struct Work {
    done: AtomicU64,
    limit: u64,
    cancel: Option<CancelFlag>,
}

impl Work {
    /// A budget of `limit` units that also stops once `cancel` is set.
    pub fn new(limit: u64, cancel: Option<CancelFlag>) -> Work {
        Work {
            done: AtomicU64::new(0),
            limit,
            cancel,
        }
    }

    /// No limit and no cancel flag: unit tests and callers that bound their work
    /// otherwise.
    pub fn unlimited() -> Work {
        Work::new(u64::MAX, None)
    }

    /// Charges `units` of work; an error once the budget is spent or the job cancelled
    /// (and on every later call).
    pub fn charge(&self, units: u64) -> Result<(), WorkStop> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(WorkStop::Cancelled);
        }
        let before = self.done.fetch_add(units, Ordering::Relaxed);
        if before.saturating_add(units) > self.limit {
            return Err(WorkStop::Exhausted { limit: self.limit });
        }
        Ok(())
    }

    /// Charges `units` only if they fit in what is left (and the job is not
    /// cancelled); a refusal charges nothing. For one large step (a LUKS key
    /// derivation) that should not starve the rest of the job when refused.
    pub fn charge_if_within(&self, units: u64) -> Result<(), WorkStop> {
        self.check()?;
        self.done
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |done| {
                done.checked_add(units).filter(|&d| d <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| WorkStop::Exhausted { limit: self.limit })
    }

    /// Whether another step may run (charges nothing).
    pub fn check(&self) -> Result<(), WorkStop> {
        self.charge(0)
    }

    /// Units charged so far (including refused ones).
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn stops_at_the_limit_and_on_cancel() {
        let cancel = Arc::new(AtomicBool::new(false));
        let w = Work::new(10, Some(cancel.clone()));
        assert_eq!(w.charge(6), Ok(()));
        assert_eq!(w.charge(4), Ok(()));
        assert_eq!(w.charge(1), Err(WorkStop::Exhausted { limit: 10 }));
        assert_eq!(w.check(), Err(WorkStop::Exhausted { limit: 10 }));
        let w = Work::new(10, Some(cancel.clone()));
        cancel.store(true, Ordering::Relaxed);
        assert_eq!(w.check(), Err(WorkStop::Cancelled));
        assert_eq!(Work::unlimited().charge(u64::MAX), Ok(()));
        let w = Work::new(10, None);
        assert_eq!(
            w.charge_if_within(11),
            Err(WorkStop::Exhausted { limit: 10 })
        );
        assert_eq!(w.charge_if_within(10), Ok(()));
        assert_eq!(w.done(), 10);
    }
}
