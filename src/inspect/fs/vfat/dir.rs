//! A FAT directory: a run of 32-byte entries, short and long, turned into named entries.

use std::collections::HashMap;

use super::dir_entry::{ShortEntry, ATTR_LONG_NAME, ATTR_VOLUME_ID, DELETED, END};
use super::lfn::LongName;

/// A FAT directory holds at most 65536 entries (the specification's limit), so its
/// chain is bounded by this many bytes.
pub(crate) const MAX_DIR_BYTES: u64 = 65_536 * 32;

/// One live file or directory, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The long name when there is a valid one, else the 8.3 name: what Linux shows.
    pub name: String,
    /// The 8.3 name, which lookups also accept (as Linux does).
    pub short_name: String,
    pub is_dir: bool,
    pub first_cluster: u32,
    pub size: u32,
}

/// A parsed directory, indexed for lookups: FAT names match case-insensitively, on the
/// long name or the 8.3 alias (as Linux does), the first entry in order winning.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Directory {
    pub(crate) fn find(&self, name: &str) -> Option<&Entry> {
        self.index
            .get(&fold_case(name))
            .and_then(|&i| self.entries.get(i))
    }
}

fn fold_case(name: &str) -> String {
    name.chars().flat_map(char::to_lowercase).collect()
}

/// Parses the raw bytes of a directory. Deleted entries, volume labels, `.` and `..`
/// are skipped; the first entry starting with a zero byte ends the directory.
pub(crate) fn parse(bytes: &[u8], fat32: bool) -> Directory {
    let entries = parse_entries(bytes, fat32);
    let mut index = HashMap::with_capacity(entries.len() * 2);
    for (i, e) in entries.iter().enumerate() {
        index.entry(fold_case(&e.name)).or_insert(i);
        index.entry(fold_case(&e.short_name)).or_insert(i);
    }
    Directory { entries, index }
}

fn parse_entries(bytes: &[u8], fat32: bool) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut long = LongName::default();
    for raw in bytes.chunks_exact(32) {
        let Ok(raw) = <&[u8; 32]>::try_from(raw) else {
            break;
        };
        match raw[0] {
            END => break,
            DELETED => {
                long.reset();
                continue;
            }
            _ => {}
        }
        let short = ShortEntry(raw);
        if short.attr() & 0x3f == ATTR_LONG_NAME {
            long.push(raw);
            continue;
        }
        if short.attr() & ATTR_VOLUME_ID != 0 {
            long.reset();
            continue;
        }
        let short_name = short.name();
        let long_name = long.take(short.checksum()).filter(|n| usable(n));
        if short_name == "." || short_name == ".." {
            continue;
        }
        let name = match long_name {
            Some(long) => long,
            None if usable(&short_name) => short_name.clone(),
            // A name no path can reach (a hostile "..", "a/b"): not listed at all.
            None => continue,
        };
        entries.push(Entry {
            name,
            short_name,
            is_dir: short.is_dir(),
            first_cluster: short.first_cluster(fat32),
            size: short.size(),
        });
    }
    entries
}

/// Whether `name` can be one component of a path.
fn usable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::super::dir_entry::tests::short;
    use super::super::lfn::tests::entries;
    use super::*;

    #[test]
    fn lists_long_and_short_names_and_skips_the_rest() {
        let mut bytes = Vec::new();
        bytes.extend(short(b"MYVOLUME   ", 0x08, 0, 0, 0)); // label
        bytes.extend(short(b".          ", 0x10, 0, 9, 0));
        bytes.extend(short(b"..         ", 0x10, 0, 0, 0));
        let file = short(b"LONGNA~1TXT", 0x20, 0, 5, 1234);
        for e in entries("Long Name.txt", ShortEntry(&file).checksum()) {
            bytes.extend(e);
        }
        bytes.extend(file);
        let mut gone = short(b"GONE    TXT", 0x20, 0, 6, 1);
        gone[0] = DELETED;
        bytes.extend(gone);
        // Long name whose checksum does not match its short entry: short name wins.
        let stale = short(b"STALE   TXT", 0x20, 0x18, 7, 2);
        for e in entries(
            "something else",
            ShortEntry(&stale).checksum().wrapping_add(1),
        ) {
            bytes.extend(e);
        }
        bytes.extend(stale);
        bytes.extend(short(b"SUBDIR     ", 0x10, 0, 8, 0));
        bytes.extend([0u8; 32]); // end
        bytes.extend(short(b"AFTEREND   ", 0x20, 0, 9, 0));

        let dir = parse(&bytes, false);
        let list = &dir.entries;
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Long Name.txt", "stale.txt", "SUBDIR"]);
        assert_eq!(
            (list[0].first_cluster, list[0].size, list[0].is_dir),
            (5, 1234, false)
        );
        assert!(list[2].is_dir);
        assert_eq!(dir.find("long name.TXT"), Some(&list[0]));
        assert_eq!(dir.find("longna~1.txt"), Some(&list[0]));
        assert_eq!(dir.find("Long Name"), None);
        assert_eq!(dir.find("subdir"), Some(&list[2]));
    }

    #[test]
    fn unusable_names_fall_back_or_disappear() {
        let mut bytes = Vec::new();
        let dots = short(b"DOTS    TXT", 0x20, 0, 3, 1);
        for e in entries("..", ShortEntry(&dots).checksum()) {
            bytes.extend(e);
        }
        bytes.extend(dots);
        bytes.extend(short(b"A/B        ", 0x20, 0, 4, 1));
        let names: Vec<String> = parse(&bytes, false)
            .entries
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["DOTS.TXT"]);
    }

    #[test]
    fn lookups_ignore_unicode_case() {
        let file = short(b"ETE~1      ", 0x20, 0, 3, 1);
        let mut bytes = Vec::new();
        for e in entries("Été", ShortEntry(&file).checksum()) {
            bytes.extend(e);
        }
        bytes.extend(file);
        let dir = parse(&bytes, true);
        assert_eq!(dir.find("éTÉ").map(|e| e.name.as_str()), Some("Été"));
    }
}
