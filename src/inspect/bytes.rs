//! Field readers for on-disk structures at fixed offsets.
//!
//! Every superblock, header and table entry this crate parses is a byte buffer read
//! through `ReadAt`; these helpers take a field out of it at an offset the caller has
//! checked (a constant, or a disk value bounded first). A field outside its buffer is
//! then a bug in our code: the unit tests panic on it, pointing at the caller, so such a
//! bug fails a test instead of reading zeros; elsewhere (the worker, fuzzing, the
//! integration tests) it reads as zeros, since a hostile image must never abort a job.
//! An offset that is not checked first goes through [`checked_field`], which says so.
//! Shared by every layer: images, partition tables, volumes, filesystems.

use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

/// The `len` bytes at `at`, or `None` when they are not all inside `b`: for offsets
/// taken from disk that nothing has bounded yet.
pub(crate) fn checked_field(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    at.checked_add(len).and_then(|end| b.get(at..end))
}

/// The `len` bytes at a checked offset `at`; out of range, see the module comment.
#[track_caller]
pub(crate) fn field(b: &[u8], at: usize, len: usize) -> &[u8] {
    let got = checked_field(b, at, len);
    if cfg!(test) {
        assert!(
            got.is_some(),
            "bounds bug: field of {len} bytes at {at} outside a buffer of {} bytes",
            b.len()
        );
    }
    got.unwrap_or(&[])
}

/// Copies `N` bytes at `at` into an array; out of range, see the module comment.
#[track_caller]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    let f = field(b, at, N);
    if f.len() == N {
        out.copy_from_slice(f);
    }
    out
}

#[track_caller]
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array(b, at))
}

#[track_caller]
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

#[track_caller]
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

#[track_caller]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(b, at))
}

#[track_caller]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(b, at))
}

#[track_caller]
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(b, at))
}

/// Formats 16 bytes as a GUID the way Microsoft and UEFI store it: the first three
/// fields little-endian, the last two in byte order (GPT type and partition GUIDs, NTFS
/// object ids). Lower-case; callers upper-case where a tool prints it so.
pub(crate) fn guid_mixed_endian(g: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        le32(g, 0),
        le16(g, 4),
        le16(g, 6),
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

/// Formats 16 bytes in plain byte order (the RFC 4122 text form that ext4, xfs, btrfs
/// and swap store), or `None` for the all-zero "no UUID" value, as blkid does.
pub(crate) fn uuid_be(g: &[u8; 16]) -> Option<String> {
    if g.iter().all(|&b| b == 0) {
        return None;
    }
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
    ))
}

// Reads of small on-disk structures through a byte source, shared by the probe and the
// volume layer.

/// Reads `N` bytes at `offset`, or `None` when the source is too small to hold them
/// (a small partition simply is not that filesystem).
pub(crate) fn read_array<const N: usize>(
    src: &dyn ReadAt,
    offset: u64,
) -> Result<Option<[u8; N]>, ReadError> {
    if !fits(src, offset, N as u64) {
        return Ok(None);
    }
    let mut buf = [0u8; N];
    src.read_exact_at(offset, &mut buf)?;
    Ok(Some(buf))
}

/// Reads `len` bytes at `offset` into a vector, or `None` when they are not inside the
/// source. `len` must already be bounded by the caller.
pub(crate) fn read_opt(
    src: &dyn ReadAt,
    offset: u64,
    len: u64,
) -> Result<Option<Vec<u8>>, ReadError> {
    if !fits(src, offset, len) {
        return Ok(None);
    }
    crate::inspect::source::read_vec(src, offset, len, len).map(Some)
}

fn fits(src: &dyn ReadAt, offset: u64, len: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= src.size())
}

/// A label the way blkid stores one: up to the first NUL, trailing whitespace removed,
/// absent when empty. Invalid UTF-8 is replaced, not rejected.
pub(crate) fn label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    text(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// Trims trailing whitespace (blkid's rtrim) from an already decoded label.
pub(crate) fn text(s: String) -> Option<String> {
    let t = s.trim_end_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    (!t.is_empty()).then(|| t.to_string())
}

/// Decodes UTF-16 (little- or big-endian) code units up to the first NUL, then trims
/// like [`text`] (NTFS, Joliet labels).
pub(crate) fn utf16_label(raw: &[u8], big_endian: bool) -> Option<String> {
    let units = raw
        .chunks_exact(2)
        .map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        })
        .take_while(|&u| u != 0);
    text(
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    )
}

/// `dst ^= src`, byte by byte (parity rebuilds of md, dm-raid and btrfs RAID5/6).
pub fn xor_into(dst: &mut [u8], src: &[u8]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d ^= s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_range() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(field(&b, 3, 0), b"");
        assert_eq!(checked_field(&b, 2, 2), None);
        assert_eq!(checked_field(&b, usize::MAX, 2), None);
    }

    #[test]
    #[should_panic(expected = "bounds bug")]
    fn out_of_range_is_a_loud_bug() {
        le32(&[1u8, 2, 3], 0);
    }

    #[test]
    #[should_panic(expected = "bounds bug")]
    fn overflowing_offset_is_a_loud_bug() {
        field(&[1u8, 2, 3], usize::MAX, 2);
    }

    #[test]
    fn guid_forms() {
        // The EFI System partition type as it sits on disk.
        let esp = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(
            guid_mixed_endian(&esp),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(uuid_be(&[0; 16]), None);
        assert_eq!(
            uuid_be(&esp).unwrap(),
            "28732ac1-1ff8-d211-ba4b-00a0c93ec93b"
        );
    }
}
