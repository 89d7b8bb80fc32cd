//! Errors of the volume layer (LVM2 today; MD and LUKS stack on the same types).

use crate::inspect::source::ReadError;
use crate::inspect::work::WorkStop;

/// Why a volume group, or one of its logical volumes, could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The metadata text is not LVM's config syntax.
    #[error("LVM2 metadata syntax error at line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// The text parses but does not describe a usable VG or LV.
    #[error("invalid LVM2 metadata: {0}")]
    Metadata(String),
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// A segment maps extents outside its physical volume.
    #[error("{lv}: segment maps extents {start}..{end} past the end of {pv} ({count} extents)")]
    PastPv {
        lv: String,
        pv: String,
        start: u64,
        end: u64,
        count: u64,
    },
    /// A logical volume is (directly or through others) built from itself.
    #[error("{0}: logical volume is stacked on itself")]
    Recursive(String),
    /// The LV needs a PV that is not among the disks.
    #[error("{lv}: physical volume {pv} is missing")]
    MissingPv { lv: String, pv: String },
    /// A segment type we do not read (yet), or a layout we cannot map.
    #[error("{lv}: {message}")]
    Unsupported { lv: String, message: String },
    /// A LUKS header that is invalid or uses what we do not implement. Never holds key
    /// material: only header facts.
    #[error("LUKS: {0}")]
    Luks(String),
    /// A key slot's KDF asks for more memory or time than a job may spend.
    #[error("LUKS key slot {slot}: {what} of {value} exceeds the limit of {limit}")]
    KdfCost {
        slot: String,
        what: &'static str,
        value: u64,
        limit: u64,
    },
    /// Deriving a slot's key would overrun the job's work budget (or the job was
    /// cancelled): the slot is not tried.
    #[error("LUKS key slot {slot}: key derivation not run: {stop}")]
    KdfBudget {
        slot: String,
        #[source]
        stop: WorkStop,
    },
    #[error(transparent)]
    Image(#[from] ReadError),
}
