//! LZO1X decompression, the algorithm of btrfs's `lzo` compression (one stream per
//! sector, see `compression.rs`).
//!
//! Our own small decoder: no maintained pure-Rust LZO crate exists that bounds its
//! output. Every length and distance is checked against the input and output, so any
//! byte sequence gives bytes or an error.

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LzoError {
    InputOverrun,
    OutputOverrun,
    LookBehind,
}

impl std::fmt::Display for LzoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LzoError::InputOverrun => "lzo stream is truncated",
            LzoError::OutputOverrun => "lzo stream inflates past its stated size",
            LzoError::LookBehind => "lzo match points before the start of the output",
        })
    }
}

struct Input<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Result<u8, LzoError> {
        let v = *self.b.get(self.pos).ok_or(LzoError::InputOverrun)?;
        self.pos += 1;
        Ok(v)
    }

    fn le16(&mut self) -> Result<usize, LzoError> {
        Ok(usize::from(self.byte()?) | usize::from(self.byte()?) << 8)
    }

    /// A run length continued in zero bytes (255 each) and a final non-zero byte.
    fn long_length(&mut self, base: usize) -> Result<usize, LzoError> {
        let mut n = base;
        loop {
            match self.byte()? {
                0 => n = n.checked_add(255).ok_or(LzoError::OutputOverrun)?,
                b => return Ok(n + usize::from(b)),
            }
        }
    }
}

/// Decodes `input` into a new vector of at most `max_out` bytes.
pub fn decompress(input: &[u8], max_out: usize) -> Result<Vec<u8>, LzoError> {
    let mut inp = Input { b: input, pos: 0 };
    let mut out: Vec<u8> = Vec::with_capacity(max_out.min(1 << 20));
    let literals = |inp: &mut Input, out: &mut Vec<u8>, n: usize| -> Result<(), LzoError> {
        let src = inp
            .pos
            .checked_add(n)
            .and_then(|end| inp.b.get(inp.pos..end))
            .ok_or(LzoError::InputOverrun)?;
        if out.len() + n > max_out {
            return Err(LzoError::OutputOverrun);
        }
        out.extend_from_slice(src);
        inp.pos += n;
        Ok(())
    };
    let copy_match = |out: &mut Vec<u8>, dist: usize, len: usize| -> Result<(), LzoError> {
        if dist == 0 || dist > out.len() {
            return Err(LzoError::LookBehind);
        }
        if out.len() + len > max_out {
            return Err(LzoError::OutputOverrun);
        }
        let start = out.len() - dist;
        // Byte by byte: a match may overlap the bytes it produces.
        for i in 0..len {
            let b = out[start + i];
            out.push(b);
        }
        Ok(())
    };

    // state: 0 after a match with no trailing literals (a literal run may follow),
    // 1-3 after that many trailing literals, 4 after a literal run of 4 or more.
    let mut state: usize = 0;
    if input.first().is_some_and(|&b| b > 17) {
        let t = usize::from(inp.byte()?) - 17;
        literals(&mut inp, &mut out, t)?;
        state = if t < 4 { t } else { 4 };
    }
    loop {
        let t = usize::from(inp.byte()?);
        let next;
        if t < 16 {
            if state == 0 {
                let len = if t == 0 { inp.long_length(15)? } else { t } + 3;
                literals(&mut inp, &mut out, len)?;
                state = 4;
                continue;
            }
            next = t & 3;
            let low = usize::from(inp.byte()?);
            if state == 4 {
                copy_match(&mut out, 1 + 0x800 + (t >> 2) + (low << 2), 3)?;
            } else {
                copy_match(&mut out, 1 + (t >> 2) + (low << 2), 2)?;
            }
        } else if t >= 64 {
            next = t & 3;
            let low = usize::from(inp.byte()?);
            copy_match(&mut out, 1 + ((t >> 2) & 7) + (low << 3), (t >> 5) + 1)?;
        } else if t >= 32 {
            let len = if t & 31 == 0 {
                inp.long_length(31)?
            } else {
                t & 31
            } + 2;
            let d = inp.le16()?;
            next = d & 3;
            copy_match(&mut out, 1 + (d >> 2), len)?;
        } else {
            let len = if t & 7 == 0 {
                inp.long_length(7)?
            } else {
                t & 7
            } + 2;
            let d = inp.le16()?;
            next = d & 3;
            let dist = ((t & 8) << 11) + (d >> 2);
            if dist == 0 {
                return Ok(out); // end-of-stream marker
            }
            copy_match(&mut out, dist + 0x4000, len)?;
        }
        literals(&mut inp, &mut out, next)?;
        state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_only_and_matches() {
        // Hand-assembled: 3 literals "abc" (first byte 17+3), then an M2 match of
        // length 3 at distance 3 (t = 0b010_000_00: len (2)+1, dist 1+0), then end.
        let mut s = vec![20, b'a', b'b', b'c'];
        // M2: t>=64, len=(t>>5)+1=3 -> t>>5=2; dist=1+((t>>2)&7)+(low<<3)=3 -> (t>>2)&7=2.
        s.push(0b0100_1000);
        s.push(0);
        s.extend_from_slice(&[0x11, 0, 0]); // end of stream (M4 with distance 0)
        assert_eq!(decompress(&s, 100).unwrap(), b"abcabc");
        assert_eq!(decompress(&s, 5), Err(LzoError::OutputOverrun));
        assert_eq!(decompress(&s[..5], 100), Err(LzoError::InputOverrun));
        // A match reaching before the output start.
        let bad = [20, b'a', b'b', b'c', 0b0111_1100, 9, 0x11, 0, 0];
        assert_eq!(decompress(&bad, 100), Err(LzoError::LookBehind));
    }

    #[test]
    fn overlapping_long_match() {
        // "hello " then an M3 match of 24 bytes at distance 6, which overlaps its own
        // output. (Real kernel-written streams are checked by the btrfs integration
        // tests against the files guestfish wrote.)
        let mut s = vec![17 + 6];
        s.extend_from_slice(b"hello ");
        // M3: t in 32..64, len = (t & 31) + 2 = 24 -> t = 32 + 22; d>>2 = dist-1 = 5.
        s.push(32 + 22);
        s.extend_from_slice(&((5u16 << 2).to_le_bytes()));
        s.extend_from_slice(&[0x11, 0, 0]);
        assert_eq!(
            decompress(&s, 100).unwrap(),
            b"hello hello hello hello hello "
        );
    }

    #[test]
    fn any_bytes_are_safe() {
        let mut seed = 0x9e37_79b9u32;
        for _ in 0..5000 {
            let n = (seed % 64) as usize;
            let mut b = Vec::with_capacity(n);
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                b.push(seed as u8);
            }
            if let Ok(out) = decompress(&b, 4096) {
                assert!(out.len() <= 4096);
            }
        }
    }
}
