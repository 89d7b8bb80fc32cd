//! Short-form directories: small directories stored inside the inode's data fork. A
//! header (entry count, count of 8-byte inode numbers, parent inode) and packed entries
//! (name length, a 2-byte offset hint, the name, the file type when the `ftype` feature
//! is on, the inode number in 4 or 8 bytes). `.` and `..` are implicit.

use super::corrupt;
use super::dir::Entry;
use crate::inspect::bytes::{be32, be64, field};
use crate::inspect::fs::FsError;

/// Calls `f` for each entry of the short-form directory `fork` (the first `size` bytes
/// of the inode's data fork); `f` returns false to stop.
pub(super) fn for_each(
    fork: &[u8],
    size: u64,
    ftype: bool,
    ino: u64,
    f: &mut dyn FnMut(Entry) -> bool,
) -> Result<(), FsError> {
    let bad = |what: &str| corrupt(format!("short-form directory {ino}: {what}"));
    if size > fork.len() as u64 || size < 6 {
        return Err(bad("size does not fit the inode"));
    }
    let data = &fork[..size as usize];
    let count = usize::from(data[0]);
    let wide = data[1] != 0;
    let ino_len = if wide { 8 } else { 4 };
    let mut pos = 2 + ino_len;
    for _ in 0..count {
        let namelen = usize::from(*data.get(pos).ok_or_else(|| bad("entry past the end"))?);
        let name_at = pos + 3;
        let ino_at = name_at + namelen + usize::from(ftype);
        let end = ino_at + ino_len;
        if namelen == 0 || end > data.len() {
            return Err(bad("entry past the end"));
        }
        let child = if wide {
            be64(data, ino_at)
        } else {
            u64::from(be32(data, ino_at))
        };
        let entry = Entry {
            name: field(data, name_at, namelen).to_vec(),
            ino: child,
            ftype: ftype.then(|| data[name_at + namelen]),
        };
        if !f(entry) {
            return Ok(());
        }
        pos = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_with_and_without_ftype() {
        // Two entries, 4-byte inode numbers, parent 128.
        let mut d = vec![2u8, 0, 0, 0, 0, 128];
        d.extend([1, 0, 0x30, b'a', 1, 0, 0, 0, 200]);
        d.extend([2, 0, 0x40, b'b', b'c', 2, 0, 0, 1, 0]);
        let mut seen = Vec::new();
        for_each(&d, d.len() as u64, true, 128, &mut |e| {
            seen.push(e);
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].name.as_slice(), seen[0].ino, seen[0].ftype),
            (&b"a"[..], 200, Some(1))
        );
        assert_eq!((seen[1].name.as_slice(), seen[1].ino), (&b"bc"[..], 256));
        // Without ftype the same bytes misparse into an entry past the end.
        assert!(for_each(&d, d.len() as u64, false, 128, &mut |_| true).is_err());
        let mut truncated = d.clone();
        truncated[0] = 3;
        assert!(for_each(&truncated, d.len() as u64, true, 128, &mut |_| true).is_err());
    }
}
