//! Linux swap areas (and the hibernation images written over them).
//!
//! The signature sits in the last 10 bytes of the first page, so it is looked for at
//! each page size Linux uses; the v1 header (UUID, label, last page) is at 1 KiB.

use super::{label, read_array, Probed};
use crate::inspect::bytes::{array, field};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
/// blkid ignores devices smaller than ten pages.
const MIN_SIZE: u64 = 10 * 4096;
const HEADER_OFFSET: u64 = 1024;
/// TuxOnIce keeps a valid swap signature behind its own magic at offset 0.
const TUXONICE: &[u8; 8] = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c";
const SUSPEND_MAGICS: [&[u8]; 4] = [b"S1SUSPEND", b"S2SUSPEND", b"ULSUSPEND", b"LINHIB0001"];

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    if src.size() < MIN_SIZE {
        return Ok(None);
    }
    let Some(start) = read_array::<8>(src, 0)? else {
        return Ok(None);
    };
    for page in PAGE_SIZES {
        let Some(magic) = read_array::<10>(src, page - 10)? else {
            return Ok(None);
        };
        if &magic == b"SWAP-SPACE" {
            if &start == TUXONICE {
                return Ok(None);
            }
            // Version 0 has no header fields.
            return Ok(Some(Probed {
                fs_type: "swap",
                uuid: None,
                label: None,
                size: None,
            }));
        }
        if &magic == b"SWAPSPACE2" {
            if &start == TUXONICE {
                return Ok(None);
            }
            return v1_header(src, "swap", page, true);
        }
        if SUSPEND_MAGICS
            .iter()
            .any(|m| field(&magic, 0, m.len()) == *m)
        {
            return v1_header(src, "swsuspend", page, false);
        }
    }
    Ok(None)
}

/// Reads the v1 header; `strict` applies the version and last-page checks blkid makes
/// for real swap (not for hibernation images).
fn v1_header(
    src: &dyn ReadAt,
    fs_type: &'static str,
    page: u64,
    strict: bool,
) -> Result<Option<Probed>, ReadError> {
    let Some(h) = read_array::<516>(src, HEADER_OFFSET)? else {
        return Ok(None);
    };
    let version = u32::from_le_bytes(array(&h, 0));
    // Written in the host's byte order: a big-endian guest's swap reads swapped.
    let big_endian = version != 1 && version.swap_bytes() == 1;
    let last_page = if big_endian {
        u32::from_be_bytes(array(&h, 4))
    } else {
        u32::from_le_bytes(array(&h, 4))
    };
    if strict && ((version != 1 && !big_endian) || last_page == 0) {
        return Ok(None);
    }
    // blkid's "no garbage" check before trusting UUID and label.
    let clean = field(&h, 44 + 32 * 4, 8) == [0; 8];
    let (uuid, name) = if clean {
        (
            crate::inspect::bytes::uuid_be(&array(&h, 12)),
            label(&h[28..44]),
        )
    } else {
        (None, None)
    };
    Ok(Some(Probed {
        fs_type,
        uuid,
        label: name,
        size: Some(u64::from(last_page) * page),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    #[test]
    fn v1_at_each_page_size() {
        for page in PAGE_SIZES {
            let mut d = vec![0u8; 20 * 65536];
            d[page as usize - 10..page as usize].copy_from_slice(b"SWAPSPACE2");
            d[1024..1028].copy_from_slice(&1u32.to_le_bytes());
            d[1028..1032].copy_from_slice(&19u32.to_le_bytes());
            d[1036] = 0x99;
            d[1052..1056].copy_from_slice(b"swap");
            let p = probe(&MemSource(d)).unwrap().unwrap();
            assert_eq!(
                (p.fs_type, p.label.as_deref(), p.size),
                ("swap", Some("swap"), Some(19 * page))
            );
            assert_eq!(
                p.uuid.as_deref(),
                Some("99000000-0000-0000-0000-000000000000")
            );
        }
    }

    #[test]
    fn bad_version_or_tuxonice_is_not_swap() {
        let mut d = vec![0u8; 20 * 4096];
        d[4096 - 10..4096].copy_from_slice(b"SWAPSPACE2");
        d[1028..1032].copy_from_slice(&19u32.to_le_bytes());
        assert_eq!(probe(&MemSource(d.clone())).unwrap(), None);
        d[1024..1028].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(
            probe(&MemSource(d.clone())).unwrap().unwrap().size,
            Some(u64::from(19u32.swap_bytes()) * 4096)
        );
        d[..8].copy_from_slice(TUXONICE);
        assert_eq!(probe(&MemSource(d)).unwrap(), None);
    }
}
