//! Image layer: disk-image formats turned into one flat virtual disk.

pub mod detect;
mod error;
pub mod qcow2;
pub mod raw;

pub use error::ImageError;
