//! The guest's view of its files: several filesystems mounted at their fstab
//! mountpoints, with paths resolved the way the guest kernel would resolve them.
//!
//! Each [`FileSystem`] only knows paths inside itself and never follows a symlink. An OS
//! root spreads over several filesystems (a separate `/var` or `/usr`) and is full of
//! symlinks (`/bin -> usr/bin`, `/etc/resolv.conf -> ../run/...`), so this layer walks a
//! path one component at a time, follows links itself (absolute targets relative to the
//! *guest* root, never the host), crosses mountpoints, clamps `..` at the root and caps
//! the number of links followed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::inspect::fs::{DirEntry, FileKind, FileSystem, FsError, Metadata};

/// Most symbolic links followed while resolving one path (Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Default per-file read cap for configuration files (os-release, passwd, fstab, units,
/// ...): far above any real one, low enough that a hostile image cannot make one read
/// allocate much. Package databases use their own, larger caps (see `apps.rs`).
pub const DEFAULT_READ_LIMIT: u64 = 16 * 1024 * 1024;

/// Most components a path may have once links are expanded; a guard against link
/// targets built to blow up the work list.
const MAX_COMPONENTS: usize = 4096;

/// Directories already known to be real directories (not links) are remembered so a
/// deep path is not re-stat'ed component by component on every read. Bounded; cleared
/// when full (the image is read-only, so entries never go stale).
const DIR_CACHE_MAX: usize = 8192;

/// One filesystem attached at a guest path.
struct Mount {
    /// Mountpoint as path components (`[]` for `/`, `["var"]` for `/var`).
    point: Vec<String>,
    fs: Arc<dyn FileSystem>,
}

/// A set of mounts forming one guest's directory tree.
pub struct GuestFs {
    /// Sorted by mountpoint depth, deepest first, so the first prefix match is the
    /// mount that owns a path.
    mounts: Vec<Mount>,
    dirs: Mutex<HashSet<String>>,
}

impl GuestFs {
    /// A tree with `root` mounted at `/`.
    pub fn new(root: Arc<dyn FileSystem>) -> GuestFs {
        GuestFs {
            mounts: vec![Mount {
                point: Vec::new(),
                fs: root,
            }],
            dirs: Mutex::new(HashSet::new()),
        }
    }

    /// Attaches `fs` at `mountpoint`, hiding what the filesystems below have there.
    /// The mountpoint is normalised lexically (like fstab, which names real directories):
    /// links in it are not followed. Mounting `/` again replaces the root.
    pub fn mount(&mut self, mountpoint: &str, fs: Arc<dyn FileSystem>) {
        let point = lexical_components(mountpoint);
        self.mounts.retain(|m| m.point != point);
        self.mounts.push(Mount { point, fs });
        self.mounts
            .sort_by_key(|m| std::cmp::Reverse(m.point.len()));
        self.lock_dirs().clear();
    }

    /// The mountpoints, shallowest first.
    pub fn mountpoints(&self) -> Vec<String> {
        let mut points: Vec<String> = self.mounts.iter().map(|m| join(&m.point)).collect();
        points.sort_by_key(|p| (p.matches('/').count(), p.clone()));
        points
    }

    /// The canonical guest path of `path`, every link followed (like realpath(3)).
    pub fn canonicalize(&self, path: &str) -> Result<String, FsError> {
        let comps = self.resolve(path, true)?;
        self.lstat_at(&comps, path)?;
        Ok(join(&comps))
    }

