//! Read-only btrfs file access, subvolumes included.
//!
//! Our own reader rather than a crate: the young btrfs crates want a file path or the
//! whole image, have no subvolume API, or do not bound what they read. Layout, one
//! on-disk structure per file: [`superblock`] (and its mirrors), [`chunk`] (logical to
//! physical mapping for every RAID profile), [`node`] (tree blocks), [`volume`] (devices,
//! verified block cache, key-range search), [`items`] (inode, directory, extent, root
//! items), [`compression`] and [`lzo`].
//!
//! One [`BtrfsFs`] is one subvolume seen as a mount of it would show it: nested
//! subvolumes appear as directories and are entered. Checksums: tree blocks and
//! superblocks are verified when they use CRC32C (the default); data checksums are not.
//! Hostile input: every tree walk goes strictly down in level and has a visit cap,
//! every size read from disk is bounded before allocation.

mod chunk;
mod compression;
mod items;
mod key;
mod lzo;
mod node;
mod superblock;
mod volume;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{DirEntry, FileKind, FileSystem, FsError, Metadata, MAX_DIR_ENTRIES};
use crate::inspect::source::ReadAt;
use compression::{decompress_extent, MAX_COMPRESSED_EXTENT};
use items::{
    dir_entries, inode_ref_name, name_hash, root_item_tree, Compression, ExtentBody, FileExtent,
    Inode, RootRef, DIR_INDEX, DIR_ITEM, EXTENT_DATA, FIRST_FREE, FS_TREE, INODE_ITEM, INODE_REF,
    LAST_FREE, ROOT_BACKREF, ROOT_ITEM, ROOT_TREE_DIR,
};
use key::Key;
use volume::{Tree, Volume};

/// Longest path accepted.
const MAX_PATH_BYTES: usize = 4096;
/// Deepest subvolume nesting or directory chain followed when naming a subvolume.
const MAX_DEPTH: usize = 256;
/// Most subvolumes listed (snapshots included).
const MAX_SUBVOLUMES: usize = 10_000;

pub(crate) fn corrupt(message: impl Into<String>) -> FsError {
    FsError::Corrupt {
        fs: "btrfs",
        message: message.into(),
    }
}

/// A subvolume: its id and its path from the top-level subvolume (`root`, `home`,
/// `@/.snapshots/1/snapshot`), as `btrfs subvolume list` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvolume {
    pub id: u64,
    pub path: String,
}

/// What all views of one filesystem share.
struct Shared {
    vol: Volume,
    default_subvol: u64,
    /// FS tree roots by subvolume id.
    trees: Mutex<HashMap<u64, Tree>>,
}

/// One subvolume of a btrfs filesystem, read-only.
#[derive(Clone)]
pub struct BtrfsFs {
    shared: Arc<Shared>,
    subvol: u64,
    warnings: Vec<String>,
}

/// An inode of some subvolume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    tree: u64,
    ino: u64,
}

/// Every subvolume's root directory.
const ROOT_DIR: u64 = FIRST_FREE;

impl BtrfsFs {
    /// Opens the filesystem on `devices` (all members of a multi-device one, or just
    /// one) and shows its default subvolume, the one a mount without options shows.
    pub fn open(devices: &[Arc<dyn ReadAt>]) -> Result<BtrfsFs, FsError> {
        let (vol, warnings) = Volume::open(devices)?;
        let default_subvol = default_subvolume(&vol)?;
        let fs = BtrfsFs {
            shared: Arc::new(Shared {
                vol,
                default_subvol,
                trees: Mutex::new(HashMap::new()),
            }),
            subvol: default_subvol,
            warnings,
        };
        fs.tree(default_subvol)?;
        Ok(fs)
    }

    /// Warnings met while opening (a superblock mirror used, missing devices).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The id of the subvolume this view shows.
    pub fn subvolume_id(&self) -> u64 {
        self.subvol
    }

    /// The subvolume shown when none is asked for.
    pub fn default_subvolume(&self) -> u64 {
        self.shared.default_subvol
    }

    /// The same filesystem showing subvolume `id` at its root.
    pub fn view(&self, id: u64) -> Result<BtrfsFs, FsError> {
        self.tree(id)?;
        Ok(BtrfsFs {
            shared: self.shared.clone(),
            subvol: id,
            warnings: Vec::new(),
        })
    }

