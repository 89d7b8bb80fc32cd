//! NTFS boot sector, and the volume name from the `$Volume` MFT record (record 3).

use super::{read_array, read_opt, utf16_label, Probed};
use crate::inspect::bytes::{field, le16, le32, le64};
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

const OEM_ID: &[u8; 8] = b"NTFS    ";
const MAX_CLUSTER_SIZE: u64 = 2 << 20;
/// Largest MFT record read; real ones are 1 or 4 KiB.
const MAX_RECORD_SIZE: u64 = 64 << 10;
const RECORD_VOLUME: u64 = 3;
const ATTR_VOLUME_NAME: u32 = 0x60;
const ATTR_END: u32 = 0xffff_ffff;

pub(super) fn probe(src: &dyn ReadAt) -> Result<Option<Probed>, ReadError> {
    let Some(bs) = read_array::<512>(src, 0)? else {
        return Ok(None);
    };
    if field(&bs, 3, 8) != OEM_ID {
        return Ok(None);
    }
    let sector_size = le16(&bs, 0x0b);
    if !(256..=4096).contains(&sector_size) || !sector_size.is_power_of_two() {
        return Ok(None);
    }
    let sector_size = u64::from(sector_size);
    let spc = bs[0x0d];
    let cluster_sectors = match spc {
        1 | 2 | 4 | 8 | 16 | 32 | 64 | 128 => u64::from(spc),
        240..=249 => 1 << (256 - u32::from(spc)),
        _ => return Ok(None),
    };
    let cluster_size = sector_size * cluster_sectors;
    if cluster_size > MAX_CLUSTER_SIZE {
        return Ok(None);
    }
    // Fields FAT uses must be zero on NTFS.
    if le16(&bs, 0x0e) != 0 || le16(&bs, 0x11) != 0 || le16(&bs, 0x13) != 0 || le16(&bs, 0x16) != 0
    {
        return Ok(None);
    }
    if le32(&bs, 0x20) != 0 || bs[0x10] != 0 {
        return Ok(None);
    }
    let per_record = bs[0x40] as i8;
    let record_size = match per_record {
        1 | 2 | 4 | 8 | 16 | 32 | 64 => u64::from(per_record as u8) * cluster_size,
        -31..=-1 => 1 << (-i32::from(per_record)),
        _ => return Ok(None),
    };
    if !(4..=MAX_RECORD_SIZE).contains(&record_size) {
        return Ok(None);
    }
    let sectors = le64(&bs, 0x28);
    let clusters = sectors / cluster_sectors;
    let (mft, mirror) = (le64(&bs, 0x30), le64(&bs, 0x38));
    if mft > clusters || mirror > clusters {
        return Ok(None);
    }
    // mft <= sectors / cluster_sectors, so the product stays below the sector count
    // times the sector size, which may still overflow: check.
    let Some(mft_offset) = mft.checked_mul(cluster_size) else {
        return Ok(None);
    };
    let Some(first) = read_opt(src, mft_offset, record_size)? else {
        return Ok(None);
    };
    if field(&first, 0, 4) != b"FILE" {
        return Ok(None);
    }
    let Some(volume_offset) = mft_offset.checked_add(RECORD_VOLUME * record_size) else {
        return Ok(None);
    };
    let Some(mut volume) = read_opt(src, volume_offset, record_size)? else {
        return Ok(None);
    };
    if field(&volume, 0, 4) != b"FILE" {
        return Ok(None);
    }
    apply_fixups(&mut volume);
    Ok(Some(Probed {
        fs_type: "ntfs",
        uuid: Some(format!("{:016X}", le64(&bs, 0x48))),
        label: volume_name(&volume),
        size: sectors.checked_mul(sector_size),
    }))
}

