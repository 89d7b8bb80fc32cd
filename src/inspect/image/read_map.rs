//! The read path shared by the block-table formats (qcow2, VHD, VHDX, VDI and VMDK
//! extents): a format only says what one guest byte maps to (file data, zeros, the parent,
//! or compressed data) and for how many bytes; [`read`] turns that into reads, merging runs
//! so a contiguous image becomes one large read, and reads the parent of a differencing
//! image.

use std::sync::Arc;

use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, ReadAt};

/// What a run of guest bytes reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// The image file, at this offset.
    Host(u64),
    /// Zeros.
    Zero,
    /// The parent image at the same guest offset (zeros without a parent).
    Parent,
    /// Stored compressed; the format reads it with [`BlockMap::read_compressed`] (the
    /// value is the format's own key, for example a grain's sector or a qcow2 L2 entry).
    Compressed(u64),
}

/// A format's mapping from guest bytes to [`Run`]s, and where those runs are read from.
pub(crate) trait BlockMap: Send + Sync {
    /// What one [`read`] keeps between its `map` calls (qcow2: the L2 table in use, so a
    /// run costs one cache lookup per table); `()` for a format that needs nothing.
    type Cursor: Default;
    /// The format's name in errors (qemu-img's).
    const FORMAT: &'static str;
    /// The run at guest byte `guest` and how many bytes from it on share it (at least 1).
    fn map(&self, guest: u64, cursor: &mut Self::Cursor) -> Result<(Run, u64), ReadError>;
    /// Reads `out` from the image file `file` at `host`, which guest byte `guest` maps
    /// to. A run that ends past the end of the file is corruption.
    fn read_host(
        &self,
        file: &dyn ReadAt,
        host: u64,
        guest: u64,
        out: &mut [u8],
    ) -> Result<(), ReadError> {
        let len = out.len();
        if host
            .checked_add(len as u64)
            .is_none_or(|end| end > file.size())
        {
            return Err(ReadError::Corrupt {
                format: Self::FORMAT,
                offset: host,
                message: format!(
                    "guest offset {guest:#x} maps to {len} bytes at {host:#x}, past the end of the file ({} bytes)",
                    file.size()
                ),
            });
        }
        file.read_exact_at(host, out)
    }
    /// Reads `out` at `guest` from the compressed unit `key` returned by `map`.
    fn read_compressed(&self, key: u64, guest: u64, out: &mut [u8]) -> Result<(), ReadError> {
        let _ = (key, out);
        Err(ReadError::Unsupported {
            format: Self::FORMAT,
            message: format!("compressed data at guest offset {guest:#x}"),
        })
    }
}

/// The parent of a differencing image, as far as reads are concerned.
pub(crate) enum Parent {
    /// Not a differencing image: unallocated blocks are zeros.
    None,
    /// A differencing image whose parent was not attached (parsed from memory, for
    /// example): reading an unallocated block is an error, never silent zeros. Holds the
    /// parent's name when the image stores one (qcow2's backing file), for the error.
    NotAttached(Option<String>),
    Attached(Arc<dyn ReadAt>),
}

impl Parent {
    /// Reads `out` at `guest` from the parent; bytes past the parent's end are zeros (a
    /// child may be larger than its parent, as with qcow2).
    pub(crate) fn read(
        &self,
        format: &'static str,
        guest: u64,
        out: &mut [u8],
    ) -> Result<(), ReadError> {
        match self {
            Parent::None => {
                out.fill(0);
                Ok(())
            }
            Parent::NotAttached(name) => {
                let what = match name {
                    Some(name) => format!("backing file {name:?}"),
                    None => "the parent image".to_string(),
                };
                Err(ReadError::Unsupported {
                    format,
                    message: format!("guest offset {guest:#x} is in {what}, which is not opened"),
                })
            }
            Parent::Attached(p) => {
                let avail = p.size().saturating_sub(guest).min(out.len() as u64) as usize;
                let (head, tail) = out.split_at_mut(avail);
                if !head.is_empty() {
                    p.read_exact_at(guest, head)?;
                }
                tail.fill(0);
                Ok(())
            }
        }
    }

    /// Bytes the attached parent (and its own parents) inflated, for [`ReadAt::inflated`].
    pub(crate) fn inflated(&self) -> u64 {
        match self {
            Parent::Attached(p) => p.inflated(),
            Parent::None | Parent::NotAttached(_) => 0,
        }
    }
}

/// Reads guest bytes `[offset, offset + buf.len())` of `map`, whose [`Run::Host`] offsets
/// point into `file` and whose [`Run::Parent`] reads `parent`: the whole `read_exact_at`
/// of a block-map format.
pub(crate) fn read<M: BlockMap + ReadAt>(
    map: &M,
    file: &dyn ReadAt,
    parent: &Parent,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), ReadError> {
    check_range(offset, buf.len(), map.size())?;
    let mut cursor = M::Cursor::default();
    let mut done = 0usize;
    while done < buf.len() {
        let guest = offset + done as u64;
        let want = (buf.len() - done) as u64;
        let (run, first) = map.map(guest, &mut cursor)?;
        let mut len = first.clamp(1, want);
        // A compressed unit is read alone: its key says nothing about the next one's.
        while len < want && !matches!(run, Run::Compressed(_)) {
            let (next, next_len) = map.map(guest + len, &mut cursor)?;
            let continues = match (run, next) {
                (Run::Host(h), Run::Host(n)) => h.checked_add(len) == Some(n),
                (Run::Zero, Run::Zero) | (Run::Parent, Run::Parent) => true,
                _ => false,
            };
            if !continues {
                break;
            }
            len = (len + next_len.max(1)).min(want);
        }
        let out = &mut buf[done..done + len as usize];
        match run {
            Run::Host(host) => map.read_host(file, host, guest, out)?,
            Run::Zero => out.fill(0),
            Run::Parent => parent.read(M::FORMAT, guest, out)?,
            Run::Compressed(key) => map.read_compressed(key, guest, out)?,
        }
        done += len as usize;
    }
    Ok(())
}