    /// Every subvolume but the top-level one, by id, with its path.
    pub fn subvolumes(&self) -> Result<Vec<Subvolume>, FsError> {
        let vol = &self.shared.vol;
        let mut parents: HashMap<u64, (u64, RootRef)> = HashMap::new();
        vol.search(
            vol.root_tree(),
            Key::new(FIRST_FREE, 0, 0),
            Key::new(LAST_FREE, u8::MAX, u64::MAX),
            &mut |k, d| {
                if k.ty == ROOT_BACKREF && parents.len() < MAX_SUBVOLUMES {
                    parents
                        .entry(k.objectid)
                        .or_insert((k.offset, RootRef::parse(d)?));
                }
                Ok(true)
            },
        )?;
        let mut ids: Vec<u64> = parents.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(Subvolume {
                id,
                path: self.subvolume_path(id, &parents)?,
            });
        }
        Ok(out)
    }

    /// Path of subvolume `id` from the top level, following backrefs up to it.
    fn subvolume_path(
        &self,
        id: u64,
        parents: &HashMap<u64, (u64, RootRef)>,
    ) -> Result<String, FsError> {
        let mut parts: Vec<String> = Vec::new();
        let mut cur = id;
        let mut seen = HashSet::new();
        while cur != FS_TREE {
            if !seen.insert(cur) || seen.len() > MAX_DEPTH {
                return Err(corrupt(format!("subvolume {id}: its parents form a loop")));
            }
            let (parent, r) = parents
                .get(&cur)
                .ok_or_else(|| corrupt(format!("subvolume {cur} has no parent reference")))?;
            parts.push(String::from_utf8_lossy(&r.name).into_owned());
            let dir = self.dir_path(*parent, r.dirid)?;
            if !dir.is_empty() {
                parts.push(dir);
            }
            cur = *parent;
        }
        parts.reverse();
        Ok(parts.join("/"))
    }

    /// Path of directory `ino` inside subvolume `tree`, from INODE_REFs ("" for its root).
    fn dir_path(&self, tree: u64, mut ino: u64) -> Result<String, FsError> {
        let t = self.tree(tree)?;
        let mut parts = Vec::new();
        while ino != ROOT_DIR {
            if parts.len() > MAX_DEPTH {
                return Err(corrupt(format!(
                    "directory {ino} of subvolume {tree} is too deep (a loop?)"
                )));
            }
            let mut found = None;
            self.shared.vol.search(
                t,
                Key::new(ino, INODE_REF, 0),
                Key::new(ino, INODE_REF, u64::MAX),
                &mut |k, d| {
                    found = Some((k.offset, inode_ref_name(d)?));
                    Ok(false)
                },
            )?;
            let (parent, name) =
                found.ok_or_else(|| corrupt(format!("directory {ino} has no parent")))?;
            parts.push(String::from_utf8_lossy(&name).into_owned());
            ino = parent;
        }
        parts.reverse();
        Ok(parts.join("/"))
    }

    /// The FS tree of subvolume `id`.
    fn tree(&self, id: u64) -> Result<Tree, FsError> {
        if let Some(t) = self.lock_trees().get(&id) {
            return Ok(*t);
        }
        if id != FS_TREE && !(FIRST_FREE..=LAST_FREE).contains(&id) {
            return Err(corrupt(format!("{id} is not a subvolume id")));
        }
        let vol = &self.shared.vol;
        let mut found = None;
        // The newest root item of the id (snapshots carry their transid as offset).
        vol.search(
            vol.root_tree(),
            Key::new(id, ROOT_ITEM, 0),
            Key::new(id, ROOT_ITEM, u64::MAX),
            &mut |_, d| {
                found = Some(root_item_tree(d)?);
                Ok(true)
            },
        )?;
        let t = found.ok_or_else(|| corrupt(format!("subvolume {id} has no root item")))?;
        let mut trees = self.lock_trees();
        if trees.len() > MAX_SUBVOLUMES {
            trees.clear();
        }
        trees.insert(id, t);
        Ok(t)
    }

    fn lock_trees(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Tree>> {
        self.shared.trees.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn inode(&self, loc: Loc) -> Result<Inode, FsError> {
        let t = self.tree(loc.tree)?;
        let data = self
            .shared
            .vol
            .get(t, Key::new(loc.ino, INODE_ITEM, 0))?
            .ok_or_else(|| {
                corrupt(format!(
                    "inode {} of subvolume {} is missing",
                    loc.ino, loc.tree
                ))
            })?;
        Inode::parse(&data)
    }

    /// Where the entry `name` of directory `dir` leads.
    fn lookup(&self, dir: Loc, name: &str) -> Result<Option<Loc>, FsError> {
        let t = self.tree(dir.tree)?;
        let Some(data) = self
            .shared
            .vol
            .get(t, Key::new(dir.ino, DIR_ITEM, name_hash(name.as_bytes())))?
        else {
            return Ok(None);
        };
        let entry = dir_entries(&data)?
            .into_iter()
            .find(|e| e.name == name.as_bytes());
        entry.map(|e| target(dir, &e.location)).transpose()
    }

    /// Walks `path` from this view's root.
    fn resolve(&self, path: &str) -> Result<(Loc, Inode), FsError> {
        if !path.starts_with('/') {
            return Err(FsError::NotFound(path.to_string()));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(FsError::Unsupported {
                fs: "btrfs",
                message: format!(
                    "path of {} bytes is longer than {MAX_PATH_BYTES}",
                    path.len()
                ),
            });
        }
        let root = Loc {
            tree: self.subvol,
            ino: ROOT_DIR,
        };
        let mut cur = root;
        let mut inode = self.inode(cur)?;
        let mut parents: Vec<(Loc, Inode)> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => continue,
                ".." => {
                    (cur, inode) = parents.pop().unwrap_or((root, inode));
                    if cur == root {
                        inode = self.inode(root)?;
                    }
                    continue;
                }
                _ => {}
            }
            if inode.kind() != FileKind::Dir {
                return Err(FsError::NotADirectory(path.to_string()));
            }
            let next = self
                .lookup(cur, part)?
                .ok_or_else(|| FsError::NotFound(path.to_string()))?;
            let next_inode = self.inode(next)?;
            parents.push((cur, inode));
            cur = next;
            inode = next_inode;
        }
        Ok((cur, inode))
    }

    /// The first `size` bytes of inode `loc`'s data (holes and prealloc as zeros).
    fn read_data(&self, loc: Loc, size: u64) -> Result<Vec<u8>, FsError> {
        let mut out = vec![0u8; size as usize];
        if size == 0 {
            return Ok(out);
        }
        let t = self.tree(loc.tree)?;
        let vol = &self.shared.vol;
        let sectorsize = vol.sb.sectorsize;
        let mut extents = Vec::new();
        vol.search(
            t,
            Key::new(loc.ino, EXTENT_DATA, 0),
            Key::new(loc.ino, EXTENT_DATA, size - 1),
            &mut |k, d| {
                extents.push((k.offset, FileExtent::parse(d)?));
                Ok(true)
            },
        )?;
        for (file_off, ext) in extents {
            let dst_start = file_off as usize;
            match ext.body {
                ExtentBody::Inline(data) => {
                    let bytes = if ext.compression == Compression::None {
                        data
                    } else {
                        decompress_extent(ext.compression, &data, ext.ram_bytes, sectorsize)?
                    };
                    let n = bytes.len().min(out.len() - dst_start);
                    out[dst_start..dst_start + n].copy_from_slice(&bytes[..n]);
                }
                ExtentBody::Prealloc { .. } => {}
                ExtentBody::Regular { disk_bytenr: 0, .. } => {}
                ExtentBody::Regular {
                    disk_bytenr,
                    disk_num_bytes,
                    offset,
                    num_bytes,
                } => {
                    let n = num_bytes.min(size - file_off) as usize;
                    let dst = &mut out[dst_start..dst_start + n];
                    if ext.compression == Compression::None {
                        let at = disk_bytenr
                            .checked_add(offset)
                            .ok_or_else(|| corrupt("extent address overflows"))?;
                        vol.read_logical(at, dst)?;
                        continue;
                    }
                    if disk_num_bytes > MAX_COMPRESSED_EXTENT {
                        return Err(corrupt(format!(
                            "compressed extent of {disk_num_bytes} bytes on disk"
                        )));
                    }
                    let mut packed = vec![0u8; disk_num_bytes as usize];
                    vol.read_logical(disk_bytenr, &mut packed)?;
                    let plain =
                        decompress_extent(ext.compression, &packed, ext.ram_bytes, sectorsize)?;
                    let src = usize::try_from(offset)
                        .ok()
                        .and_then(|o| plain.get(o..))
                        .ok_or_else(|| {
                            corrupt(format!(
                                "extent offset {offset} beyond its {} bytes",
                                plain.len()
                            ))
                        })?;
                    let m = n.min(src.len());
                    dst[..m].copy_from_slice(&src[..m]);
                }
            }
        }
        Ok(out)
    }
}

