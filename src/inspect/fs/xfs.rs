//! Read-only XFS (v4 and v5) file access: our own reader.
//!
//! Layout: [`superblock`] (geometry and features), [`ag`] (allocation group headers,
//! checked at open), [`inode`] (the inode core and its data fork), [`bmap`] and
//! [`btree`] (extent maps, in the inode or in a B+tree), [`dir`] with [`dir_sf`] and
//! [`dir_data`] (short-form, block, leaf and node directories), [`symlink`], and
//! [`log`] (is the log clean?).
//!
//! Inodes are found by number: an inode number encodes its allocation group, block and
//! index, so the inode B+trees are never walked. Directories are read through their
//! data blocks only (every layout keeps its entries there), so the hash leaves and free
//! index of leaf and node directories are not needed.
//!
//! Every v5 checksum met on the way (superblock, inodes, B+tree, directory and remote
//! symlink blocks) is verified; a mismatch is [`FsError::Corrupt`] naming the structure
//! (AG headers, which no read needs, only give a warning). A dirty log is not replayed: files read as they are on disk, and
//! [`XfsFs::warnings`] says so. Realtime files and external logs are refused with
//! [`FsError::Unsupported`].
//!
//! Hostile input: every size and count from disk is bounded before use, extents must
//! lie inside the filesystem and off the AG headers, B+tree walks keep a visited set and
//! check levels, directory reads are capped in bytes, and a directory that contains one
//! of its ancestors is refused.

mod ag;
mod bmap;
mod btree;
mod dir;
mod dir_data;
mod dir_sf;
mod inode;
mod log;
mod superblock;
mod symlink;

use std::sync::Arc;

use super::{DirEntry, FileKind, FileSystem, FsError, Metadata, MAX_DIR_ENTRIES};
use crate::inspect::cache::BoundedCache;
use crate::inspect::crc32c;
use crate::inspect::source::ReadAt;
use bmap::ExtentMap;
use dir::Entry;
use inode::{Format, Inode};
use superblock::Superblock;

/// Longest path accepted, as on Linux.
const MAX_PATH_BYTES: usize = 4096;
/// Directories kept parsed, so walking a tree does not re-read each parent per file.
const CACHED_DIRS: usize = 64;
/// Directories with more entries than this are scanned per lookup instead of cached.
const CACHED_DIR_ENTRIES: usize = 50_000;

/// A read-only XFS filesystem.
pub struct XfsFs {
    src: Arc<dyn ReadAt>,
    sb: Superblock,
    warnings: Vec<String>,
    /// Parsed directories by inode number.
    dirs: BoundedCache<u64, Arc<Vec<Entry>>>,
}

impl XfsFs {
    /// Validates the superblock and root inode, checks the AG headers and the log.
    pub fn open(src: Arc<dyn ReadAt>) -> Result<XfsFs, FsError> {
        let sb = Superblock::read(src.as_ref())?;
        if sb.log_start.is_none() {
            return Err(unsupported(
                "external log device: whether it holds unreplayed transactions cannot be \
                 known from this device alone"
                    .to_string(),
            ));
        }
        let mut warnings = Vec::new();
        if sb.needs_repair {
            warnings.push("xfs: the filesystem is marked as needing xfs_repair".to_string());
        }
        warnings.extend(
            ag::check(src.as_ref(), &sb)?
                .into_iter()
                .map(|p| format!("xfs: {p}")),
        );
        match log::state(src.as_ref(), &sb) {
            Ok(log::LogState::Clean) => {}
            Ok(log::LogState::Dirty) => warnings.push(
                "xfs: the log is dirty (not cleanly unmounted) and was not replayed: files are \
                 read as they are on disk, without the transactions still in the log"
                    .to_string(),
            ),
            Err(FsError::Image(e)) => return Err(FsError::Image(e)),
            Err(e) => warnings.push(format!(
                "xfs: the log could not be checked ({e}); it was not replayed"
            )),
        }
        let root = Inode::read(src.as_ref(), &sb, sb.root_ino)?;
        if root.kind() != FileKind::Dir {
            return Err(corrupt(format!(
                "root inode {} is not a directory",
                sb.root_ino
            )));
        }
        Ok(XfsFs {
            src,
            sb,
            warnings,
            dirs: BoundedCache::new(CACHED_DIRS),
        })
    }

