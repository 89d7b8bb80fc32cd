//! Full inspection of the Debian fixture (debootstrap minbase, GPT with an ESP, ext4
//! root, compressed qcow2), and of the same disk grown to a 2 TiB virtual size (as
//! sparse raw and as qcow2), to show the cost follows what is read, not the disk size.
//!
//! Times are in-process (the library, best of 7 after a warm-up); peak memory is the
//! maximum RSS of the real binary's `inspect` subcommand, from `/usr/bin/time`.
//!
//! Then the cost of process isolation per job: the same `guestkit.inspect` of the
//! Debian qcow2 in process (the blocking pipeline plus the report as a JSON value, what
//! the daemon did before) and through a child of the real binary (spawn, limits,
//! request, pipeline, reply parsed back), alternated, medians of
//! `GUESTKIT_BENCH_ISOLATION_ROUNDS` (default 15) rounds.
//! Builds its fixtures with `integration/fixtures/debian-disk.sh` (debootstrap once per
//! machine, cached in $HOME/.cache/guestkit-fixtures).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use guestkit_worker::inspect::pipeline::{inspect_full, InspectOptions};
use guestkit_worker::inspect::source::CancelFlag;
use guestkit_worker::isolation::Isolation;
use guestkit_worker::ops::image_request::ImageRequest;
use guestkit_worker::ops::inspect::run_blocking;
use guestkit_worker::progress::Progress;

/// The binary's allocator, so in-process times compare with the daemon's (and with
/// its children).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn sh(script: &str) {
    let status = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

fn fixtures() -> (PathBuf, PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The integration tests' cache (integration/common `fixture_cache`), so a machine
    // builds the debootstrap tree once for both.
    let cache = std::env::var_os("GUESTKIT_FIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/guestkit-fixtures"))
        })
        .unwrap_or_else(|| root.join("target/fixture-cache"));
    let dir = cache.join("bench-inspect");
    let qcow2 = dir.join("disk.qcow2");
    let big_raw = dir.join("disk-2t.raw");
    let big_qcow2 = dir.join("disk-2t.qcow2");
    if !big_qcow2.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        sh(&format!(
            "{script} bookworm {cache} {dir}
             qemu-img convert -O raw {dir}/disk.qcow2 {dir}/disk-2t.raw && truncate -s 2T {dir}/disk-2t.raw
             qemu-img convert -c -O qcow2 {dir}/disk.qcow2 {dir}/disk-2t.qcow2 && qemu-img resize -q {dir}/disk-2t.qcow2 2T",
            script = root.join("integration/fixtures/debian-disk.sh").display(),
            cache = cache.display(),
            dir = dir.display()
        ));
    }
    (qcow2, big_raw, big_qcow2)
}

fn time_inspect(path: &Path) -> (f64, usize, u64) {
    let opts = InspectOptions {
        image_roots: vec![path.parent().unwrap().to_path_buf()],
        ..Default::default()
    };
    let first = inspect_full(path, &opts).expect("inspection");
    let apps = first
        .report
        .operating_systems
        .first()
        .map(|o| o.applications.len())
        .unwrap_or(0);
    let bytes = first.stats.bytes_read;
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        let _ = inspect_full(path, &opts).expect("inspection");
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best * 1000.0, apps, bytes)
}

fn peak_rss_kib(path: &Path) -> u64 {
    let out = Command::new("/usr/bin/time")
        .args([
            "-f",
            "%M",
            env!("CARGO_BIN_EXE_guestkit-worker"),
            "--log-level",
            "error",
            "inspect",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr)
        .trim()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One job in process and through a child, alternated; prints medians and the ratio.
fn isolation_overhead(path: &Path) {
    let rounds: usize = std::env::var("GUESTKIT_BENCH_ISOLATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let roots = vec![path.parent().unwrap().to_path_buf()];
    let data = serde_json::json!({ "image": { "path": path } });
    let request = ImageRequest::from_data(&data, &roots).unwrap();
    let in_process = || {
        let (report, _) =
            run_blocking(&request, &Progress::disabled(), &CancelFlag::default()).unwrap();
        serde_json::to_value(report).unwrap()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let isolation = Isolation::new(env!("CARGO_BIN_EXE_guestkit-worker"), 2 << 30);
    let cancel = tokio_util::sync::CancellationToken::new();
    let through_child = || {
        runtime
            .block_on(isolation.run(
                "guestkit.inspect",
                &data,
                &roots,
                600,
                &Progress::disabled(),
                &cancel,
            ))
            .unwrap()
            .output
    };
    // Same report both ways (and a warm page cache for both).
    assert_eq!(in_process(), through_child());
    let (mut inp, mut child) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let _ = in_process();
        inp.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let _ = through_child();
        child.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (a, b) = (median(inp), median(child));
    println!(
        "isolation, debian qcow2: in process {a:>7.1} ms  through a child {b:>7.1} ms  overhead {:>6.1} ms per job  ratio {:.2}  (medians of {rounds})",
        b - a,
        b / a
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("inspect: run with `cargo bench --bench inspect`");
        return;
    }
    let (qcow2, big_raw, big_qcow2) = fixtures();
    for (name, path) in [
        ("debian qcow2 (zlib)", &qcow2),
        ("same disk, 2 TiB sparse raw", &big_raw),
        ("same disk, 2 TiB qcow2", &big_qcow2),
    ] {
        let size = std::fs::metadata(path).unwrap().len();
        let (ms, apps, bytes) = time_inspect(path);
        let rss = peak_rss_kib(path);
        println!(
            "{name:<30} file {:>6.1} MiB  inspect {ms:>7.1} ms  read {:>6.1} MiB  peak RSS {:>6.1} MiB  ({apps} packages)",
            size as f64 / 1048576.0,
            bytes as f64 / 1048576.0,
            rss as f64 / 1024.0
        );
    }
    isolation_overhead(&qcow2);
}
