//! A bounded walk of guest directory trees, for the checks that look at every file
//! under system directories (world-writable files, set-id binaries).
//!
//! Bounded because the image is hostile: at most [`MAX_ENTRIES`] entries per walk and
//! [`MAX_DEPTH`] levels below a root. Symbolic links are never followed (their own mode
//! means nothing and following them could loop or leave the tree); roots are
//! canonicalized first so `/bin -> usr/bin` is walked once.

use crate::inspect::fs::{FileKind, Metadata};

use super::target::Target;

/// Most directory entries one walk looks at.
pub const MAX_ENTRIES: usize = 50_000;
/// Deepest level entered below a root.
pub const MAX_DEPTH: usize = 12;
/// How often (in entries) the cancel flag is polled.
const CANCEL_POLL: usize = 256;

/// How a walk ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WalkStats {
    /// Entries looked at.
    pub entries: usize,
    /// Stopped at [`MAX_ENTRIES`]: later entries were not looked at.
    pub hit_entry_limit: bool,
    /// Directories not entered because they are deeper than [`MAX_DEPTH`].
    pub too_deep: usize,
}

/// Whether `path` is `root` or below it.
pub fn under(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// The existing directories among `roots`, canonicalized (links resolved inside the
/// guest), without duplicates or roots inside another root, in the given order.
pub fn canonical_roots(t: &Target, roots: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for root in roots {
        let Ok(path) = t.guest.canonicalize(root) else {
            continue;
        };
        if !t.guest.is_dir(&path) || out.iter().any(|r| under(&path, r)) {
            continue;
        }
        out.retain(|r| !under(r, &path));
        out.push(path);
    }
    out
}

/// Walks `roots` depth first in name order, calling `visit` with the path and lstat
/// of every entry that is not a symlink (roots included), skipping the trees in `skip`.
pub fn walk(
    t: &mut Target,
    roots: &[String],
    skip: &[String],
    visit: &mut dyn FnMut(&str, &Metadata),
) -> WalkStats {
    let mut stats = WalkStats::default();
    let skipped = |p: &str| skip.iter().any(|s| under(p, s));
    for root in roots {
        if skipped(root) {
            continue;
        }
        let Some(meta) = t.lstat(root) else { continue };
        visit(root, &meta);
        // (directory, depth of its entries)
        let mut stack: Vec<(String, usize)> = vec![(root.clone(), 1)];
        while let Some((dir, depth)) = stack.pop() {
            let mut subdirs = Vec::new();
            for entry in t.list_dir(&dir) {
                if stats.entries >= MAX_ENTRIES {
                    stats.hit_entry_limit = true;
                    return stats;
                }
                stats.entries += 1;
                if stats.entries % CANCEL_POLL == 0 && t.cancelled() {
                    return stats;
                }
                if entry.kind == FileKind::Symlink {
                    continue;
                }
                let path = if dir == "/" {
                    format!("/{}", entry.name)
                } else {
                    format!("{dir}/{}", entry.name)
                };
                if skipped(&path) {
                    continue;
                }
                let Some(meta) = t.lstat(&path) else { continue };
                visit(&path, &meta);
                if meta.kind == FileKind::Dir {
                    if depth < MAX_DEPTH {
                        subdirs.push((path, depth + 1));
                    } else {
                        stats.too_deep += 1;
                    }
                }
            }
            // Reversed so the first subdirectory by name is walked first.
            stack.extend(subdirs.into_iter().rev());
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::memfs::MemFs;
    use crate::inspect::os::GuestFs;
    use crate::profile::finding::ProfileKind;
    use crate::profile::testing::linux;

    #[test]
    fn walks_in_order_without_links_or_skipped_trees() {
        let mut fs = MemFs::new()
            .symlink("/bin", "usr/bin")
            .file("/usr/bin/b", "")
            .file("/usr/bin/a", "")
            .dir("/usr/bin/sub/deeper")
            .symlink("/usr/bin/link", "/etc")
            .file("/usr/lib/x", "")
            .file("/usr/lib/systemd/y", "");
        let mut deep = String::from("/d");
        for i in 0..20 {
            deep.push_str(&format!("/{i}"));
        }
        fs = fs.dir(&deep);
        let guest = GuestFs::new(Arc::new(fs));
        let os = linux();
        let mut t = Target::new(&guest, &os, &ProfileKind::ALL, None);
        let roots = canonical_roots(
            &t,
            &["/bin", "/usr/bin", "/usr/lib/systemd", "/usr/lib", "/nope"],
        );
        assert_eq!(roots, vec!["/usr/bin", "/usr/lib"]);
        assert!(under("/usr/lib/x", "/usr/lib") && !under("/usr/libexec", "/usr/lib"));

        let mut seen = Vec::new();
        let skip = vec!["/usr/lib/systemd".to_string()];
        let stats = walk(&mut t, &roots, &skip, &mut |p, _| seen.push(p.to_string()));
        assert_eq!(
            seen,
            vec![
                "/usr/bin",
                "/usr/bin/a",
                "/usr/bin/b",
                "/usr/bin/sub",
                "/usr/bin/sub/deeper",
                "/usr/lib",
                "/usr/lib/x"
            ]
        );
        assert!(!stats.hit_entry_limit);

        let mut n = 0;
        let stats = walk(&mut t, &["/d".to_string()], &[], &mut |_, _| n += 1);
        assert_eq!(n, 1 + MAX_DEPTH);
        assert_eq!(stats.too_deep, 1);
    }
}