    /// Whole content of a file, links followed; [`FsError::TooLarge`] above `limit`.
    pub fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let comps = self.resolve(path, true)?;
        let (fs, inner) = self.locate(&comps);
        fs.read_file(&inner, limit).map_err(|e| rename(e, path))
    }

    /// A file as text (invalid UTF-8 replaced), capped at `limit` bytes.
    pub fn read_to_string_lossy(&self, path: &str, limit: u64) -> Result<String, FsError> {
        let bytes = self.read_file(path, limit)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Entries of a directory, links followed.
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let comps = self.resolve(path, true)?;
        let (fs, inner) = self.locate(&comps);
        fs.read_dir(&inner).map_err(|e| rename(e, path))
    }

    /// Like stat(2): links followed, also in the last component.
    pub fn metadata(&self, path: &str) -> Result<Metadata, FsError> {
        let comps = self.resolve(path, true)?;
        self.lstat_at(&comps, path)
    }

    /// Like lstat(2): links followed in the parent directories only.
    pub fn lstat(&self, path: &str) -> Result<Metadata, FsError> {
        let comps = self.resolve(path, false)?;
        self.lstat_at(&comps, path)
    }

    /// Target of the link `path` (its parents resolved), as stored.
    pub fn read_link(&self, path: &str) -> Result<String, FsError> {
        let comps = self.resolve(path, false)?;
        let (fs, inner) = self.locate(&comps);
        fs.read_link(&inner).map_err(|e| rename(e, path))
    }

    /// Whether `path` names anything once links are followed (a dangling link does not
    /// count). Read errors count as absent.
    pub fn exists(&self, path: &str) -> bool {
        self.metadata(path).is_ok()
    }

    /// Whether `path` is a directory once links are followed.
    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.metadata(path), Ok(m) if m.kind == FileKind::Dir)
    }

    /// Whether `path` is a regular file once links are followed.
    pub fn is_file(&self, path: &str) -> bool {
        matches!(self.metadata(path), Ok(m) if m.kind == FileKind::File)
    }

    /// Walks `path` from the guest root and returns its components with every link in
    /// the parents (and in the last component when `follow_last`) replaced by its
    /// target. The last component need not exist.
    fn resolve(&self, path: &str, follow_last: bool) -> Result<Vec<String>, FsError> {
        let mut done: Vec<String> = Vec::new();
        // A stack: the next component to look at is at the end.
        let mut todo: Vec<String> = lexical_split(path).into_iter().rev().collect();
        let mut hops = 0usize;
        while let Some(name) = todo.pop() {
            if name == ".." {
                done.pop();
                continue;
            }
            done.push(name);
            let last = todo.is_empty();
            if last && !follow_last {
                break;
            }
            let key = join(&done);
            if self.lock_dirs().contains(&key) {
                continue;
            }
            let meta = match self.lstat_at(&done, path) {
                Ok(m) => m,
                // A missing last component is the caller's business (it may be
                // created-if-absent semantics like `exists`); the caller's own stat
                // reports it.
                Err(FsError::NotFound(_)) if last => break,
                Err(e) => return Err(e),
            };
            match meta.kind {
                FileKind::Dir => {
                    let mut dirs = self.lock_dirs();
                    if dirs.len() >= DIR_CACHE_MAX {
                        dirs.clear();
                    }
                    dirs.insert(key);
                }
                FileKind::Symlink => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(FsError::SymlinkLoop(path.to_string()));
                    }
                    let (fs, inner) = self.locate(&done);
                    let target = fs.read_link(&inner).map_err(|e| rename(e, &key))?;
                    done.pop();
                    if target.starts_with('/') {
                        done.clear();
                    }
                    todo.extend(lexical_split(&target).into_iter().rev());
                    if todo.len() + done.len() > MAX_COMPONENTS {
                        return Err(FsError::SymlinkLoop(path.to_string()));
                    }
                }
                _ if !last => return Err(FsError::NotADirectory(key)),
                _ => {}
            }
        }
        Ok(done)
    }

    /// lstat of an already-resolved path, errors named with the guest path.
    fn lstat_at(&self, comps: &[String], path: &str) -> Result<Metadata, FsError> {
        let (fs, inner) = self.locate(comps);
        fs.metadata(&inner).map_err(|e| match e {
            FsError::NotFound(_) if join(comps) != path => FsError::NotFound(join(comps)),
            e => rename(e, path),
        })
    }

    /// The mount owning a resolved path, and the path inside that filesystem.
    fn locate(&self, comps: &[String]) -> (&dyn FileSystem, String) {
        for m in &self.mounts {
            if comps.len() >= m.point.len() && comps[..m.point.len()] == m.point[..] {
                return (m.fs.as_ref(), join(&comps[m.point.len()..]));
            }
        }
        // Unreachable in practice: the root mount (no components) matches everything.
        // Keep a total function anyway: resolve against the shallowest mount.
        let m = &self.mounts[self.mounts.len() - 1];
        (m.fs.as_ref(), join(comps))
    }

    fn lock_dirs(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned cache only means another reader panicked mid-insert; the set is
        // still a valid set of known directories.
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Components of a path with empty and `.` components dropped (`..` kept: it can only
/// be applied once links before it are resolved).
fn lexical_split(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// Components of a path normalised without looking at the disk (`..` applied
/// textually, clamped at the root).
fn lexical_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in lexical_split(path) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

fn join(comps: &[String]) -> String {
    let mut s = String::with_capacity(comps.iter().map(|c| c.len() + 1).sum::<usize>() + 1);
    for c in comps {
        s.push('/');
        s.push_str(c);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// Errors from a filesystem name the path inside that filesystem; callers want the
/// guest path they asked for.
fn rename(e: FsError, path: &str) -> FsError {
    match e {
        FsError::NotFound(_) => FsError::NotFound(path.to_string()),
        FsError::NotADirectory(_) => FsError::NotADirectory(path.to_string()),
        FsError::IsADirectory(_) => FsError::IsADirectory(path.to_string()),
        FsError::NotASymlink(_) => FsError::NotASymlink(path.to_string()),
        FsError::TooLarge { size, limit, .. } => FsError::TooLarge {
            path: path.to_string(),
            size,
            limit,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::os::memfs::MemFs;

    fn usrmerge() -> GuestFs {
        let root = MemFs::new()
            .dir("/etc")
            .file("/etc/hostname", "web-01\n")
            .symlink("/bin", "usr/bin")
            .symlink("/lib", "usr/lib")
            .dir("/usr")
            .symlink(
                "/etc/resolv.conf",
                "../run/systemd/resolve/stub-resolv.conf",
            )
            .symlink("/etc/abs", "/etc/hostname")
            .symlink("/etc/up", "../../../../etc/hostname")
            .symlink("/loop1", "loop2")
            .symlink("/loop2", "/loop1")
            .dir("/var");
        let usr = MemFs::new()
            .dir("/bin")
            .file("/bin/ls", "ELF")
            .symlink("/bin/sh", "dash")
            .file("/bin/dash", "DASH")
            .dir("/lib/os")
            .file("/lib/os/os-release", "ID=debian\n")
            .symlink("/lib/escape", "../../../../../../etc/shadow");
        let var = MemFs::new()
            .dir("/lib/dpkg")
            .file("/lib/dpkg/status", "Package: x\n");
        let mut g = GuestFs::new(Arc::new(root));
        g.mount("/usr", Arc::new(usr));
        g.mount("/var/", Arc::new(var));
        g
    }

    #[test]
    fn follows_links_across_mounts() {
        let g = usrmerge();
        assert_eq!(g.read_file("/bin/sh", 100).unwrap(), b"DASH");
        assert_eq!(g.canonicalize("/bin/sh").unwrap(), "/usr/bin/dash");
        assert_eq!(
            g.read_file("/lib/os/os-release", 100).unwrap(),
            b"ID=debian\n"
        );
        assert_eq!(
            g.read_file("/var/lib/dpkg/status", 100).unwrap(),
            b"Package: x\n"
        );
        assert_eq!(g.read_file("/etc/abs", 100).unwrap(), b"web-01\n");
        assert!(g.is_dir("/bin"));
        assert_eq!(g.lstat("/bin").unwrap().kind, FileKind::Symlink);
        assert_eq!(g.read_link("/bin").unwrap(), "usr/bin");
        assert_eq!(g.mountpoints(), vec!["/", "/usr", "/var"]);
    }

    #[test]
    fn dotdot_is_clamped_at_the_guest_root() {
        let g = usrmerge();
        assert_eq!(g.read_file("/etc/up", 100).unwrap(), b"web-01\n");
        assert_eq!(
            g.read_file("/../../etc/hostname", 100).unwrap(),
            b"web-01\n"
        );
        // `/usr/lib/escape` climbs out of the /usr mount into the root fs, never the host.
        match g.read_file("/lib/escape", 100) {
            Err(FsError::NotFound(p)) => assert_eq!(p, "/lib/escape"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dangling_and_looping_links() {
        let g = usrmerge();
        assert!(!g.exists("/etc/resolv.conf"));
        assert!(g.lstat("/etc/resolv.conf").is_ok());
        assert!(matches!(
            g.read_file("/loop1", 100),
            Err(FsError::SymlinkLoop(_))
        ));
        assert!(matches!(
            g.metadata("/loop1/x"),
            Err(FsError::SymlinkLoop(_))
        ));
        assert!(matches!(
            g.read_file("/etc/hostname/x", 100),
            Err(FsError::NotADirectory(_))
        ));
        assert!(matches!(g.read_file("/nope", 100), Err(FsError::NotFound(p)) if p == "/nope"));
    }

    #[test]
    fn long_link_chains_stop_at_the_hop_limit() {
        let mut fs = MemFs::new().file("/f", "x");
        for i in 0..60 {
            let target = if i == 0 {
                "/f".to_string()
            } else {
                format!("/l{}", i - 1)
            };
            fs = fs.symlink(&format!("/l{i}"), &target);
        }
        let g = GuestFs::new(Arc::new(fs));
        assert_eq!(g.read_file("/l39", 10).unwrap(), b"x");
        assert!(matches!(
            g.read_file("/l40", 10),
            Err(FsError::SymlinkLoop(_))
        ));
    }

    #[test]
    fn read_limit_is_enforced_and_named_with_the_guest_path() {
        let g = usrmerge();
        match g.read_file("/var/lib/dpkg/status", 3) {
            Err(FsError::TooLarge { path, .. }) => assert_eq!(path, "/var/lib/dpkg/status"),
            other => panic!("{other:?}"),
        }
    }
}
