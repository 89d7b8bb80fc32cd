//! Fuzzes the package-database parsers: every parser gets the same input (dpkg status,
//! rpm header, rpmdb.sqlite with and without a write-ahead log, Berkeley DB rpmdb, ndb
//! Packages.db, apk installed, pacman desc), and each must return a result or a typed
//! error, never panic, loop or allocate without bound. Seed corpus: the integration
//! fixtures (rpmdb.sqlite, its -wal, db5.3_load Packages files, an ndb Packages.db, the
//! host's dpkg status).

#![no_main]

use guestkit_worker::inspect::os::packages::{
    parse_apk_installed, parse_dpkg_status, parse_pacman_desc, parse_rpm_header, parse_rpmdb_bdb,
    parse_rpmdb_ndb, parse_rpmdb_sqlite, parse_rpmdb_sqlite_with_wal,
};
use libfuzzer_sys::fuzz_target;

/// Larger inputs add nothing a small database cannot express and slow the fuzzer down.
const MAX_INPUT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let _ = parse_dpkg_status(data);
    let _ = parse_apk_installed(data);
    let _ = parse_pacman_desc(data);
    let _ = parse_rpm_header(data);
    let _ = parse_rpmdb_bdb(data);
    let _ = parse_rpmdb_ndb(data);
    let _ = parse_rpmdb_sqlite(data);
    // The same bytes split into a database and its log, at a point the input's last two
    // bytes choose, so the fuzzer can build both halves.
    if let [.., hi, lo] = data {
        let split = usize::from(u16::from_be_bytes([*hi, *lo])) * 512 % data.len();
        let (db, wal) = data.split_at(split);
        let _ = parse_rpmdb_sqlite_with_wal(db, Some(wal));
    }
});
