//! GUID Partition Table: header and entry-array CRC checks, and fallback to the backup.
//!
//! The primary header sits at LBA 1 and the backup at the disk's last LBA (the primary's
//! `alternate_lba` says where). A copy is used only when its header CRC, its position
//! (`my_lba`), its bounds and its entry-array CRC all check out, as the kernel requires.
//! When the primary fails, the backup is tried and a warning says so; when both fail the
//! table is a typed error, never a guess.
//!
//! Sector size: 512-byte LBAs are tried first; only when neither copy is valid there are
//! 4096-byte LBAs tried (a 4Kn disk image), since GPT positions are in logical blocks.
//!
//! Bounds, before anything is allocated: at most [`MAX_ENTRIES`] entries, entry size a
//! multiple of 8 in 128..=[`MAX_ENTRY_SIZE`], and an array of at most [`MAX_ARRAY_BYTES`].

use super::{Partition, PartitionError, PartitionTable, TableKind};
use crate::inspect::bytes::{array, field, guid_mixed_endian, le32, le64};
use crate::inspect::source::ReadError;
use crate::inspect::source::{read_vec, ReadAt};

/// Most entries a header may declare (128 is what every tool writes).
pub const MAX_ENTRIES: u32 = 16384;
/// Largest entry size accepted (the UEFI spec allows 128 * 2^n).
pub const MAX_ENTRY_SIZE: u32 = 4096;
/// Largest entry array read.
pub const MAX_ARRAY_BYTES: u64 = 4 << 20;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: u32 = 92;
/// Offset of the header CRC, zeroed while the CRC is computed.
const HEADER_CRC_OFFSET: usize = 16;
/// GPT attribute bit 2: legacy BIOS bootable.
const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// The header fields this reader uses.
#[derive(Debug, Clone)]
struct Header {
    alternate_lba: u64,
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

/// Why one copy (header + entries) could not be used; `header` is kept when only the
/// entries were bad, so its `alternate_lba` can still point at the backup.
struct BadCopy {
    header: Option<Header>,
    reason: String,
}

impl BadCopy {
    fn new(reason: impl Into<String>) -> BadCopy {
        BadCopy {
            header: None,
            reason: reason.into(),
        }
    }
}

/// Reads the GPT of a disk whose MBR has a protective (0xEE) entry.
pub fn read(src: &dyn ReadAt) -> Result<PartitionTable, PartitionError> {
    let first = read_with_sector_size(src, 512)?;
    let first_err = match first {
        Ok(table) => return Ok(table),
        Err(message) => message,
    };
    if let Ok(table) = read_with_sector_size(src, 4096)? {
        return Ok(table);
    }
    Err(PartitionError::Corrupt {
        table: "gpt",
        offset: 512,
        message: format!("{first_err} (no valid header with 4096-byte sectors either)"),
    })
}

/// Tries both copies with `ss`-byte LBAs. Outer error: a read failed for a reason other
/// than "outside the disk" (budget, I/O). Inner error: why no copy was usable.
fn read_with_sector_size(
    src: &dyn ReadAt,
    ss: u64,
) -> Result<Result<PartitionTable, String>, ReadError> {
    let disk_lbas = src.size() / ss;
    if disk_lbas < 3 {
        return Ok(Err(format!(
            "disk too small for a GPT with {ss}-byte sectors"
        )));
    }
    let last = disk_lbas - 1;
    let mut warnings = Vec::new();

    let (header, entries) = match load_copy(src, ss, 1, last)? {
        Ok((header, entries)) => {
            // The primary is good; note a broken backup, as fdisk does, but use the primary.
            if let Err(bad) = load_copy(src, ss, header.alternate_lba, last)? {
                warnings.push(format!(
                    "backup GPT at LBA {} is invalid ({}); the primary was used",
                    header.alternate_lba, bad.reason
                ));
            }
            (header, entries)
        }
        Err(primary) => {
            let mut candidates = Vec::with_capacity(2);
            if let Some(h) = &primary.header {
                candidates.push(h.alternate_lba);
            }
            if !candidates.contains(&last) {
                candidates.push(last);
            }
            let mut reasons = vec![format!("primary GPT at LBA 1: {}", primary.reason)];
            let mut found = None;
            for lba in candidates {
                match load_copy(src, ss, lba, last)? {
                    Ok(copy) => {
                        warnings.push(format!(
                            "primary GPT at LBA 1 is invalid ({}); using the backup at LBA {lba}",
                            primary.reason
                        ));
                        found = Some(copy);
                        break;
                    }
                    Err(bad) => reasons.push(format!("backup GPT at LBA {lba}: {}", bad.reason)),
                }
            }
            match found {
                Some(copy) => copy,
                None => return Ok(Err(reasons.join("; "))),
            }
        }
    };

    let partitions = entries_to_partitions(&header, &entries, ss, last, &mut warnings);
    Ok(Ok(PartitionTable {
        kind: TableKind::Gpt,
        partitions,
        warnings,
    }))
}

/// Reads and checks the header at `lba` and its entry array.
fn load_copy(
    src: &dyn ReadAt,
    ss: u64,
    lba: u64,
    last: u64,
) -> Result<Result<(Header, Vec<u8>), BadCopy>, ReadError> {
    if lba == 0 || lba > last {
        return Ok(Err(BadCopy::new(format!(
            "LBA {lba} is outside the disk (last LBA {last})"
        ))));
    }
    let buf = match read_vec(src, lba * ss, ss, ss) {
        Ok(buf) => buf,
        Err(ReadError::OutOfRange { .. }) => {
            return Ok(Err(BadCopy::new("header outside the disk")))
        }
        Err(e) => return Err(e),
    };
    let header = match check_header(&buf, ss, lba, last) {
        Ok(h) => h,
        Err(reason) => return Ok(Err(BadCopy::new(reason))),
    };
    let len = u64::from(header.num_entries) * u64::from(header.entry_size);
    let offset = header
        .entries_lba
        .checked_mul(ss)
        .filter(|&o| o.checked_add(len).is_some_and(|e| e <= (last + 1) * ss));
    let Some(offset) = offset else {
        let reason = format!(
            "entry array at LBA {} ({len} bytes) lies outside the disk",
            header.entries_lba
        );
        return Ok(Err(BadCopy {
            header: Some(header),
            reason,
        }));
    };
    let entries = match read_vec(src, offset, len, MAX_ARRAY_BYTES) {
        Ok(e) => e,
        Err(ReadError::OutOfRange { .. }) => {
            let reason = "entry array outside the disk".to_string();
            return Ok(Err(BadCopy {
                header: Some(header),
                reason,
            }));
        }
        Err(e) => return Err(e),
    };
    let crc = crc32fast::hash(&entries);
    if crc != header.entries_crc {
        let reason = format!(
            "entry array CRC mismatch (stored {:#010x}, computed {crc:#010x})",
            header.entries_crc
        );
        return Ok(Err(BadCopy {
            header: Some(header),
            reason,
        }));
    }
    Ok(Ok((header, entries)))
}

/// Validates one header sector read from `lba`.
fn check_header(buf: &[u8], ss: u64, lba: u64, last: u64) -> Result<Header, String> {
    if field(buf, 0, 8) != SIGNATURE {
        return Err("no \"EFI PART\" signature".into());
    }
    let header_size = le32(buf, 12);
    if !(MIN_HEADER_SIZE..=ss as u32).contains(&header_size) {
        return Err(format!(
            "header size {header_size} outside {MIN_HEADER_SIZE}..={ss}"
        ));
    }
    let mut copy = field(buf, 0, header_size as usize).to_vec();
    copy[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].fill(0);
    let stored = le32(buf, HEADER_CRC_OFFSET);
    let computed = crc32fast::hash(&copy);
    if stored != computed {
        return Err(format!(
            "header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let my_lba = le64(buf, 24);
    if my_lba != lba {
        return Err(format!(
            "header says it is at LBA {my_lba}, found at LBA {lba}"
        ));
    }
    let (first_usable, last_usable) = (le64(buf, 40), le64(buf, 48));
    if first_usable > last_usable || last_usable > last {
        return Err(format!(
            "usable LBAs {first_usable}..={last_usable} are not inside the disk (last LBA {last})"
        ));
    }
    let num_entries = le32(buf, 80);
    let entry_size = le32(buf, 84);
    if num_entries > MAX_ENTRIES {
        return Err(format!(
            "{num_entries} entries, more than the limit of {MAX_ENTRIES}"
        ));
    }
    if !(128..=MAX_ENTRY_SIZE).contains(&entry_size) || !entry_size.is_multiple_of(8) {
        return Err(format!(
            "entry size {entry_size} is not a multiple of 8 in 128..={MAX_ENTRY_SIZE}"
        ));
    }
    if u64::from(num_entries) * u64::from(entry_size) > MAX_ARRAY_BYTES {
        return Err(format!("entry array larger than {MAX_ARRAY_BYTES} bytes"));
    }
    Ok(Header {
        alternate_lba: le64(buf, 32),
        entries_lba: le64(buf, 72),
        num_entries,
        entry_size,
        entries_crc: le32(buf, 88),
    })
}

/// Turns the used entries into partitions numbered by entry index + 1, as Linux does.
fn entries_to_partitions(
    header: &Header,
    entries: &[u8],
    ss: u64,
    last: u64,
    warnings: &mut Vec<String>,
) -> Vec<Partition> {
    let mut out = Vec::new();
    let size = header.entry_size as usize;
    for (index, e) in entries.chunks_exact(size).enumerate() {
        let type_guid: [u8; 16] = array(e, 0);
        if type_guid == [0; 16] {
            continue;
        }
        let number = index as u32 + 1;
        let (first_lba, last_lba) = (le64(e, 32), le64(e, 40));
        if first_lba > last_lba || last_lba > last {
            warnings.push(format!(
                "GPT partition {number} (LBA {first_lba}..={last_lba}) is empty or lies outside the \
                 disk (last LBA {last}); skipped"
            ));
            continue;
        }
        out.push(Partition {
            number,
            // last_lba <= last < size / ss, so these products fit.
            start: first_lba * ss,
            size: (last_lba - first_lba + 1) * ss,
            part_type: guid_mixed_endian(&type_guid).to_uppercase(),
            name: utf16_name(field(e, 56, 72)),
            bootable: le64(e, 48) & ATTR_LEGACY_BIOS_BOOTABLE != 0,
            attributes: le64(e, 48),
            part_uuid: Some(guid_mixed_endian(&array(e, 16))),
        });
    }
    out
}

/// Decodes the 36 UTF-16LE code units of a partition name up to the first NUL; `None`
/// when empty (sfdisk then prints no name either).
fn utf16_name(raw: &[u8]) -> Option<String> {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    let name: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    const LINUX: [u8; 16] = [
        0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d,
        0xe4,
    ];
    const DISK: usize = 200; // sectors

    /// Writes a header at `lba` pointing at an entry array at `entries_lba` (128 x 128 B).
    fn write_copy(d: &mut [u8], lba: u64, alternate: u64, entries_lba: u64) {
        let arr_off = entries_lba as usize * 512;
        let crc = crc32fast::hash(&d[arr_off..arr_off + 128 * 128]);
        let h = lba as usize * 512;
        let hdr = &mut d[h..h + 512];
        hdr.fill(0);
        hdr[..8].copy_from_slice(SIGNATURE);
        hdr[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        hdr[12..16].copy_from_slice(&92u32.to_le_bytes());
        hdr[24..32].copy_from_slice(&lba.to_le_bytes());
        hdr[32..40].copy_from_slice(&alternate.to_le_bytes());
        hdr[40..48].copy_from_slice(&34u64.to_le_bytes());
        hdr[48..56].copy_from_slice(&(DISK as u64 - 34).to_le_bytes());
        hdr[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        hdr[80..84].copy_from_slice(&128u32.to_le_bytes());
        hdr[84..88].copy_from_slice(&128u32.to_le_bytes());
        hdr[88..92].copy_from_slice(&crc.to_le_bytes());
        let hcrc = crc32fast::hash(&hdr[..92]);
        hdr[16..20].copy_from_slice(&hcrc.to_le_bytes());
    }

    fn put_entry(
        d: &mut [u8],
        entries_lba: usize,
        index: usize,
        first: u64,
        last: u64,
        name: &str,
    ) {
        let e = entries_lba * 512 + index * 128;
        d[e..e + 16].copy_from_slice(&LINUX);
        d[e + 16] = index as u8 + 1;
        d[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
        d[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
        d[e + 48..e + 56].copy_from_slice(&4u64.to_le_bytes());
        for (i, u) in name.encode_utf16().enumerate() {
            d[e + 56 + 2 * i..e + 58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }

    /// A disk with both copies valid: two partitions at entry indexes 0 and 2.
    fn disk() -> Vec<u8> {
        let mut d = vec![0u8; DISK * 512];
        for arr in [2, DISK - 33] {
            put_entry(&mut d, arr, 0, 34, 99, "root é");
            put_entry(&mut d, arr, 2, 100, 165, "");
        }
        write_copy(&mut d, 1, DISK as u64 - 1, 2);
        write_copy(&mut d, DISK as u64 - 1, 1, DISK as u64 - 33);
        d
    }

    #[test]
    fn reads_entries_numbered_by_index() {
        let t = read(&MemSource(disk())).unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.partitions.len(), 2);
        let p = &t.partitions[0];
        assert_eq!((p.number, p.start, p.size), (1, 34 * 512, 66 * 512));
        assert_eq!(p.part_type, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        assert_eq!(p.name.as_deref(), Some("root é"));
        assert!(p.bootable);
        assert_eq!(
            p.part_uuid.as_deref(),
            Some("00000001-0000-0000-0000-000000000000")
        );
        assert_eq!(
            (t.partitions[1].number, t.partitions[1].name.as_deref()),
            (3, None)
        );
    }

    #[test]
    fn bad_header_crc_falls_back_to_backup() {
        let mut d = disk();
        d[512 + 40] ^= 1; // corrupt a header field, CRC no longer matches
        let t = read(&MemSource(d)).unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert!(
            t.warnings[0].contains("header CRC mismatch")
                && t.warnings[0].contains("backup at LBA 199")
        );
    }

    #[test]
    fn bad_entry_crc_falls_back_to_backup_via_alternate_lba() {
        let mut d = disk();
        d[2 * 512 + 56] ^= 0xff; // corrupt the primary's first entry name
        let t = read(&MemSource(d)).unwrap();
        assert_eq!(t.partitions[0].name.as_deref(), Some("root é"));
        assert!(
            t.warnings[0].contains("entry array CRC mismatch"),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn broken_backup_is_noted_when_primary_is_good() {
        let mut d = disk();
        d[(DISK - 1) * 512] = b'X';
        let t = read(&MemSource(d)).unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert!(
            t.warnings[0].contains("backup GPT at LBA 199 is invalid"),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn both_copies_bad_is_a_typed_error() {
        let mut d = disk();
        d[512] = b'X';
        d[(DISK - 1) * 512 + 12] = 200; // header size, CRC now wrong
        match read(&MemSource(d)) {
            Err(PartitionError::Corrupt {
                table: "gpt",
                message,
                ..
            }) => {
                assert!(
                    message.contains("primary GPT at LBA 1: no \"EFI PART\""),
                    "{message}"
                );
                assert!(message.contains("backup GPT at LBA 199"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entry_beyond_disk_or_reversed_is_skipped() {
        let mut d = disk();
        for arr in [2, DISK - 33] {
            put_entry(&mut d, arr, 1, 150, 1000, "far");
            put_entry(&mut d, arr, 3, 120, 110, "reversed");
        }
        write_copy(&mut d, 1, DISK as u64 - 1, 2);
        write_copy(&mut d, DISK as u64 - 1, 1, DISK as u64 - 33);
        let t = read(&MemSource(d)).unwrap();
        let numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
        assert_eq!(numbers, vec![1, 3]);
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
    }

    #[test]
    fn oversized_entry_counts_are_refused_before_allocating() {
        let mut d = disk();
        let h = 512;
        d[h + 80..h + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = {
            let mut c = d[h..h + 92].to_vec();
            c[16..20].fill(0);
            crc32fast::hash(&c)
        };
        d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
        let t = read(&MemSource(d)).unwrap();
        assert!(
            t.warnings[0].contains("more than the limit"),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn sector_size_4096_is_found() {
        // Same layout scaled to 4 KiB LBAs: header at byte 4096.
        let small = disk();
        let mut d = vec![0u8; DISK * 4096];
        for lba in 0..DISK {
            d[lba * 4096..lba * 4096 + 512].copy_from_slice(&small[lba * 512..lba * 512 + 512]);
        }
        // Entry arrays are 16 KiB at 512 B/LBA: copy them whole at the 4 KiB positions.
        for arr in [2usize, DISK - 33] {
            let src = &small[arr * 512..arr * 512 + 128 * 128];
            d[arr * 4096..arr * 4096 + 128 * 128].copy_from_slice(src);
        }
        let t = read(&MemSource(d)).unwrap();
        assert_eq!(t.partitions[0].start, 34 * 4096);
    }
}
