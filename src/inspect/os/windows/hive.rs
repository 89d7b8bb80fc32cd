//! Read-only Windows registry hives (REGF): the SOFTWARE, SYSTEM and SAM files of
//! `System32/config`, parsed from their bytes.
//!
//! Layout: [`base`] (the 4 KiB base block: checksum, sequence numbers, root cell),
//! [`bins`] (hive bins and the cells inside them), [`key`] (key nodes and subkey
//! lists), [`value`] (value records, their data and big-data chains), [`log`] (the
//! `.LOG1`/`.LOG2` transaction logs replayed over a dirty hive).
//!
//! A hive is hostile input like any disk byte: every cell offset is checked to lie
//! inside a hive bin, every list walk is bounded by the cell it lives in and by a
//! visited set, and value data is capped.

mod base;
mod bins;
mod key;
mod log;
mod value;

pub use key::Key;
pub use value::RegValue;

use bins::Bins;

/// Largest hive accepted (real SOFTWARE hives reach ~150 MiB on busy servers).
pub const MAX_HIVE_BYTES: u64 = 512 << 20;
/// Largest value data returned (big-data chains can claim up to 1 GiB).
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// Deepest key path looked up.
const MAX_PATH_DEPTH: usize = 64;

/// Why a hive or a key in it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HiveError {
    #[error("not a registry hive: {0}")]
    NotAHive(String),
    #[error("corrupt registry hive at offset {offset:#x}: {message}")]
    Corrupt { offset: u64, message: String },
    #[error("registry {what} of {size} bytes is larger than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
}

pub(crate) fn corrupt(offset: impl Into<u64>, message: impl Into<String>) -> HiveError {
    HiveError::Corrupt {
        offset: offset.into(),
        message: message.into(),
    }
}

/// One parsed hive.
pub struct Hive {
    bins: Bins,
    root: u32,
    warnings: Vec<String>,
}

impl Hive {
    /// Parses `data`, the whole primary file. A dirty hive (sequence numbers differ) is
    /// replayed from `logs` (the `.LOG1`/`.LOG2` contents, when present) if they hold
    /// the missing entries, else read as is with a warning.
    pub fn parse(mut data: Vec<u8>, logs: &[Vec<u8>]) -> Result<Hive, HiveError> {
        let mut b = base::parse(&data)?;
        let mut warnings = Vec::new();
        if b.dirty() {
            match log::replay(&mut data, &b, logs) {
                Ok(Some(applied)) => {
                    b = base::parse(&data)?;
                    warnings.push(format!(
                        "registry hive was dirty: {applied} transaction log entries applied"
                    ));
                }
                Ok(None) => warnings.push(
                    "registry hive is dirty (not cleanly written back) and no valid transaction log \
                     continues it: read as is, recent changes may be missing"
                        .to_string(),
                ),
                Err(e) => warnings.push(format!(
                    "registry hive is dirty and its transaction log is unusable ({e}): read as is"
                )),
            }
        }
        let bins = Bins::parse(data, b.bins_size)?;
        Ok(Hive {
            bins,
            root: b.root,
            warnings,
        })
    }

    /// Notes on how the hive was read (dirty state, logs applied).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn root(&self) -> Result<Key, HiveError> {
        Key::read(&self.bins, self.root)
    }

    /// The key at `path` (backslash-separated, case-insensitive, from the root), if any.
    pub fn key(&self, path: &str) -> Result<Option<Key>, HiveError> {
        let mut k = self.root()?;
        for (depth, part) in path.split('\\').filter(|p| !p.is_empty()).enumerate() {
            if depth >= MAX_PATH_DEPTH {
                return Ok(None);
            }
            match k.subkey(&self.bins, part)? {
                Some(sub) => k = sub,
                None => return Ok(None),
            }
        }
        Ok(Some(k))
    }

    pub fn subkeys(&self, k: &Key) -> Result<Vec<Key>, HiveError> {
        k.subkeys(&self.bins)
    }

    /// Names and data of every value of `k`.
    pub fn values(&self, k: &Key) -> Result<Vec<(String, RegValue)>, HiveError> {
        k.values(&self.bins)
    }

    /// The value `name` of `k` (case-insensitive; `""` is the default value).
    pub fn value(&self, k: &Key, name: &str) -> Result<Option<RegValue>, HiveError> {
        k.value(&self.bins, name)
    }
}

/// Case-insensitive name equality as the registry compares (Unicode upper case).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
        || a.chars()
            .flat_map(char::to_uppercase)
            .eq(b.chars().flat_map(char::to_uppercase))
}
