//! Initramfs images (`/boot/initramfs-<v>.img`, `/boot/initrd.img-<v>`): what files
//! the kernel would unpack before it mounts the root filesystem, for the migration
//! question "can this kernel find its disk on the new hypervisor".
//!
//! An image is a sequence of cpio "newc" archives ([`cpio`]), each possibly compressed
//! ([`decompress`]: gzip, zstd, xz, lzma), with NUL padding between them: dracut and
//! initramfs-tools put an uncompressed early-microcode archive first and the
//! compressed main archive after it. Only names are read; data is skipped.
//!
//! The image is hostile input: decompressed bytes are capped and charged to the job's
//! work budget, decoder memory is capped (window and dictionary sizes checked before
//! allocation), and names are bounded.

mod cpio;
mod decompress;

#[cfg(test)]
pub(crate) use cpio::tests::newc as newc_for_tests;
pub use cpio::CpioScanner;
#[cfg(test)]
pub(crate) use decompress::tests::gzip as decompress_tests_gzip;
pub use decompress::{Compression, MAX_UNPACKED};

use crate::inspect::work::{Work, WorkStop};

/// Largest initramfs file read (real ones are 10-200 MiB).
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// Why an initramfs could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("no cpio archive or known compression at byte {offset}")]
    UnknownFormat { offset: u64 },
    #[error("{0} compression is not supported")]
    Unsupported(&'static str),
    #[error("corrupt cpio archive at byte {offset} of its stream: {message}")]
    Cpio { offset: u64, message: String },
    #[error("corrupt {format} stream: {message}")]
    Decompress {
        format: &'static str,
        message: String,
    },
    #[error("initramfs is larger than {limit} bytes once decompressed")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Work(#[from] WorkStop),
}

/// What a scan went through: each segment's format, in order (`cpio` for an
/// uncompressed archive, else the compression's name).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    pub segments: Vec<&'static str>,
    /// Entries read (trailers included).
    pub entries: u64,
}

/// Reads every entry name of the image `data`, calling `on_entry(name, mode)` for each
/// (names without a leading `./`). On an error, the entries before it have been
/// reported.
pub fn scan(
    data: &[u8],
    work: &Work,
    on_entry: &mut dyn FnMut(&str, u32) -> Result<(), InitramfsError>,
) -> Result<Scan, InitramfsError> {
    let mut out = Scan::default();
    let mut at = 0usize;
    loop {
        at += data[at..].iter().take_while(|&&b| b == 0).count();
        let rest = &data[at..];
        if rest.is_empty() {
            return Ok(out);
        }
        if rest.starts_with(b"0707") {
            // An uncompressed archive (early microcode, or the whole image).
            let mut s = CpioScanner::new(true);
            let used = s.feed(rest, &mut |name, mode| {
                work.charge(1)?;
                on_entry(name, mode)
            })?;
            out.entries += s.entries();
            out.segments.push("cpio");
            if !s.trailer_seen() {
                s.finish()?;
                return Ok(out);
            }
            at += used;
            continue;
        }
        let Some(kind) = Compression::detect(rest) else {
            return Err(InitramfsError::UnknownFormat { offset: at as u64 });
        };
        out.segments.push(kind.name());
        // The compressed archive is the last segment in practice (the kernel would go
        // on after it; nothing writes more).
        let mut s = CpioScanner::new(false);
        let mut charged = 0u64;
        decompress::unpack(kind, rest, &mut |chunk, total| {
            // One unit of work per 4 KiB produced.
            let units = total / 4096 - charged;
            charged += units;
            work.charge(units)?;
            s.feed(chunk, &mut |name, mode| on_entry(name, mode))
                .map(|_| ())
        })?;
        out.entries += s.entries();
        s.finish()?;
        return Ok(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(data: &[u8]) -> (Result<Scan, InitramfsError>, Vec<String>) {
        let mut names = Vec::new();
        let r = scan(data, &Work::unlimited(), &mut |n, _| {
            names.push(n.to_string());
            Ok(())
        });
        (r, names)
    }

    #[test]
    fn microcode_prefix_then_gzip_and_zstd_main_archives() {
        let early = cpio::tests::newc(&[("kernel/x86/microcode/GenuineIntel.bin", b"ucode")]);
        let main = cpio::tests::newc(&[("lib/modules/6.1.0/kernel/virtio_net.ko", &[1u8; 5000])]);
        let mut gz = early.clone();
        gz.extend([0u8; 100]);
        gz.extend(decompress::tests::gzip(&main));
        let (r, names) = list(&gz);
        assert_eq!(r.unwrap().segments, ["cpio", "gzip"]);
        assert_eq!(
            names,
            [
                "kernel/x86/microcode/GenuineIntel.bin",
                "lib/modules/6.1.0/kernel/virtio_net.ko"
            ]
        );
        // Uncompressed only; and garbage where a compressed stream should be.
        let (r, names) = list(&main);
        assert_eq!(r.unwrap().segments, ["cpio"]);
        assert_eq!(names.len(), 1);
        let mut bad = early.clone();
        bad.extend(b"garbage");
        let (r, _) = list(&bad);
        assert!(
            matches!(r, Err(InitramfsError::UnknownFormat { offset }) if offset == early.len() as u64)
        );
        let mut bz = early;
        bz.extend(b"BZh91AY&SY");
        assert!(matches!(
            list(&bz).0,
            Err(InitramfsError::Unsupported("bzip2"))
        ));
    }

    #[test]
    fn work_budget_stops_a_large_stream() {
        let main = cpio::tests::newc(&[("big", &vec![0u8; 1 << 20])]);
        let gz = decompress::tests::gzip(&main);
        let r = scan(&gz, &Work::new(10, None), &mut |_, _| Ok(()));
        assert!(matches!(r, Err(InitramfsError::Work(_))), "{r:?}");
    }
}
