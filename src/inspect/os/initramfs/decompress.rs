//! The compressions an initramfs archive comes in, recognised by their magic bytes as
//! the kernel does, and streamed through a decoder in chunks: gzip (miniz_oxide),
//! zstd (ruzstd), xz and legacy lzma (lzma-rust2). bzip2, lz4 and lzo are named but
//! not decoded (no current distribution writes them).
//!
//! Bounds: at most [`MAX_UNPACKED`] bytes come out; a zstd window or an lzma dictionary
//! above [`MAX_DECODER_MEMORY`] is refused before the decoder allocates it.

use std::io::Read;

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use super::InitramfsError;
use crate::inspect::image::qcow2::compressed::zstd_window_size;

/// Most bytes one initramfs may decompress to (real ones: 30-400 MiB).
pub const MAX_UNPACKED: u64 = 2 << 30;
/// Largest decoder window or dictionary accepted (xz -9 uses 64 MiB).
const MAX_DECODER_MEMORY: u64 = 128 << 20;
const CHUNK: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Xz,
    Lzma,
    Bzip2,
    Lz4,
    Lzo,
}

impl Compression {
    /// The compression whose magic starts `b`.
    pub fn detect(b: &[u8]) -> Option<Compression> {
        Some(if b.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if b.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if b.starts_with(&[0x5d, 0, 0]) {
            Compression::Lzma
        } else if b.starts_with(b"BZh") {
            Compression::Bzip2
        } else if b.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
            Compression::Lz4
        } else if b.starts_with(&[0x89, b'L', b'Z', b'O']) {
            Compression::Lzo
        } else {
            return None;
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Lzma => "lzma",
            Compression::Bzip2 => "bzip2",
            Compression::Lz4 => "lz4",
            Compression::Lzo => "lzo",
        }
    }
}

/// Output sink: each decompressed chunk and the total so far.
type Sink<'a> = dyn FnMut(&[u8], u64) -> Result<(), InitramfsError> + 'a;

fn corrupt(kind: Compression, message: impl Into<String>) -> InitramfsError {
    InitramfsError::Decompress {
        format: kind.name(),
        message: message.into(),
    }
}

/// Decompresses `input` (starting with `kind`'s magic) into `sink`.
pub fn unpack(kind: Compression, input: &[u8], sink: &mut Sink) -> Result<(), InitramfsError> {
    match kind {
        Compression::Gzip => gunzip(input, sink),
        Compression::Zstd => unzstd(input, sink),
        Compression::Xz => {
            let r = lzma_rust2::XzReader::new_mem_limit(input, false, mem_limit_kb());
            drain(kind, r, sink)
        }
        Compression::Lzma => {
            let r = lzma_rust2::LzmaReader::new_mem_limit(input, mem_limit_kb(), None)
                .map_err(|e| corrupt(kind, e.to_string()))?;
            drain(kind, r, sink)
        }
        other => Err(InitramfsError::Unsupported(other.name())),
    }
}

fn mem_limit_kb() -> u32 {
    (MAX_DECODER_MEMORY >> 10) as u32
}

/// Passes everything `r` produces to `sink`, within [`MAX_UNPACKED`].
fn drain(kind: Compression, mut r: impl Read, sink: &mut Sink) -> Result<(), InitramfsError> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(kind, e.to_string())),
        };
        total += n as u64;
        if total > MAX_UNPACKED {
            return Err(InitramfsError::TooLarge {
                limit: MAX_UNPACKED,
            });
        }
        sink(&buf[..n], total)?;
    }
}

/// One zstd frame (what `zstd` writes for a stream), its window size checked first.
fn unzstd(input: &[u8], sink: &mut Sink) -> Result<(), InitramfsError> {
    let kind = Compression::Zstd;
    let window = zstd_window_size(input).map_err(|e| corrupt(kind, e))?;
    if window > MAX_DECODER_MEMORY {
        return Err(corrupt(
            kind,
            format!("window of {window} bytes exceeds {MAX_DECODER_MEMORY}"),
        ));
    }
    let mut src = input;
    let dec = ruzstd::decoding::StreamingDecoder::new(&mut src)
        .map_err(|e| corrupt(kind, format!("frame header: {e}")))?;
    drain(kind, dec, sink)
}

/// A gzip member (RFC 1952): its header, then raw deflate.
fn gunzip(input: &[u8], sink: &mut Sink) -> Result<(), InitramfsError> {
    let kind = Compression::Gzip;
    let short = || corrupt(kind, "header is truncated");
    if input.get(2) != Some(&8) {
        return Err(corrupt(kind, "not deflate-compressed"));
    }
    let flags = *input.get(3).ok_or_else(short)?;
    let mut at = 10usize;
    if flags & 0x04 != 0 {
        let n = input.get(at..at + 2).ok_or_else(short)?;
        at += 2 + usize::from(u16::from_le_bytes([n[0], n[1]]));
    }
    for bit in [0x08, 0x10] {
        if flags & bit != 0 {
            let rest = input.get(at..).ok_or_else(short)?;
            at += 1 + rest.iter().position(|&b| b == 0).ok_or_else(short)?;
        }
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    let mut data = input.get(at..).ok_or_else(short)?;
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let r = inflate(&mut state, data, &mut buf, MZFlush::None);
        data = &data[r.bytes_consumed..];
        total += r.bytes_written as u64;
        if total > MAX_UNPACKED {
            return Err(InitramfsError::TooLarge {
                limit: MAX_UNPACKED,
            });
        }
        if r.bytes_written > 0 {
            sink(&buf[..r.bytes_written], total)?;
        }
        match r.status {
            Ok(MZStatus::StreamEnd) => return Ok(()),
            Ok(_) if r.bytes_consumed > 0 || r.bytes_written > 0 => {}
            Ok(_) | Err(MZError::Buf) => return Err(corrupt(kind, "stream is truncated")),
            Err(e) => return Err(corrupt(kind, format!("{e:?}"))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A gzip file of `data` with a file name in its header.
    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3];
        out.extend(b"initrd\0");
        out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        out.extend(crc32fast::hash(data).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out
    }

    fn all(kind: Compression, input: &[u8]) -> Result<Vec<u8>, InitramfsError> {
        let mut out = Vec::new();
        unpack(kind, input, &mut |c, total| {
            out.extend(c);
            assert_eq!(total, out.len() as u64);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn gzip_and_zstd_round_trip_and_truncation_is_an_error() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
            .collect();
        let gz = gzip(&data);
        assert_eq!(Compression::detect(&gz), Some(Compression::Gzip));
        assert_eq!(all(Compression::Gzip, &gz).unwrap(), data);
        assert!(all(Compression::Gzip, &gz[..gz.len() / 2]).is_err());
        let zst = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(Compression::detect(&zst), Some(Compression::Zstd));
        assert_eq!(all(Compression::Zstd, &zst).unwrap(), data);
        assert!(all(Compression::Zstd, &zst[..zst.len() / 2]).is_err());
        assert!(matches!(
            all(Compression::Lzo, b"\x89LZO"),
            Err(InitramfsError::Unsupported("lzo"))
        ));
        // A legacy lzma header asking for a 4 GiB dictionary is refused up front.
        let mut lzma = vec![0x5d, 0, 0, 0, 0xff];
        lzma.extend([0xff; 8]);
        lzma.extend([0; 16]);
        assert!(all(Compression::Lzma, &lzma).is_err());
    }
}
