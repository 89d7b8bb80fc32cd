//! Full inspection of the Debian fixture (debootstrap minbase, GPT with an ESP, ext4
//! root, compressed qcow2), and of the same disk grown to a 2 TiB virtual size (as
//! sparse raw and as qcow2), to show the cost follows what is read, not the disk size.
//! Then the same root tree on ext4 and on XFS (each a raw GPT disk with one root
//! partition, same UUID), side by side: time and bytes read per filesystem reader.
//!
//! Times are in-process (the library, best of 7 after a warm-up); peak memory is the
//! maximum RSS of the real binary's `inspect` subcommand, from `/usr/bin/time`.
//! Then the same OS tree as a whole-disk ext4 and a whole-disk btrfs filesystem (raw),
//! side by side: time and guest bytes read per filesystem reader.

//!
//! Then the cost of process isolation per job: the same `guestkit.inspect` of the
//! Debian qcow2 in process (the blocking pipeline plus the report as a JSON value, what
//! the daemon did before) and through a child of the real binary (spawn, limits,
//! request, pipeline, reply parsed back), alternated, medians of
//! `GUESTKIT_BENCH_ISOLATION_ROUNDS` (default 15) rounds.
//! Builds its fixtures with `integration/fixtures/debian-disk.sh` (debootstrap once per
//! machine, cached in $HOME/.cache/guestkit-fixtures). Also the Windows skeleton of the
//! integration tests (NTFS with LZNT1-compressed registry hives on GPT).
//!
//! Then remote images: the qcow2 and every format over HTTP range requests from a local
//! nginx against the same file on disk (time, bytes fetched, requests), in process (the
//! CLI's fetch thread) and, for qcow2, through an isolated child reading through the
//! parent's fetcher. `cargo bench --bench inspect -- remote` runs only these.
//!
//! Then the volume layer's cost: the same Debian tree on LVM across two disks
//! (`debian-lvm.gf`: /, /usr, /var, /home as LVs) against plain partitions
//! (`debian-plain.gf`), both built by guestfish and cached like the integration tests';
//! and on LVM over an MD raid1 of two disks (`debian-md.gf`) and LVM on LUKS2 with its
//! key (`debian-luks.gf`: Argon2id at 16 MiB x 4, paid in every round).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use guestkit_worker::inspect::pipeline::{inspect_full, DiskSpec, InspectOptions};
use guestkit_worker::inspect::volume::luks::open::LuksKeys;

#[path = "../integration/common/regf.rs"]
#[allow(dead_code)]
mod regf;
#[path = "../integration/common/windows_disk.rs"]
#[allow(dead_code)]
mod windows_disk;

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

/// The integration tests' cache (integration/common `fixture_cache`), so a machine
/// builds the debootstrap tree and the guestfish disks once for both.
fn cache() -> PathBuf {
    std::env::var_os("GUESTKIT_FIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/guestkit-fixtures"))
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixture-cache"))
}

/// Disks built by `guestfish-image.sh` from a script of `integration/fixtures` (the same
/// cache key as the integration tests' `guestfish_disks`).
fn guestfish_disks(script: &str, sizes: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = cache();
    let tar = cache.join("debian-bookworm.tar");
    sh(&format!(
        "{} bookworm {}",
        root.join("integration/fixtures/debian-tree.sh").display(),
        tar.display()
    ));
    let out = Command::new(root.join("integration/fixtures/guestfish-image.sh"))
        .arg(&cache)
        .arg(root.join("integration/fixtures").join(script))
        .arg(sizes)
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (0..sizes.split(',').count())
        .map(|i| dir.join(format!("disk{i}.img")))
        .collect()
}

