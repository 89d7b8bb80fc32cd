//! The 32-byte short (8.3) directory entry.

/// Attribute bits.
pub(crate) const ATTR_VOLUME_ID: u8 = 0x08;
pub(crate) const ATTR_DIRECTORY: u8 = 0x10;
/// All four low bits set marks a long-name entry, not a short one.
pub(crate) const ATTR_LONG_NAME: u8 = 0x0f;

/// First name byte of a deleted entry, and of the end of the directory.
pub(crate) const DELETED: u8 = 0xe5;
pub(crate) const END: u8 = 0x00;

/// Case flags (the NT reserved byte), as Linux and Windows honour them.
const LOWER_BASE: u8 = 0x08;
const LOWER_EXT: u8 = 0x10;

/// One short entry: the name every FAT file has, plus the file's attributes, first
/// cluster and size.
pub(crate) struct ShortEntry<'a>(pub &'a [u8; 32]);

impl ShortEntry<'_> {
    pub(crate) fn attr(&self) -> u8 {
        self.0[11]
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.attr() & ATTR_DIRECTORY != 0
    }

    pub(crate) fn size(&self) -> u32 {
        u32::from_le_bytes([self.0[28], self.0[29], self.0[30], self.0[31]])
    }

    /// First cluster; the high half exists only on FAT32 (elsewhere it is EA data).
    pub(crate) fn first_cluster(&self, fat32: bool) -> u32 {
        let lo = u32::from(u16::from_le_bytes([self.0[26], self.0[27]]));
        let hi = if fat32 {
            u32::from(u16::from_le_bytes([self.0[20], self.0[21]]))
        } else {
            0
        };
        hi << 16 | lo
    }

    /// The checksum long-name entries carry to prove they belong to this entry.
    pub(crate) fn checksum(&self) -> u8 {
        self.0[..11]
            .iter()
            .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
    }

    /// The 8.3 name as Linux shows it: padding removed, lower-case where the case flags
    /// say so, OEM bytes decoded as code page 437 (the Linux default).
    pub(crate) fn name(&self) -> String {
        let flags = self.0[12];
        let mut base: Vec<u8> = self.0[..8].to_vec();
        if base[0] == 0x05 {
            // 0x05 stands for a real leading 0xe5, which would mean "deleted".
            base[0] = DELETED;
        }
        let mut name = decode(trim(&base), flags & LOWER_BASE != 0);
        let ext = trim(&self.0[8..11]);
        if !ext.is_empty() {
            name.push('.');
            name.push_str(&decode(ext, flags & LOWER_EXT != 0));
        }
        name
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    &b[..end]
}

fn decode(bytes: &[u8], lower: bool) -> String {
    let chars = bytes.iter().map(|&b| match b {
        0x00..=0x7f => char::from(b),
        _ => CP437_HIGH[usize::from(b - 0x80)],
    });
    // The flag lowers the whole part, accented capitals included (mtools stores "CAFÉ"
    // with the flag for "café"), as the Linux code-page tables do.
    if lower {
        chars.flat_map(char::to_lowercase).collect()
    } else {
        chars.collect()
    }
}

/// Code page 437, bytes 0x80 to 0xff.
const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', //
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', //
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', //
    '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', //
    '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', //
    '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀', //
    'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', //
    '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{a0}',
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A short entry named `name11` (11 bytes, space padded).
    pub(crate) fn short(
        name11: &[u8; 11],
        attr: u8,
        flags: u8,
        cluster: u32,
        size: u32,
    ) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name11);
        e[11] = attr;
        e[12] = flags;
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }

    #[test]
    fn decodes_names_with_case_flags_and_oem_bytes() {
        let e = short(b"README  TXT", 0x20, 0, 5, 10);
        assert_eq!(ShortEntry(&e).name(), "README.TXT");
        let e = short(b"README  TXT", 0x20, LOWER_BASE, 5, 10);
        assert_eq!(ShortEntry(&e).name(), "readme.TXT");
        let e = short(b"README  TXT", 0x20, LOWER_BASE | LOWER_EXT, 5, 10);
        assert_eq!(ShortEntry(&e).name(), "readme.txt");
        let e = short(b"NOEXT      ", 0x10, 0, 5, 0);
        assert_eq!(ShortEntry(&e).name(), "NOEXT");
        let e = short(b"\x05\x82T     A  ", 0x20, 0, 5, 0);
        assert_eq!(ShortEntry(&e).name(), "σéT.A");
        let e = short(b"CAF\x90    TXT", 0x20, LOWER_BASE | LOWER_EXT, 5, 0);
        assert_eq!(ShortEntry(&e).name(), "café.txt");
    }

    #[test]
    fn reads_clusters_sizes_and_checksum() {
        let e = short(b"A       B  ", 0x20, 0, 0x0003_0004, 77);
        assert_eq!(ShortEntry(&e).first_cluster(true), 0x0003_0004);
        assert_eq!(ShortEntry(&e).first_cluster(false), 4);
        assert_eq!(ShortEntry(&e).size(), 77);
        // Checksum of "FILENAMETXT" computed by hand with the specification's loop.
        let mut sum: u8 = 0;
        for &b in b"FILENAMETXT" {
            sum = (if sum & 1 != 0 { 0x80u8 } else { 0 })
                .wrapping_add(sum >> 1)
                .wrapping_add(b);
        }
        let e = short(b"FILENAMETXT", 0x20, 0, 2, 0);
        assert_eq!(ShortEntry(&e).checksum(), sum);
    }
}
