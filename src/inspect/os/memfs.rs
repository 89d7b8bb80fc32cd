//! An in-memory [`FileSystem`] for unit tests of the OS layer's parsers and path walk.
//!
//! The real readers (ext4, vfat) are exercised by the integration tests on images built
//! with mkfs; here we only need a tree with exact control over links and mounts.

use std::collections::BTreeMap;

use crate::inspect::fs::{DirEntry, FileKind, FileSystem, FsError, Metadata};

#[derive(Clone)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(String),
}

/// A tree of files, directories and symlinks keyed by absolute path.
#[derive(Clone, Default)]
pub struct MemFs {
    nodes: BTreeMap<String, Node>,
}

impl MemFs {
    pub fn new() -> MemFs {
        let mut fs = MemFs::default();
        fs.nodes.insert("/".into(), Node::Dir);
        fs
    }

    fn add(mut self, path: &str, node: Node) -> MemFs {
        // Create the parents as directories.
        let mut acc = String::new();
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            acc.push('/');
            acc.push_str(c);
            self.nodes.entry(acc.clone()).or_insert(Node::Dir);
        }
        self.nodes.insert(format!("/{}", comps.join("/")), node);
        self
    }

    pub fn dir(self, path: &str) -> MemFs {
        self.add(path, Node::Dir)
    }

    pub fn file(self, path: &str, content: impl AsRef<[u8]>) -> MemFs {
        self.add(path, Node::File(content.as_ref().to_vec()))
    }

    pub fn symlink(self, path: &str, target: &str) -> MemFs {
        self.add(path, Node::Link(target.to_string()))
    }

    fn get(&self, path: &str) -> Result<&Node, FsError> {
        // The trait promises intermediate components are real directories.
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut acc = String::new();
        for (i, c) in comps.iter().enumerate() {
            acc.push('/');
            acc.push_str(c);
            match self.nodes.get(&acc) {
                None => return Err(FsError::NotFound(path.to_string())),
                Some(Node::Dir) => {}
                Some(_) if i + 1 < comps.len() => {
                    return Err(FsError::NotADirectory(path.to_string()))
                }
                Some(_) => {}
            }
        }
        let key = if acc.is_empty() { "/".to_string() } else { acc };
        self.nodes
            .get(&key)
            .ok_or_else(|| FsError::NotFound(path.to_string()))
    }
}

impl FileSystem for MemFs {
    fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let (kind, size) = match self.get(path)? {
            Node::Dir => (FileKind::Dir, 0),
            Node::File(b) => (FileKind::File, b.len() as u64),
            Node::Link(t) => (FileKind::Symlink, t.len() as u64),
        };
        Ok(Metadata {
            kind,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            times: Default::default(),
        })
    }

    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        match self.get(path)? {
            Node::Dir => {}
            _ => return Err(FsError::NotADirectory(path.to_string())),
        }
        let prefix = if path == "/" || path.is_empty() {
            "/".to_string()
        } else {
            format!("{}/", path.trim_end_matches('/'))
        };
        let mut out = Vec::new();
        for (k, v) in self.nodes.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            if rest.is_empty() || rest.contains('/') {
                continue;
            }
            let kind = match v {
                Node::Dir => FileKind::Dir,
                Node::File(_) => FileKind::File,
                Node::Link(_) => FileKind::Symlink,
            };
            out.push(DirEntry {
                name: rest.to_string(),
                kind,
            });
        }
        Ok(out)
    }

    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        match self.get(path)? {
            Node::File(b) if b.len() as u64 > limit => Err(FsError::TooLarge {
                path: path.to_string(),
                size: b.len() as u64,
                limit,
            }),
            Node::File(b) => Ok(b.clone()),
            Node::Dir => Err(FsError::IsADirectory(path.to_string())),
            Node::Link(_) => Err(FsError::Corrupt {
                fs: "memfs",
                message: format!("{path} is a link"),
            }),
        }
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        match self.get(path)? {
            Node::Link(t) => Ok(t.clone()),
            _ => Err(FsError::NotASymlink(path.to_string())),
        }
    }
}
