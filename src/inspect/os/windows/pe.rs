//! The architecture of a Windows install, from the COFF machine field of
//! `System32/cmd.exe`'s PE header (libguestfs runs `file` on it, which calls ARM64
//! binaries x86_64; the machine field does not).

use crate::inspect::bytes::{checked_field, le16, le32};

/// Bytes of cmd.exe read: the headers are in the first few hundred.
pub(crate) const HEADER_BYTES: usize = 4096;

/// The architecture name of a PE image's machine type, as libguestfs names them.
pub(crate) fn arch(b: &[u8]) -> Option<&'static str> {
    if b.get(..2)? != b"MZ" {
        return None;
    }
    let pe = le32(checked_field(b, 0x3c, 4)?, 0) as usize;
    if checked_field(b, pe, 4)? != b"PE\0\0" {
        return None;
    }
    match le16(checked_field(b, pe + 4, 2)?, 0) {
        0x014c => Some("i386"),
        0x8664 => Some("x86_64"),
        0xaa64 => Some("aarch64"),
        0x01c4 => Some("arm"),
        0x0200 => Some("ia64"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_types() {
        let mut b = vec![0u8; 512];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c] = 0x80;
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        b[0x84..0x86].copy_from_slice(&0xaa64u16.to_le_bytes());
        assert_eq!(arch(&b), Some("aarch64"));
        b[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        assert_eq!(arch(&b), Some("x86_64"));
        b[0x3c] = 0xff;
        b[0x3d] = 0xff;
        assert_eq!(arch(&b), None);
        assert_eq!(arch(b"MZ"), None);
    }
}
