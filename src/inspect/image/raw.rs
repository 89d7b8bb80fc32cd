//! A raw image: the file's bytes are the virtual disk. Also the host-file reader under
//! every other format (a qcow2 image reads its tables and clusters through a `RawImage`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, ReadAt};

/// Where the bytes are: a local file, or a remote object read through the fetcher.
enum Backend {
    File(File),
    Remote(super::remote::RemoteFile),
}

/// A regular file read with positional reads, so one handle serves many threads without
/// a seek position to share or lock.
pub struct RawImage {
    file: Backend,
    path: PathBuf,
    size: u64,
}

impl RawImage {
    /// Opens `path` read-only. Only regular files are accepted: a FIFO or a device planted
    /// as a backing file would block or never end.
    pub fn open(path: &Path) -> Result<RawImage, ReadError> {
        let io = |source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Checked before open() too, because opening a FIFO blocks until a writer appears.
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(not_regular(path));
        }
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(not_regular(path));
        }
        Ok(RawImage {
            file: Backend::File(file),
            path: path.to_path_buf(),
            size: meta.len(),
        })
    }

    /// A remote object under the formats; `shown` is its URL without the query.
    pub fn remote(file: super::remote::RemoteFile, shown: &Path) -> RawImage {
        RawImage {
            path: shown.to_path_buf(),
            size: file.size(),
            file: Backend::Remote(file),
        }
    }

    /// The path the image was opened from, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn not_regular(path: &Path) -> ReadError {
    ReadError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
    }
}

impl ReadAt for RawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        let file = match &self.file {
            Backend::File(f) => f,
            Backend::Remote(r) => return r.read_exact_at(offset, buf),
        };
        file.read_exact_at(buf, offset)
            .map_err(|source| ReadError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let img = RawImage::open(&p).unwrap();
        assert_eq!(img.size(), 10_000);
        let mut buf = [0u8; 100];
        img.read_exact_at(9_900, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[9_900..]);
        assert!(matches!(
            img.read_exact_at(9_901, &mut buf),
            Err(ReadError::OutOfRange {
                offset: 9_901,
                len: 100,
                size: 10_000
            })
        ));
        assert!(matches!(
            img.read_exact_at(u64::MAX, &mut buf),
            Err(ReadError::OutOfRange { .. })
        ));
    }

    #[test]
    fn missing_and_not_regular() {
        let dir = tempfile::tempdir().unwrap();
        let err = RawImage::open(&dir.path().join("nope")).err().unwrap();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = RawImage::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