    /// What the report should mention: a dirty log not replayed, damaged AG headers.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn inode(&self, ino: u64) -> Result<Inode, FsError> {
        Inode::read(self.src.as_ref(), &self.sb, ino)
    }

    /// Walks `path` from the root; the last component is not followed.
    fn resolve(&self, path: &str) -> Result<Inode, FsError> {
        if !path.starts_with('/') {
            return Err(FsError::NotFound(path.to_string()));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(unsupported(format!(
                "path of {} bytes is longer than {MAX_PATH_BYTES}",
                path.len()
            )));
        }
        let mut node = self.inode(self.sb.root_ino)?;
        let mut parents: Vec<Inode> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => continue,
                ".." => {
                    if let Some(p) = parents.pop() {
                        node = p;
                    }
                    continue;
                }
                _ => {}
            }
            if node.kind() != FileKind::Dir {
                return Err(FsError::NotADirectory(path.to_string()));
            }
            let child = self
                .lookup(&node, part.as_bytes())?
                .ok_or_else(|| FsError::NotFound(path.to_string()))?;
            // A directory that contains one of its ancestors makes an endless tree.
            if child == node.ino || parents.iter().any(|p| p.ino == child) {
                return Err(corrupt(format!(
                    "{path}: directory inode {child} is its own ancestor (a loop)"
                )));
            }
            let next = self.inode(child)?;
            parents.push(std::mem::replace(&mut node, next));
        }
        Ok(node)
    }

    /// The inode number `name` has in directory `dir`.
    fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<u64>, FsError> {
        if let Some(entries) = self.cached(dir.ino) {
            return Ok(entries.iter().find(|e| e.name == name).map(|e| e.ino));
        }
        let mut entries = Vec::new();
        let mut found = None;
        let mut complete = true;
        dir::for_each(self.src.as_ref(), &self.sb, dir, &mut |e| {
            if found.is_none() && e.name == name {
                found = Some(e.ino);
            }
            if entries.len() < CACHED_DIR_ENTRIES {
                entries.push(e);
                true
            } else {
                // Too big to keep: stop once the name is found.
                complete = false;
                found.is_none()
            }
        })?;
        if complete {
            self.dirs.insert(dir.ino, Arc::new(entries));
        }
        Ok(found)
    }

    fn cached(&self, ino: u64) -> Option<Arc<Vec<Entry>>> {
        self.dirs.get(&ino)
    }

    /// The kind of a directory entry: its file type byte, else its inode's mode.
    fn entry_kind(&self, e: &Entry) -> FileKind {
        e.kind().unwrap_or_else(|| {
            self.inode(e.ino)
                .map(|i| i.kind())
                .unwrap_or(FileKind::Other)
        })
    }
}

impl FileSystem for XfsFs {
    fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let i = self.resolve(path)?;
        Ok(Metadata {
            kind: i.kind(),
            size: i.size,
            mode: u32::from(i.mode) & 0o7777,
            uid: i.uid,
            gid: i.gid,
            times: i.times,
        })
    }

    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let dir = self.resolve(path)?;
        if dir.kind() != FileKind::Dir {
            return Err(FsError::NotADirectory(path.to_string()));
        }
        let mut entries = Vec::new();
        match self.cached(dir.ino) {
            Some(cached) => entries.extend(cached.iter().take(MAX_DIR_ENTRIES).cloned()),
            None => dir::for_each(self.src.as_ref(), &self.sb, &dir, &mut |e| {
                entries.push(e);
                entries.len() < MAX_DIR_ENTRIES
            })?,
        }
        Ok(entries
            .iter()
            .map(|e| DirEntry {
                name: String::from_utf8_lossy(&e.name).into_owned(),
                kind: self.entry_kind(e),
            })
            .collect())
    }

    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let i = self.resolve(path)?;
        match i.kind() {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsADirectory(path.to_string())),
            _ => {
                return Err(unsupported(format!("{path}: not a regular file")));
            }
        }
        if i.size > limit {
            return Err(FsError::TooLarge {
                path: path.to_string(),
                size: i.size,
                limit,
            });
        }
        if i.realtime {
            return Err(unsupported(format!(
                "{path}: data on the realtime device, which is not read"
            )));
        }
        let mut out = vec![0u8; i.size as usize];
        match i.format {
            Format::Local => {
                let inline = i
                    .fork
                    .get(..out.len())
                    .ok_or_else(|| corrupt(format!("{path}: inline data larger than the inode")))?;
                out.copy_from_slice(inline);
            }
            Format::Extents | Format::Btree => {
                ExtentMap::read(self.src.as_ref(), &self.sb, &i)?.read_at(
                    self.src.as_ref(),
                    &self.sb,
                    0,
                    &mut out,
                )?;
            }
            Format::Dev => return Err(corrupt(format!("{path}: file with a device fork"))),
        }
        Ok(out)
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        let i = self.resolve(path)?;
        if i.kind() != FileKind::Symlink {
            return Err(FsError::NotASymlink(path.to_string()));
        }
        let target = symlink::target(self.src.as_ref(), &self.sb, &i)?;
        Ok(String::from_utf8_lossy(&target).into_owned())
    }
}

