//! Volume layer: LVM2 and LUKS containers inside partitions.

pub mod luks;
pub mod lvm2;
