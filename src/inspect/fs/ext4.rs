//! ext2/ext3/ext4 file access, through the ext4-view crate.
//!
//! ext4-view does the on-disk work (extents and block maps, htree directories, journal
//! replay in memory, metadata checksums); this module adds what a hostile image needs on
//! top of it: superblock bounds checked before loading ([`superblock`]), sizes checked
//! before every allocation, no symlink ever followed inside ext4-view, a panic in the
//! crate turned into an error instead of a dead worker, a timeout ([`worker`]), every
//! extent tree ext4-view would walk (of a file, of each directory on a path, of a long
//! symlink) checked first ([`extent_check`], [`dir_scan`]), and at most [`MAX_LIVE`]
//! reader threads per process ([`live`]).
//!
//! A journal that needs recovery is replayed in memory; one ext4-view cannot replay
//! (it knows only checksummed v3 journals) is skipped like `mount -o noload`, with a
//! warning ([`Ext4Fs::warnings`]).
//!
//! Known limits of ext4-view 1.0 that this module cannot fix: it refuses `inline_data`,
//! `meta_bg`, `largedir`, `mmp`, an external journal and filesystems without the
//! `filetype` feature (all reported as [`FsError::Unsupported`]); it reads unwritten
//! (preallocated) extents as data instead of zeros; its replay does not wrap around the
//! end of the journal.

mod dir_scan;
mod error_map;
mod extent_check;
mod live;
mod reader;
mod superblock;
mod worker;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::{DirEntry, FileSystem, FsError, Metadata};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;
use error_map::{corrupt, unsupported};
pub use live::MAX_LIVE;
use worker::{Job, Shared, Worker};

/// How long one operation may take before the filesystem is given up. Nothing on a sane
/// image comes near it; it stops a job from hanging on a loop inside ext4-view that
/// never touches the disk (and so never hits the read budget).
const OP_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest path accepted, as on Linux.
const MAX_PATH_BYTES: usize = 4096;

/// A read-only ext2/3/4 filesystem.
///
/// A handle to the thread that owns the loaded filesystem (see [`worker`]): cheap to
/// share between threads, with calls served one at a time. The thread is one of at
/// most [`MAX_LIVE`] per process (see [`live`]): a filesystem unused for a while is
/// closed and loaded again when next used.
pub struct Ext4Fs {
    warnings: Vec<String>,
    src: Arc<dyn ReadAt>,
    block_size: u64,
    replays_journal: bool,
    /// Kept across reloads: a filesystem that failed once stays failed.
    shared: Arc<Shared>,
    /// The running thread's job queue, `None` while closed.
    slot: Arc<live::Slot>,
}

impl Ext4Fs {
    /// Checks the superblock, then loads the filesystem (group descriptors, journal
    /// replay) on its own thread.
    pub fn open(src: Arc<dyn ReadAt>) -> Result<Ext4Fs, FsError> {
        let geometry = superblock::check(src.as_ref())?;
        let mut fs = Ext4Fs {
            warnings: Vec::new(),
            src,
            block_size: geometry.block_size,
            replays_journal: geometry.replays_journal,
            shared: Arc::new(Shared::default()),
            slot: Arc::new(live::Slot::default()),
        };
        let (running, warnings) = fs.start()?;
        fs.warnings = warnings;
        *fs.lock_slot() = Some(running);
        live::touch(&fs.slot);
        Ok(fs)
    }

