//! FAT12/16/32 boot sector ("vfat"), checked and read the way blkid does.
//!
//! The boot sector is accepted by [`fat_boot::blkid_accepts`], the check the partition
//! layer also uses to tell a whole-disk FAT ("superfloppy") from an MBR. UUID is the volume serial as `XXXX-XXXX`; LABEL is the volume-label entry
//! of the root directory (blkid 2.38 no longer falls back to the boot-sector copy), in
//! code page 850 like dosfstools and mtools write it, decoded to UTF-8.

use super::{read_array, read_opt, text, Probed};
use crate::inspect::bytes::{field, le16};
use crate::inspect::fat_boot::{self, Bpb};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
const ENTRY_FREE: u8 = 0xe5;

/// Root-directory clusters followed looking for the label (blkid's bound).
const MAX_ROOT_CLUSTERS: usize = 100;
/// Directory bytes scanned for the label in total: a hostile geometry cannot make the
/// probe read more (real labels sit in the first entries).
const MAX_LABEL_SCAN: u64 = 2 << 20;
/// Directory bytes read per request.
const SCAN_CHUNK: u64 = 16 << 10;

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    let Some(bs) = read_array::<512>(src, 0)? else {
        return Ok(None);
    };
    let Some(g) = fat_boot::blkid_accepts(&bs) else {
        return Ok(None);
    };
    let mut budget = MAX_LABEL_SCAN;
    let (label, serial) = if !g.fat32_layout {
        let root = g.root_dir_sector() * g.sector_size;
        let label = find_label(src, root, g.root_entries * 32, &mut budget)?;
        let serial = matches!(bs[0x26], 0x28 | 0x29).then(|| serial(&bs, 0x27));
        (label, serial)
    } else if g.fat_length != 0 {
        if !fsinfo_ok(src, &g)? {
            return Ok(None);
        }
        (
            fat32_root_label(src, &g, &mut budget)?,
            Some(serial(&bs, 0x43)),
        )
    } else {
        (None, None)
    };
    Ok(Some(Probed {
        fs_type: "vfat",
        uuid: serial,
        label: label.and_then(|raw| text(decode_cp850(&raw))),
        size: Some(g.total_sectors * g.sector_size),
    }))
}

/// The volume serial as blkid prints it: `XXXX-XXXX`, high half first.
fn serial(bs: &[u8], at: usize) -> String {
    let s = field(bs, at, 4);
    format!("{:02X}{:02X}-{:02X}{:02X}", s[3], s[2], s[1], s[0])
}

/// blkid rejects a FAT32 whose FSInfo sector has neither its signatures nor zeros.
fn fsinfo_ok(src: &dyn ReadAt, g: &Bpb) -> Result<bool, ReadError> {
    let sector = u64::from(g.fsinfo_sector);
    if sector == 0 {
        return Ok(true);
    }
    let Some(fsinfo) = read_array::<512>(src, sector * g.sector_size)? else {
        return Ok(false);
    };
    let sig1 = field(&fsinfo, 0, 4);
    let sig2 = field(&fsinfo, 484, 4);
    Ok([&b"RRaA"[..], b"RRdA", &[0; 4]].contains(&sig1) && [&b"rrAa"[..], &[0; 4]].contains(&sig2))
}

/// Follows the FAT32 root directory's cluster chain (bounded) looking for the label.
fn fat32_root_label(
    src: &dyn ReadAt,
    g: &Bpb,
    budget: &mut u64,
) -> Result<Option<[u8; 11]>, ReadError> {
    let cluster_bytes = g.cluster_sectors * g.sector_size;
    // blkid starts the FAT32 data region right after the FATs, whatever 0x11 says.
    let data_start = g.root_dir_sector();
    let fat_entries = g.fat_length * g.sector_size / 4;
    let mut next = u64::from(g.root_cluster);
    for _ in 1..MAX_ROOT_CLUSTERS {
        if next < 2 || next >= fat_entries {
            break;
        }
        let offset = (data_start + (next - 2) * g.cluster_sectors) * g.sector_size;
        if let Some(label) = find_label(src, offset, cluster_bytes, budget)? {
            return Ok(Some(label));
        }
        let Some(entry) = read_array::<4>(src, g.reserved * g.sector_size + next * 4)? else {
            break;
        };
        next = u64::from(u32::from_le_bytes(entry) & 0x0fff_ffff);
    }
    Ok(None)
}

