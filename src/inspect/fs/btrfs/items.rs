//! Leaf item payloads the reader needs: inodes, directory entries, file extents, and the
//! root tree's subvolume records (root items, root refs, the default-subvolume entry).

use crate::inspect::bytes::{le16, le32, le64};
use crate::inspect::fs::{FileKind, FsError, Times, Timestamp};

use super::corrupt;
use super::key::Key;
use super::volume::Tree;

pub const INODE_ITEM: u8 = 1;
pub const INODE_REF: u8 = 12;
pub const DIR_ITEM: u8 = 84;
pub const DIR_INDEX: u8 = 96;
pub const EXTENT_DATA: u8 = 108;
pub const ROOT_ITEM: u8 = 132;
pub const ROOT_BACKREF: u8 = 144;

/// The top-level subvolume, and the root directory inode of every subvolume.
pub const FS_TREE: u64 = 5;
pub const ROOT_TREE_DIR: u64 = 6;
pub const FIRST_FREE: u64 = 256;
/// Subvolume ids end here (ids above are internal trees: reloc, tree-log...).
pub const LAST_FREE: u64 = u64::MAX - 256;

const INODE_SIZE: usize = 160;

/// The inode fields we report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub times: Times,
}

/// A `btrfs_timespec`: le64 seconds (signed), le32 nanoseconds.
fn timespec(b: &[u8], at: usize) -> Timestamp {
    Timestamp {
        secs: le64(b, at) as i64,
        nsecs: le32(b, at + 8),
    }
}

impl Inode {
    pub fn parse(b: &[u8]) -> Result<Inode, FsError> {
        if b.len() < INODE_SIZE {
            return Err(corrupt(format!("inode item of {} bytes", b.len())));
        }
        Ok(Inode {
            size: le64(b, 16),
            nlink: le32(b, 40),
            uid: le32(b, 44),
            gid: le32(b, 48),
            mode: le32(b, 52),
            // After 32 reserved bytes: atime, ctime, mtime, otime (12 bytes each).
            times: Times {
                atime: Some(timespec(b, 112)),
                ctime: Some(timespec(b, 124)),
                mtime: Some(timespec(b, 136)),
            },
        })
    }

    pub fn kind(&self) -> FileKind {
        match self.mode & 0o170000 {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Dir,
            0o120000 => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// One name of a directory item: where it points and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// An inode of the same tree (INODE_ITEM) or a subvolume (ROOT_ITEM).
    pub location: Key,
    pub kind: FileKind,
    pub name: Vec<u8>,
}

/// Decodes the (one or more, on hash collisions) entries packed in a DIR_ITEM or
/// DIR_INDEX item.
pub fn dir_entries(b: &[u8]) -> Result<Vec<DirEntry>, FsError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let e = &b[pos..];
        let location = Key::parse(e).ok_or_else(|| corrupt("truncated directory entry"))?;
        if e.len() < 30 {
            return Err(corrupt("truncated directory entry"));
        }
        let data_len = le16(e, 25) as usize;
        let name_len = le16(e, 27) as usize;
        let kind = match e[29] {
            1 => FileKind::File,
            2 => FileKind::Dir,
            7 => FileKind::Symlink,
            _ => FileKind::Other,
        };
        let end = 30 + name_len + data_len;
        if end > e.len() || name_len == 0 || name_len > 255 {
            return Err(corrupt(format!(
                "directory entry name of {name_len} bytes does not fit its item"
            )));
        }
        out.push(DirEntry {
            location,
            kind,
            name: e[30..30 + name_len].to_vec(),
        });
        pos += end;
    }
    Ok(out)
}

/// Compression of an extent's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zlib,
    Lzo,
    Zstd,
}

/// Where a file extent's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentBody {
    /// Stored in the item itself (maybe compressed).
    Inline(Vec<u8>),
    /// On disk: `disk_bytenr` (0 for a hole) of `disk_num_bytes`; the file's bytes are
    /// `[offset, offset + num_bytes)` of the (decompressed) extent.
    Regular {
        disk_bytenr: u64,
        disk_num_bytes: u64,
        offset: u64,
        num_bytes: u64,
    },
    /// Allocated but never written: reads as zeros.
    Prealloc { num_bytes: u64 },
}

/// One EXTENT_DATA item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileExtent {
    /// Decompressed size of the whole extent.
    pub ram_bytes: u64,
    pub compression: Compression,
    pub body: ExtentBody,
}

