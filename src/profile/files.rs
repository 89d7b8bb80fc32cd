//! The file-permission checks that walk directory trees, done in two bounded walks so
//! no directory is read twice: first the world-writable roots (set-id files under the
//! executable roots among them are checked on the way), then the remaining executable
//! roots for set-id files only.
//!
//! A walk that stops at its limits says so in a warning: a partial walk must not read
//! as a clean one.

use super::finding::ProfileKind;
use super::suid::{self, SetId};
use super::target::Target;
use super::walk::{self, under, WalkStats};
use super::writable::{self, Writable};

pub fn run(t: &mut Target) {
    let want_writable = t.wants(ProfileKind::Security);
    let want_setid = t.wants(ProfileKind::Hardening);
    if !want_writable && !want_setid {
        return;
    }
    let writable_roots = if want_writable {
        walk::canonical_roots(t, writable::ROOTS)
    } else {
        Vec::new()
    };
    let setid_roots = if want_setid {
        walk::canonical_roots(t, suid::ROOTS)
    } else {
        Vec::new()
    };
    let mut ww = Writable::default();
    let mut setid = SetId::default();

    let first = walk::walk(t, &writable_roots, &[], &mut |path, meta| {
        ww.visit(path, meta);
        if setid_roots.iter().any(|r| under(path, r)) {
            setid.visit(path, meta);
        }
    });
    note_limits(t, &first, &writable_roots);
    let second = walk::walk(t, &setid_roots, &writable_roots, &mut |path, meta| {
        setid.visit(path, meta);
    });
    note_limits(t, &second, &setid_roots);
    ww.report(t);
    setid.report(t);
}

fn note_limits(t: &mut Target, stats: &WalkStats, roots: &[String]) {
    if stats.hit_entry_limit {
        t.warn(format_args!(
            "file permission walk of {} stopped after {} entries; later files were not checked",
            roots.join(", "),
            walk::MAX_ENTRIES
        ));
    }
    if stats.too_deep > 0 {
        t.warn(format_args!(
            "file permission walk of {}: {} directories deeper than {} levels were not entered",
            roots.join(", "),
            stats.too_deep,
            walk::MAX_DEPTH
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{ids_and_lines, linux, run_on, ModeFs};
    use crate::inspect::os::memfs::MemFs;

    #[test]
    fn writable_and_setid_files_under_system_trees() {
        let fs = ModeFs::new(
            MemFs::new()
                .symlink("/bin", "usr/bin")
                .file("/usr/bin/passwd", "")
                .file("/usr/bin/backdoor", "")
                .file("/usr/bin/ok", "")
                .file("/usr/lib/systemd/system/x.service", "")
                .file("/usr/lib/helper", "")
                .file("/etc/cron.d/job", "")
                .dir("/etc/spool")
                .dir("/etc/shared")
                .symlink("/etc/link", "/tmp")
                .file("/home/user/open", ""),
        )
        .mode("/usr/bin/passwd", 0o4755)
        .mode("/usr/bin/backdoor", 0o4777)
        .mode("/usr/lib/systemd/system/x.service", 0o666)
        .mode("/usr/lib/helper", 0o2755)
        .mode("/etc/cron.d/job", 0o666)
        .mode("/etc/spool", 0o1777)
        .mode("/etc/shared", 0o777)
        .mode("/home/user/open", 0o777);
        let got = ids_and_lines(&run_on(Arc::new(fs), &linux(), super::run));
        let want: Vec<(String, String, Option<u32>)> = [
            ("SUID-001", "/usr/bin/backdoor"),
            ("SUID-002", "/usr/lib/helper"),
            ("WW-001", "/etc/cron.d/job"),
            ("WW-001", "/etc/shared"),
            ("WW-001", "/usr/bin/backdoor"),
            ("WW-001", "/usr/lib/systemd/system/x.service"),
        ]
        .into_iter()
        .map(|(i, f)| (i.to_string(), f.to_string(), None))
        .collect();
        assert_eq!(got, want);
    }
}
