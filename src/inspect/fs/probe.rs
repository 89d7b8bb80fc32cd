//! Identifies what a partition (or a whole disk) holds from its superblock: type, UUID,
//! label and size, reported the way `blkid -p` reports them so fstab's `UUID=` and
//! `LABEL=` resolve exactly as on the guest.
//!
//! One small module per format under `probe/`; each checks what blkid checks (magic,
//! sanity of the geometry, superblock checksum where the format has one) so a stale or
//! random signature is not mistaken for a filesystem. Probing never allocates more than
//! a few pages per format and follows no chain further than a fixed bound.

mod btrfs;
mod ext;
pub(crate) mod fat;
mod iso9660;
mod ntfs;
mod swap;
mod xfs;

pub(crate) use crate::inspect::bytes::{label, read_array, read_opt, text, utf16_label};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;
use crate::inspect::volume::{luks, lvm2, md::superblock};

/// What a probe found on one block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// blkid's TYPE: "ext4", "xfs", "vfat", "swap", "LVM2_member", "crypto_LUKS", ...
    pub fs_type: &'static str,
    /// blkid's UUID, in the same text form.
    pub uuid: Option<String>,
    /// blkid's LABEL, decoded to UTF-8 (FAT labels from code page 850, as dosfstools).
    pub label: Option<String>,
    /// Bytes the filesystem spans according to its superblock (blocks x block size; the
    /// usable swap area; the PV size for LVM2); `None` when the format does not say.
    pub size: Option<u64>,
}

/// One format's probe.
type ProbeFn = fn(&dyn ReadAt) -> Result<Option<Probed>, ReadError>;

/// Probes in a fixed order; the first match wins. Containers come first (their payload
/// may hold anything), then formats with strong magic, then FAT (whose signature is
/// weak), then iso9660 and swap.
const PROBES: [ProbeFn; 11] = [
    probe_md,
    probe_luks,
    probe_bitlocker,
    probe_lvm2,
    ext::probe,
    xfs::probe,
    btrfs::probe,
    ntfs::probe,
    fat::probe,
    iso9660::probe,
    swap::probe,
];

/// Identifies the filesystem or container on `src`.
///
/// `Ok(None)`: nothing recognised (or a corrupt superblock that fails blkid's checks).
/// `Err`: a read failed for a reason other than the source being too small (budget
/// exhausted, I/O error), so the answer is unknown.
pub fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    for probe in PROBES {
        if let Some(found) = probe(src)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// md members first: a raid1 member with its superblock at the end also shows the
/// array's filesystem at offset 0, which must not be read as the member's own.
fn probe_md(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    Ok(superblock::detect(src)?.map(|sb| Probed {
        fs_type: "linux_raid_member",
        uuid: Some(sb.uuid_blkid()),
        label: sb.name.clone(),
        size: None,
    }))
}

fn probe_luks(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    Ok(luks::detect(src)?.map(|h| Probed {
        fs_type: "crypto_LUKS",
        uuid: h.uuid,
        label: h.label,
        size: None,
    }))
}

fn probe_bitlocker(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    Ok(luks::detect_bitlocker(src)?.then_some(Probed {
        fs_type: "BitLocker",
        uuid: None,
        label: None,
        size: None,
    }))
}

fn probe_lvm2(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    Ok(lvm2::detect(src)?.map(|pv| Probed {
        fs_type: "LVM2_member",
        uuid: Some(pv.uuid),
        label: None,
        size: Some(pv.device_size),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    #[test]
    fn labels_are_cut_and_trimmed_like_blkid() {
        assert_eq!(label(b"root  \0garbage"), Some("root".into()));
        assert_eq!(label(b"   \0"), None);
        assert_eq!(label(b"\xffx"), Some("\u{fffd}x".into()));
        assert_eq!(
            utf16_label(&[b'a', 0, b' ', 0, 0, 0, b'z', 0], false),
            Some("a".into())
        );
    }

    #[test]
    fn nothing_on_zeros_or_tiny_sources() {
        assert_eq!(probe(&MemSource(vec![0; 1 << 20])).unwrap(), None);
        assert_eq!(probe(&MemSource(vec![0; 3])).unwrap(), None);
        assert_eq!(probe(&MemSource(Vec::new())).unwrap(), None);
    }
}