/// The run of units (sectors, subclusters) of a block that starts at unit `first`: the
/// first unit's `state`, and the first unit (at most `count`) whose state differs. VHD and
/// VHDX sector bitmaps and qcow2 subcluster bitmaps say per unit where its data is, in
/// each format's own bit order.
pub(crate) fn same_run<T: PartialEq>(first: u64, count: u64, state: impl Fn(u64) -> T) -> (T, u64) {
    let at_first = state(first);
    let mut end = first + 1;
    while end < count && state(end) == at_first {
        end += 1;
    }
    (at_first, end)
}

/// A view of `inner` shifted by `start` bytes, for the extents of a VMDK: an extent's
/// unallocated grain reads its parent at the extent's guest offset, not its own.
pub(crate) struct Shifted {
    pub(crate) inner: Arc<dyn ReadAt>,
    pub(crate) start: u64,
}

impl ReadAt for Shifted {
    fn size(&self) -> u64 {
        self.inner.size().saturating_sub(self.start)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        crate::inspect::source::check_range(offset, buf.len(), self.size())?;
        self.inner.read_exact_at(self.start + offset, buf)
    }
}

/// Checks that no two allocated blocks of a block table overlap each other or the
/// metadata: `blocks` are (host offset, table index) pairs, each `span` bytes long, and
/// `reserved` are the (start, len) ranges of headers and tables. A table with overlapping
/// entries would make two guest blocks share (and later corrupt) the same data.
pub(crate) fn check_no_overlap(
    format: &'static str,
    table_offset: u64,
    mut blocks: Vec<(u64, u64)>,
    span: u64,
    reserved: &[(u64, u64)],
) -> Result<(), ReadError> {
    blocks.sort_unstable();
    let overlap = |a: u64, b: u64, index: u64, what: &str| ReadError::Corrupt {
        format,
        offset: table_offset,
        message: format!(
            "block table entry {index} points to {b:#x}, overlapping {what} at {a:#x}"
        ),
    };
    for pair in blocks.windows(2) {
        let ((a, _), (b, index)) = (pair[0], pair[1]);
        if b < a.saturating_add(span) {
            return Err(overlap(a, b, index, "another block"));
        }
    }
    for &(start, len) in reserved {
        let end = start.saturating_add(len);
        // The first block that ends after the reserved range starts.
        let i = blocks.partition_point(|&(b, _)| b.saturating_add(span) <= start);
        if let Some(&(b, index)) = blocks.get(i) {
            if b < end {
                return Err(overlap(start, b, index, "metadata"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// 4-byte blocks of 16 guest bytes: block 0 at host 8, block 1 zero, block 2 parent,
    /// block 3 at host 12.
    struct Fixed {
        file: MemSource,
        parent: Parent,
    }
    impl BlockMap for Fixed {
        type Cursor = ();
        const FORMAT: &'static str = "test";
        fn map(&self, guest: u64, _: &mut ()) -> Result<(Run, u64), ReadError> {
            let rest = 4 - guest % 4;
            Ok(match guest / 4 {
                0 => (Run::Host(8 + guest % 4), rest),
                1 => (Run::Zero, rest),
                2 => (Run::Parent, rest),
                _ => (Run::Host(12 + guest % 4), rest),
            })
        }
    }
    impl ReadAt for Fixed {
        fn size(&self) -> u64 {
            16
        }
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            read(self, &self.file, &self.parent, offset, buf)
        }
    }
    fn fixed(file: Vec<u8>, parent: Parent) -> Fixed {
        Fixed {
            file: MemSource(file),
            parent,
        }
    }

    #[test]
    fn runs_merge_and_read() {
        let parent = Parent::Attached(Arc::new(MemSource(vec![7u8; 10])));
        let map = fixed((0u8..16).collect(), parent);
        let mut buf = [0xffu8; 16];
        map.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(buf, [8, 9, 10, 11, 0, 0, 0, 0, 7, 7, 0, 0, 12, 13, 14, 15]);
        assert!(
            map.read_exact_at(10, &mut [0u8; 7]).is_err(),
            "past the end"
        );
        let map = fixed((0u8..16).collect(), Parent::NotAttached(None));
        let e = map.read_exact_at(7, &mut [0u8; 3]).unwrap_err();
        assert!(e.to_string().contains("the parent image"), "{e}");
        let map = fixed(vec![0u8; 14], Parent::None);
        assert!(matches!(
            map.read_exact_at(12, &mut [0u8; 4]),
            Err(ReadError::Corrupt { .. })
        ));
    }

    #[test]
    fn same_runs() {
        let bits = [true, true, false, true];
        let bit = |s: u64| bits[s as usize];
        assert_eq!(same_run(0, 4, bit), (true, 2));
        assert_eq!(same_run(2, 4, bit), (false, 3));
        assert_eq!(same_run(3, 4, bit), (true, 4));
        assert_eq!(same_run(0, 1, bit), (true, 1));
    }

    #[test]
    fn overlaps() {
        let ok = vec![(4096, 0), (8192, 1)];
        check_no_overlap("t", 0, ok.clone(), 4096, &[(0, 4096)]).unwrap();
        assert!(check_no_overlap("t", 0, vec![(4096, 0), (6000, 1)], 4096, &[]).is_err());
        assert!(check_no_overlap("t", 0, ok.clone(), 4096, &[(9000, 10)]).is_err());
        assert!(check_no_overlap("t", 0, ok, 4096, &[(0, 4097)]).is_err());
    }
}
