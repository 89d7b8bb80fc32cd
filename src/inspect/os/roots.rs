//! Which filesystems are OS roots, decided by marker files as libguestfs decides:
//! - Linux: `/etc` is a directory, `/bin` is a directory or the usr-merge link to
//!   `usr/bin` (which dangles when `/usr` is a separate filesystem), or `/usr/bin` is a
//!   directory; and `/etc/fstab` or `/etc/hosts` is a file.
//! - Windows: a `Windows` (or `WINNT`) directory with `System32`, which holds the
//!   `config` directory and `cmd.exe`; names matched case-insensitively as NTFS and FAT
//!   do.

use std::sync::Arc;

use crate::inspect::fs::{FileKind, FileSystem};

use super::guest::GuestFs;

/// The kind of root a filesystem holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    Linux,
    Windows,
}

impl RootKind {
    /// The report's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Linux => "linux",
            RootKind::Windows => "windows",
        }
    }
}

/// What kind of OS root `fs` is, if any. Read errors count as "marker absent".
pub fn classify(fs: &Arc<dyn FileSystem>) -> Option<RootKind> {
    let g = GuestFs::new(fs.clone());
    if is_linux_root(&g) {
        return Some(RootKind::Linux);
    }
    if is_windows_root(&g) {
        return Some(RootKind::Windows);
    }
    None
}

fn is_linux_root(g: &GuestFs) -> bool {
    let bin = g.is_dir("/bin")
        || matches!(
            g.read_link("/bin").as_deref(),
            Ok("usr/bin") | Ok("/usr/bin")
        )
        || g.is_dir("/usr/bin");
    g.is_dir("/etc") && bin && (g.is_file("/etc/fstab") || g.is_file("/etc/hosts"))
}

fn is_windows_root(g: &GuestFs) -> bool {
    ["windows", "winnt"]
        .iter()
        .any(|dir| match find_nocase(g, "/", dir) {
            Some(path) => find_nocase(g, &path, "system32").is_some_and(|sys32| {
                find_nocase(g, &sys32, "config").is_some()
                    && g.read_dir(&sys32).is_ok_and(|es| {
                        es.iter().any(|e| {
                            e.kind == FileKind::File && e.name.eq_ignore_ascii_case("cmd.exe")
                        })
                    })
            }),
            None => false,
        })
}

/// The path of the directory `name` inside `dir`, matching case-insensitively.
fn find_nocase(g: &GuestFs, dir: &str, name: &str) -> Option<String> {
    let entries = g.read_dir(dir).ok()?;
    let e = entries
        .iter()
        .find(|e| e.kind == FileKind::Dir && e.name.eq_ignore_ascii_case(name))?;
    Some(format!("{}/{}", dir.trim_end_matches('/'), e.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    fn kind(fs: MemFs) -> Option<RootKind> {
        classify(&(Arc::new(fs) as Arc<dyn FileSystem>))
    }

    #[test]
    fn markers() {
        assert_eq!(
            kind(MemFs::new().dir("/bin").file("/etc/fstab", "")),
            Some(RootKind::Linux)
        );
        // usr-merge root whose /usr is another filesystem: /bin dangles.
        assert_eq!(
            kind(
                MemFs::new()
                    .symlink("/bin", "usr/bin")
                    .file("/etc/hosts", "")
            ),
            Some(RootKind::Linux)
        );
        assert_eq!(
            kind(MemFs::new().dir("/usr/bin").file("/etc/hosts", "")),
            Some(RootKind::Linux)
        );
        assert_eq!(kind(MemFs::new().dir("/bin").dir("/etc")), None);
        // A separate /var or /boot is not a root.
        assert_eq!(kind(MemFs::new().dir("/lib/dpkg").dir("/log")), None);
        assert_eq!(
            kind(MemFs::new().dir("/grub").file("/vmlinuz-6.1", "")),
            None
        );
        assert_eq!(
            kind(
                MemFs::new()
                    .dir("/WINDOWS/system32/config")
                    .file("/WINDOWS/system32/CMD.EXE", "MZ")
            ),
            Some(RootKind::Windows)
        );
        assert_eq!(kind(MemFs::new().dir("/WINDOWS/system32/config")), None);
        assert_eq!(kind(MemFs::new().dir("/Windows/Temp")), None);
    }
}
