//! Errors of the render layer.

use std::path::PathBuf;

/// Why a `--templates-dir` could not be loaded at all. A template that fails to
/// compile is not one of these: it is reported at render time (json fallback with
/// `x-guestkit-render-error`), so a bad override never stops a worker.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read templates directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("templates directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("template {path} is not UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("template {path} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("templates directory {path} holds more than {limit} files or is nested deeper than {depth} levels")]
    TooMany {
        path: PathBuf,
        limit: usize,
        depth: usize,
    },
}
