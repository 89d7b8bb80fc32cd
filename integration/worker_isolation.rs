//! Process isolation of `guestkit.inspect` jobs, through the real binary and broker:
//! a job that never ends is killed with its process at the timeout, a memory limit
//! fails the Debian inspection with `resource_limit` (and the `inspect` subcommand), SIGTERM drains within the grace
//! whatever a child does, and a child's CPU limit and sandbox hold.
//!
//! The job that never ends is real, with no test hook: a checksum over a 1 TiB sparse
//! image (sha256 of a tebibyte of zeros: hours of CPU, which the in-process pipeline
//! could not interrupt).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::common::broker::{Pool, WorkerProcess, BROKER_LOCK};
use crate::common::{fixture_cache, fixtures, run, sh, tempdir};

pub(crate) fn inspect_job(
    job_id: &str,
    image: serde_json::Value,
    timeout_seconds: u64,
) -> serde_json::Value {
    json!({
        "version": "1.0", "job_id": job_id, "kind": "VMOperation",
        "operation": "guestkit.inspect",
        "payload": { "type": "guestkit.inspect.v1", "data": { "image": image } },
        "execution": { "max_attempts": 1, "timeout_seconds": timeout_seconds },
    })
}

/// An image root holding `empty.raw` (16 MiB of zeros: inspects in milliseconds) and
/// `huge.raw` (1 TiB, sparse).
fn image_root(dir: &Path) -> PathBuf {
    let root = dir.join("images");
    sh(&format!(
        "mkdir -p {r} && truncate -s 16M {r}/empty.raw && truncate -s 1T {r}/huge.raw",
        r = root.display()
    ));
    root
}

/// A job on `huge.raw` that asks for its checksum: it runs until killed.
fn endless(root: &Path) -> serde_json::Value {
    json!({"path": root.join("huge.raw"), "checksum": format!("sha256:{}", "0".repeat(64))})
}

/// (pid, state, cmdline) of every process whose parent is `parent`, from /proc (an
/// oracle outside the worker).
pub(crate) fn children_of(parent: u32) -> Vec<(u32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent {
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, state, cmdline));
        }
    }
    out
}

/// Waits for the worker's isolated child to appear; returns its pid.
pub(crate) async fn wait_for_child(worker: u32, wait: Duration) -> u32 {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some((pid, _, _)) = children_of(worker)
            .into_iter()
            .find(|(_, state, cmd)| *state != 'Z' && cmd.contains("isolated-job"))
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no isolated-job child of {worker} within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True once `pid` no longer exists or is a zombie (dead, not yet reaped by init).
pub(crate) async fn wait_gone(pid: u32, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next()?.chars().next())
            });
        if matches!(state, None | Some('Z') | Some('X')) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still alive (state {state:?}) after {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_inspection_times_out_its_process_dies_and_the_worker_serves_on() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let root = image_root(dir.path());
    let pool = Pool::new("isolation-timeout").await;
    let worker = WorkerProcess::spawn(
        pool.pool(),
        &[
            "--max-concurrent",
            "1",
            "--image-root",
            root.to_str().unwrap(),
        ],
    );
    let worker_pid = worker.child.id();
    pool.publish(&inspect_job("job-isolation-endless", endless(&root), 3))
        .await;
    // With one slot, this job runs only once the endless one's slot is free again.
    pool.publish(&inspect_job(
        "job-isolation-after",
        json!({"path": root.join("empty.raw")}),
        60,
    ))
    .await;
    let child = wait_for_child(worker_pid, Duration::from_secs(30)).await;

    let results = pool.results(2, Duration::from_secs(60)).await;
    let get = |id: &str| {
        results
            .iter()
            .find(|r| r.body["job_id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
            .body
            .clone()
    };
    let endless = get("job-isolation-endless");
    assert_eq!(
        (
            endless["status"].as_str(),
            endless["error"]["kind"].as_str()
        ),
        (Some("failed"), Some("timeout")),
        "{endless:#}"
    );
    let took = endless["duration_ms"].as_u64().unwrap();
    eprintln!("endless job failed after {took} ms (timeout 3 s)");
    // A bound for correctness, not speed: without the kill it would run for hours.
    assert!((3000..30_000).contains(&took), "{took} ms");
    let after = get("job-isolation-after");
    assert_eq!(after["status"], "completed", "{after:#}");
    assert_eq!(
        after["output"]["warnings"][0],
        "no operating system root found on this disk"
    );

    // The killed child is gone, and so is the second job's: the worker has no
    // children left once its jobs are done.
    wait_gone(child, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !children_of(worker_pid).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "children left: {:?}",
            children_of(worker_pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The children's progress reached the event stream: the `checksum` phase of the
    // first job and the `inspect` phase of the second are emitted only by children.
    pool.wait_events("phase", 2, Duration::from_secs(10)).await;
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_fails_the_debian_inspection_with_resource_limit() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    run(
        std::process::Command::new(fixtures().join("debian-disk.sh"))
            .arg("bookworm")
            .arg(fixture_cache())
            .arg(dir.path()),
    );
    let image = dir.path().join("disk.qcow2");
    let root = dir.path().to_str().unwrap();
    let pool = Pool::new("isolation-memory").await;
    let job = |id: &str| inspect_job(id, json!({"path": image}), 120);

    // 8 MiB more than the child has at start: the Debian inspection needs more.
    let small = WorkerProcess::spawn(
        pool.pool(),
        &["--image-root", root, "--inspect-memory-limit", "8M"],
    );
    pool.publish(&job("job-isolation-small")).await;
    let limited = pool
        .results(1, Duration::from_secs(120))
        .await
        .remove(0)
        .body;
    assert_eq!(
        (
            limited["status"].as_str(),
            limited["error"]["kind"].as_str()
        ),
        (Some("failed"), Some("resource_limit")),
        "{limited:#}"
    );
    let message = limited["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("memory limit of 8 MiB") && message.contains("--inspect-memory-limit"),
        "{message}"
    );
    drop(small);

    // The control: the same job under the default limit inspects the fixture.
    let _default = WorkerProcess::spawn(pool.pool(), &["--image-root", root]);
    pool.publish(&job("job-isolation-default")).await;
    let full = pool
        .results(1, Duration::from_secs(120))
        .await
        .remove(0)
        .body;
    assert_eq!(full["status"], "completed", "{full:#}");
    assert_eq!(full["output"]["operating_systems"][0]["distro"], "debian");
    pool.cleanup().await;

    // The `inspect` subcommand limits its own process the same way.
    let cli = |limit: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .args(["--inspect-memory-limit", limit, "inspect"])
            .arg(&image)
            .output()
            .unwrap()
    };
    let out = cli("8M");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("memory allocation of"), "{stderr}");
    let out = cli("2G");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["operating_systems"][0]["distro"], "debian");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_endless_inspection_exits_within_the_grace() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let root = image_root(dir.path());
    let pool = Pool::new("isolation-sigterm").await;
    let mut worker = WorkerProcess::spawn(
        pool.pool(),
        &[
            "--shutdown-grace",
            "2",
            "--image-root",
            root.to_str().unwrap(),
        ],
    );
    pool.publish(&inspect_job("job-isolation-term", endless(&root), 600))
        .await;
    let child = wait_for_child(worker.child.id(), Duration::from_secs(30)).await;
    let sent = std::time::Instant::now();
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(15)).await;
    eprintln!(
        "worker exited {:?} after SIGTERM (grace 2 s)",
        sent.elapsed()
    );
    assert!(status.success(), "{status:?}");
    wait_gone(child, Duration::from_secs(10)).await;
    // The job was never finished: it went back to the queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pool.counts(&pool.names.jobs) != (1, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            pool.counts(&pool.names.jobs)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pool.cleanup().await;
}