impl FileExtent {
    pub fn parse(b: &[u8]) -> Result<FileExtent, FsError> {
        if b.len() < 21 {
            return Err(corrupt(format!("file extent item of {} bytes", b.len())));
        }
        let compression = match b[16] {
            0 => Compression::None,
            1 => Compression::Zlib,
            2 => Compression::Lzo,
            3 => Compression::Zstd,
            c => {
                return Err(FsError::Unsupported {
                    fs: "btrfs",
                    message: format!("compression type {c}"),
                })
            }
        };
        if b[17] != 0 || le16(b, 18) != 0 {
            return Err(FsError::Unsupported {
                fs: "btrfs",
                message: "encrypted or otherwise encoded extent".into(),
            });
        }
        let ram_bytes = le64(b, 8);
        let body = match b[20] {
            0 => ExtentBody::Inline(b[21..].to_vec()),
            t @ (1 | 2) => {
                if b.len() < 53 {
                    return Err(corrupt(format!("file extent item of {} bytes", b.len())));
                }
                if t == 2 {
                    ExtentBody::Prealloc {
                        num_bytes: le64(b, 45),
                    }
                } else {
                    ExtentBody::Regular {
                        disk_bytenr: le64(b, 21),
                        disk_num_bytes: le64(b, 29),
                        offset: le64(b, 37),
                        num_bytes: le64(b, 45),
                    }
                }
            }
            t => return Err(corrupt(format!("file extent type {t}"))),
        };
        Ok(FileExtent {
            ram_bytes,
            compression,
            body,
        })
    }
}

/// A ROOT_ITEM: where a tree (a subvolume's FS tree) starts.
pub fn root_item_tree(b: &[u8]) -> Result<Tree, FsError> {
    if b.len() < 239 {
        return Err(corrupt(format!("root item of {} bytes", b.len())));
    }
    Ok(Tree {
        bytenr: le64(b, 176),
        level: b[238],
    })
}

/// A ROOT_REF / ROOT_BACKREF: the directory of the parent subvolume holding the
/// child, and the child's name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRef {
    pub dirid: u64,
    pub name: Vec<u8>,
}

impl RootRef {
    pub fn parse(b: &[u8]) -> Result<RootRef, FsError> {
        let len = le16(b, 16) as usize;
        let name = b
            .get(18..18 + len)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| corrupt("root ref name does not fit its item"))?;
        Ok(RootRef {
            dirid: le64(b, 0),
            name: name.to_vec(),
        })
    }
}

/// An INODE_REF's first name: the parent directory is the key's offset.
pub fn inode_ref_name(b: &[u8]) -> Result<Vec<u8>, FsError> {
    let len = le16(b, 8) as usize;
    b.get(10..10 + len)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| corrupt("inode ref name does not fit its item"))
}

/// The name hash of DIR_ITEM keys: CRC32C seeded with !1, without final inversion.
pub fn name_hash(name: &[u8]) -> u64 {
    u64::from(crate::inspect::crc32c::update(!1, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_entries_are_bounded() {
        let mut e = Key::new(257, INODE_ITEM, 0).to_bytes().to_vec();
        e.extend_from_slice(&[0u8; 8]);
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&3u16.to_le_bytes());
        e.push(1);
        e.extend_from_slice(b"abc");
        let list = dir_entries(&e).unwrap();
        assert_eq!(list[0].name, b"abc");
        assert_eq!(list[0].kind, FileKind::File);
        let mut two = e.clone();
        two.extend_from_slice(&e);
        assert_eq!(dir_entries(&two).unwrap().len(), 2);
        e[27] = 200;
        assert!(dir_entries(&e).is_err());
        assert!(dir_entries(&e[..20]).is_err());
    }

    #[test]
    fn extents() {
        let mut b = vec![0u8; 53];
        b[20] = 1;
        b[21..29].copy_from_slice(&4096u64.to_le_bytes());
        b[45..53].copy_from_slice(&8192u64.to_le_bytes());
        assert!(matches!(
            FileExtent::parse(&b).unwrap().body,
            ExtentBody::Regular {
                disk_bytenr: 4096,
                num_bytes: 8192,
                ..
            }
        ));
        b[16] = 9;
        assert!(matches!(
            FileExtent::parse(&b),
            Err(FsError::Unsupported { .. })
        ));
        b[16] = 0;
        assert!(FileExtent::parse(&b[..30]).is_err());
        b[20] = 5;
        assert!(FileExtent::parse(&b).is_err());
    }
}
