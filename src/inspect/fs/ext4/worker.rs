//! The thread that owns one loaded ext4-view filesystem.
//!
//! `ext4_view::Ext4` is built on `Rc` and `RefCell`, so it is neither `Send` nor `Sync`
//! and cannot sit inside a [`FileSystem`](crate::inspect::fs::FileSystem). It lives on a
//! thread of its own instead, with its block cache, and the `Ext4Fs` handle sends it
//! jobs. The thread ends when the handle is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use ext4_view::{DirEntry as RawDirEntry, Ext4, Ext4Error, Metadata as RawMetadata};

use super::dir_scan;
use super::error_map::{corrupt, map_error, unsupported};
use super::extent_check;
use super::reader::SourceReader;
use super::superblock;
use crate::inspect::fs::{
    DirEntry, FileKind, FsError, Metadata, Times, Timestamp, MAX_DIR_ENTRIES,
};
use crate::inspect::source::ReadAt;

/// Largest directory we list or search. ext4-view walks a directory block by block
/// through its cache, so a huge (or hostile) directory size is bounded here: 256 MiB
/// holds millions of entries, more than any real directory.
pub(super) const MAX_DIR_BYTES: u64 = 256 << 20;

/// Longest symlink target we read (Linux's PATH_MAX); ext4-view would otherwise
/// allocate the link's full claimed size.
pub(super) const MAX_LINK_BYTES: u64 = 4096;

/// Directories already checked, kept below this many so memory stays bounded.
const MAX_CHECKED_DIRS: usize = 65_536;

/// The root directory's inode number, fixed by the format.
const ROOT_INODE: u64 = 2;

/// Longest symlink target ext4 stores inside the inode; a longer one has data blocks
/// (and an extent tree ext4-view walks).
const MAX_INLINE_LINK_BYTES: u64 = 59;

/// One unit of work run on the owner thread.
pub(super) type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// State shared between the handle and its thread.
#[derive(Default)]
pub(super) struct Shared {
    /// Tells the reader to fail every read from now on.
    pub abandoned: Arc<AtomicBool>,
    /// Why the filesystem became unusable (a panic in ext4-view, a timeout), if it did.
    pub failure: Mutex<Option<String>>,
}

impl Shared {
    pub(super) fn fail(&self, why: String) {
        self.abandoned.store(true, Ordering::Relaxed);
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert(why);
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The loaded filesystem and what we learned about its directories.
pub(super) struct Worker {
    fs: Ext4,
    /// The device, for our own checks of what ext4-view would walk blindly.
    src: Arc<dyn ReadAt>,
    block_size: u64,
    /// Directories known to be real directories of a bounded size, with a checked
    /// extent tree, so ext4-view never follows a symlink, walks an oversized directory
    /// or loops in a hostile tree while resolving a path. With the inode number, when
    /// our own scan found it (see [`dir_scan`]).
    checked_dirs: HashMap<String, Option<u64>>,
    /// Name to inode number in the directories [`dir_scan`] read, by directory.
    inode_names: HashMap<String, HashMap<Vec<u8>, u64>>,
    named_entries: usize,
    /// Entries of the directories the caller listed, by directory then name, so the
    /// usual walk (list, then stat each entry) reads each inode directly instead of
    /// scanning the directory again per entry (ext4-view's linear lookups are costly).
    listings: HashMap<String, HashMap<String, RawDirEntry>>,
    listed_entries: usize,
}

/// Most entries kept in `listings` (an ext4-view entry is about 300 bytes).
const MAX_LISTED_ENTRIES: usize = 16_384;

/// Loads the filesystem on the current thread, reports the outcome (with warnings) on
/// `loaded`, then runs jobs until the handle goes away or a job fails the filesystem.
pub(super) fn run(
    src: Arc<dyn ReadAt>,
    block_size: u64,
    replays_journal: bool,
    shared: Arc<Shared>,
    loaded: mpsc::SyncSender<Result<Vec<String>, FsError>>,
    jobs: mpsc::Receiver<Job>,
) {
    let (fs, warnings) = match load(&src, replays_journal, &shared) {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = loaded.send(Err(e));
            return;
        }
    };
    let mut worker = Worker {
        fs,
        src,
        block_size,
        checked_dirs: HashMap::new(),
        inode_names: HashMap::new(),
        named_entries: 0,
        listings: HashMap::new(),
        listed_entries: 0,
    };
    let root = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.check_dir("/")));
    let root = root.unwrap_or_else(|panic| {
        let why = panic_message("reading the root directory", panic);
        shared.fail(why.clone());
        Err(corrupt(why))
    });
    if let Err(e) = root {
        let _ = loaded.send(Err(e));
        return;
    }
    if loaded.send(Ok(warnings)).is_err() {
        return;
    }
    for job in jobs {
        job(&mut worker);
        if shared.failure().is_some() {
            // After a panic ext4-view's cache may be half-updated: stop using it.
            return;
        }
    }
}