/// Puts back the last two bytes of each 512-byte stride of a record, which NTFS swaps
/// for the update sequence number on disk (a name crossing a stride would read wrong).
fn apply_fixups(record: &mut [u8]) {
    let usa_offset = usize::from(le16(record, 4));
    let usa_count = usize::from(le16(record, 6));
    for i in 1..usa_count {
        let fix = field(record, usa_offset + 2 * i, 2);
        let (Ok(fix), Some(end)) = (<[u8; 2]>::try_from(fix), (i * 512).checked_sub(2)) else {
            return;
        };
        match record.get_mut(end..end + 2) {
            Some(slot) => slot.copy_from_slice(&fix),
            None => return,
        }
    }
}

/// Walks the record's attributes (each step moves forward, within the record) to the
/// `$VOLUME_NAME` attribute and decodes its UTF-16LE value.
fn volume_name(record: &[u8]) -> Option<String> {
    let size = record.len();
    let allocated = le32(record, 0x1c) as usize;
    let mut at = usize::from(le16(record, 0x14));
    while at + 22 <= size && at <= allocated {
        let kind = le32(record, at);
        let len = le32(record, at + 4) as usize;
        if len == 0 || kind == ATTR_END {
            return None;
        }
        if kind == ATTR_VOLUME_NAME {
            let value_len = le32(record, at + 16) as usize;
            let value_off = usize::from(le16(record, at + 20));
            let start = at + value_off;
            return start
                .checked_add(value_len)
                .filter(|&end| end <= size)
                .and_then(|end| utf16_label(&record[start..end], false));
        }
        at = at.checked_add(len)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    fn image() -> Vec<u8> {
        let mut d = vec![0u8; 64 << 10];
        d[3..11].copy_from_slice(OEM_ID);
        d[0x0b..0x0d].copy_from_slice(&512u16.to_le_bytes());
        d[0x0d] = 8;
        d[0x28..0x30].copy_from_slice(&127u64.to_le_bytes());
        d[0x30..0x38].copy_from_slice(&4u64.to_le_bytes()); // MFT at 16 KiB
        d[0x40] = (-10i8) as u8; // 1 KiB records
        d[0x48..0x50].copy_from_slice(&0x51ea_e2e6_486f_a80cu64.to_le_bytes());
        let mft = 16 << 10;
        d[mft..mft + 4].copy_from_slice(b"FILE");
        let vol = mft + 3 * 1024;
        d[vol..vol + 4].copy_from_slice(b"FILE");
        d[vol + 0x14..vol + 0x16].copy_from_slice(&0x38u16.to_le_bytes());
        d[vol + 0x1c..vol + 0x20].copy_from_slice(&1024u32.to_le_bytes());
        let a = vol + 0x38;
        d[a..a + 4].copy_from_slice(&0x10u32.to_le_bytes()); // some other attribute
        d[a + 4..a + 8].copy_from_slice(&0x20u32.to_le_bytes());
        let b = a + 0x20;
        d[b..b + 4].copy_from_slice(&ATTR_VOLUME_NAME.to_le_bytes());
        d[b + 4..b + 8].copy_from_slice(&0x28u32.to_le_bytes());
        d[b + 16..b + 20].copy_from_slice(&8u32.to_le_bytes());
        d[b + 20..b + 22].copy_from_slice(&0x18u16.to_le_bytes());
        for (i, u) in "Wïn ".encode_utf16().enumerate() {
            d[b + 0x18 + 2 * i..b + 0x1a + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        d
    }

    #[test]
    fn boot_sector_and_volume_name() {
        let p = probe(&MemSource(image())).unwrap().unwrap();
        assert_eq!(p.uuid.as_deref(), Some("51EAE2E6486FA80C"));
        assert_eq!(p.label.as_deref(), Some("Wïn"));
        assert_eq!(p.size, Some(127 * 512));
    }

    #[test]
    fn attribute_loop_ends() {
        let mut d = image();
        let a = (16 << 10) + 3 * 1024 + 0x38;
        d[a + 4..a + 8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(probe(&MemSource(d)).unwrap().unwrap().label, None);
    }
}
