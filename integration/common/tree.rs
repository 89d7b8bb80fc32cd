//! The tree oracle of the filesystem tests: a source directory and our reading of the
//! filesystem made from it, as the same [`Tree`], compared path by path.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use guestkit_worker::inspect::fs::{FileKind, FileSystem};
use guestkit_worker::inspect::image::RawImage;
use guestkit_worker::inspect::source::ReadAt;

/// Which inode facts a walk records (a filesystem that cannot store one leaves it out).
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// Permission and set-id bits.
    pub mode: bool,
    /// uid and gid.
    pub owner: bool,
    /// Size of files and symlinks.
    pub size: bool,
    /// Number of entries of each directory.
    pub dir_entries: bool,
    /// Modification time in whole seconds (what `mkfs.btrfs --rootdir` copies).
    pub mtime: bool,
}

impl Facts {
    pub const NONE: Facts = Facts {
        mode: false,
        owner: false,
        size: false,
        dir_entries: false,
        mtime: false,
    };
    pub const MODE: Facts = Facts {
        mode: true,
        ..Facts::NONE
    };
    pub const MODE_OWNER: Facts = Facts {
        owner: true,
        ..Facts::MODE
    };
    pub const ALL: Facts = Facts {
        size: true,
        dir_entries: true,
        ..Facts::MODE_OWNER
    };
}

/// The recorded inode facts of one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    pub size: Option<u64>,
    pub mtime: Option<i64>,
}

impl Meta {
    fn new(facts: Facts, mode: u32, (uid, gid): (u32, u32), size: u64, mtime: i64) -> Meta {
        Meta {
            mode: facts.mode.then_some(mode),
            owner: facts.owner.then_some((uid, gid)),
            size: facts.size.then_some(size),
            mtime: facts.mtime.then_some(mtime),
        }
    }

    /// A directory's size is layout-specific: never compared here.
    fn dir(mut self) -> Meta {
        self.size = None;
        self
    }
}

/// What one path is, as seen by either side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { meta: Meta, entries: Option<usize> },
    File { meta: Meta, data: Vec<u8> },
    Symlink { target: String },
}

/// Path (starting with `/`) -> node.
pub type Tree = BTreeMap<String, Node>;

/// The source directory below `root` (from `rel` on) as a [`Tree`], from `lstat`.
pub fn walk_source(root: &Path, rel: &str, facts: Facts, out: &mut Tree) {
    for entry in std::fs::read_dir(root.join(rel.trim_start_matches('/'))).unwrap() {
        let entry = entry.unwrap();
        let path = format!("{rel}/{}", entry.file_name().to_str().unwrap());
        let m = std::fs::symlink_metadata(entry.path()).unwrap();
        let meta = Meta::new(
            facts,
            m.mode() & 0o7777,
            (m.uid(), m.gid()),
            m.size(),
            m.mtime(),
        );
        let node = if m.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            Node::Symlink {
                target: target.to_str().unwrap().to_string(),
            }
        } else if m.is_dir() {
            walk_source(root, &path, facts, out);
            let entries = facts
                .dir_entries
                .then(|| std::fs::read_dir(entry.path()).unwrap().count());
            Node::Dir {
                meta: meta.dir(),
                entries,
            }
        } else {
            Node::File {
                meta,
                data: std::fs::read(entry.path()).unwrap(),
            }
        };
        out.insert(path, node);
    }
}

/// Our reading of `fs` below `dir` as a [`Tree`], leaving out the paths in `skip` and
/// checking read_dir's kinds and sizes against metadata. A symlink whose target cannot
/// be read is recorded as `<error: …>`, for the caller to judge.
pub fn walk_ours(fs: &dyn FileSystem, dir: &str, facts: Facts, skip: &[&str], out: &mut Tree) {
    for entry in fs.read_dir(if dir.is_empty() { "/" } else { dir }).unwrap() {
        let path = format!("{dir}/{}", entry.name);
        if skip.contains(&path.as_str()) {
            continue;
        }
        let m = fs.metadata(&path).unwrap();
        assert_eq!(m.kind, entry.kind, "{path}: kind from read_dir vs metadata");
        let mtime = match (facts.mtime, m.times.mtime) {
            (false, _) => 0,
            (true, Some(t)) => {
                assert!(t.nsecs < 1_000_000_000, "{path}: {t:?}");
                t.secs
            }
            (true, None) => panic!("{path}: no mtime"),
        };
        let meta = Meta::new(facts, m.mode, (m.uid, m.gid), m.size, mtime);
        let node = match m.kind {
            FileKind::Dir => {
                walk_ours(fs, &path, facts, skip, out);
                let entries = facts.dir_entries.then(|| fs.read_dir(&path).unwrap().len());
                Node::Dir {
                    meta: meta.dir(),
                    entries,
                }
            }
            FileKind::File => {
                let data = fs.read_file(&path, 1 << 30).unwrap();
                assert_eq!(data.len() as u64, m.size, "{path}: size");
                Node::File { meta, data }
            }
            FileKind::Symlink => match fs.read_link(&path) {
                Ok(target) => {
                    assert_eq!(target.len() as u64, m.size, "{path}: symlink size");
                    Node::Symlink { target }
                }
                Err(e) => Node::Symlink {
                    target: format!("<error: {e}>"),
                },
            },
            FileKind::Other => panic!("{path}: unexpected special file"),
        };
        out.insert(path, node);
    }
}

/// Compares two trees with a readable report of the first differences.
pub fn assert_same(label: &str, ours: &Tree, source: &Tree) {
    let only_ours: Vec<_> = ours.keys().filter(|k| !source.contains_key(*k)).collect();
    let only_source: Vec<_> = source.keys().filter(|k| !ours.contains_key(*k)).collect();
    assert!(
        only_ours.is_empty() && only_source.is_empty(),
        "{label}: paths only in our reading: {only_ours:?}; only in the source: {:?}",
        only_source.iter().take(10).collect::<Vec<_>>()
    );
    for (path, want) in source {
        let got = &ours[path];
        if got != want {
            let short = |n: &Node| match n {
                Node::File { meta, data } => format!("file {meta:?} {} bytes", data.len()),
                other => format!("{other:?}"),
            };
            panic!(
                "{label}: {path} differs: ours {} vs source {}",
                short(got),
                short(want)
            );
        }
    }
}

/// A raw image file as a byte source.
pub fn open_raw(path: &Path) -> Arc<dyn ReadAt> {
    Arc::new(RawImage::open(path).unwrap())
}
