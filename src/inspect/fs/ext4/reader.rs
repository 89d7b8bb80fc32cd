//! The bridge from our byte sources to ext4-view's `Ext4Read`.

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ext4_view::Ext4Read;

use super::superblock;

use crate::inspect::source::ReadAt;

/// Lets ext4-view read through any [`ReadAt`] (raw, qcow2, a partition slice), so its
/// reads count against the job's budget and its errors keep their image-layer detail.
pub(super) struct SourceReader {
    src: Arc<dyn ReadAt>,
    /// Set once the caller gave up on this filesystem; later reads fail at once so a
    /// loop inside ext4-view that still reads the disk ends quickly.
    abandoned: Arc<AtomicBool>,
    /// Replacement bytes for the primary superblock, shown instead of the disk's: how
    /// a journal ext4-view cannot replay is skipped (see `superblock::without_recovery`).
    superblock: Option<Vec<u8>>,
}

impl SourceReader {
    pub(super) fn new(
        src: Arc<dyn ReadAt>,
        abandoned: Arc<AtomicBool>,
        superblock: Option<Vec<u8>>,
    ) -> SourceReader {
        SourceReader {
            src,
            abandoned,
            superblock,
        }
    }
}

impl Ext4Read for SourceReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn Error + Send + Sync + 'static>> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Err(Box::new(Abandoned));
        }
        self.src.read_exact_at(start_byte, dst)?;
        if let Some(sb) = &self.superblock {
            overlay(dst, start_byte, sb, superblock::OFFSET);
        }
        Ok(())
    }
}

/// Copies the part of `patch` (which lives at byte `at`) that overlaps the read of
/// `dst` at byte `start` into `dst`.
fn overlay(dst: &mut [u8], start: u64, patch: &[u8], at: u64) {
    let end = start.saturating_add(dst.len() as u64);
    let patch_end = at + patch.len() as u64;
    let (from, to) = (start.max(at), end.min(patch_end));
    if from < to {
        let (d, p, n) = (
            (from - start) as usize,
            (from - at) as usize,
            (to - from) as usize,
        );
        dst[d..d + n].copy_from_slice(&patch[p..p + n]);
    }
}

/// The read error returned after the filesystem was abandoned.
#[derive(Debug, thiserror::Error)]
#[error("the ext4 reader was abandoned after a timeout")]
pub(super) struct Abandoned;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::{MemSource, ReadError};

    #[test]
    fn reads_pass_through_and_keep_image_errors() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut r = SourceReader::new(Arc::new(MemSource(vec![1, 2, 3, 4])), flag.clone(), None);
        let mut buf = [0u8; 2];
        r.read(1, &mut buf).unwrap();
        assert_eq!(buf, [2, 3]);
        let err = r.read(3, &mut buf).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ReadError>(),
            Some(ReadError::OutOfRange { .. })
        ));
        flag.store(true, Ordering::Relaxed);
        let err = r.read(0, &mut buf).unwrap_err();
        assert!(err.downcast_ref::<Abandoned>().is_some());
    }

    #[test]
    fn overlay_replaces_only_the_overlap() {
        let mut dst = [0u8; 6];
        overlay(&mut dst, 10, &[1, 2, 3, 4], 8);
        assert_eq!(dst, [3, 4, 0, 0, 0, 0]);
        let mut dst = [0u8; 6];
        overlay(&mut dst, 10, &[1, 2, 3], 14);
        assert_eq!(dst, [0, 0, 0, 0, 1, 2]);
        let mut dst = [9u8; 2];
        overlay(&mut dst, 0, &[1], 5);
        assert_eq!(dst, [9, 9]);
    }
}
