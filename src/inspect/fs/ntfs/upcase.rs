//! The volume's `$UpCase` table: the upper-case form of every UTF-16 code unit, by
//! which Windows compares names. Read from the volume rather than built in, since the
//! table depends on the Windows version that formatted it.

/// Upper-case mapping for the 65536 UTF-16 code units.
pub(crate) struct UpCase(Vec<u16>);

/// Size of a complete table in bytes.
pub(crate) const TABLE_BYTES: u64 = 2 * 65536;

impl UpCase {
    /// Builds the table from `$UpCase`'s bytes; a short or missing table falls back to
    /// ASCII folding for the code units it lacks.
    pub fn from_bytes(b: &[u8]) -> UpCase {
        let mut t: Vec<u16> = (0..=u16::MAX).map(ascii_upper).collect();
        for (i, c) in b.chunks_exact(2).take(65536).enumerate() {
            t[i] = u16::from_le_bytes([c[0], c[1]]);
        }
        UpCase(t)
    }

    /// ASCII-only folding, for a volume whose table cannot be read.
    pub fn ascii() -> UpCase {
        UpCase::from_bytes(&[])
    }

    pub fn upper(&self, c: u16) -> u16 {
        self.0[usize::from(c)]
    }

    /// Whether `a` and `b` are the same name to Windows.
    pub fn eq(&self, a: &[u16], b: &[u16]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| self.upper(x) == self.upper(y))
    }
}

fn ascii_upper(c: u16) -> u16 {
    if (u16::from(b'a')..=u16::from(b'z')).contains(&c) {
        c - 32
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_by_table() {
        let mut b = Vec::new();
        for c in 0..=u16::MAX {
            let u = if c == 0xe9 { 0xc9 } else { ascii_upper(c) };
            b.extend(u.to_le_bytes());
        }
        let t = UpCase::from_bytes(&b);
        let w = |s: &str| s.encode_utf16().collect::<Vec<_>>();
        assert!(
            !t.eq(&w("système"), &w("SYSTÈME")),
            "è is not in this table"
        );
        assert!(t.eq(&w("café"), &w("CAFÉ")));
        assert!(!t.eq(&w("cafe"), &w("CAFÉ")));
        assert!(UpCase::ascii().eq(&w("cmd.exe"), &w("CMD.EXE")));
    }
}
