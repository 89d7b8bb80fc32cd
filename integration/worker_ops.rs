//! What an operator relies on: metrics that match what happened, health and readiness
//! through broker outages and draining, the `healthcheck` subcommand.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::broker::{echo_job, Pool, WorkerProcess, AMQP_URL, BROKER_LOCK};

/// Parses the Prometheus text format into `name{labels} -> value`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_opt(m, name, labels).unwrap_or_else(|| panic!("metric {name} {labels:?} missing"))
}

/// The value of one series, `None` when it is not (yet) exported.
fn metric_opt(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    // The encoder sorts labels by name.
    let mut labels = labels.to_vec();
    labels.sort();
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", inner.join(","))
    };
    m.get(&key).copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_happened() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("metrics").await;
    let worker = WorkerProcess::spawn(pool.pool(), &["--worker-id", "metrics-worker-1"]);
    for i in 0..5 {
        pool.publish(&echo_job(&format!("job-metrics-ok-{i}"), json!({})))
            .await;
    }
    for i in 0..2 {
        pool.publish(&echo_job(
            &format!("job-metrics-fatal-{i}"),
            json!({"fail": "fatal"}),
        ))
        .await;
    }
    let mut retried = echo_job("job-metrics-retry-1", json!({"succeed_on_attempt": 2}));
    retried["execution"] = json!({"max_attempts": 2});
    pool.publish(&retried).await;
    pool.publish_raw(b"not json", Default::default()).await;
    pool.publish_raw(b"{nope", Default::default()).await;
    let mut unknown = echo_job("job-metrics-unknown", json!({}));
    unknown["operation"] = json!("system.unknown");
    unknown["payload"]["type"] = json!("system.unknown.v1");
    pool.publish(&unknown).await;

    let results = pool.results(11, Duration::from_secs(60)).await;
    assert_eq!(results.len(), 11);
    let p = pool.pool();
    let echo = "system.echo";
    let worker_info = [
        ("pool", p),
        ("version", env!("CARGO_PKG_VERSION")),
        ("worker_id", "metrics-worker-1"),
    ];
    type Series<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);
    let expected: Vec<Series> = vec![
        (
            "guestkit_jobs_total",
            vec![("pool", p), ("operation", echo), ("status", "completed")],
            6.0,
        ),
        (
            "guestkit_jobs_total",
            vec![("pool", p), ("operation", echo), ("status", "failed")],
            2.0,
        ),
        (
            "guestkit_jobs_total",
            vec![
                ("pool", p),
                ("operation", "unknown"),
                ("status", "rejected"),
            ],
            3.0,
        ),
        (
            "guestkit_job_retries_total",
            vec![("pool", p), ("operation", echo)],
            1.0,
        ),
        (
            "guestkit_messages_rejected_total",
            vec![("pool", p), ("reason", "not_json")],
            2.0,
        ),
        (
            "guestkit_messages_rejected_total",
            vec![("pool", p), ("reason", "unknown_operation")],
            1.0,
        ),
        (
            "guestkit_job_duration_seconds_count",
            vec![("pool", p), ("operation", echo), ("status", "completed")],
            6.0,
        ),
        // Counted when the broker's confirm is observed, which may come after the
        // result reached the test's queue: hence the polling below.
        ("guestkit_result_publish_seconds_count", vec![], 11.0),
        ("guestkit_jobs_in_flight", vec![("pool", p)], 0.0),
        ("guestkit_worker_info", worker_info.to_vec(), 1.0),
    ];
    // The metrics are asynchronous state: poll until every value settles (bounded),
    // then assert each one so a failure names the metric that stayed wrong.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (m, body) = loop {
        let (_, body) = worker.http_get("/metrics").await.expect("metrics answer");
        let m = parse_metrics(&body);
        let settled = expected
            .iter()
            .all(|(name, labels, want)| metric_opt(&m, name, labels) == Some(*want));
        if settled || tokio::time::Instant::now() >= deadline {
            break (m, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (name, labels, want) in &expected {
        assert_eq!(metric(&m, name, labels), *want, "{name} {labels:?}");
    }
    assert!(body.contains("# TYPE guestkit_job_duration_seconds histogram"));
    assert!(body.contains("# TYPE guestkit_amqp_reconnects_total counter"));
    assert!(body.contains("# TYPE guestkit_inspect_bytes_read_total counter"));
    assert!(!body.contains("_total_total"));
    pool.cleanup().await;
}

/// A TCP proxy to the broker that the test can cut: the worker's view of a network
/// outage, without touching any other client of the shared broker.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    let _ = client.shutdown().await;
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect("127.0.0.1:5672").await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    fn url(&self) -> String {
        AMQP_URL.replace("127.0.0.1:5672", &format!("127.0.0.1:{}", self.port))
    }
}

async fn wait_status(worker: &WorkerProcess, path: &str, want: u16, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got = worker.http_get(path).await.map(|(c, _)| c);
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} stayed {got:?}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_connection_and_draining() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("ready").await;
    let proxy = Proxy::start().await;
    let mut worker = WorkerProcess::spawn(
        pool.pool(),
        &["--amqp-url", &proxy.url(), "--shutdown-grace", "20"],
    );
    wait_status(&worker, "/readyz", 200, Duration::from_secs(30)).await;
    assert_eq!(worker.http_get("/healthz").await.unwrap().0, 200);

    // Outage: connections cut and refused. Not ready, but alive.
    proxy.cut.send_replace(true);
    wait_status(&worker, "/readyz", 503, Duration::from_secs(30)).await;
    assert_eq!(worker.http_get("/healthz").await.unwrap().0, 200);
    // Back: ready again, and jobs flow through the same process.
    proxy.cut.send_replace(false);
    wait_status(&worker, "/readyz", 200, Duration::from_secs(60)).await;
    pool.publish(&echo_job(
        "job-ready-after-outage",
        json!({"sleep_ms": 3000}),
    ))
    .await;
    pool.wait_events("started", 1, Duration::from_secs(30))
        .await;

    // Draining: 503 at once while the running job finishes, then exit 0.
    worker.signal("TERM");
    wait_status(&worker, "/readyz", 503, Duration::from_secs(5)).await;
    assert!(worker.child.try_wait().unwrap().is_none(), "still draining");
    assert!(worker.wait_exit(Duration::from_secs(20)).await.success());
    let results = pool.results(1, Duration::from_secs(5)).await;
    assert_eq!(results[0].body["status"], "completed");
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_reports_liveness() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("health").await;
    let worker = WorkerProcess::spawn(pool.pool(), &[]);
    wait_status(&worker, "/healthz", 200, Duration::from_secs(30)).await;
    let check = |port: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .args([
                "healthcheck",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .output()
            .unwrap()
            .status
    };
    assert!(check(worker.metrics_port).success());
    let closed = crate::common::broker::free_port();
    assert!(!check(closed).success(), "nothing listens there");
    pool.cleanup().await;
}
