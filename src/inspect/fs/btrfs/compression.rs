//! Decompression of btrfs extents: zlib (one zlib stream), lzo (a 4-byte total length,
//! then per-sector segments each with a 4-byte length, never straddling a sector
//! boundary), zstd (one frame). An extent holds at most 128 KiB of data, so the output
//! is bounded before anything is decoded; an extent that inflates past its stated size
//! is corrupt.

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::inspect::bytes::le32;
use crate::inspect::fs::FsError;

use super::corrupt;
use super::items::Compression;
use super::lzo;

/// Largest decompressed (and compressed) extent the kernel writes.
pub const MAX_COMPRESSED_EXTENT: u64 = 128 * 1024;
/// zstd frames may not ask for a larger window (btrfs uses at most 128 KiB).
const MAX_ZSTD_WINDOW: u64 = 8 << 20;

/// Decompresses `input` to exactly `ram_bytes` bytes (a short stream is zero-filled, as
/// the kernel does). `sectorsize` frames lzo segments.
pub fn decompress_extent(
    kind: Compression,
    input: &[u8],
    ram_bytes: u64,
    sectorsize: u32,
) -> Result<Vec<u8>, FsError> {
    if ram_bytes > MAX_COMPRESSED_EXTENT {
        return Err(corrupt(format!(
            "compressed extent claims {ram_bytes} bytes, more than {MAX_COMPRESSED_EXTENT}"
        )));
    }
    let mut out = vec![0u8; ram_bytes as usize];
    match kind {
        Compression::None => {
            let n = input.len().min(out.len());
            out[..n].copy_from_slice(&input[..n]);
        }
        Compression::Zlib => inflate(input, &mut out)?,
        Compression::Lzo => unlzo(input, &mut out, sectorsize as usize)?,
        Compression::Zstd => unzstd(input, &mut out)?,
    }
    Ok(out)
}

fn inflate(input: &[u8], out: &mut [u8]) -> Result<(), FsError> {
    let mut state = Box::<DecompressorOxide>::default();
    let flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER
        | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, written) = decompress(&mut state, input, out, 0, flags);
    match status {
        TINFLStatus::Done => Ok(()),
        TINFLStatus::HasMoreOutput => Err(corrupt(format!(
            "zlib extent inflates past its stated {} bytes",
            out.len()
        ))),
        // A stream cut short still gave its first bytes; the kernel zero-fills too,
        // but a stream that is damaged is an error.
        other => Err(corrupt(format!(
            "zlib extent: {other:?} after {written} bytes"
        ))),
    }
}

fn unlzo(input: &[u8], out: &mut [u8], sector: usize) -> Result<(), FsError> {
    let total = le32(input, 0) as usize;
    if input.len() < 4 || total > input.len() || total < 4 {
        return Err(corrupt(format!(
            "lzo extent length {total} does not fit its {} bytes",
            input.len()
        )));
    }
    let mut pos = 4;
    let mut done = 0;
    while done < out.len() && pos < total {
        // A segment header never straddles a sector: skip the padding.
        let left_in_sector = sector - pos % sector;
        if left_in_sector < 4 {
            pos += left_in_sector;
            if pos >= total {
                break;
            }
        }
        let seg = le32(input, pos) as usize;
        pos += 4;
        let data = pos
            .checked_add(seg)
            .filter(|&end| end <= total)
            .and_then(|end| input.get(pos..end))
            .ok_or_else(|| corrupt(format!("lzo segment of {seg} bytes overruns the extent")))?;
        pos += seg;
        let want = (out.len() - done).min(sector);
        let bytes =
            lzo::decompress(data, sector).map_err(|e| corrupt(format!("lzo extent: {e}")))?;
        let n = bytes.len().min(want);
        out[done..done + n].copy_from_slice(&bytes[..n]);
        done += n;
        if bytes.len() < want {
            break;
        }
    }
    Ok(())
}

