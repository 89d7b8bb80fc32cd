//! Errors of the filesystem layer.

use crate::inspect::source::ReadError;

/// Why a file or directory could not be read from a guest filesystem.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    #[error("{0}: not a symbolic link")]
    NotASymlink(String),
    #[error("{path}: file of {size} bytes is larger than the limit of {limit}")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("too many levels of symbolic links resolving {0}")]
    SymlinkLoop(String),
    #[error("corrupt {fs} filesystem: {message}")]
    Corrupt { fs: &'static str, message: String },
    #[error("unsupported {fs} feature: {message}")]
    Unsupported { fs: &'static str, message: String },
    #[error(transparent)]
    Image(#[from] ReadError),
}
