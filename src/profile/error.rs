//! Errors of the profile layer.

use crate::inspect::pipeline::InspectError;

/// Why a profile run produced no result. Checks themselves never fail a job: a file
/// they cannot read becomes a warning. Only the inspection underneath, or the job
/// being cancelled, stops the run.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The inspection pipeline could not read the image.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The job was cancelled (timeout, shutdown) while the checks ran.
    #[error("profile cancelled")]
    Cancelled,
}