    /// What the report should mention about this filesystem (a journal that could not
    /// be replayed).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Starts a thread that loads the filesystem; returns it once loaded.
    fn start(&self) -> Result<(live::Running, Vec<String>), FsError> {
        live::reserve();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (loaded_tx, loaded_rx) = mpsc::sync_channel(1);
        let (src, shared) = (self.src.clone(), self.shared.clone());
        let (block_size, replays_journal) = (self.block_size, self.replays_journal);
        let thread = std::thread::Builder::new()
            .name("ext4-reader".to_string())
            .spawn(move || worker::run(src, block_size, replays_journal, shared, loaded_tx, job_rx))
            .map_err(|source| {
                // Out of threads or memory (the inspection's address-space limit): the
                // job fails with `resource_limit`, it does not lose this filesystem.
                if crate::inspect::resources::is_exhaustion(&source) {
                    crate::inspect::resources::record(
                        "cannot start an ext4 reader thread",
                        &source,
                    );
                }
                FsError::Image(ReadError::Io {
                    path: "<ext4 reader thread>".into(),
                    source,
                })
            })?;
        let running = live::Running {
            jobs,
            thread,
            shared: self.shared.clone(),
        };
        match loaded_rx.recv_timeout(OP_TIMEOUT) {
            Ok(result) => Ok((running, result?)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(self.give_up("loading the filesystem".to_string()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }

    fn lock_slot(&self) -> std::sync::MutexGuard<'_, Option<live::Running>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running thread's job queue, loading the filesystem again if it was closed.
    fn jobs(&self) -> Result<mpsc::Sender<Job>, FsError> {
        let jobs = {
            let mut slot = self.lock_slot();
            match slot.as_ref() {
                Some(running) => running.jobs.clone(),
                None => {
                    let (running, _) = self.start()?;
                    let jobs = running.jobs.clone();
                    *slot = Some(running);
                    jobs
                }
            }
        };
        live::touch(&self.slot);
        Ok(jobs)
    }

    /// Runs `op` on the owner thread and waits for its answer.
    fn call<T, F>(&self, path: &str, op: F) -> Result<T, FsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Worker, &str) -> Result<T, FsError> + Send + 'static,
    {
        if let Some(why) = self.shared.failure() {
            return Err(corrupt(why));
        }
        let path = normalize(path)?;
        let shown = path.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        let shared = self.shared.clone();
        let job: Job = Box::new(move |w: &mut Worker| {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(w, &path)));
            let result = caught.unwrap_or_else(|panic| {
                let why = worker::panic_message(&format!("reading {path}"), panic);
                shared.fail(why.clone());
                Err(corrupt(why))
            });
            let _ = tx.send(result);
        });
        self.jobs()?.send(job).map_err(|_| self.stopped())?;
        match rx.recv_timeout(OP_TIMEOUT) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(self.give_up(format!("reading {shown}"))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }

    /// Marks the filesystem unusable after a timeout; the owner thread is left to
    /// finish (its reads now fail) and exits on its own.
    fn give_up(&self, during: String) -> FsError {
        let why = format!(
            "ext4 reader gave no answer within {}s while {during} (looping on hostile metadata?)",
            OP_TIMEOUT.as_secs()
        );
        self.shared.fail(why.clone());
        corrupt(why)
    }

    fn stopped(&self) -> FsError {
        corrupt(
            self.shared
                .failure()
                .unwrap_or_else(|| "ext4 reader thread stopped".to_string()),
        )
    }
}

impl FileSystem for Ext4Fs {
    fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        self.call(path, |w, p| w.metadata(p))
    }

    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        self.call(path, |w, p| w.read_dir(p))
    }

    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        self.call(path, move |w, p| w.read_file(p, limit))
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        self.call(path, |w, p| w.read_link(p))
    }
}

/// Makes `path` absolute and canonical (`/a/b`): no empty, `.` or `..` components, so
/// every proper prefix is a directory the worker can check.
fn normalize(path: &str) -> Result<String, FsError> {
    if !path.starts_with('/') {
        return Err(FsError::NotFound(path.to_string()));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(unsupported(format!(
            "path of {} bytes is longer than {MAX_PATH_BYTES}",
            path.len()
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    let mut out = String::with_capacity(path.len());
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("//etc/./ssh//").unwrap(), "/etc/ssh");
        assert_eq!(normalize("/a/../../b").unwrap(), "/b");
        assert!(matches!(normalize("etc"), Err(FsError::NotFound(_))));
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Ext4Fs>();
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for len in [0usize, 1500, 4096, 65536] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            match Ext4Fs::open(Arc::new(MemSource(bytes))) {
                Err(FsError::Corrupt { .. } | FsError::Image(_)) => {}
                Err(other) => panic!("unexpected error for {len} bytes: {other}"),
                Ok(_) => panic!("garbage of {len} bytes opened as ext4"),
            }
        }
    }
}
