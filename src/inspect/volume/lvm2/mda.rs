//! An LVM2 metadata area: its 512-byte header (`mda_header`) and the ring buffer after
//! it, in which each new version of the VG's text metadata is written after the
//! previous one, wrapping at the end. The header's first `raw_locn` points at the
//! committed text and carries its CRC.
//!
//! When that text fails its checksum (a torn write, damage), older versions are usually
//! still in the ring: [`older_copies`] finds them by their first line, so the VG can be
//! read as it was one change earlier rather than not at all.

use super::{lvm_crc, Area};
use crate::inspect::bytes::{checked_field, field, le32, le64, read_array, read_opt};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

pub const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
pub const MDA_HEADER_SIZE: u64 = 512;
/// Largest metadata text read.
pub const MAX_METADATA: u64 = 4 << 20;
/// Largest ring buffer scanned for older copies (LVM's default area is 1 MiB).
const MAX_SCAN: u64 = 16 << 20;
/// Most older copies returned from one ring.
const MAX_COPIES: usize = 64;

/// The parts of a metadata area header we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdaHeader {
    /// Size of the whole area (header included), bounded by the label's area size.
    pub size: u64,
    /// The committed text: offset from the area start, size, CRC.
    pub offset: u64,
    pub text_size: u64,
    pub checksum: u32,
}

/// Reads and checks the header of `area` (magic, CRC, self-offset); `None` when it is
/// not a valid header.
pub fn header(src: &dyn ReadAt, area: &Area) -> Result<Option<MdaHeader>, ReadError> {
    let Some(h) = read_array::<512>(src, area.offset)? else {
        return Ok(None);
    };
    if field(&h, 4, 16) != MDA_MAGIC
        || lvm_crc(&h[4..]) != le32(&h, 0)
        || le64(&h, 24) != area.offset
    {
        return Ok(None);
    }
    let size = if area.size == 0 {
        le64(&h, 32)
    } else {
        le64(&h, 32).min(area.size)
    };
    Ok(Some(MdaHeader {
        size,
        offset: le64(&h, 40),
        text_size: le64(&h, 48),
        checksum: le32(&h, 56),
    }))
}

/// The committed metadata text of `area`, or `None` when the header or the text fail
/// their checks.
pub fn committed_text(src: &dyn ReadAt, area: &Area) -> Result<Option<Vec<u8>>, ReadError> {
    let Some(h) = header(src, area)? else {
        return Ok(None);
    };
    let (offset, size) = (h.offset, h.text_size);
    if size == 0 || size > MAX_METADATA || offset < MDA_HEADER_SIZE || offset >= h.size {
        return Ok(None);
    }
    let first = size.min(h.size - offset);
    let rest = size - first;
    if rest > h.size - MDA_HEADER_SIZE {
        return Ok(None);
    }
    let Some(abs) = area.offset.checked_add(offset) else {
        return Ok(None);
    };
    let Some(mut text) = read_opt(src, abs, first)? else {
        return Ok(None);
    };
    if rest > 0 {
        let Some(wrapped) = read_opt(src, area.offset + MDA_HEADER_SIZE, rest)? else {
            return Ok(None);
        };
        text.extend_from_slice(&wrapped);
    }
    Ok((lvm_crc(&text) == h.checksum).then_some(text))
}

/// Metadata texts still in the ring buffer of `area`: every 512-byte-aligned place that
/// starts like a VG's text (`name {` then `id = `), read up to its NUL (wrapping once).
/// Unverified: the caller parses them and prefers the highest seqno.
pub fn older_copies(src: &dyn ReadAt, area: &Area) -> Result<Vec<Vec<u8>>, ReadError> {
    // The committed copy failed its checksum: never take it back as an "older" one.
    let (size, committed) = match header(src, area)? {
        Some(h) => (h.size, Some(h.offset)),
        None => (area.size, None),
    };
    let size = size
        .min(MAX_SCAN)
        .min(src.size().saturating_sub(area.offset));
    if size <= MDA_HEADER_SIZE {
        return Ok(Vec::new());
    }
    let Some(ring) = read_opt(src, area.offset + MDA_HEADER_SIZE, size - MDA_HEADER_SIZE)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for start in (0..ring.len()).step_by(512) {
        if out.len() >= MAX_COPIES {
            break;
        }
        if committed == Some(MDA_HEADER_SIZE + start as u64) || !looks_like_vg_text(&ring[start..])
        {
            continue;
        }
        let mut text = Vec::new();
        for &b in ring[start..].iter().chain(ring[..start].iter()) {
            if b == 0 || text.len() as u64 >= MAX_METADATA {
                break;
            }
            text.push(b);
        }
        out.push(text);
    }
    Ok(out)
}

/// `name {\nid = "`: how LVM starts every VG text.
fn looks_like_vg_text(b: &[u8]) -> bool {
    let name = b
        .iter()
        .take(129)
        .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'+'))
        .count();
    name > 0 && checked_field(b, name, 9) == Some(b" {\nid = \"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vg_text_starts_are_recognised() {
        assert!(looks_like_vg_text(b"vg-0 {\nid = \"abc\""));
        assert!(!looks_like_vg_text(b" {\nid = \""));
        assert!(!looks_like_vg_text(b"vg0 {\nseqno = 1"));
        assert!(!looks_like_vg_text(b"vg0"));
    }
}