/// The parent side as a library call, with a CPU limit far below the wall time it
/// would take: the child dies of SIGXCPU and the job says which limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_over_its_cpu_limit_fails_with_resource_limit() {
    use guestkit_worker::isolation::Isolation;
    use guestkit_worker::progress::Progress;
    let dir = tempdir();
    let root = image_root(dir.path());
    let isolation = Isolation::new(env!("CARGO_BIN_EXE_guestkit-worker"), 1 << 30);
    let cancel = tokio_util::sync::CancellationToken::new();
    let err = isolation
        .run(
            "guestkit.inspect",
            &json!({"image": endless(&root)}),
            std::slice::from_ref(&root),
            1,
            &Progress::disabled(),
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, "resource_limit", "{err:?}");
    assert!(
        err.message.contains("CPU-time limit of 1 s"),
        "{}",
        err.message
    );

    // And a child that finishes reports the sandbox it applied to itself; when the
    // kernel enforces Landlock and seccomp, the child checked them by trying.
    let done = isolation
        .run(
            "guestkit.inspect",
            &json!({"image": {"path": root.join("empty.raw")}}),
            &[root],
            10,
            &Progress::disabled(),
            &cancel,
        )
        .await
        .unwrap();
    let sandbox = done.sandbox.unwrap();
    eprintln!("sandbox: {}", sandbox.describe());
    assert_eq!(sandbox.landlock == "enforced", sandbox.outside_read_denied);
    assert_eq!(sandbox.seccomp == "enforced", sandbox.socket_denied);
    assert_eq!(done.output["image"]["format"], "raw");
}

/// `--no-inspect-sandbox`: a child skips Landlock and seccomp, still inspects, and says
/// so: the sandbox it reports is `disabled`, not complete, and its own probes (a read
/// outside the roots, a socket) succeed, as they must without the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_sandbox_a_child_still_inspects_and_reports_it_degraded() {
    use guestkit_worker::isolation::Isolation;
    use guestkit_worker::progress::Progress;
    let dir = tempdir();
    let root = image_root(dir.path());
    let isolation =
        Isolation::new(env!("CARGO_BIN_EXE_guestkit-worker"), 1 << 30).without_sandbox(true);
    let done = isolation
        .run(
            "guestkit.inspect",
            &json!({"image": {"path": root.join("empty.raw")}}),
            &[root],
            10,
            &Progress::disabled(),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(done.output["image"]["format"], "raw");
    let sandbox = done.sandbox.unwrap();
    eprintln!("sandbox: {}", sandbox.describe());
    assert_eq!(
        (sandbox.landlock.as_str(), sandbox.seccomp.as_str()),
        ("disabled", "disabled")
    );
    assert!(!sandbox.complete());
    assert!(!sandbox.outside_read_denied && !sandbox.socket_denied);
    assert!(sandbox.describe().contains("--no-inspect-sandbox"));
}
