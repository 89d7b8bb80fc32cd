//! Userspace, read-only inspection of VM disk images.
//!
//! Layers, each seeing only the one below through a trait: `image` (formats -> one
//! [`source::ReadAt`]), `partition` (tables -> byte ranges), `volume` (LVM, LUKS), `fs`
//! (probe + [`fs::FileSystem`] readers), `os` (OS roots and their facts). A layer uses
//! only those below it and the layer-neutral modules (`source`, `http_error`, `bytes`,
//! `cache`, `crc32c`, `fat_boot`, `resources`, `work`, `caps`, `report`), which use no
//! layer; `pipeline` wires them together. `layering.rs` checks this in the unit tests.

pub(crate) mod bytes;
pub(crate) mod cache;
pub mod caps;
pub mod crc32c;
pub(crate) mod fat_boot;
pub mod fs;
pub mod http_error;
pub mod image;
#[cfg(test)]
mod layering;
pub mod os;
pub mod partition;
pub mod pipeline;
pub mod report;
pub mod resources;
pub mod source;
pub mod volume;
pub mod work;
