//! Image format detection by magic bytes, never by file name: an uploaded `disk.raw` that is
//! really qcow2 must be read as qcow2 (or refused when the job asserted raw).

use std::fmt;

use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

/// The container formats we can recognise. Only `Raw` and `Qcow2` are readable for now; the
/// others are recognised so that a job fails with "unsupported vmdk" instead of inspecting
/// the container's metadata as if it were a raw disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Raw,
    Qcow2,
    Vmdk,
    /// Microsoft Virtual PC / VHD (qemu calls it `vpc`).
    Vhd,
    Vhdx,
    Vdi,
}

impl ImageFormat {
    /// The format's name as `qemu-img` spells it, so a job's `image.format` uses the same
    /// vocabulary operators already know.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Vhd => "vpc",
            ImageFormat::Vhdx => "vhdx",
            ImageFormat::Vdi => "vdi",
        }
    }

    /// Every name [`ImageFormat::from_name`] accepts.
    pub const NAMES: [&'static str; 7] = ["raw", "qcow2", "vmdk", "vpc", "vhd", "vhdx", "vdi"];

    /// Parses a format name: qemu-img's names, plus `vhd` as an alias of `vpc`.
    pub fn from_name(name: &str) -> Option<ImageFormat> {
        Some(match name {
            "raw" => ImageFormat::Raw,
            "qcow2" => ImageFormat::Qcow2,
            "vmdk" => ImageFormat::Vmdk,
            "vpc" | "vhd" => ImageFormat::Vhd,
            "vhdx" => ImageFormat::Vhdx,
            "vdi" => ImageFormat::Vdi,
            _ => return None,
        })
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes looked at from the start of the file (every magic we know lives below this).
const HEAD_LEN: u64 = 512;
/// The VHD footer is the last 512 bytes of the file.
const VHD_FOOTER_LEN: u64 = 512;

/// Detects the format of `src` from its first and last bytes. Anything unrecognised is raw,
/// like qemu's probing; that is why a job may assert the format instead.
pub fn detect(src: &dyn ReadAt) -> Result<ImageFormat, ReadError> {
    let size = src.size();
    let mut head = vec![0u8; HEAD_LEN.min(size) as usize];
    src.read_exact_at(0, &mut head)?;
    let mut tail = [0u8; 8];
    let tail_read = size >= VHD_FOOTER_LEN;
    if tail_read {
        src.read_exact_at(size - VHD_FOOTER_LEN, &mut tail)?;
    }
    Ok(detect_bytes(&head, tail_read.then_some(&tail[..])))
}

/// Pure decision on already-read bytes (`footer` = first 8 bytes of the last 512, if any).
fn detect_bytes(head: &[u8], footer: Option<&[u8]>) -> ImageFormat {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"QFI\xfb") {
        return ImageFormat::Qcow2;
    }
    // "KDMV": hosted sparse extent; "COWD": ESX sparse extent; a text descriptor file.
    if starts(b"KDMV") || starts(b"COWD") || starts(b"# Disk DescriptorFile") {
        return ImageFormat::Vmdk;
    }
    if starts(b"vhdxfile") {
        return ImageFormat::Vhdx;
    }
    // VDI: a text banner, then the signature 0xbeda107f (little endian) at 0x40.
    if head.get(0x40..0x44) == Some(&[0x7f, 0x10, 0xda, 0xbe][..]) {
        return ImageFormat::Vdi;
    }
    // Dynamic VHDs start with a copy of the footer; fixed VHDs only have it at the end.
    if starts(b"conectix") || footer == Some(&b"conectix"[..]) {
        return ImageFormat::Vhd;
    }
    ImageFormat::Raw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    fn with_head(magic: &[u8], at: usize) -> Vec<u8> {
        let mut v = vec![0u8; 4096];
        v[at..at + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn every_name_parses_and_every_format_is_named() {
        for name in ImageFormat::NAMES {
            assert!(ImageFormat::from_name(name).is_some(), "{name}");
        }
        for f in ImageFormat::NAMES
            .iter()
            .filter_map(|n| ImageFormat::from_name(n))
        {
            assert!(ImageFormat::NAMES.contains(&f.as_str()), "{f}");
        }
        assert_eq!(ImageFormat::from_name("qed"), None);
    }

    #[test]
    fn magics() {
        let cases: [(&[u8], usize, ImageFormat); 7] = [
            (b"QFI\xfb", 0, ImageFormat::Qcow2),
            (b"KDMV", 0, ImageFormat::Vmdk),
            (b"# Disk DescriptorFile", 0, ImageFormat::Vmdk),
            (b"vhdxfile", 0, ImageFormat::Vhdx),
            (&[0x7f, 0x10, 0xda, 0xbe], 0x40, ImageFormat::Vdi),
            (b"conectix", 0, ImageFormat::Vhd),
            (b"conectix", 4096 - 512, ImageFormat::Vhd),
        ];
        for (magic, at, want) in cases {
            let src = MemSource(with_head(magic, at));
            assert_eq!(detect(&src).unwrap(), want, "{magic:?} at {at}");
        }
    }

    #[test]
    fn raw_and_tiny() {
        assert_eq!(
            detect(&MemSource(vec![0u8; 4096])).unwrap(),
            ImageFormat::Raw
        );
        assert_eq!(detect(&MemSource(Vec::new())).unwrap(), ImageFormat::Raw);
        // A truncated magic is not the format.
        assert_eq!(
            detect(&MemSource(b"QFI".to_vec())).unwrap(),
            ImageFormat::Raw
        );
        assert_eq!(
            detect(&MemSource(b"QFI\xfb".to_vec())).unwrap(),
            ImageFormat::Qcow2
        );
        // "conectix" in the middle of a file is just data.
        assert_eq!(
            detect(&MemSource(with_head(b"conectix", 1000))).unwrap(),
            ImageFormat::Raw
        );
    }

    #[test]
    fn names_round_trip() {
        for f in [
            ImageFormat::Raw,
            ImageFormat::Qcow2,
            ImageFormat::Vmdk,
            ImageFormat::Vhd,
            ImageFormat::Vhdx,
            ImageFormat::Vdi,
        ] {
            assert_eq!(ImageFormat::from_name(f.as_str()), Some(f));
        }
        assert_eq!(ImageFormat::from_name("vhd"), Some(ImageFormat::Vhd));
        assert_eq!(ImageFormat::from_name("QCOW2"), None);
    }
}
