//! Symbolic links: a target of up to 1024 bytes, inside the inode when it fits (local
//! format) or in "remote" blocks of the data fork. On v5 filesystems each remote block
//! starts with a header (magic, the target offset and byte count it holds, CRC, owner).

use super::bmap::ExtentMap;
use super::inode::{Format, Inode};
use super::superblock::Superblock;
use super::{corrupt, verify_crc};
use crate::inspect::bytes::{array, be32, be64};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

/// Longest symlink target XFS stores.
const MAX_LEN: u64 = 1024;
const MAGIC: &[u8; 4] = b"XSLM";
const HEADER_V5: usize = 56;
const CRC_OFFSET: usize = 12;

/// The target bytes of symlink `inode`.
pub(super) fn target(src: &dyn ReadAt, sb: &Superblock, inode: &Inode) -> Result<Vec<u8>, FsError> {
    let ino = inode.ino;
    let len = inode.size;
    if len == 0 || len > MAX_LEN {
        return Err(corrupt(format!("symlink {ino}: target of {len} bytes")));
    }
    match inode.format {
        Format::Local => inode
            .fork
            .get(..len as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| corrupt(format!("symlink {ino}: target larger than the inode"))),
        Format::Extents | Format::Btree => {
            let map = ExtentMap::read(src, sb, inode)?;
            let bs = sb.block_size as usize;
            let per_block = if sb.crc() { bs - HEADER_V5 } else { bs };
            let blocks = (len as usize).div_ceil(per_block);
            let mut out = Vec::with_capacity(len as usize);
            let mut buf = vec![0u8; bs];
            for b in 0..blocks {
                map.read_at(src, sb, (b * bs) as u64, &mut buf)?;
                let want = (len as usize - out.len()).min(per_block);
                if sb.crc() {
                    let here = format!("symlink {ino}: block {b}");
                    if &array::<4>(&buf, 0) != MAGIC {
                        return Err(corrupt(format!("{here}: bad magic")));
                    }
                    verify_crc(&buf, CRC_OFFSET, &here)?;
                    let (offset, bytes) = (be32(&buf, 4) as usize, be32(&buf, 8) as usize);
                    if offset != out.len() || bytes != want || be64(&buf, 32) != ino {
                        return Err(corrupt(format!(
                            "{here}: header disagrees with the inode (offset, length or owner)"
                        )));
                    }
                    out.extend_from_slice(&buf[HEADER_V5..HEADER_V5 + want]);
                } else {
                    out.extend_from_slice(&buf[..want]);
                }
            }
            Ok(out)
        }
        Format::Dev => Err(corrupt(format!("symlink {ino} has a device data fork"))),
    }
}