/// Where a directory entry of `dir` leads: an inode of the same subvolume, or the root
/// directory of another subvolume.
fn target(dir: Loc, location: &Key) -> Result<Loc, FsError> {
    match location.ty {
        INODE_ITEM => Ok(Loc {
            tree: dir.tree,
            ino: location.objectid,
        }),
        ROOT_ITEM => Ok(Loc {
            tree: location.objectid,
            ino: ROOT_DIR,
        }),
        t => Err(corrupt(format!(
            "directory entry points at an item of type {t}"
        ))),
    }
}

/// The subvolume a plain mount shows: the root tree's "default" entry, else the top level.
fn default_subvolume(vol: &Volume) -> Result<u64, FsError> {
    let data = vol.get(
        vol.root_tree(),
        Key::new(ROOT_TREE_DIR, DIR_ITEM, name_hash(b"default")),
    )?;
    let Some(data) = data else {
        return Ok(FS_TREE);
    };
    Ok(dir_entries(&data)?
        .into_iter()
        .find(|e| e.name == b"default")
        .map_or(FS_TREE, |e| e.location.objectid))
}

impl FileSystem for BtrfsFs {
    fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let (_, inode) = self.resolve(path)?;
        Ok(Metadata {
            kind: inode.kind(),
            size: inode.size,
            mode: inode.mode & 0o7777,
            uid: inode.uid,
            gid: inode.gid,
            times: inode.times,
        })
    }

    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let (loc, inode) = self.resolve(path)?;
        if inode.kind() != FileKind::Dir {
            return Err(FsError::NotADirectory(path.to_string()));
        }
        let t = self.tree(loc.tree)?;
        let mut out = Vec::new();
        self.shared.vol.search(
            t,
            Key::new(loc.ino, DIR_INDEX, 0),
            Key::new(loc.ino, DIR_INDEX, u64::MAX),
            &mut |_, d| {
                for e in dir_entries(d)? {
                    out.push(DirEntry {
                        name: String::from_utf8_lossy(&e.name).into_owned(),
                        kind: if e.location.ty == ROOT_ITEM {
                            FileKind::Dir
                        } else {
                            e.kind
                        },
                    });
                }
                Ok(out.len() < MAX_DIR_ENTRIES)
            },
        )?;
        out.truncate(MAX_DIR_ENTRIES);
        Ok(out)
    }

    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let (loc, inode) = self.resolve(path)?;
        if inode.kind() == FileKind::Dir {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        if inode.size > limit {
            return Err(FsError::TooLarge {
                path: path.to_string(),
                size: inode.size,
                limit,
            });
        }
        self.read_data(loc, inode.size)
            .map_err(|e| in_path(e, path))
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        let (loc, inode) = self.resolve(path)?;
        if inode.kind() != FileKind::Symlink {
            return Err(FsError::NotASymlink(path.to_string()));
        }
        if inode.size > MAX_PATH_BYTES as u64 {
            return Err(corrupt(format!("{path}: symlink of {} bytes", inode.size)));
        }
        let bytes = self
            .read_data(loc, inode.size)
            .map_err(|e| in_path(e, path))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Names the file in a corruption message.
fn in_path(e: FsError, path: &str) -> FsError {
    match e {
        FsError::Corrupt { fs, message } => FsError::Corrupt {
            fs,
            message: format!("{path}: {message}"),
        },
        other => other,
    }
}
