//! Full inspection of the Debian fixture (debootstrap minbase, GPT with an ESP, ext4
//! root, compressed qcow2), and of the same disk grown to a 2 TiB virtual size (as
//! sparse raw and as qcow2), to show the cost follows what is read, not the disk size.
//!
//! Then the qcow2, VHDX and streamOptimized VMDK files over HTTP range requests from a
//! local nginx (`cargo bench --bench inspect -- remote` runs only the qcow2 one).
//!
//! Times are in-process (the library, best of 7 after a warm-up); peak memory is the
//! maximum RSS of the real binary's `inspect` subcommand, from `/usr/bin/time`.
//! Builds its fixtures with `integration/fixtures/debian-disk.sh` (debootstrap once per
//! machine, cached in $HOME/.cache/guestkit-fixtures).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use guestkit_worker::inspect::pipeline::{inspect_full, InspectOptions};

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

/// The Debian disk in every other format qemu-img writes (built once, next to the qcow2).
fn format_fixtures(qcow2: &Path) -> Vec<(&'static str, PathBuf)> {
    let dir = qcow2.parent().unwrap();
    let specs = [
        ("raw", "raw", "", "disk.raw"),
        (
            "vmdk monolithicSparse",
            "vmdk",
            "subformat=monolithicSparse",
            "disk-sparse.vmdk",
        ),
        (
            "vmdk streamOptimized",
            "vmdk",
            "subformat=streamOptimized",
            "disk-stream.vmdk",
        ),
        (
            "vmdk monolithicFlat",
            "vmdk",
            "subformat=monolithicFlat",
            "disk-flat.vmdk",
        ),
        (
            "vhd dynamic",
            "vpc",
            "subformat=dynamic,force_size=on",
            "disk.vhd",
        ),
        ("vhdx dynamic", "vhdx", "subformat=dynamic", "disk.vhdx"),
        ("vdi dynamic", "vdi", "static=off", "disk.vdi"),
    ];
    specs
        .iter()
        .map(|&(name, fmt, opts, file)| {
            let path = dir.join(file);
            if !path.exists() {
                let opts = if opts.is_empty() {
                    String::new()
                } else {
                    format!("-o {opts}")
                };
                sh(&format!(
                    "qemu-img convert -f qcow2 -O {fmt} {opts} {} {}.tmp && mv {}.tmp {}",
                    qcow2.display(),
                    path.display(),
                    path.display(),
                    path.display()
                ));
            }
            (name, path)
        })
        .collect()
}

/// nginx (Debian `nginx-light`) serving `root` on a free loopback port over plain
/// HTTP, in the foreground as our child; killed on drop.
struct Nginx(std::process::Child, u16);

impl Nginx {
    fn start(root: &Path) -> Nginx {
        let dir = root.join("nginx-bench");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off; master_process off; user root; pid {d}/nginx.pid; error_log {d}/error.log;
                 events {{ worker_connections 64; }}
                 http {{ access_log off; client_body_temp_path {d}/tmp/b; proxy_temp_path {d}/tmp/p;
                   fastcgi_temp_path {d}/tmp/f; uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s;
                   server {{ listen 127.0.0.1:{port}; location /img/ {{ alias {}/; }} }} }}",
                root.display()
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .spawn()
            .expect("nginx (Debian package nginx-light)");
        // Owned at once, so a panic below still kills it.
        let nginx = Nginx(child, port);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nginx did not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each file over HTTP range requests from a local nginx against the same file on disk:
/// time (best of 7, every run a new job with a cold cache), bytes fetched and requests.
/// Targets: under 1/4 of the image's bytes, under 3x the local time.
fn remote(files: &[(&str, PathBuf)]) {
    use guestkit_worker::inspect::image::http::{RemoteConfig, RemoteTarget};
    use guestkit_worker::inspect::image::http_url::RemoteUrl;
    let root = files[0].1.parent().unwrap();
    let ngx = Nginx::start(root);
    let base = format!("http://127.0.0.1:{}/img/", ngx.1);
    let config = std::sync::Arc::new(
        RemoteConfig::new(
            std::slice::from_ref(&base),
            None,
            std::time::Duration::from_secs(30),
        )
        .unwrap(),
    );
    for (name, path) in files {
        let (local_ms, _, _) = time_inspect(path);
        let url = RemoteUrl::parse(&format!(
            "{base}{}",
            path.file_name().unwrap().to_str().unwrap()
        ))
        .unwrap();
        let opts = InspectOptions {
            remote: Some(RemoteTarget {
                url: url.clone(),
                config: config.clone(),
            }),
            ..Default::default()
        };
        let shown = PathBuf::from(url.redacted());
        let mut best = f64::MAX;
        let mut stats = Default::default();
        for _ in 0..7 {
            let t = Instant::now();
            stats = inspect_full(&shown, &opts)
                .expect("remote inspection")
                .stats;
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        }
        let size = std::fs::metadata(path).unwrap().len();
        let s: guestkit_worker::inspect::pipeline::InspectStats = stats;
        println!(
            "{:<30} file {:>6.1} MiB  inspect {best:>7.1} ms ({:.2}x local)  fetched {:>6.1} MiB ({:.3} of the file) in {} requests",
            format!("{name} over HTTP"),
            size as f64 / 1048576.0,
            best / local_ms,
            s.remote_bytes as f64 / 1048576.0,
            s.remote_bytes as f64 / size as f64,
            s.remote_requests
        );
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("inspect: run with `cargo bench --bench inspect`");
        return;
    }
    let (qcow2, big_raw, big_qcow2) = fixtures();
    let over_http = || {
        let mut files = vec![("debian qcow2 (zlib)", qcow2.clone())];
        files.extend(
            format_fixtures(&qcow2)
                .into_iter()
                .filter(|(n, _)| matches!(*n, "vhdx dynamic" | "vmdk streamOptimized")),
        );
        files
    };
    // `cargo bench --bench inspect -- remote`: only the qcow2 file over HTTP (no other
    // fixture is built).
    if std::env::args().any(|a| a == "remote") {
        remote(&[("debian qcow2 (zlib)", qcow2.clone())]);
        return;
    }
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
    // Every format against qcow2: the ratio is what a format costs over qcow2 for the same
    // inspection (target: at most 1.5x).
    let (qcow2_ms, _, qcow2_bytes) = time_inspect(&qcow2);
    for (name, path) in format_fixtures(&qcow2) {
        let size = std::fs::metadata(&path).unwrap().len();
        let (ms, apps, bytes) = time_inspect(&path);
        println!(
            "{name:<30} file {:>6.1} MiB  inspect {ms:>7.1} ms ({:.2}x qcow2)  read {:>6.1} MiB ({:.2}x)  ({apps} packages)",
            size as f64 / 1048576.0,
            ms / qcow2_ms,
            bytes as f64 / 1048576.0,
            bytes as f64 / qcow2_bytes as f64
        );
    }
    remote(&over_http());
}
