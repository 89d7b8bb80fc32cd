//! The on-disk inode (`xfs_dinode`): a core of fixed fields (100 bytes for v1/v2
//! inodes, 176 for the v3 inodes of CRC filesystems) followed by the data fork and,
//! from `di_forkoff`, the attribute fork.
//!
//! The data fork is kept as raw bytes: what it holds (inline data, extent records or
//! a B+tree root) depends on `di_format`, and is decoded by [`super::bmap`],
//! [`super::dir_sf`] and [`super::symlink`].

use super::superblock::Superblock;
use super::{corrupt, unsupported, verify_crc};
use crate::inspect::bytes::{array, be16, be32, be64};
use crate::inspect::fs::{FileKind, FsError, Times, Timestamp};
use crate::inspect::source::ReadAt;

const MAGIC: u16 = 0x494e; // "IN"
const CRC_OFFSET: usize = 100;
/// di_flags: the data lives on the realtime device.
const FLAG_REALTIME: u16 = 0x0001;
/// di_flags2: extent counters are 64/32 bits wide (the nrext64 feature).
const FLAG2_NREXT64: u64 = 1 << 4;
/// di_flags2: timestamps are one 64-bit nanosecond count (the bigtime feature).
const FLAG2_BIGTIME: u64 = 1 << 3;
/// A bigtime count starts at the smallest legacy time, -2^31 s (1901-12-13).
const BIGTIME_EPOCH_OFFSET: i64 = 1 << 31;

const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const S_IFLNK: u16 = 0o120000;

/// How the data fork stores its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Device special file: no data.
    Dev,
    /// The content itself, inside the inode (short-form directories, short symlinks).
    Local,
    /// An array of extent records.
    Extents,
    /// The root of a B+tree of extent records.
    Btree,
}

/// One inode, validated.
#[derive(Debug, Clone)]
pub(super) struct Inode {
    pub ino: u64,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub format: Format,
    /// Data fork extent count as the inode states it.
    pub nextents: u64,
    pub realtime: bool,
    pub times: Times,
    /// The data fork's bytes.
    pub fork: Vec<u8>,
}

impl Inode {
    /// Reads inode `ino`, checking its magic, version, checksum and self-reference.
    pub fn read(src: &dyn ReadAt, sb: &Superblock, ino: u64) -> Result<Inode, FsError> {
        let offset = sb.inode_offset(ino)?;
        let mut raw = vec![0u8; sb.inode_size as usize];
        src.read_exact_at(offset, &mut raw)?;
        Inode::parse(&raw, sb, ino)
    }

    pub fn parse(raw: &[u8], sb: &Superblock, ino: u64) -> Result<Inode, FsError> {
        let bad = |what: String| corrupt(format!("inode {ino}: {what}"));
        if be16(raw, 0) != MAGIC {
            return Err(bad("bad magic (not an inode, or never initialised)".into()));
        }
        let version = raw[4];
        match (sb.crc(), version) {
            (true, 3) | (false, 1 | 2) => {}
            _ => {
                return Err(bad(format!(
                    "version {version} on a v{} filesystem",
                    sb.version
                )))
            }
        }
        if version == 3 {
            verify_crc(raw, CRC_OFFSET, &format!("inode {ino}"))?;
            if be64(raw, 152) != ino {
                return Err(bad(format!("records itself as inode {}", be64(raw, 152))));
            }
            if array::<16>(raw, 160) != sb.meta_uuid {
                return Err(bad("belongs to another filesystem (UUID)".into()));
            }
        }
        let flags2 = if version == 3 { be64(raw, 120) } else { 0 };
        let nextents = if flags2 & FLAG2_NREXT64 != 0 {
            be64(raw, 24)
        } else {
            u64::from(be32(raw, 76))
        };
        let format = match raw[5] {
            0 => Format::Dev,
            1 => Format::Local,
            2 => Format::Extents,
            3 => Format::Btree,
            f => return Err(unsupported(format!("inode {ino}: data fork format {f}"))),
        };
        let core = sb.inode_core_size();
        let literal = raw.len() - core;
        let forkoff = usize::from(raw[82]) * 8;
        let fork_size = if forkoff == 0 { literal } else { forkoff };
        if fork_size > literal {
            return Err(bad(format!(
                "attribute fork offset {forkoff} past the inode"
            )));
        }
        let size = be64(raw, 56);
        if size > i64::MAX as u64 {
            return Err(bad(format!("size {size} is negative")));
        }
        Ok(Inode {
            ino,
            mode: be16(raw, 2),
            uid: be32(raw, 8),
            gid: be32(raw, 12),
            size,
            format,
            nextents,
            realtime: be16(raw, 90) & FLAG_REALTIME != 0,
            times: Times {
                atime: Some(timestamp(raw, 32, flags2)),
                mtime: Some(timestamp(raw, 40, flags2)),
                ctime: Some(timestamp(raw, 48, flags2)),
            },
            fork: raw[core..core + fork_size].to_vec(),
        })
    }

    pub fn kind(&self) -> FileKind {
        match self.mode & S_IFMT {
            S_IFDIR => FileKind::Dir,
            S_IFREG => FileKind::File,
            S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// One of the inode's timestamps at `at`: legacy (be32 signed seconds, be32
/// nanoseconds) or, with bigtime, be64 nanoseconds since -2^31 s.
fn timestamp(raw: &[u8], at: usize, flags2: u64) -> Timestamp {
    if flags2 & FLAG2_BIGTIME != 0 {
        let ns = be64(raw, at);
        Timestamp {
            secs: (ns / 1_000_000_000) as i64 - BIGTIME_EPOCH_OFFSET,
            nsecs: (ns % 1_000_000_000) as u32,
        }
    } else {
        Timestamp {
            secs: i64::from(be32(raw, at) as i32),
            nsecs: be32(raw, at + 4),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::superblock::tests::sector;
    use super::*;
    use crate::inspect::crc32c;

    /// A v3 regular-file inode `ino` with `fork` as its data fork (extents format).
    pub fn raw_inode(sb: &Superblock, ino: u64, mode: u16, format: u8, fork: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; sb.inode_size as usize];
        d[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        d[2..4].copy_from_slice(&mode.to_be_bytes());
        d[4] = 3;
        d[5] = format;
        d[8..12].copy_from_slice(&1000u32.to_be_bytes());
        d[12..16].copy_from_slice(&100u32.to_be_bytes());
        d[152..160].copy_from_slice(&ino.to_be_bytes());
        d[160..176].copy_from_slice(&sb.meta_uuid);
        d[176..176 + fork.len()].copy_from_slice(fork);
        let crc = crc32c::checksum(&d);
        d[100..104].copy_from_slice(&crc.to_le_bytes());
        d
    }

    #[test]
    fn parses_and_checks_crc() {
        let sb = Superblock::parse(&sector()).unwrap();
        let raw = raw_inode(&sb, 131, 0o100644, 2, &[1, 2, 3]);
        let i = Inode::parse(&raw, &sb, 131).unwrap();
        assert_eq!(
            (i.kind(), i.uid, i.gid, i.format),
            (FileKind::File, 1000, 100, Format::Extents)
        );
        assert_eq!(&i.fork[..3], &[1, 2, 3]);
        assert_eq!(i.fork.len(), 512 - 176);
        let err = Inode::parse(&raw, &sb, 132).unwrap_err();
        assert!(err.to_string().contains("records itself"), "{err}");
        let mut flipped = raw.clone();
        flipped[8] ^= 1;
        let err = Inode::parse(&flipped, &sb, 131).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
