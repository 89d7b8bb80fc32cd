//! MBR (DOS) partition tables, with extended partitions and their EBR chains.
//!
//! Numbering follows Linux: primaries keep their slot number 1-4 (empty slots leave
//! gaps), logical partitions are numbered 5, 6, ... in chain order. The chain walk is
//! the one blkid and the kernel do: in each EBR, every non-empty, non-extended entry is a
//! logical partition relative to that EBR (entries 3 and 4 only when they fit inside the
//! extended partition, since they often hold garbage), and the first extended entry
//! links to the next EBR relative to the start of the extended partition.
//!
//! A hostile table cannot make the walk loop or grow: EBR sectors already visited end
//! the chain, and at most [`MAX_EBRS`] EBRs are read. Entries that do not fit on the
//! disk are skipped, each with a note in [`PartitionTable::warnings`], rather than
//! failing the whole disk: the other partitions are still worth inspecting.

use std::collections::HashSet;

use super::{Partition, PartitionError, PartitionTable, TableKind};
use crate::inspect::bytes::le32;
use crate::inspect::source::ReadAt;
use crate::inspect::source::ReadError;

/// MBR sector size. Logical sector sizes other than 512 are not used for DOS tables
/// on VM disk images (libfdisk and the kernel use the device's logical sector size,
/// which is 512 for every virtual disk we are given as a file).
pub const SECTOR: u64 = 512;

/// Most EBRs followed across all extended partitions of one disk.
pub const MAX_EBRS: usize = 128;

/// Offset of the first of the four 16-byte entries in an MBR or EBR.
const ENTRIES_OFFSET: usize = 446;
/// Offset of the 32-bit disk signature ("disk identifier") Linux uses for PARTUUID.
const DISK_SIGNATURE_OFFSET: usize = 440;
/// GPT protective (or hybrid) entry type.
pub const TYPE_GPT_PROTECTIVE: u8 = 0xee;

/// One of the four slots of an MBR or EBR, as stored (LBAs relative to whatever the
/// containing record says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    /// Boot indicator: 0x80 active, 0x00 inactive; anything else means "not a table".
    pub boot: u8,
    /// Partition type byte (0x83 Linux, 0x05/0x0f/0x85 extended, 0xee GPT, ...).
    pub kind: u8,
    /// First sector, relative to the record's base.
    pub start: u32,
    /// Length in sectors.
    pub sectors: u32,
}

impl MbrEntry {
    /// A slot with no partition: type 0 or zero length, as fdisk treats it.
    pub fn is_empty(&self) -> bool {
        self.kind == 0 || self.sectors == 0
    }
}

/// The four entries of a 512-byte MBR or EBR.
pub fn entries(sector: &[u8; 512]) -> [MbrEntry; 4] {
    std::array::from_fn(|slot| {
        let at = ENTRIES_OFFSET + 16 * slot;
        MbrEntry {
            boot: sector[at],
            kind: sector[at + 4],
            start: le32(sector, at + 8),
            sectors: le32(sector, at + 12),
        }
    })
}

/// The 0x55 0xAA boot signature every MBR, EBR and FAT/NTFS boot sector ends with.
pub fn has_signature(sector: &[u8; 512]) -> bool {
    sector[510] == 0x55 && sector[511] == 0xaa
}

/// Extended-partition types that hold an EBR chain (DOS CHS, DOS LBA, Linux).
pub fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

/// The disk signature at offset 440.
pub fn disk_signature(sector: &[u8; 512]) -> u32 {
    le32(sector, DISK_SIGNATURE_OFFSET)
}

/// Whether sector 0 is the boot sector of a filesystem written to the whole disk
/// ("superfloppy"): those end in 0x55AA too, and blkid/libfdisk refuse to read them as a
/// partition table. Checks FAT the way blkid does (BPB sanity), and NTFS/exFAT by OEM id.
pub fn is_filesystem_boot_sector(sector: &[u8; 512]) -> bool {
    let oem = &sector[3..11];
    oem == b"NTFS    "
        || oem == b"EXFAT   "
        || crate::inspect::fat_boot::blkid_accepts(sector).is_some()
}

/// Parses the MBR in `sector0` and follows its extended partitions.
///
/// The caller ([`super::read_table`]) has already decided this is an MBR (signature,
/// boot indicators, no protective GPT entry, no filesystem boot sector).
pub fn read(src: &dyn ReadAt, sector0: &[u8; 512]) -> Result<PartitionTable, PartitionError> {
    let disk_sectors = src.size() / SECTOR;
    let signature = disk_signature(sector0);
    let mut walk = Walk {
        src,
        disk_sectors,
        signature,
        partitions: Vec::new(),
        warnings: Vec::new(),
        visited: HashSet::new(),
        next_logical: 5,
    };

    let primaries = entries(sector0);
    let mut extended = Vec::new();
    for (slot, e) in primaries.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        let number = slot as u32 + 1;
        let (start, sectors) = (u64::from(e.start), u64::from(e.sectors));
        if !fits(start, sectors, disk_sectors) {
            walk.warnings.push(format!(
                "MBR partition {number} (sectors {start}+{sectors}) lies outside the disk of \
                 {disk_sectors} sectors; skipped"
            ));
            continue;
        }
        walk.push(number, start, sectors, e);
        if is_extended(e.kind) {
            extended.push((start, sectors));
        }
    }
    for (start, sectors) in extended {
        walk.follow_chain(start, sectors)?;
    }

    Ok(PartitionTable {
        kind: TableKind::Mbr,
        partitions: walk.partitions,
        warnings: walk.warnings,
    })
}

