//! Read-only FAT12/16/32 (vfat) file access.
//!
//! Our own reader rather than the fatfs crate: fatfs wants `Read + Write + Seek` and
//! reports io errors, while we read through a shared [`ReadAt`] and need typed, bounded
//! errors on hostile volumes. Layout: [`bpb`] (boot sector), [`fat`] (cluster chains),
//! [`dir_entry`] and [`lfn`] (the two kinds of 32-byte entry), [`dir`] (a directory).
//!
//! Names and metadata are shown the way a default Linux mount shows them: long names
//! when valid, else 8.3 names with their case flags; case-insensitive lookups on
//! either name; directories 0755, files 0644, owned by root.

mod bpb;
mod dir;
mod dir_entry;
mod fat;
mod lfn;

use std::sync::Arc;

use super::{DirEntry, FileKind, FileSystem, FsError, Metadata, MAX_DIR_ENTRIES};
use crate::inspect::cache::BoundedCache;
use crate::inspect::source::ReadAt;
use bpb::{FatType, Geometry, RootDir};
use dir::{Directory, Entry, MAX_DIR_BYTES};
use fat::{corrupt, Fat};

/// Directories kept parsed, so walking a tree does not re-read each parent per file.
const CACHED_DIRS: usize = 32;
/// Longest path accepted.
const MAX_PATH_BYTES: usize = 4096;

/// A read-only FAT12/16/32 filesystem.
pub struct VfatFs {
    src: Arc<dyn ReadAt>,
    geometry: Geometry,
    fat: Fat,
    /// Parsed directories by first cluster (0 for a fixed root directory).
    dirs: BoundedCache<u32, Arc<Directory>>,
}

/// What a path resolved to.
enum Node {
    Root,
    Entry(Entry),
}

impl VfatFs {
    /// Validates the boot sector; the FAT and directories are read on demand.
    pub fn open(src: Arc<dyn ReadAt>) -> Result<VfatFs, FsError> {
        let geometry = bpb::read(src.as_ref())?;
        let fat = Fat::new(src.clone(), &geometry);
        Ok(VfatFs {
            src,
            geometry,
            fat,
            dirs: BoundedCache::new(CACHED_DIRS),
        })
    }

    fn fat32(&self) -> bool {
        self.geometry.fat_type == FatType::Fat32
    }