fn fixtures() -> (PathBuf, PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = cache();
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

/// The Debian tree of the fixture as whole-disk ext4 and btrfs raw images.
fn fs_images(qcow2: &Path) -> Vec<(&'static str, PathBuf)> {
    let dir = qcow2.parent().unwrap();
    let ext4 = dir.join("tree-ext4.raw");
    let btrfs = dir.join("tree-btrfs.raw");
    if !btrfs.exists() {
        sh(&format!(
            "used=$(du -sm {d}/root | cut -f1); size=$((used * 2 + 200))
             rm -f {e} {b}; truncate -s ${{size}}M {e} {b}
             mkfs.ext4 -q -F -d {d}/root {e}
             mkfs.btrfs -q -f --rootdir {d}/root {b}",
            d = dir.display(),
            e = ext4.display(),
            b = btrfs.display()
        ));
    }
    vec![
        ("same tree, whole-disk ext4", ext4),
        ("same tree, whole-disk btrfs", btrfs),
    ]
}

fn time_inspect(path: &Path) -> (f64, usize, u64) {
    time_inspect_disks(&[path.to_path_buf()], None)
}

/// Best of 7 in-process inspections of a job with these disks (and LUKS passphrase).
fn time_inspect_disks(disks: &[PathBuf], luks_key: Option<&str>) -> (f64, usize, u64) {
    let path = &disks[0];
    let mut luks_keys = LuksKeys::default();
    if let Some(k) = luks_key {
        luks_keys.add_lines(k.as_bytes());
    }
    let opts = InspectOptions {
        luks_keys,
        image_roots: vec![path.parent().unwrap().to_path_buf()],
        extra_disks: disks[1..]
            .iter()
            .map(|p| DiskSpec {
                path: p.clone(),
                format: None,
            })
            .collect(),
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

/// A protofile (`mkfs.xfs -p`) for the tree at `root`, with owners and modes from
/// lstat. Names the format cannot carry (whitespace) are left out and counted.
fn protofile(root: &Path) -> (String, usize) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn mode(kind: char, m: u32) -> String {
        let u = if m & 0o4000 != 0 { 'u' } else { '-' };
        let g = if m & 0o2000 != 0 { 'g' } else { '-' };
        format!("{kind}{u}{g}{:03o}", m & 0o777)
    }
    fn dir(path: &Path, out: &mut String, skipped: &mut usize) {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                *skipped += 1;
                continue;
            };
            if name.contains(char::is_whitespace) {
                *skipped += 1;
                continue;
            }
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let (u, g, t) = (m.uid(), m.gid(), m.file_type());
            let dev = || format!("{} {}", (m.rdev() >> 8) & 0xfff, m.rdev() & 0xff);
            if t.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.push_str(&format!("{name} l--777 {u} {g} {}\n", target.display()));
            } else if t.is_dir() {
                out.push_str(&format!("{name} {} {u} {g}\n", mode('d', m.mode())));
                dir(&e.path(), out, skipped);
                out.push_str("$\n");
            } else if t.is_file() {
                let p = e.path();
                out.push_str(&format!(
                    "{name} {} {u} {g} {}\n",
                    mode('-', m.mode()),
                    p.display()
                ));
            } else if t.is_char_device() {
                out.push_str(&format!(
                    "{name} {} {u} {g} {}\n",
                    mode('c', m.mode()),
                    dev()
                ));
            } else if t.is_block_device() {
                out.push_str(&format!(
                    "{name} {} {u} {g} {}\n",
                    mode('b', m.mode()),
                    dev()
                ));
            } else if t.is_fifo() {
                out.push_str(&format!("{name} {} {u} {g}\n", mode('p', m.mode())));
            } else {
                *skipped += 1;
            }
        }
    }
    let m = std::fs::metadata(root).unwrap();
    let mut out = format!(
        "/dev/null\n0 0\n{} {} {}\n",
        mode('d', m.mode()),
        m.uid(),
        m.gid()
    );
    let mut skipped = 0;
    dir(root, &mut out, &mut skipped);
    out.push_str("$\n");
    (out, skipped)
}

