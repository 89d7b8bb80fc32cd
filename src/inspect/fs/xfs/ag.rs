//! Allocation group headers: the AGF (free space, sector 1 of each AG) and the AGI
//! (inodes, sector 2). The reader finds inodes and blocks by number arithmetic, so it
//! does not need their B+tree roots; it checks them at open (magic, sequence number,
//! length, v5 CRC) because a damaged header is the first sign of a damaged or
//! half-overwritten filesystem, worth a warning in the report.

use super::superblock::Superblock;
use super::verify_crc;
use crate::inspect::bytes::{array, be32};
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadAt;

const AGF_MAGIC: &[u8; 4] = b"XAGF";
const AGI_MAGIC: &[u8; 4] = b"XAGI";
const AGF_CRC: usize = 216;
const AGI_CRC: usize = 312;
/// AGs checked at open: enough to catch damage, bounded on filesystems of thousands of
/// AGs.
const MAX_CHECKED: u64 = 64;

/// Checks the AGF and AGI of the first AGs; one message per damaged header.
pub(super) fn check(src: &dyn ReadAt, sb: &Superblock) -> Result<Vec<String>, FsError> {
    let mut problems = Vec::new();
    let sect = sb.sector_size as usize;
    let mut buf = vec![0u8; sect];
    for agno in 0..sb.ag_count.min(MAX_CHECKED) {
        let expect_len = sb.ag_blocks.min(sb.dblocks - agno * sb.ag_blocks);
        for (name, sector, magic, crc) in [
            ("AGF", 1u64, AGF_MAGIC, AGF_CRC),
            ("AGI", 2, AGI_MAGIC, AGI_CRC),
        ] {
            src.read_exact_at(sb.ag_offset(agno) + sector * sb.sector_size, &mut buf)?;
            let here = format!("allocation group {agno} {name}");
            if &array::<4>(&buf, 0) != magic {
                problems.push(format!("{here}: bad magic"));
                continue;
            }
            if u64::from(be32(&buf, 8)) != agno || u64::from(be32(&buf, 12)) != expect_len {
                problems.push(format!("{here}: sequence number or length do not match"));
                continue;
            }
            if sb.crc() {
                if let Err(e) = verify_crc(&buf, crc, &here) {
                    problems.push(e.to_string());
                }
            }
        }
    }
    Ok(problems)
}
