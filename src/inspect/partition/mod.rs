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