/// The Debian fixture's root tree on a one-partition GPT disk, as ext4 and as XFS,
/// with the fstab's root UUID on both.
fn ext4_and_xfs_disks() -> (PathBuf, PathBuf, usize) {
    let (qcow2, _, _) = fixtures();
    let dir = qcow2.parent().unwrap();
    let tree = dir.join("root");
    let (ext4, xfs) = (dir.join("tree-ext4.raw"), dir.join("tree-xfs.raw"));
    let (proto, skipped) = protofile(&tree);
    if !xfs.exists() {
        std::fs::write(dir.join("root.proto"), proto).unwrap();
        sh(&format!(
            "cd {dir}
             uuid=8a1c3f0e-5b7d-4e2a-9c61-0d2f4b6a8e17
             truncate -s 1G root.ext4 root.xfs
             mkfs.ext4 -q -F -U $uuid -d root root.ext4
             mkfs.xfs -q -f -m uuid=$uuid -p root.proto root.xfs
             for fs in ext4 xfs; do
               rm -f tree-$fs.raw; truncate -s 1100M tree-$fs.raw
               printf 'label: gpt\\nstart=2048, size=2097152, type=L\\n' | sfdisk -q tree-$fs.raw
               dd if=root.$fs of=tree-$fs.raw bs=1M seek=1 conv=notrunc,sparse status=none
             done
             rm -f root.ext4 root.xfs",
            dir = dir.display()
        ));
    }
    (ext4, xfs, skipped)
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

/// nginx (Debian `nginx-light`) serving `root` on a free loopback port over plain
/// HTTP, in the foreground as our child; killed on drop.
struct Nginx(std::process::Child, u16);

impl Nginx {
    fn start(root: &Path) -> Nginx {
        let dir = std::env::temp_dir().join(format!("guestkit-bench-nginx-{}", std::process::id()));
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

/// Bytes of the image at `path` plus, for a VMDK descriptor, the extent files it names
/// (qemu-img names a flat extent after the file it wrote, which may have been renamed).
fn image_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let text = match std::fs::read(path) {
        Ok(b) if b.len() <= 64 * 1024 && b.starts_with(b"# Disk DescriptorFile") => {
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => return size(path),
    };
    let extents: u64 = text
        .lines()
        .filter(|l| l.starts_with("RW ") || l.starts_with("RDONLY "))
        .filter_map(|l| l.split('"').nth(1))
        .map(|name| size(&path.with_file_name(name)))
        .sum();
    size(path) + extents
}

/// Each file over HTTP from a local nginx against the same file on disk: best of 7
/// (every run a new job, cold cache), bytes fetched and requests per inspection.
/// Targets: under 1/4 of the file's bytes, under 3x the local time.
fn remote(files: &[(&str, PathBuf)]) {
    use guestkit_worker::inspect::image::http::{RemoteConfig, RemoteJob};
    use guestkit_worker::inspect::image::http_url::RemoteUrl;
    use guestkit_worker::inspect::image::remote::serve_in_thread;
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
    let url_of = |path: &Path| format!("{base}{}", path.file_name().unwrap().to_str().unwrap());
    for (name, path) in files {
        let (local_ms, _, _) = time_inspect(path);
        let url = RemoteUrl::parse(&url_of(path)).unwrap();
        let shown = PathBuf::from(url.redacted());
        let mut best = f64::MAX;
        let mut stats = Default::default();
        for _ in 0..7 {
            let t = Instant::now();
            let (client, _thread) =
                serve_in_thread(RemoteJob::new(config.clone(), None), url.clone()).unwrap();
            let opts = InspectOptions {
                remote: Some(client),
                ..Default::default()
            };
            stats = inspect_full(&shown, &opts)
                .expect("remote inspection")
                .stats;
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        }
        let size = image_bytes(path);
        let s: guestkit_worker::inspect::pipeline::InspectStats = stats;
        println!(
            "{:<32} file {:>6.1} MiB  inspect {best:>7.1} ms (local {local_ms:>6.1} ms, {:.2}x)  fetched {:>6.2} MiB ({:.3} of the file) in {} requests",
            format!("{name} over HTTP"),
            size as f64 / 1048576.0,
            best / local_ms,
            s.remote_bytes as f64 / 1048576.0,
            s.remote_bytes as f64 / size as f64,
            s.remote_requests
        );
    }
    // The daemon's path: the job in an isolated child, reading through the parent.
    let roots = vec![root.to_path_buf()];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let isolation = Isolation::new(env!("CARGO_BIN_EXE_guestkit-worker"), 2 << 30)
        .with_remote(Some(config.clone()));
    let cancel = tokio_util::sync::CancellationToken::new();
    let through_child = |data: serde_json::Value| {
        let t = Instant::now();
        runtime
            .block_on(isolation.run(
                "guestkit.inspect",
                &data,
                &roots,
                600,
                &Progress::disabled(),
                &cancel,
            ))
            .unwrap();
        t.elapsed().as_secs_f64() * 1000.0
    };
    for (name, path) in files {
        let (mut local, mut over_http) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            local.push(through_child(
                serde_json::json!({ "image": { "path": path } }),
            ));
            over_http.push(through_child(
                serde_json::json!({ "image": { "url": url_of(path) } }),
            ));
        }
        let (a, b) = (median(local), median(over_http));
        println!(
            "{name:<24} isolated child: local {a:>6.1} ms  over HTTP {b:>6.1} ms  ({:.2}x, medians of 7)",
            b / a
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
                .filter(|(n, _)| *n != "raw"),
        );
        files
    };
    if std::env::args().any(|a| a == "remote") {
        remote(&over_http());
        return;
    }
    let windows_dir = tempfile::tempdir().unwrap();
    let (windows_gpt, _) = windows_disk::windows_disks(windows_dir.path());
    let mut cases = vec![
        ("debian qcow2 (zlib)", qcow2.clone()),
        ("same disk, 2 TiB sparse raw", big_raw),
        ("same disk, 2 TiB qcow2", big_qcow2),
        ("windows skeleton (ntfs, gpt)", windows_gpt),
    ];
    cases.extend(fs_images(&qcow2));
    for (name, path) in &cases {
        let size = std::fs::metadata(path).unwrap().len();
        let (ms, apps, bytes) = time_inspect(path);
        let rss = peak_rss_kib(path);
        println!(
            "{name:<30} file {:>6.1} MiB  inspect {ms:>7.1} ms  read {:>6.1} MiB  peak RSS {:>6.1} MiB  ({apps} packages)",
            size as f64 / 1048576.0,
            bytes as f64 / 1048576.0,
            rss as f64 / 1024.0
        );
        if name.starts_with("windows") {
            assert_eq!(apps, 2, "the Windows skeleton's applications");
        }
    }
    // Every format against qcow2: the ratio is what a format costs over qcow2 for the same
    // inspection (target: at most 1.5x).
    let (qcow2_ms, _, qcow2_bytes) = time_inspect(&qcow2);
    for (name, path) in format_fixtures(&qcow2) {
        let size = image_bytes(&path);
        let (ms, apps, bytes) = time_inspect(&path);
        println!(
            "{name:<30} file {:>6.1} MiB  inspect {ms:>7.1} ms ({:.2}x qcow2)  read {:>6.1} MiB ({:.2}x)  ({apps} packages)",
            size as f64 / 1048576.0,
            ms / qcow2_ms,
            bytes as f64 / 1048576.0,
            bytes as f64 / qcow2_bytes as f64
        );
    }

    // The volume layer's cost: LVM over two disks against plain partitions.
    let lvm = guestfish_disks("debian-lvm.gf", "320,192");
    let plain = guestfish_disks("debian-plain.gf", "448");
    let md = guestfish_disks("debian-md.gf", "480,448");
    let luks = guestfish_disks("debian-luks.gf", "512");
    let (plain_ms, plain_apps, plain_bytes) = time_inspect_disks(&plain, None);
    println!(
        "{:<30} inspect {plain_ms:>7.1} ms  read {:>6.1} MiB  ({plain_apps} packages)",
        "debian, plain partitions",
        plain_bytes as f64 / 1048576.0
    );
    for (name, short, disks, key) in [
        ("debian, LVM over 2 disks", "LVM", &lvm, None),
        ("debian, LVM on MD raid1", "MD", &md, None),
        (
            "debian, LVM on LUKS2",
            "LUKS",
            &luks,
            Some("debian-luks-key"),
        ),
    ] {
        let (ms, apps, bytes) = time_inspect_disks(disks, key);
        println!(
            "{name:<30} inspect {ms:>7.1} ms  read {:>6.1} MiB  ({apps} packages)",
            bytes as f64 / 1048576.0
        );
        println!(
            "{short} / plain: time {:.2}x, bytes read {:.2}x (target <= 1.5x)",
            ms / plain_ms,
            bytes as f64 / plain_bytes as f64
        );
    }

    // The same OS tree on ext4 and on XFS.
    let (ext4, xfs, skipped) = ext4_and_xfs_disks();
    for (name, path) in [
        ("same tree, ext4 root (raw)", &ext4),
        ("same tree, xfs root (raw)", &xfs),
    ] {
        let (ms, apps, bytes) = time_inspect(path);
        println!(
            "{name:<30} inspect {ms:>7.1} ms  read {:>6.1} MiB  ({apps} packages)",
            bytes as f64 / 1048576.0
        );
    }
    if skipped > 0 {
        println!("({skipped} tree entries with names a protofile cannot carry are on ext4 only)");
    }
    isolation_overhead(&qcow2);
    remote(&over_http());
}
