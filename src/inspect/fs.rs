//! Filesystem layer: probing superblocks, and reading files from the ones we support.

pub mod btrfs;
mod error;
pub mod ext4;
pub mod ntfs;
pub mod probe;
pub mod vfat;
pub mod xfs;

pub use error::FsError;

/// What a directory entry or inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// The inode facts the OS layer needs (permissions for the security checks, size for
/// bounding reads, times for what changed when).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits and set-id/sticky bits (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub times: Times,
}

/// An inode's times as the filesystem stores them; `None` where a reader does not
/// decode one (FAT and NTFS today) or the format has none (ext4-view gives no ctime).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// Last access.
    pub atime: Option<Timestamp>,
    /// Last change of the content.
    pub mtime: Option<Timestamp>,
    /// Last change of the inode (owner, mode, links, content).
    pub ctime: Option<Timestamp>,
}

/// A point in time: seconds since 1970-01-01 UTC (negative before) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nsecs: u32,
}

/// One name in a directory (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: FileKind,
}

/// Most entries one directory listing returns; a hostile directory cannot grow a listing
/// past this.
pub const MAX_DIR_ENTRIES: usize = 100_000;

/// Read access to one filesystem, by absolute path inside it (`/etc/passwd`).
///
/// Paths are normalised by the caller (the OS layer's guest view resolves `..` and
/// symlinks itself, across mounts), so implementations never follow a symlink in the
/// last component; intermediate components are real directories.
pub trait FileSystem: Send + Sync {
    /// Like lstat(2): the final component is not followed.
    fn metadata(&self, path: &str) -> Result<Metadata, FsError>;
    /// Entries of a directory, at most [`MAX_DIR_ENTRIES`].
    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError>;
    /// Whole content of a regular file; [`FsError::TooLarge`] when it is above `limit`.
    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError>;
    /// Target of a symbolic link, as stored.
    fn read_link(&self, path: &str) -> Result<String, FsError>;
}
