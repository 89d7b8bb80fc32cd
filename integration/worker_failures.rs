//! Retries, timeouts, and the process-level failure modes: SIGKILL, broken
//! connections, SIGTERM.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::common::broker::{echo_job, Pool, Received, WorkerProcess, BROKER_LOCK};

fn with_execution(mut job: serde_json::Value, execution: serde_json::Value) -> serde_json::Value {
    job["execution"] = execution;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_attempts_and_fatal_errors_are_not_retried() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("retry").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &[]);
    pool.publish(&with_execution(
        echo_job("job-retry-succeed", json!({"succeed_on_attempt": 3})),
        json!({"max_attempts": 3}),
    ))
    .await;
    pool.publish(&with_execution(
        echo_job("job-retry-exhaust", json!({"fail": "retryable"})),
        json!({"max_attempts": 2}),
    ))
    .await;
    pool.publish(&with_execution(
        echo_job("job-retry-fatal01", json!({"fail": "fatal"})),
        json!({"max_attempts": 5}),
    ))
    .await;
    let results = pool.results(3, Duration::from_secs(60)).await;
    let by_id: HashMap<String, &serde_json::Value> = results
        .iter()
        .map(|r| (r.body["job_id"].as_str().unwrap().to_string(), &r.body))
        .collect();
    let ok = by_id["job-retry-succeed"];
    assert_eq!(
        (ok["status"].as_str(), ok["attempt"].as_u64()),
        (Some("completed"), Some(3))
    );
    let exhausted = by_id["job-retry-exhaust"];
    assert_eq!(
        (exhausted["status"].as_str(), exhausted["attempt"].as_u64()),
        (Some("failed"), Some(2))
    );
    assert_eq!(exhausted["error"]["retryable"], true);
    let fatal = by_id["job-retry-fatal01"];
    assert_eq!(
        (fatal["status"].as_str(), fatal["attempt"].as_u64()),
        (Some("failed"), Some(1))
    );
    assert_eq!(fatal["error"]["retryable"], false);
    // Exactly one result per job: intermediate attempts publish none.
    assert!(pool.results_within(Duration::from_secs(3)).await.is_empty());
    pool.wait_drained(Duration::from_secs(10)).await;
    pool.wait_counts(&pool.names.retry, (0, 0), Duration::from_secs(10))
        .await;
    pool.wait_counts(&pool.names.dead, (0, 0), Duration::from_secs(10))
        .await;
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_timeout_fails_with_kind_timeout_and_frees_its_slot() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("timeout").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "1"]);
    // Ten minutes of sleep against a one-second timeout: if the slot were not freed,
    // the second job could not finish within the wait below.
    pool.publish(&with_execution(
        echo_job("job-timeout-0001", json!({"sleep_ms": 600_000})),
        json!({"timeout_seconds": 1}),
    ))
    .await;
    pool.publish(&echo_job("job-after-timeout", json!({})))
        .await;
    let results = pool.results(2, Duration::from_secs(60)).await;
    let timed_out = results
        .iter()
        .find(|r| r.body["job_id"] == "job-timeout-0001")
        .unwrap();
    assert_eq!(timed_out.body["status"], "failed");
    assert_eq!(timed_out.body["error"]["kind"], "timeout");
    let after = results
        .iter()
        .find(|r| r.body["job_id"] == "job-after-timeout")
        .unwrap();
    assert_eq!(after.body["status"], "completed");
    pool.cleanup().await;
}