/// Loads with journal replay; when ext4-view cannot replay the journal (it only knows
/// checksummed v3 journals, for one), loads again without it, like `mount -o noload`,
/// and says so in a warning.
fn load(
    src: &Arc<dyn ReadAt>,
    replays_journal: bool,
    shared: &Shared,
) -> Result<(Ext4, Vec<String>), FsError> {
    let attempt = |superblock: Option<Vec<u8>>| {
        let reader = SourceReader::new(src.clone(), shared.abandoned.clone(), superblock);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Ext4::load(Box::new(reader))
        }))
        .map_err(|panic| {
            let why = panic_message("loading the filesystem", panic);
            shared.fail(why.clone());
            corrupt(why)
        })
    };
    let first = match attempt(None)? {
        Ok(fs) => return Ok((fs, Vec::new())),
        Err(e) => e,
    };
    let journal_trouble = matches!(first, Ext4Error::Incompatible(_) | Ext4Error::Corrupt(_));
    if !(replays_journal && journal_trouble) {
        return Err(map_error(first, ""));
    }
    let patched = superblock::without_recovery(src.as_ref())?;
    match attempt(Some(patched))? {
        Ok(fs) => {
            let warning = format!(
                "ext4 journal not replayed ({first}): files show the last checkpointed state"
            );
            tracing::warn!("{warning}");
            Ok((fs, vec![warning]))
        }
        // The trouble was not the journal: report the first error.
        Err(_) => Err(map_error(first, "")),
    }
}

/// Describes a caught panic for the error the caller gets.
pub(super) fn panic_message(during: &str, panic: Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("ext4-view panicked while {during}: {text}")
}

impl Worker {
    /// lstat(2): the final component is not followed.
    pub(super) fn metadata(&mut self, path: &str) -> Result<Metadata, FsError> {
        Ok(convert(&self.lstat(path)?))
    }