    /// Walks `path` from the root, matching each component case-insensitively.
    fn resolve(&self, path: &str) -> Result<Node, FsError> {
        if !path.starts_with('/') {
            return Err(FsError::NotFound(path.to_string()));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(FsError::Unsupported {
                fs: "vfat",
                message: format!(
                    "path of {} bytes is longer than {MAX_PATH_BYTES}",
                    path.len()
                ),
            });
        }
        let mut node = Node::Root;
        let mut parents: Vec<Node> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => continue,
                ".." => {
                    node = parents.pop().unwrap_or(Node::Root);
                    continue;
                }
                _ => {}
            }
            let entries = match &node {
                Node::Root => self.root_entries()?,
                Node::Entry(e) if e.is_dir => self.dir_entries(e)?,
                Node::Entry(_) => return Err(FsError::NotADirectory(path.to_string())),
            };
            let found = entries
                .find(part)
                .cloned()
                .ok_or_else(|| FsError::NotFound(path.to_string()))?;
            // A directory whose clusters are those of one of its ancestors would make
            // an endless tree for anyone walking it.
            if found.is_dir
                && (self.root_key() == Some(found.first_cluster)
                    || parents.iter().chain([&node]).any(
                        |n| matches!(n, Node::Entry(e) if e.first_cluster == found.first_cluster),
                    ))
            {
                return Err(corrupt(format!(
                    "{path}: directory at cluster {} is its own ancestor (a loop)",
                    found.first_cluster
                )));
            }
            parents.push(std::mem::replace(&mut node, Node::Entry(found)));
        }
        Ok(node)
    }

    /// First cluster of a FAT32 root directory (a fixed root has none).
    fn root_key(&self) -> Option<u32> {
        match self.geometry.root {
            RootDir::Fixed { .. } => None,
            RootDir::Chain { first_cluster } => Some(first_cluster),
        }
    }

    fn root_entries(&self) -> Result<Arc<Directory>, FsError> {
        match self.geometry.root {
            RootDir::Fixed { offset, entries } => self.cached(0, || {
                let mut bytes = vec![0u8; entries as usize * 32];
                self.src.read_exact_at(offset, &mut bytes)?;
                Ok(bytes)
            }),
            RootDir::Chain { first_cluster } => {
                self.cached(first_cluster, || self.read_dir_chain(first_cluster))
            }
        }
    }

    fn dir_entries(&self, dir: &Entry) -> Result<Arc<Directory>, FsError> {
        if dir.first_cluster == 0 {
            return Err(corrupt(format!(
                "directory {} has no first cluster",
                dir.name
            )));
        }
        self.cached(dir.first_cluster, || self.read_dir_chain(dir.first_cluster))
    }

    /// Parsed entries of the directory starting at `key`, read with `load` on a miss.
    fn cached(
        &self,
        key: u32,
        load: impl FnOnce() -> Result<Vec<u8>, FsError>,
    ) -> Result<Arc<Directory>, FsError> {
        self.dirs
            .get_or_load(key, || Ok(Arc::new(dir::parse(&load()?, self.fat32()))))
    }

    /// The clusters of a directory, which must end within the FAT directory size limit.
    fn dir_chain(&self, first: u32) -> Result<Vec<u32>, FsError> {
        let max = MAX_DIR_BYTES.div_ceil(self.geometry.cluster_size);
        self.fat.chain(first, 1, max, false)
    }

    fn read_dir_chain(&self, first: u32) -> Result<Vec<u8>, FsError> {
        let chain = self.dir_chain(first)?;
        self.read_clusters(&chain, chain.len() as u64 * self.geometry.cluster_size)
    }

    /// Reads the first `len` bytes stored in `chain`, one read per run of consecutive
    /// clusters.
    fn read_clusters(&self, chain: &[u32], len: u64) -> Result<Vec<u8>, FsError> {
        let cs = self.geometry.cluster_size;
        let mut out = vec![0u8; len as usize];
        let mut pos = 0usize;
        let mut i = 0;
        while i < chain.len() && pos < out.len() {
            let mut run = 1;
            while i + run < chain.len() && chain[i + run] == chain[i] + run as u32 {
                run += 1;
            }
            let bytes = (run as u64 * cs).min((out.len() - pos) as u64) as usize;
            let offset = self.geometry.cluster_offset(chain[i]);
            self.src.read_exact_at(offset, &mut out[pos..pos + bytes])?;
            pos += bytes;
            i += run;
        }
        Ok(out)
    }

    fn root_size(&self) -> Result<u64, FsError> {
        match self.geometry.root {
            RootDir::Fixed { entries, .. } => Ok(u64::from(entries) * 32),
            RootDir::Chain { first_cluster } => {
                Ok(self.dir_chain(first_cluster)?.len() as u64 * self.geometry.cluster_size)
            }
        }
    }
}

