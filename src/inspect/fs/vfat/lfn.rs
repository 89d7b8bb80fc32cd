//! Long file name (VFAT) entries: up to 20 entries of 13 UTF-16 units each, stored in
//! reverse order before the short entry they name.

/// Flag on the sequence number of the first stored (last logical) long-name entry.
const LAST_LOGICAL: u8 = 0x40;
/// A name has at most 255 UTF-16 units, so at most 20 entries.
const MAX_PARTS: usize = 20;
const UNITS_PER_PART: usize = 13;
/// Byte offsets of the 13 UTF-16 units inside a long-name entry.
const UNIT_OFFSETS: [usize; UNITS_PER_PART] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// Collects the long-name entries preceding a short entry, and hands the name over only
/// if the sequence is complete and its checksum matches that short entry; otherwise
/// the short name is used, as Linux does.
#[derive(Default)]
pub(crate) struct LongName {
    units: Vec<u16>,
    /// Sequence number expected next (counting down to 1); 0 when not collecting.
    expect: u8,
    checksum: u8,
    complete: bool,
}

impl LongName {
    /// Forgets any partial name (after a deleted entry, a label, a broken sequence).
    pub(crate) fn reset(&mut self) {
        self.units.clear();
        self.expect = 0;
        self.complete = false;
    }

    /// Takes one long-name entry.
    pub(crate) fn push(&mut self, e: &[u8; 32]) {
        let seq = e[0] & 0x1f;
        let checksum = e[13];
        if e[0] & LAST_LOGICAL != 0 {
            self.reset();
            if seq == 0 || usize::from(seq) > MAX_PARTS {
                return;
            }
            self.units = vec![0xffff; usize::from(seq) * UNITS_PER_PART];
            self.checksum = checksum;
        } else if seq == 0 || seq != self.expect || checksum != self.checksum {
            self.reset();
            return;
        }
        let base = usize::from(seq - 1) * UNITS_PER_PART;
        for (i, off) in UNIT_OFFSETS.iter().enumerate() {
            if let Some(slot) = self.units.get_mut(base + i) {
                *slot = u16::from_le_bytes([e[*off], e[off + 1]]);
            }
        }
        self.expect = seq - 1;
        self.complete = seq == 1;
    }

    /// The collected name, if it is complete and belongs to a short entry with
    /// `checksum`. Resets either way.
    pub(crate) fn take(&mut self, checksum: u8) -> Option<String> {
        let ok = self.complete && self.checksum == checksum;
        let units = std::mem::take(&mut self.units);
        self.reset();
        if !ok {
            return None;
        }
        let len = units
            .iter()
            .position(|&u| u == 0 || u == 0xffff)
            .unwrap_or(units.len());
        if len == 0 {
            return None;
        }
        let name: String = char::decode_utf16(units[..len].iter().copied())
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        Some(name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The long-name entries for `name`, in on-disk order, for a short entry whose
    /// checksum is `checksum`.
    pub(crate) fn entries(name: &str, checksum: u8) -> Vec<[u8; 32]> {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        if !units.len().is_multiple_of(UNITS_PER_PART) {
            units.push(0);
        }
        while !units.len().is_multiple_of(UNITS_PER_PART) {
            units.push(0xffff);
        }
        let parts = units.len() / UNITS_PER_PART;
        let mut out = Vec::new();
        for seq in (1..=parts).rev() {
            let mut e = [0u8; 32];
            e[0] = seq as u8 | if seq == parts { LAST_LOGICAL } else { 0 };
            e[11] = 0x0f;
            e[13] = checksum;
            for (i, off) in UNIT_OFFSETS.iter().enumerate() {
                let u = units[(seq - 1) * UNITS_PER_PART + i];
                e[*off..off + 2].copy_from_slice(&u.to_le_bytes());
            }
            out.push(e);
        }
        out
    }

    #[test]
    fn assembles_multi_part_names() {
        let name = "a long name with ünïcödé and 日本 that spans three entries";
        let mut l = LongName::default();
        for e in entries(name, 0x42) {
            l.push(&e);
        }
        assert_eq!(l.take(0x42).as_deref(), Some(name));
    }

    #[test]
    fn wrong_checksum_or_broken_sequence_gives_nothing() {
        let mut l = LongName::default();
        for e in entries("checksum mismatch name", 0x42) {
            l.push(&e);
        }
        assert_eq!(l.take(0x43), None);

        let mut parts = entries("a name of two entries!!", 7);
        parts.remove(0);
        let mut l = LongName::default();
        for e in &parts {
            l.push(e);
        }
        assert_eq!(l.take(7), None);
    }
}