fn unzstd(input: &[u8], out: &mut [u8]) -> Result<(), FsError> {
    use std::io::Read;
    let window = zstd_window(input)?;
    if window > MAX_ZSTD_WINDOW {
        return Err(corrupt(format!("zstd window of {window} bytes")));
    }
    let mut src = input;
    let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut src)
        .map_err(|e| corrupt(format!("zstd extent: {e}")))?;
    let mut done = 0;
    while done < out.len() {
        match dec.read(&mut out[done..]) {
            Ok(0) => return Ok(()),
            Ok(n) => done += n,
            Err(e) => return Err(corrupt(format!("zstd extent: {e}"))),
        }
    }
    let mut extra = [0u8; 1];
    match dec.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupt(format!(
            "zstd extent inflates past its stated {} bytes",
            out.len()
        ))),
        Err(e) => Err(corrupt(format!("zstd extent: {e}"))),
    }
}

/// The window a zstd frame header asks for (RFC 8878 3.1.1.1); the decoder allocates it
/// up front, so it is checked first. Dictionaries are refused (btrfs uses none).
fn zstd_window(b: &[u8]) -> Result<u64, FsError> {
    let short = || corrupt("zstd frame header is truncated");
    if b.len() < 6 || le32(b, 0) != 0xfd2f_b528 {
        return Err(corrupt("zstd extent has no frame magic"));
    }
    let fhd = b[4];
    if fhd & 0x0b != 0 {
        return Err(corrupt("zstd frame uses a dictionary or a reserved bit"));
    }
    if fhd & 0x20 == 0 {
        let wd = b[5];
        let base = 1u64 << (10 + u64::from(wd >> 3));
        return Ok(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: the window is the content size.
    let n = match fhd >> 6 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let f = b.get(5..5 + n).ok_or_else(short)?;
    let v = f.iter().rev().fold(0u64, |a, &x| a << 8 | u64::from(x));
    Ok(if n == 2 { v + 256 } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_round_trip_and_overflow() {
        let data: Vec<u8> = (0..20000u32).map(|i| (i % 97) as u8).collect();
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
        let out = decompress_extent(Compression::Zlib, &packed, 20000, 4096).unwrap();
        assert_eq!(out, data);
        // Stated smaller than the stream: corrupt, not a longer buffer.
        let err = decompress_extent(Compression::Zlib, &packed, 1000, 4096).unwrap_err();
        assert!(err.to_string().contains("past"), "{err}");
        assert!(decompress_extent(Compression::Zlib, &packed, 1 << 30, 4096).is_err());
        assert!(decompress_extent(Compression::Zlib, &[1, 2, 3], 100, 4096).is_err());
    }

    #[test]
    fn lzo_framing() {
        // Two segments of literal-only streams, the second after sector padding.
        let seg = |text: &[u8]| {
            let mut s = vec![17 + text.len() as u8];
            s.extend_from_slice(text);
            s.extend_from_slice(&[0x11, 0, 0]);
            s
        };
        let a = seg(b"0123456789");
        let mut stream = vec![0u8; 4];
        stream.extend_from_slice(&(a.len() as u32).to_le_bytes());
        stream.extend_from_slice(&a);
        let total = stream.len() as u32;
        stream[..4].copy_from_slice(&total.to_le_bytes());
        let out = decompress_extent(Compression::Lzo, &stream, 10, 4096).unwrap();
        assert_eq!(out, b"0123456789");
        stream[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decompress_extent(Compression::Lzo, &stream, 10, 4096).is_err());
    }

    #[test]
    fn zstd_headers_are_checked() {
        assert!(decompress_extent(Compression::Zstd, &[0u8; 10], 10, 4096).is_err());
        // A frame asking for a 2^40 window.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 30 << 3, 0, 0];
        let err = decompress_extent(Compression::Zstd, &frame, 10, 4096).unwrap_err();
        assert!(err.to_string().contains("window"), "{err}");
    }
}