impl FileSystem for VfatFs {
    fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let (kind, size) = match self.resolve(path)? {
            Node::Root => (FileKind::Dir, self.root_size()?),
            Node::Entry(e) if e.is_dir => {
                // Linux reports a directory's allocated size.
                let clusters = self.dir_chain(e.first_cluster)?.len() as u64;
                (FileKind::Dir, clusters * self.geometry.cluster_size)
            }
            Node::Entry(e) => (FileKind::File, u64::from(e.size)),
        };
        let mode = if kind == FileKind::Dir { 0o755 } else { 0o644 };
        Ok(Metadata {
            kind,
            size,
            mode,
            uid: 0,
            gid: 0,
            times: Default::default(),
        })
    }

    fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let entries = match self.resolve(path)? {
            Node::Root => self.root_entries()?,
            Node::Entry(e) if e.is_dir => self.dir_entries(&e)?,
            Node::Entry(_) => return Err(FsError::NotADirectory(path.to_string())),
        };
        Ok(entries
            .entries
            .iter()
            .take(MAX_DIR_ENTRIES)
            .map(|e| DirEntry {
                name: e.name.clone(),
                kind: if e.is_dir {
                    FileKind::Dir
                } else {
                    FileKind::File
                },
            })
            .collect())
    }

    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let entry = match self.resolve(path)? {
            Node::Root => return Err(FsError::IsADirectory(path.to_string())),
            Node::Entry(e) if e.is_dir => return Err(FsError::IsADirectory(path.to_string())),
            Node::Entry(e) => e,
        };
        let size = u64::from(entry.size);
        if size > limit {
            return Err(FsError::TooLarge {
                path: path.to_string(),
                size,
                limit,
            });
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let needed = size.div_ceil(self.geometry.cluster_size);
        let chain = self
            .fat
            .chain(entry.first_cluster, needed, needed, true)
            .map_err(|e| match e {
                FsError::Corrupt { fs, message } => FsError::Corrupt {
                    fs,
                    message: format!("{path}: {message}"),
                },
                other => other,
            })?;
        self.read_clusters(&chain, size)
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        self.resolve(path)?;
        Err(FsError::NotASymlink(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::dir_entry::tests::short;
    use super::dir_entry::ShortEntry;
    use super::lfn::tests::entries;
    use super::*;
    use crate::inspect::fat_boot::tests::fat12_sector;
    use crate::inspect::source::MemSource;

    /// A 64-sector FAT12 volume (see `fat12_sector`): FATs at sectors 1-2, root at 3,
    /// cluster N at sector N + 2.
    struct Image(Vec<u8>);

    impl Image {
        fn new() -> Image {
            let mut img = vec![0u8; 64 * 512];
            img[..512].copy_from_slice(&fat12_sector(64));
            let mut me = Image(img);
            me.link(0, 0xff8);
            me.link(1, 0xfff);
            me
        }

        fn link(&mut self, cluster: u32, value: u16) {
            for fat in [512usize, 1024] {
                let off = fat + (cluster + cluster / 2) as usize;
                let mut cur = u16::from_le_bytes([self.0[off], self.0[off + 1]]);
                cur = if cluster % 2 == 1 {
                    (cur & 0x000f) | (value << 4)
                } else {
                    (cur & 0xf000) | (value & 0x0fff)
                };
                self.0[off..off + 2].copy_from_slice(&cur.to_le_bytes());
            }
        }

        fn cluster(&mut self, cluster: u32) -> &mut [u8] {
            let start = (cluster as usize + 2) * 512;
            &mut self.0[start..start + 512]
        }

        fn put_entries(&mut self, at: usize, list: &[[u8; 32]]) {
            for (i, e) in list.iter().enumerate() {
                self.0[at + i * 32..at + i * 32 + 32].copy_from_slice(e);
            }
        }

        fn open(self) -> VfatFs {
            VfatFs::open(Arc::new(MemSource(self.0))).unwrap()
        }
    }

    /// Root: "Hello World.txt" (2 clusters, 700 bytes), DIR/ with "inner.bin".
    fn sample() -> Image {
        let mut img = Image::new();
        let file = short(b"HELLOW~1TXT", 0x20, 0, 2, 700);
        let mut root: Vec<[u8; 32]> = entries("Hello World.txt", ShortEntry(&file).checksum());
        root.push(file);
        root.push(short(b"DIR        ", 0x10, 0, 4, 0));
        img.put_entries(3 * 512, &root);
        img.link(2, 3);
        img.link(3, 0xfff);
        img.cluster(2).fill(b'a');
        img.cluster(3).fill(b'b');
        img.link(4, 0xfff);
        let sub = [
            short(b".          ", 0x10, 0, 4, 0),
            short(b"..         ", 0x10, 0, 0, 0),
            short(b"INNER   BIN", 0x20, 0x18, 5, 3),
        ];
        img.put_entries(6 * 512, &sub);
        img.link(5, 0xfff);
        img.cluster(5)[..3].copy_from_slice(b"xyz");
        img
    }

    #[test]
    fn reads_files_dirs_and_metadata() {
        let fs = sample().open();
        let data = fs.read_file("/hello world.TXT", 1 << 20).unwrap();
        assert_eq!(data.len(), 700);
        assert!(data[..512].iter().all(|&b| b == b'a') && data[512..].iter().all(|&b| b == b'b'));
        assert_eq!(fs.read_file("/Dir/INNER.bin", 10).unwrap(), b"xyz");
        let root = fs.read_dir("/").unwrap();
        let names: Vec<_> = root.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [("Hello World.txt", FileKind::File), ("DIR", FileKind::Dir)]
        );
        assert_eq!(fs.read_dir("/DIR").unwrap()[0].name, "inner.bin");
        let m = fs.metadata("/DIR/inner.bin").unwrap();
        assert_eq!(
            m,
            Metadata {
                kind: FileKind::File,
                size: 3,
                mode: 0o644,
                uid: 0,
                gid: 0,
                times: Default::default(),
            }
        );
        let m = fs.metadata("/").unwrap();
        assert_eq!((m.kind, m.size, m.mode), (FileKind::Dir, 16 * 32, 0o755));
        assert_eq!(fs.metadata("/DIR").unwrap().size, 512);
    }

    #[test]
    fn typed_errors() {
        let fs = sample().open();
        assert!(matches!(
            fs.read_file("/missing", 10),
            Err(FsError::NotFound(_))
        ));
        assert!(matches!(
            fs.read_file("/DIR", 10),
            Err(FsError::IsADirectory(_))
        ));
        assert!(matches!(
            fs.read_dir("/hello world.txt"),
            Err(FsError::NotADirectory(_))
        ));
        assert!(matches!(
            fs.read_file("/Hello World.txt/x", 10),
            Err(FsError::NotADirectory(_))
        ));
        assert!(matches!(
            fs.read_file("/Hello World.txt", 699),
            Err(FsError::TooLarge {
                size: 700,
                limit: 699,
                ..
            })
        ));
        assert!(matches!(fs.read_link("/DIR"), Err(FsError::NotASymlink(_))));
        assert!(matches!(fs.read_link("/nope"), Err(FsError::NotFound(_))));
    }

    #[test]
    fn chain_loop_and_out_of_range_cluster_are_corrupt() {
        let mut img = sample();
        img.link(3, 2); // 2 -> 3 -> 2: fits the two clusters needed, then loops
        let fs = img.open();
        // The file needs exactly two clusters, so it still reads...
        assert_eq!(fs.read_file("/Hello World.txt", 1000).unwrap().len(), 700);

        let mut img = sample();
        img.link(4, 4); // directory pointing to itself
        let fs = img.open();
        let err = fs.read_dir("/DIR").unwrap_err();
        assert!(matches!(err, FsError::Corrupt { fs: "vfat", .. }), "{err}");

        let mut img = sample();
        img.link(2, 2); // file's first cluster links to itself
        let err = img.open().read_file("/Hello World.txt", 1000).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");

        let mut img = sample();
        img.link(2, 0x0ff0); // beyond the 61 clusters of the volume
        let err = img.open().read_file("/Hello World.txt", 1000).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");

        let mut img = sample();
        img.link(2, 0); // chain runs into a free cluster
        let err = img.open().read_file("/Hello World.txt", 1000).unwrap_err();
        assert!(err.to_string().contains("free cluster"), "{err}");
    }

    #[test]
    fn a_directory_loop_is_corrupt() {
        let mut img = sample();
        // DIR gains an entry LOOP pointing back at DIR's own cluster.
        img.put_entries(6 * 512 + 3 * 32, &[short(b"LOOP       ", 0x10, 0, 4, 0)]);
        let fs = img.open();
        assert!(fs
            .read_dir("/DIR")
            .unwrap()
            .iter()
            .any(|e| e.name == "LOOP"));
        let err = fs.read_dir("/DIR/LOOP").unwrap_err();
        assert!(err.to_string().contains("own ancestor"), "{err}");
    }

    #[test]
    fn bad_boot_sector_is_corrupt() {
        let mut img = sample();
        img.0[0x0d] = 3;
        let err = VfatFs::open(Arc::new(MemSource(img.0))).err().unwrap();
        assert!(matches!(err, FsError::Corrupt { fs: "vfat", .. }), "{err}");
    }

    #[test]
    fn any_bytes_give_a_result_or_an_error() {
        // Flip bytes across the metadata of a valid volume; nothing may panic.
        let base = sample().0;
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut img = base.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = (seed as usize) % (7 * 512);
                img[at] = (seed >> 24) as u8;
            }
            let Ok(fs) = VfatFs::open(Arc::new(MemSource(img))) else {
                continue;
            };
            let _ = fs.read_dir("/");
            let _ = fs.read_dir("/DIR");
            let _ = fs.read_file("/Hello World.txt", 1 << 20);
            let _ = fs.read_file("/DIR/inner.bin", 1 << 20);
            let _ = fs.metadata("/DIR");
        }
    }
}
