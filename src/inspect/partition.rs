//! Partition-table layer: MBR (with EBR chains) and GPT, turned into byte ranges.

mod error;
pub mod gpt;
pub mod mbr;

pub use error::PartitionError;

/// Which kind of table a disk has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
}

impl TableKind {
    /// Name used in the report (`"mbr"`, `"gpt"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Mbr => "mbr",
            TableKind::Gpt => "gpt",
        }
    }
}

/// One partition as a byte range of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Number as Linux names it (`/dev/sda<number>`): GPT entry index + 1; MBR 1-4 for
    /// primaries and 5.. for logicals.
    pub number: u32,
    /// Byte offset of the first byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// GPT type GUID (upper-case, dashed) or MBR type as `0x83`.
    pub part_type: String,
    /// GPT partition name; `None` on MBR.
    pub name: Option<String>,
    /// MBR active flag; GPT legacy-BIOS-bootable attribute.
    pub bootable: bool,
    /// GPT attribute bits (bits 48-63 are the type's own: the systemd read-only and
    /// no-auto flags, ChromeOS/Flatcar priority, tries and successful); 0 on MBR.
    pub attributes: u64,
    /// GPT unique partition GUID (lower-case, as `PARTUUID=` in fstab uses it); for MBR
    /// the Linux form `<disk-signature>-<nn>`.
    pub part_uuid: Option<String>,
}

/// A parsed partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub kind: TableKind,
    pub partitions: Vec<Partition>,
    /// Notes on what was recovered from (backup GPT header used, EBR loop cut, ...).
    pub warnings: Vec<String>,
}

impl Partition {
    /// Whether this is an MBR extended partition: a container of EBRs and logical
    /// partitions (listed like sfdisk does), with no filesystem of its own to probe.
    pub fn is_extended_container(&self) -> bool {
        matches!(self.part_type.as_str(), "0x5" | "0xf" | "0x85")
    }
}

/// Reads the partition table of a whole disk.
///
/// `Ok(None)` when the disk has none (a filesystem written to the whole disk, an empty
/// disk): the caller then probes the whole disk. The decision follows blkid: sector 0
/// must end in 0x55AA with every boot indicator 0x00 or 0x80; a protective (0xEE) entry
/// means GPT (hybrid MBRs included); a FAT/NTFS/exFAT boot sector ("superfloppy") is not
/// a table. An MBR with no used entries is `Some` with no partitions, as sfdisk shows it.
pub fn read_table(
    src: &dyn crate::inspect::source::ReadAt,
) -> Result<Option<PartitionTable>, PartitionError> {
    if src.size() < mbr::SECTOR {
        return Ok(None);
    }
    let mut sector0 = [0u8; 512];
    src.read_exact_at(0, &mut sector0)?;
    if !mbr::has_signature(&sector0) {
        return Ok(None);
    }
    let entries = mbr::entries(&sector0);
    if entries.iter().any(|e| e.boot != 0 && e.boot != 0x80) {
        return Ok(None);
    }
    if entries.iter().any(|e| e.kind == mbr::TYPE_GPT_PROTECTIVE) {
        return gpt::read(src).map(Some);
    }
    if mbr::is_filesystem_boot_sector(&sector0) {
        return Ok(None);
    }
    mbr::read(src, &sector0).map(Some)
}
