//! Windows guests: the registry hives and the facts read from them.

pub mod hive;
