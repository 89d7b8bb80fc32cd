//! Userspace, read-only inspection of VM disk images.
//!
//! Layers, each seeing only the one below through a trait: `image` (formats -> one
//! [`source::ReadAt`]), `partition` (tables -> byte ranges), `volume` (LVM, LUKS), `fs`
//! (probe + [`fs::FileSystem`] readers), `os` (OS roots and their facts).

pub(crate) mod bytes;
pub mod caps;
pub mod crc32c;
pub mod fs;
pub mod image;
pub mod os;
pub mod partition;
pub mod pipeline;
pub mod report;
pub mod resources;
pub mod source;
pub mod volume;
pub mod work;