fn corrupt(message: String) -> FsError {
    FsError::Corrupt { fs: "xfs", message }
}

fn unsupported(message: String) -> FsError {
    FsError::Unsupported { fs: "xfs", message }
}

/// Checks the CRC32C of a v5 metadata buffer, stored little-endian at `at` and computed
/// with that field as zeros.
fn verify_crc(buf: &[u8], at: usize, what: &str) -> Result<(), FsError> {
    let Some(stored) = buf.get(at..at + 4) else {
        return Err(corrupt(format!("{what}: too short for its checksum")));
    };
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let crc = crc32c::update(!0, &buf[..at]);
    let crc = crc32c::update(crc, &[0; 4]);
    let crc = !crc32c::update(crc, &buf[at + 4..]);
    if crc != stored {
        return Err(corrupt(format!(
            "{what}: checksum mismatch (stored {stored:#010x}, computed {crc:#010x})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<XfsFs>();
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for len in [0usize, 1500, 4096, 65536] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            match XfsFs::open(Arc::new(MemSource(bytes))) {
                Err(FsError::Corrupt { .. } | FsError::Image(_)) => {}
                Err(other) => panic!("unexpected error for {len} bytes: {other}"),
                Ok(_) => panic!("garbage of {len} bytes opened as xfs"),
            }
        }
    }

    /// A 16 MiB v5 filesystem in memory (see `superblock::tests::sector`): root
    /// directory 128 (block format, at block 20) with `loop` (itself), `file` (inode
    /// 131, one extent) and `tree` (inode 132, a B+tree fork), and a zeroed log.
    fn image(
        file_fork: &[u8],
        file_nextents: u32,
        tree_block: impl Fn(&Superblock) -> Vec<u8>,
    ) -> XfsFs {
        XfsFs::open(Arc::new(MemSource(image_bytes(
            file_fork,
            file_nextents,
            tree_block,
        ))))
        .unwrap()
    }

    fn image_bytes(
        file_fork: &[u8],
        file_nextents: u32,
        tree_block: impl Fn(&Superblock) -> Vec<u8>,
    ) -> Vec<u8> {
        use super::bmap::tests::record;
        use super::dir_data::tests::block_dir;
        use super::inode::tests::raw_inode;
        let mut sector = superblock::tests::sector();
        let crc = crc32c::checksum(&{
            let mut s = sector.clone();
            s[224..228].fill(0);
            s
        });
        sector[224..228].copy_from_slice(&crc.to_le_bytes());
        let sb = Superblock::parse(&sector).unwrap();
        let mut img = vec![0u8; 4000 * 4096];
        img[..512].copy_from_slice(&sector);
        let mut put = |ino: u64, bytes: &[u8]| {
            let at = sb.inode_offset(ino).unwrap() as usize;
            img[at..at + bytes.len()].copy_from_slice(bytes);
        };
        let mut root = raw_inode(&sb, 128, 0o040755, 2, &record(0, 20, 1, false));
        root[56..64].copy_from_slice(&4096u64.to_be_bytes());
        root[76..80].copy_from_slice(&1u32.to_be_bytes());
        fix_crc(&mut root);
        put(128, &root);
        let mut file = raw_inode(&sb, 131, 0o100644, 2, file_fork);
        file[56..64].copy_from_slice(&100u64.to_be_bytes());
        file[76..80].copy_from_slice(&file_nextents.to_be_bytes());
        fix_crc(&mut file);
        put(131, &file);
        // B+tree root: level 2, one child at block 30.
        let mut fork = vec![0u8; 336];
        fork[..4].copy_from_slice(&[0, 2, 0, 1]);
        fork[4..12].copy_from_slice(&0u64.to_be_bytes());
        fork[4 + 20 * 8..4 + 21 * 8].copy_from_slice(&30u64.to_be_bytes());
        let mut tree = raw_inode(&sb, 132, 0o100644, 3, &fork);
        tree[56..64].copy_from_slice(&100u64.to_be_bytes());
        tree[76..80].copy_from_slice(&1u32.to_be_bytes());
        fix_crc(&mut tree);
        put(132, &tree);
        let dir = block_dir(
            &sb,
            128,
            4096,
            &[("loop", 128), ("file", 131), ("tree", 132)],
        );
        img[20 * 4096..21 * 4096].copy_from_slice(&dir);
        img[30 * 4096..31 * 4096].copy_from_slice(&tree_block(&sb));
        img
    }

    #[test]
    fn any_metadata_bytes_give_a_result_or_an_error() {
        use super::bmap::tests::record;
        // The sample image (its B+tree loops); bytes flipped in the superblock, the
        // inode block, the directory block and the B+tree block.
        let base = image_bytes(&record(0, 40, 1, false), 1, |sb| bmbt_node(sb, 1, 30));
        let regions = [
            (0usize, 512usize),
            (16 * 4096, 4096),
            (20 * 4096, 4096),
            (30 * 4096, 4096),
        ];
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize
        };
        for _ in 0..300 {
            let mut img = base.clone();
            for _ in 0..=next() % 4 {
                let (start, len) = regions[next() % regions.len()];
                img[start + next() % len] = next() as u8;
            }
            let Ok(fs) = XfsFs::open(Arc::new(MemSource(img))) else {
                continue;
            };
            for path in ["/", "/loop"] {
                let _ = fs.read_dir(path);
            }
            let _ = fs.read_file("/file", 1 << 20);
            let _ = fs.read_file("/tree", 1 << 20);
            let _ = fs.metadata("/tree");
        }
    }

    fn fix_crc(inode: &mut [u8]) {
        inode[100..104].fill(0);
        let crc = crc32c::checksum(inode);
        inode[100..104].copy_from_slice(&crc.to_le_bytes());
    }

    /// A v5 bmbt node at block 30 of inode 132, level `level`, one child `child`.
    fn bmbt_node(sb: &Superblock, level: u16, child: u64) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[..4].copy_from_slice(b"BMA3");
        b[4..6].copy_from_slice(&level.to_be_bytes());
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        b[24..32].copy_from_slice(&(30u64 * 8).to_be_bytes());
        b[40..56].copy_from_slice(&sb.meta_uuid);
        b[56..64].copy_from_slice(&132u64.to_be_bytes());
        let max = (4096 - 72) / 16;
        b[72 + max * 8..72 + max * 8 + 8].copy_from_slice(&child.to_be_bytes());
        let crc = crc32c::checksum(&b);
        b[64..68].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn hostile_structures_are_typed_errors() {
        use super::bmap::tests::record;
        let fs = image(&record(0, 40, 1, false), 1, |sb| bmbt_node(sb, 1, 30));
        let names: Vec<String> = fs
            .read_dir("/")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["loop", "file", "tree"]);
        assert_eq!(fs.read_file("/file", 1000).unwrap(), vec![0u8; 100]);
        // A directory entry naming the directory itself.
        let err = fs.read_dir("/loop").unwrap_err();
        assert!(err.to_string().contains("own ancestor"), "{err}");
        // A B+tree block that points back at itself.
        let err = fs.read_file("/tree", 1000).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        // A child at the wrong level.
        let fs = image(&record(0, 40, 1, false), 1, |sb| bmbt_node(sb, 0, 30));
        let err = fs.read_file("/tree", 1000).unwrap_err();
        assert!(matches!(err, FsError::Corrupt { .. }), "{err}");
        // An extent past the end of the device, and one over AG 1's headers.
        for fsb in [4 << 10, 1 << 10] {
            let fs = image(&record(0, fsb, 1, false), 1, |sb| bmbt_node(sb, 1, 30));
            let err = fs.read_file("/file", 1000).unwrap_err();
            assert!(matches!(err, FsError::Corrupt { fs: "xfs", .. }), "{err}");
        }
        // Absurd extent counts are refused before anything is allocated or read.
        for n in [1000, u32::MAX] {
            let fs = image(&record(0, 40, 1, false), n, |sb| bmbt_node(sb, 1, 30));
            let err = fs.read_file("/file", 1000).unwrap_err();
            assert!(
                matches!(err, FsError::Corrupt { .. } | FsError::Unsupported { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn crc_check() {
        let mut b = b"0123CRC!456789".to_vec();
        let crc = crc32c::checksum(&[&b[..4], &[0; 4], &b[8..]].concat());
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        verify_crc(&b, 4, "x").unwrap();
        b[0] ^= 1;
        assert!(verify_crc(&b, 4, "x").is_err());
        assert!(verify_crc(&b, 12, "x").is_err());
    }
}