/// Whether `[start, start + len)` (sectors) lies inside a disk of `disk` sectors.
fn fits(start: u64, len: u64, disk: u64) -> bool {
    start.checked_add(len).is_some_and(|end| end <= disk)
}

/// State of one table walk: what was found so far and which EBRs were already read.
struct Walk<'a> {
    src: &'a dyn ReadAt,
    disk_sectors: u64,
    signature: u32,
    partitions: Vec<Partition>,
    warnings: Vec<String>,
    visited: HashSet<u64>,
    next_logical: u32,
}

impl Walk<'_> {
    fn push(&mut self, number: u32, start: u64, sectors: u64, e: &MbrEntry) {
        self.partitions.push(Partition {
            number,
            start: start * SECTOR,
            size: sectors * SECTOR,
            part_type: format!("{:#x}", e.kind),
            name: None,
            bootable: e.boot == 0x80,
            attributes: 0,
            // blkid's form; no PARTUUID when the disk has no signature, as blkid.
            part_uuid: (self.signature != 0)
                .then(|| format!("{:08x}-{:02x}", self.signature, number)),
        });
    }

    /// Walks the EBR chain of the extended partition at `ext_start` (`ext_len` sectors).
    fn follow_chain(&mut self, ext_start: u64, ext_len: u64) -> Result<(), PartitionError> {
        let ext_end = ext_start + ext_len; // both checked to fit the disk by the caller
        let (mut cur, mut cur_len) = (ext_start, ext_len);
        loop {
            if self.visited.len() >= MAX_EBRS {
                self.warnings.push(format!(
                    "more than {MAX_EBRS} EBRs in the extended partitions; the rest are ignored"
                ));
                return Ok(());
            }
            if !self.visited.insert(cur) {
                self.warnings.push(format!(
                    "EBR chain loops back to sector {cur}; chain cut there"
                ));
                return Ok(());
            }
            let mut ebr = [0u8; 512];
            let read = match cur.checked_mul(SECTOR) {
                Some(offset) => self.src.read_exact_at(offset, &mut ebr),
                None => Err(ReadError::OutOfRange {
                    offset: u64::MAX,
                    len: 512,
                    size: self.src.size(),
                }),
            };
            match read {
                Ok(()) => {}
                Err(ReadError::OutOfRange { .. }) => {
                    self.warnings.push(format!(
                        "EBR at sector {cur} lies outside the disk; chain cut there"
                    ));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
            if !has_signature(&ebr) {
                self.warnings.push(format!(
                    "EBR at sector {cur} (offset {}) has no 0x55AA signature; chain ends there",
                    cur * SECTOR // read succeeded, so this fits
                ));
                return Ok(());
            }
            let slots = entries(&ebr);
            for (i, e) in slots.iter().enumerate() {
                if e.is_empty() || is_extended(e.kind) {
                    continue;
                }
                let (rel, sectors) = (u64::from(e.start), u64::from(e.sectors));
                let start = cur + rel; // cur < 2^33, rel < 2^32: no overflow
                                       // Entries 3 and 4 are honoured only when they sit inside this EBR's
                                       // extent and the extended partition (garbage there is common).
                if i >= 2
                    && (rel + sectors > cur_len || start < ext_start || start + sectors > ext_end)
                {
                    continue;
                }
                let number = self.next_logical;
                self.next_logical += 1;
                if !fits(start, sectors, self.disk_sectors) {
                    self.warnings.push(format!(
                        "logical partition {number} (sectors {start}+{sectors}, EBR at sector {cur}) \
                         lies outside the disk of {} sectors; skipped",
                        self.disk_sectors
                    ));
                    continue;
                }
                self.push(number, start, sectors, e);
            }
            let link = slots.iter().find(|e| e.sectors != 0 && is_extended(e.kind));
            match link {
                Some(l) if l.start != 0 => {
                    cur = ext_start + u64::from(l.start);
                    cur_len = u64::from(l.sectors);
                }
                _ => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::MemSource;

    /// Writes entry `slot` of the record at `base` (bytes) in `disk`.
    fn put(
        disk: &mut [u8],
        base: usize,
        slot: usize,
        boot: u8,
        kind: u8,
        start: u32,
        sectors: u32,
    ) {
        let at = base + ENTRIES_OFFSET + 16 * slot;
        disk[at] = boot;
        disk[at + 4] = kind;
        disk[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        disk[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        disk[base + 510] = 0x55;
        disk[base + 511] = 0xaa;
    }

    fn parse(disk: Vec<u8>) -> PartitionTable {
        let mut s0 = [0u8; 512];
        s0.copy_from_slice(&disk[..512]);
        read(&MemSource(disk), &s0).unwrap()
    }

    fn numbers(t: &PartitionTable) -> Vec<(u32, u64, u64)> {
        t.partitions
            .iter()
            .map(|p| (p.number, p.start / 512, p.size / 512))
            .collect()
    }

    #[test]
    fn primaries_and_logicals_are_numbered_like_linux() {
        let mut d = vec![0u8; 400 * 512];
        d[440..444].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        put(&mut d, 0, 0, 0x80, 0x83, 10, 20);
        put(&mut d, 0, 2, 0, 0x05, 100, 200); // slot 2 empty: number 2 is a gap
                                              // EBR 1 at 100: logical at +10, link to EBR at ext+50.
        put(&mut d, 100 * 512, 0, 0, 0x83, 10, 30);
        put(&mut d, 100 * 512, 1, 0, 0x05, 50, 60);
        // EBR 2 at 150: logical at +5, end of chain.
        put(&mut d, 150 * 512, 0, 0, 0x82, 5, 40);
        let t = parse(d);
        assert_eq!(
            numbers(&t),
            vec![(1, 10, 20), (3, 100, 200), (5, 110, 30), (6, 155, 40)]
        );
        assert!(t.partitions[0].bootable);
        assert_eq!(t.partitions[0].part_type, "0x83");
        assert_eq!(t.partitions[1].part_type, "0x5");
        assert_eq!(t.partitions[3].part_uuid.as_deref(), Some("deadbeef-06"));
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn ebr_loop_is_cut() {
        let mut d = vec![0u8; 400 * 512];
        put(&mut d, 0, 0, 0, 0x0f, 100, 200);
        put(&mut d, 100 * 512, 0, 0, 0x83, 1, 10);
        put(&mut d, 100 * 512, 1, 0, 0x05, 50, 60);
        put(&mut d, 150 * 512, 0, 0, 0x83, 1, 10);
        put(&mut d, 150 * 512, 1, 0, 0x05, 50, 60); // links to itself
        let t = parse(d);
        assert_eq!(numbers(&t), vec![(1, 100, 200), (5, 101, 10), (6, 151, 10)]);
        assert!(
            t.warnings
                .iter()
                .any(|w| w.contains("loops back to sector 150")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn long_chain_is_bounded() {
        // 300 EBRs each linking to the next: only MAX_EBRS are read.
        let mut d = vec![0u8; 1000 * 512];
        put(&mut d, 0, 0, 0, 0x05, 1, 900);
        for i in 0..300usize {
            let base = (1 + 2 * i) * 512;
            put(&mut d, base, 0, 0, 0x83, 1, 1);
            put(&mut d, base, 1, 0, 0x05, (2 * i + 2) as u32, 2);
        }
        let t = parse(d);
        assert_eq!(t.partitions.len(), 1 + MAX_EBRS);
        assert!(t.warnings.iter().any(|w| w.contains("more than 128 EBRs")));
    }

    #[test]
    fn entries_outside_the_disk_are_skipped_with_a_warning() {
        let mut d = vec![0u8; 100 * 512];
        put(&mut d, 0, 0, 0, 0x83, 10, 20);
        put(&mut d, 0, 1, 0, 0x83, 90, 20); // ends past sector 100
        put(&mut d, 0, 2, 0, 0x83, u32::MAX, u32::MAX);
        put(&mut d, 0, 3, 0, 0x05, 40, 50);
        put(&mut d, 40 * 512, 0, 0, 0x83, 1, 5000); // logical past the end
        put(&mut d, 40 * 512, 1, 0, 0x05, 5000, 10); // EBR past the end
        let t = parse(d);
        assert_eq!(numbers(&t), vec![(1, 10, 20), (4, 40, 50)]);
        assert_eq!(t.warnings.len(), 4, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("MBR partition 2"));
        assert!(t.warnings[2].contains("logical partition 5"));
        assert!(t.warnings[3].contains("outside the disk; chain cut"));
    }

    #[test]
    fn garbage_third_ebr_entry_is_ignored_and_missing_signature_ends_chain() {
        let mut d = vec![0u8; 400 * 512];
        put(&mut d, 0, 0, 0, 0x05, 100, 100);
        put(&mut d, 100 * 512, 0, 0, 0x83, 1, 10);
        put(&mut d, 100 * 512, 2, 0, 0x83, 150, 10); // beyond the extended partition
        put(&mut d, 100 * 512, 1, 0, 0x05, 20, 10);
        // EBR at 120 left without signature.
        let t = parse(d);
        assert_eq!(numbers(&t), vec![(1, 100, 100), (5, 101, 10)]);
        assert!(t.warnings[0].contains("no 0x55AA signature"));
    }

    #[test]
    fn no_partuuid_without_disk_signature() {
        let mut d = vec![0u8; 100 * 512];
        put(&mut d, 0, 0, 0, 0x83, 10, 20);
        assert_eq!(parse(d).partitions[0].part_uuid, None);
    }
}