/// SIGKILLs `worker`, starts another on the pool, and collects a result for each of
/// `ids`, all `completed`; returns them (duplicates included) and the new worker.
async fn kill_and_restart(
    pool: &Pool,
    mut worker: WorkerProcess,
    ids: &[String],
) -> (Vec<Received>, WorkerProcess) {
    worker.signal("KILL");
    worker.wait_exit(Duration::from_secs(10)).await;
    let again = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "100"]);
    let results = pool.results_for_all(ids, Duration::from_secs(60)).await;
    assert!(results.iter().all(|r| r.body["status"] == "completed"));
    (results, again)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_jobs_in_flight_loses_nothing() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("sigkill").await;
    let worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "100"]);
    let ids: Vec<String> = (0..100).map(|i| format!("job-kill-{i:04}")).collect();
    for id in &ids {
        pool.publish(&echo_job(id, json!({"sleep_ms": 5000}))).await;
    }
    // All 100 started (in flight, unacked) before the kill.
    pool.wait_events("started", 100, Duration::from_secs(60))
        .await;
    let (results, _again) = kill_and_restart(&pool, worker, &ids).await;
    // Duplicates only for jobs that were in flight at the kill: here all 100 were, and
    // none had finished, so each reports at most twice.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &results {
        *counts
            .entry(r.body["job_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(counts.values().all(|&n| n <= 2), "{counts:?}");
    pool.wait_drained(Duration::from_secs(30)).await;
    pool.cleanup().await;
}

/// SIGKILL while jobs finish out of delivery order: the worker acks finished runs with
/// `multiple` acks, and none of them may cover a job that was still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_jobs_finish_out_of_order_loses_nothing() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("killmixed").await;
    let worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "100"]);
    let ids: Vec<String> = (0..100).map(|i| format!("job-mixed-{i:04}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Finishing order interleaves with delivery order, from 0.2 s to 4.2 s.
        let sleep_ms = 200 + (i * 37 % 100) * 40;
        pool.publish(&echo_job(id, json!({ "sleep_ms": sleep_ms })))
            .await;
    }
    // About a third finished (and acked), the rest still running, at the kill.
    pool.wait_events("finished", 30, Duration::from_secs(60))
        .await;
    let (_, _again) = kill_and_restart(&pool, worker, &ids).await;
    pool.wait_drained(Duration::from_secs(30)).await;
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_recovers_after_all_connections_are_closed() {
    // Closing every connection of the broker would break the other tests' clients.
    let _exclusive = BROKER_LOCK.write().await;
    let pool = Pool::new("closeall").await;
    let mut worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "8"]);
    worker.wait_ready(Duration::from_secs(30)).await;
    let ids: Vec<String> = (0..200).map(|i| format!("job-closeall-{i:04}")).collect();
    for id in &ids {
        pool.publish(&echo_job(id, json!({"sleep_ms": 50}))).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = std::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "guestkit test: connection break"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // At-least-once: jobs in flight at the break may report twice, so collect until
    // every job has been seen rather than counting messages.
    let results = pool.results_for_all(&ids, Duration::from_secs(120)).await;
    assert!(results.iter().all(|r| r.body["status"] == "completed"));
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the same worker process keeps running"
    );
    pool.wait_drained(Duration::from_secs(30)).await;
    // Metrics are asynchronous state: poll (bounded) until the reconnect is counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = worker.http_get("/metrics").await.unwrap();
        let reconnects: f64 = body
            .lines()
            .find(|l| l.starts_with("guestkit_amqp_reconnects_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap();
        if reconnects >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reconnect counted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_jobs_acks_them_and_exits_zero() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("sigterm").await;
    let mut worker = WorkerProcess::spawn(
        pool.pool(),
        &["--max-concurrent", "4", "--shutdown-grace", "20"],
    );
    for i in 0..4 {
        pool.publish(&echo_job(
            &format!("job-term-{i:04}"),
            json!({"sleep_ms": 2000}),
        ))
        .await;
    }
    pool.wait_events("started", 4, Duration::from_secs(30))
        .await;
    worker.signal("TERM");
    // Draining: not ready any more, still alive.
    let status = worker.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}");
    let results = pool.results(4, Duration::from_secs(5)).await;
    assert!(results.iter().all(|r| r.body["status"] == "completed"));
    // All four acked, nothing requeued (polled: the broker's counts lag a little).
    pool.wait_counts(&pool.names.jobs, (0, 0), Duration::from_secs(10))
        .await;
    pool.cleanup().await;
}
