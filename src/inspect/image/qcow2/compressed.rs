//! qcow2 compressed clusters: where the compressed bytes are (the compressed-cluster
//! descriptor of an L2 entry) and how to inflate them into exactly one cluster.

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::header::Compression;

/// Compressed data is measured in 512-byte sectors.
const SECTOR: u64 = 512;

/// Where a compressed cluster's bytes live in the image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedExtent {
    /// Host offset of the first compressed byte (not aligned).
    pub host: u64,
    /// Upper bound of the compressed length: the data ends somewhere in the last sector.
    pub len: u64,
}

impl CompressedExtent {
    /// Decodes the descriptor of L2 entry `entry`. With x = 62 - (cluster_bits - 8), bits
    /// 0..x are the host offset and bits x..=61 the number of sectors *beyond* the one that
    /// holds the offset. `len` is therefore at most 2 clusters, so it is safe to allocate.
    pub fn from_entry(entry: u64, cluster_bits: u32) -> CompressedExtent {
        let x = 62 - (cluster_bits - 8);
        let host = entry & ((1u64 << x) - 1);
        let extra_sectors = (entry >> x) & ((1u64 << (cluster_bits - 8)) - 1);
        let len = (extra_sectors + 1) * SECTOR - (host % SECTOR);
        CompressedExtent { host, len }
    }
}

/// zstd frames may not ask for a window larger than this. Real qcow2 frames use at most
/// one cluster (2 MiB); the decoder allocates the window up front, so a hostile header
/// must not choose it.
const MAX_ZSTD_WINDOW: u64 = 8 << 20;

/// Inflates `input` into all of `out` (one cluster). Decompression stops once `out` is
/// full (trailing bytes may belong to the next compressed cluster); producing less than a
/// cluster is an error. The `String` error is completed with the offset by the caller.
pub fn decompress_cluster(kind: Compression, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    match kind {
        Compression::Deflate => inflate_raw(input, out),
        Compression::Zstd => unzstd(input, out),
    }
}

fn inflate_raw(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut state = Box::<DecompressorOxide>::default();
    // No zlib header; `out` is the whole output, never wrapped.
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, written) = decompress(&mut state, input, out, 0, flags);
    match status {
        TINFLStatus::Done | TINFLStatus::HasMoreOutput if written == out.len() => Ok(()),
        TINFLStatus::Done => Err(format!(
            "deflate stream ended after {written} of {} bytes",
            out.len()
        )),
        other => Err(format!("deflate error {other:?} after {written} bytes")),
    }
}

fn unzstd(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    let window = zstd_window_size(input)?;
    if window > MAX_ZSTD_WINDOW {
        return Err(format!(
            "zstd window of {window} bytes exceeds {MAX_ZSTD_WINDOW}"
        ));
    }
    let mut src = input;
    let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut src)
        .map_err(|e| format!("zstd frame header: {e}"))?;
    dec.read_exact(out).map_err(|e| format!("zstd: {e}"))
}

/// The window size a zstd frame header asks for (RFC 8878, section 3.1.1.1), read before
/// handing the frame to the decoder. Dictionaries are refused: qemu never uses them.
pub(crate) fn zstd_window_size(b: &[u8]) -> Result<u64, String> {
    const MAGIC: u32 = 0xfd2f_b528;
    let short = || "zstd frame header is truncated".to_string();
    let magic = b.get(0..4).ok_or_else(short)?;
    if u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) != MAGIC {
        return Err("no zstd frame magic".into());
    }
    let fhd = *b.get(4).ok_or_else(short)?;
    let fcs_flag = fhd >> 6;
    let single_segment = fhd & 0x20 != 0;
    if fhd & 0x08 != 0 {
        return Err("zstd frame header has the reserved bit set".into());
    }
    if fhd & 0x03 != 0 {
        return Err("zstd frame uses a dictionary".into());
    }
    if !single_segment {
        let wd = *b.get(5).ok_or_else(short)?;
        let log = 10 + u64::from(wd >> 3);
        let base = 1u64 << log;
        return Ok(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: the window is the frame content size.
    let fcs = b.get(5..).ok_or_else(short)?;
    let field = |n: usize| -> Result<u64, String> {
        let bytes = fcs.get(..n).ok_or_else(short)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
    };
    match fcs_flag {
        0 => field(1),
        1 => Ok(field(2)? + 256),
        2 => field(4),
        _ => field(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_sizes() {
        // cluster_bits 16: x = 54; offset 0x1234, 2 extra sectors.
        let e = CompressedExtent::from_entry(1 << 62 | 2 << 54 | 0x1234, 16);
        assert_eq!(e.host, 0x1234);
        assert_eq!(e.len, 3 * 512 - 0x34);
        // All ones: offset and sectors are both at their maximum, still bounded.
        for bits in 9..=21 {
            let e = CompressedExtent::from_entry(u64::MAX, bits);
            assert!(e.len <= 2 << bits, "bits {bits}: {}", e.len);
            assert!(e.host < 1 << 62);
        }
    }

    #[test]
    fn deflate_round_trip_and_errors() {
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut packed = miniz_oxide::deflate::compress_to_vec(&data, 6);
        packed.extend_from_slice(&[0xaa; 100]); // the next cluster's bytes may follow
        let mut out = vec![0u8; 65536];
        decompress_cluster(Compression::Deflate, &packed, &mut out).unwrap();
        assert_eq!(out, data);
        let e = decompress_cluster(Compression::Deflate, &packed[..packed.len() / 2], &mut out);
        assert!(e.is_err());
        let short = miniz_oxide::deflate::compress_to_vec(&data[..1000], 6);
        assert!(decompress_cluster(Compression::Deflate, &short, &mut out)
            .unwrap_err()
            .contains("ended after 1000"));
        assert!(decompress_cluster(Compression::Deflate, &[0xff; 64], &mut out).is_err());
    }

    #[test]
    fn zstd_headers() {
        assert!(unzstd(&[], &mut [0u8; 16]).is_err());
        assert!(unzstd(&[0x28, 0xb5, 0x2f, 0xfd], &mut [0u8; 16])
            .unwrap_err()
            .contains("truncated"));
        // Window descriptor 0xff: 2^41 + 7 * 2^38 bytes; refused before allocating.
        let huge = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xff, 0, 0, 0];
        assert!(unzstd(&huge, &mut [0u8; 16])
            .unwrap_err()
            .contains("window"));
        // Single segment with an 8-byte content size of 2^40.
        let mut big = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        big.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(unzstd(&big, &mut [0u8; 16]).unwrap_err().contains("window"));
        assert!(
            unzstd(&[0x28, 0xb5, 0x2f, 0xfd, 0x01, 0x50], &mut [0u8; 16])
                .unwrap_err()
                .contains("dictionary")
        );
    }

    #[test]
    fn zstd_raw_block() {
        // A hand-built frame: single segment, 1-byte content size 8, one raw last block.
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, 8];
        let header: u32 = 1 | (8 << 3); // last block, type raw, size 8
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(b"abcdefgh");
        let mut out = [0u8; 8];
        unzstd(&f, &mut out).unwrap();
        assert_eq!(&out, b"abcdefgh");
        let mut out = [0u8; 9];
        assert!(unzstd(&f, &mut out).is_err(), "a short frame is an error");
    }
}