    pub(super) fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        self.check_dir(path)?;
        let iter = self.fs.read_dir(path).map_err(|e| map_error(e, path))?;
        let mut entries = Vec::new();
        let mut by_name = HashMap::new();
        for entry in iter {
            let entry = entry.map_err(|e| map_error(e, path))?;
            let raw = entry.file_name();
            let name = raw.as_ref();
            if name == b"." || name == b".." {
                continue;
            }
            if entries.len() == MAX_DIR_ENTRIES {
                tracing::warn!(
                    path,
                    limit = MAX_DIR_ENTRIES,
                    "ext4 directory listing truncated"
                );
                break;
            }
            let kind = entry.file_type().map_err(|e| map_error(e, path))?;
            let shown = String::from_utf8_lossy(name).into_owned();
            // Only names a path can reach again are remembered.
            if by_name.len() < MAX_LISTED_ENTRIES && std::str::from_utf8(name).is_ok() {
                by_name.insert(shown.clone(), entry.clone());
            }
            entries.push(DirEntry {
                name: shown,
                kind: kind_of(kind),
            });
        }
        if by_name.len() == entries.len() {
            self.remember_listing(path, by_name);
        }
        Ok(entries)
    }

    fn remember_listing(&mut self, dir: &str, by_name: HashMap<String, RawDirEntry>) {
        if self.listed_entries + by_name.len() > MAX_LISTED_ENTRIES {
            self.listings.clear();
            self.listed_entries = 0;
        }
        self.listed_entries += by_name.len();
        if let Some(old) = self.listings.insert(dir.to_string(), by_name) {
            self.listed_entries -= old.len();
        }
    }

    pub(super) fn read_file(&mut self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let meta = self.lstat(path)?;
        match kind_of(meta.file_type()) {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsADirectory(path.to_string())),
            // Like open(O_NOFOLLOW): the caller resolves links itself.
            FileKind::Symlink => return Err(FsError::SymlinkLoop(path.to_string())),
            FileKind::Other => {
                return Err(unsupported(format!("{path}: is a device, fifo or socket")))
            }
        }
        let size = meta.len();
        if size > limit {
            return Err(FsError::TooLarge {
                path: path.to_string(),
                size,
                limit,
            });
        }
        let mut file = self.fs.open(path).map_err(|e| map_error(e, path))?;
        // ext4-view would walk a looping or zero-length extent tree for ever from its
        // cache: check the tree ourselves first (see `extent_check`).
        let inode = extent_check::inode_of(&file)
            .ok_or_else(|| corrupt(format!("{path}: ext4-view did not show the inode")))?;
        extent_check::check(self.src.as_ref(), self.block_size, inode)?;
        if file.metadata().len() != size {
            return Err(corrupt(format!("{path}: inode changed between lookups")));
        }
        let len = usize::try_from(size).map_err(|_| FsError::TooLarge {
            path: path.to_string(),
            size,
            limit,
        })?;
        let mut data = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = file
                .read_bytes(&mut data[filled..])
                .map_err(|e| map_error(e, path))?;
            if n == 0 {
                return Err(corrupt(format!(
                    "{path}: data ends at byte {filled} of {size}"
                )));
            }
            filled += n;
        }
        Ok(data)
    }

    pub(super) fn read_link(&mut self, path: &str) -> Result<String, FsError> {
        let meta = self.lstat(path)?;
        if !meta.is_symlink() {
            return Err(FsError::NotASymlink(path.to_string()));
        }
        if meta.len() > MAX_LINK_BYTES {
            return Err(corrupt(format!(
                "{path}: symlink target of {} bytes is longer than {MAX_LINK_BYTES}",
                meta.len()
            )));
        }
        if meta.len() > MAX_INLINE_LINK_BYTES {
            // Stored in blocks: check the link's extent tree before ext4-view reads it.
            let (dir, name) = split(path);
            if let Some(inode) = self.inode_in(dir, name)? {
                extent_check::check(self.src.as_ref(), self.block_size, inode)?;
            }
        }
        let target = self.fs.read_link(path).map_err(|e| map_error(e, path))?;
        Ok(String::from_utf8_lossy(target.as_ref()).into_owned())
    }

    /// Metadata of `path` itself, after making sure every parent is a checked directory.
    fn lstat(&mut self, path: &str) -> Result<RawMetadata, FsError> {
        self.check_parents(path)?;
        if let Some((dir, name)) = path.rsplit_once('/').filter(|(_, name)| !name.is_empty()) {
            let dir = if dir.is_empty() { "/" } else { dir };
            if let Some(listing) = self.listings.get(dir) {
                let entry = listing
                    .get(name)
                    .ok_or_else(|| FsError::NotFound(path.to_string()))?;
                return entry.metadata().map_err(|e| map_error(e, path));
            }
        }
        self.fs
            .symlink_metadata(path)
            .map_err(|e| map_error(e, path))
    }

    /// Checks each proper prefix of `path` (already normalised, absolute).
    fn check_parents(&mut self, path: &str) -> Result<(), FsError> {
        for (i, _) in path.match_indices('/').skip(1) {
            self.check_dir(&path[..i])?;
        }
        Ok(())
    }

    /// Makes sure `dir` is a real directory (not a symlink) of a bounded size whose
    /// extent tree is a tree.
    fn check_dir(&mut self, dir: &str) -> Result<(), FsError> {
        if self.checked_dirs.contains_key(dir) {
            return Ok(());
        }
        // Parents of `dir` are checked first, so resolving `dir` follows no symlink.
        self.check_parents(dir)?;
        // ext4-view reads the inode here (through the checked parent), not its tree.
        let meta = self
            .fs
            .symlink_metadata(dir)
            .map_err(|e| map_error(e, dir))?;
        if !meta.is_dir() {
            return Err(FsError::NotADirectory(dir.to_string()));
        }
        if meta.len() > MAX_DIR_BYTES {
            return Err(corrupt(format!(
                "{dir}: directory of {} bytes is larger than {MAX_DIR_BYTES}",
                meta.len()
            )));
        }
        let inode = if dir == "/" {
            Some(ROOT_INODE)
        } else {
            let (parent, name) = split(dir);
            self.inode_in(parent, name)?
        };
        if let Some(inode) = inode {
            extent_check::check(self.src.as_ref(), self.block_size, inode)?;
        }
        if self.checked_dirs.len() >= MAX_CHECKED_DIRS {
            self.checked_dirs.clear();
        }
        self.checked_dirs.insert(dir.to_string(), inode);
        Ok(())
    }

    /// The inode number of `name` in the checked directory `dir`, from our own scan of
    /// it (remembered per directory); `None` when unknown.
    fn inode_in(&mut self, dir: &str, name: &str) -> Result<Option<u64>, FsError> {
        let Some(Some(dir_inode)) = self.checked_dirs.get(dir).copied() else {
            return Ok(None);
        };
        if let Some(names) = self.inode_names.get(dir) {
            return Ok(names.get(name.as_bytes()).copied());
        }
        let (mut names, mut wanted, mut complete) = (HashMap::new(), None, true);
        dir_scan::scan(
            self.src.as_ref(),
            self.block_size,
            dir_inode,
            MAX_DIR_BYTES,
            &mut |entry: &[u8], inode: u64| {
                if wanted.is_none() && entry == name.as_bytes() {
                    wanted = Some(inode);
                }
                if names.len() < MAX_LISTED_ENTRIES {
                    names.entry(entry.to_vec()).or_insert(inode);
                } else {
                    complete = false;
                }
                true
            },
        )?;
        // A directory too large to remember is scanned again for each name.
        if complete {
            if self.named_entries + names.len() > MAX_LISTED_ENTRIES {
                self.inode_names.clear();
                self.named_entries = 0;
            }
            self.named_entries += names.len();
            self.inode_names.insert(dir.to_string(), names);
        }
        Ok(wanted)
    }
}

/// `/a/b` as (`/a`, `b`); `/b` as (`/`, `b`). `path` is normalised and not `/`.
fn split(path: &str) -> (&str, &str) {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    (if dir.is_empty() { "/" } else { dir }, name)
}

fn kind_of(t: ext4_view::FileType) -> FileKind {
    if t.is_regular_file() {
        FileKind::File
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}

fn convert(m: &RawMetadata) -> Metadata {
    Metadata {
        kind: kind_of(m.file_type()),
        size: m.len(),
        mode: u32::from(m.mode()),
        uid: m.uid(),
        gid: m.gid(),
        times: Times {
            atime: Some(timestamp(m.accessed())),
            mtime: Some(timestamp(m.modified())),
            ctime: None,
        },
    }
}

fn timestamp(t: ext4_view::Timestamp) -> Timestamp {
    Timestamp {
        secs: t.seconds(),
        nsecs: t.nanoseconds(),
    }
}
