//! Translation of ext4-view's errors into the filesystem layer's [`FsError`].

use ext4_view::Ext4Error;

use super::reader::Abandoned;
use crate::inspect::fs::FsError;
use crate::inspect::source::ReadError;

/// Maps `err`, raised while working on `path` (empty while loading), to our error enum,
/// keeping the image-layer error of a failed read intact.
pub(super) fn map_error(err: Ext4Error, path: &str) -> FsError {
    let at = |what: String| {
        if path.is_empty() {
            what
        } else {
            format!("{path}: {what}")
        }
    };
    match err {
        Ext4Error::NotFound | Ext4Error::NotAbsolute | Ext4Error::MalformedPath => {
            FsError::NotFound(path.to_string())
        }
        Ext4Error::NotADirectory => FsError::NotADirectory(path.to_string()),
        Ext4Error::IsADirectory => FsError::IsADirectory(path.to_string()),
        Ext4Error::NotASymlink => FsError::NotASymlink(path.to_string()),
        Ext4Error::TooManySymlinks => FsError::SymlinkLoop(path.to_string()),
        Ext4Error::IsASpecialFile => unsupported(at("is a device, fifo or socket".into())),
        Ext4Error::Encrypted => unsupported(at("is encrypted (fscrypt)".into())),
        Ext4Error::PathTooLong => unsupported(at("path is longer than 4096 bytes".into())),
        Ext4Error::FileTooLarge => unsupported(at("file does not fit in memory".into())),
        Ext4Error::NotUtf8 => corrupt(at("data is not UTF-8".into())),
        Ext4Error::Incompatible(why) => unsupported(at(why.to_string())),
        Ext4Error::Corrupt(why) => corrupt(at(why.to_string())),
        Ext4Error::Io(inner) => match inner.downcast::<ReadError>() {
            Ok(image) => FsError::Image(*image),
            Err(other) if other.is::<Abandoned>() => corrupt(at(other.to_string())),
            Err(other) => corrupt(at(format!("read failed: {other}"))),
        },
        // ext4-view's enum is non-exhaustive; a new variant still says what went wrong.
        other => corrupt(at(other.to_string())),
    }
}

pub(super) fn corrupt(message: String) -> FsError {
    FsError::Corrupt {
        fs: "ext4",
        message,
    }
}

pub(super) fn unsupported(message: String) -> FsError {
    FsError::Unsupported {
        fs: "ext4",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kinds_and_keeps_image_errors() {
        assert!(matches!(map_error(Ext4Error::NotFound, "/a"), FsError::NotFound(p) if p == "/a"));
        assert!(matches!(
            map_error(Ext4Error::IsADirectory, "/a"),
            FsError::IsADirectory(_)
        ));
        assert!(matches!(
            map_error(Ext4Error::Encrypted, "/a"),
            FsError::Unsupported { .. }
        ));
        let io = ReadError::OutOfRange {
            offset: 9,
            len: 1,
            size: 4,
        };
        assert!(matches!(
            map_error(Ext4Error::Io(Box::new(io)), "/a"),
            FsError::Image(ReadError::OutOfRange { offset: 9, .. })
        ));
    }
}