/// Scans `len` bytes of directory entries at `offset` for the volume-label entry.
/// Stops at the end-of-directory marker; charges what it reads to `budget`.
fn find_label(
    src: &dyn ReadAt,
    offset: u64,
    len: u64,
    budget: &mut u64,
) -> Result<Option<[u8; 11]>, ReadError> {
    let mut done = 0;
    while done < len && *budget > 0 {
        let chunk = (len - done).min(SCAN_CHUNK).min(*budget) / 32 * 32;
        if chunk == 0 {
            break;
        }
        let Some(buf) = read_opt(src, offset + done, chunk)? else {
            return Ok(None);
        };
        *budget -= chunk;
        done += chunk;
        for e in buf.chunks_exact(32) {
            let attr = e[11];
            if e[0] == 0 {
                return Ok(None);
            }
            let cluster = le16(e, 20) != 0 || le16(e, 26) != 0;
            if e[0] == ENTRY_FREE || cluster || attr & 0x3f == ATTR_LONG_NAME {
                continue;
            }
            if attr & (ATTR_VOLUME_ID | ATTR_DIR) == ATTR_VOLUME_ID {
                let mut name = [0u8; 11];
                name.copy_from_slice(&e[..11]);
                if name[0] == 0x05 {
                    name[0] = ENTRY_FREE; // 0x05 stands for a leading 0xE5 character
                }
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}

/// Code page 850, the OEM code page dosfstools and mtools use by default, upper half.
const CP850_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', //
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', 'ø', '£', 'Ø', '×', 'ƒ', //
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '®', '¬', '½', '¼', '¡', '«', '»', //
    '░', '▒', '▓', '│', '┤', 'Á', 'Â', 'À', '©', '╣', '║', '╗', '╝', '¢', '¥', '┐', //
    '└', '┴', '┬', '├', '─', '┼', 'ã', 'Ã', '╚', '╔', '╩', '╦', '╠', '═', '╬', '¤', //
    'ð', 'Ð', 'Ê', 'Ë', 'È', 'ı', 'Í', 'Î', 'Ï', '┘', '┌', '█', '▄', '¦', 'Ì', '▀', //
    'Ó', 'ß', 'Ô', 'Ò', 'õ', 'Õ', 'µ', 'þ', 'Þ', 'Ú', 'Û', 'Ù', 'ý', 'Ý', '¯', '´', //
    '\u{ad}', '±', '‗', '¾', '¶', '§', '÷', '¸', '°', '¨', '·', '¹', '³', '²', '■', '\u{a0}',
];

/// Decodes an 8.3 label from code page 850 (ASCII below 0x80).
fn decode_cp850(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b < 0x80 {
                char::from(b)
            } else {
                CP850_HIGH[usize::from(b - 0x80)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// A small FAT16: 512 B sectors, 4 sectors/cluster, 1 reserved, 2 FATs of 32 sectors,
    /// 512 root entries, 20000 sectors.
    fn fat16() -> Vec<u8> {
        let mut d = vec![0u8; 20000 * 512];
        d[0] = 0xeb;
        d[0x0b..0x0d].copy_from_slice(&512u16.to_le_bytes());
        d[0x0d] = 4;
        d[0x0e..0x10].copy_from_slice(&1u16.to_le_bytes());
        d[0x10] = 2;
        d[0x11..0x13].copy_from_slice(&512u16.to_le_bytes());
        d[0x13..0x15].copy_from_slice(&20000u16.to_le_bytes());
        d[0x15] = 0xf8;
        d[0x16..0x18].copy_from_slice(&32u16.to_le_bytes());
        d[0x26] = 0x29;
        d[0x27..0x2b].copy_from_slice(&[0x53, 0x43, 0x6e, 0x6e]);
        d[0x2b..0x36].copy_from_slice(b"BOOTLABEL  ");
        d[0x36..0x3e].copy_from_slice(b"FAT16   ");
        d[510] = 0x55;
        d[511] = 0xaa;
        d
    }

    const ROOT: usize = (1 + 64) * 512;

    #[test]
    fn label_comes_from_the_root_directory() {
        let mut d = fat16();
        // A deleted label, a long-name entry, then the real label in CP850.
        d[ROOT..ROOT + 11].copy_from_slice(b"\xe5LD        ");
        d[ROOT + 11] = ATTR_VOLUME_ID;
        d[ROOT + 32 + 11] = ATTR_LONG_NAME;
        d[ROOT + 32] = b'A';
        d[ROOT + 64..ROOT + 75].copy_from_slice(b"\x90T\x90 \x8eB     ");
        d[ROOT + 64 + 11] = ATTR_VOLUME_ID;
        let p = probe(&MemSource(d)).unwrap().unwrap();
        assert_eq!(p.fs_type, "vfat");
        assert_eq!(p.uuid.as_deref(), Some("6E6E-4353"));
        assert_eq!(p.label.as_deref(), Some("ÉTÉ ÄB"));
        assert_eq!(p.size, Some(20000 * 512));
    }

    #[test]
    fn no_root_label_means_no_label() {
        let p = probe(&MemSource(fat16())).unwrap().unwrap();
        assert_eq!(p.label, None);
    }

    #[test]
    fn insane_geometry_is_not_fat() {
        for (at, v) in [(0x10, 0u8), (0x15, 0x12), (0x0d, 3), (0x0c, 0x01)] {
            let mut d = fat16();
            d[at] = v;
            assert_eq!(probe(&MemSource(d)).unwrap(), None, "byte {at:#x} = {v:#x}");
        }
    }

    #[test]
    fn cp850_table_has_no_holes() {
        assert_eq!(decode_cp850(&[0x80, 0x9c, 0xe1, 0xff]), "Ç£ß\u{a0}");
    }
}
