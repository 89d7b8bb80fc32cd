//! LZNT1, the compression of NTFS compressed files: a compression unit (16 clusters)
//! is stored as a sequence of chunks of at most 4 KiB output each, every chunk either
//! raw or LZ77 tokens whose offset/length split widens as the chunk fills.

use crate::inspect::bytes::le16;

const CHUNK: usize = 4096;

/// Decompresses `src` into `out` (the unit's full size, zeroed by the caller: bytes the chunks do not fill
/// stay zero, as NTFS reads them). Errors name what was malformed.
pub(crate) fn decompress(src: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut pos = 0usize;
    while at + 2 <= src.len() && pos < out.len() {
        let head = le16(src, at);
        if head == 0 {
            break;
        }
        let size = usize::from(head & 0x0fff) + 1;
        let data = src
            .get(at + 2..at + 2 + size)
            .ok_or_else(|| format!("chunk of {size} bytes at {at} runs past the unit"))?;
        let chunk_end = (pos + CHUNK).min(out.len());
        if head & 0x8000 == 0 {
            let n = size.min(chunk_end - pos);
            out[pos..pos + n].copy_from_slice(&data[..n]);
        } else {
            chunk(data, &mut out[pos..chunk_end])?;
        }
        // Each chunk stands for a full 4 KiB of output; a short one is zero-padded.
        pos = chunk_end;
        at += 2 + size;
    }
    Ok(())
}

/// Decodes one compressed chunk into `out` (at most 4 KiB).
fn chunk(src: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut pos = 0usize;
    while at < src.len() && pos < out.len() {
        let tags = src[at];
        at += 1;
        for bit in 0..8 {
            if at >= src.len() || pos >= out.len() {
                return Ok(());
            }
            if tags & (1 << bit) == 0 {
                out[pos] = src[at];
                pos += 1;
                at += 1;
                continue;
            }
            if at + 2 > src.len() {
                return Err("back-reference cut short".into());
            }
            let token = le16(src, at);
            at += 2;
            if pos == 0 {
                return Err("back-reference at the start of a chunk".into());
            }
            // The further into the chunk, the more bits the offset needs.
            let mut shift = 12u32;
            let mut i = pos - 1;
            while i >= 0x10 {
                shift -= 1;
                i >>= 1;
            }
            let back = usize::from(token >> shift) + 1;
            let len = usize::from(token & (0xffff >> (16 - shift))) + 3;
            if back > pos {
                return Err(format!("back-reference {back} bytes before {pos}"));
            }
            for _ in 0..len {
                if pos >= out.len() {
                    break;
                }
                out[pos] = out[pos - back];
                pos += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn literal_and_back_reference() {
        // "abcabcabc": 3 literals then a reference 3 back, length 6.
        // At pos 3, shift = 12: token = ((3-1) << 12) | (6-3).
        let token: u16 = (2 << 12) | 3;
        let mut body = vec![0b0000_1000, b'a', b'b', b'c'];
        body.extend(token.to_le_bytes());
        let head: u16 = 0xb000 | (body.len() as u16 - 1);
        let mut src = head.to_le_bytes().to_vec();
        src.extend(&body);
        let mut out = vec![0u8; 8192];
        decompress(&src, &mut out).unwrap();
        assert_eq!(&out[..9], b"abcabcabc");
        assert!(out[9..].iter().all(|&b| b == 0));
    }

    #[test]
    fn hostile_chunks() {
        let mut out = vec![0u8; 4096];
        assert!(decompress(&[0x05, 0xb0, 1], &mut out).is_err());
        assert!(decompress(&[0x02, 0xb0, 1, 0, 0], &mut out).is_err());
        // Any bytes: never a panic.
        let mut seed = 7u32;
        for _ in 0..500 {
            let src: Vec<u8> = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = decompress(&src, &mut out);
        }
    }
}
