//! Errors of the partition-table layer.

use crate::inspect::source::ReadError;

/// Why a partition table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("corrupt {table} partition table at offset {offset}: {message}")]
    Corrupt {
        table: &'static str,
        offset: u64,
        message: String,
    },
    #[error(transparent)]
    Image(#[from] ReadError),
}
