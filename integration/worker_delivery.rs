//! The happy path at volume, the RPC pattern, and poison messages.

use std::collections::HashSet;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::json;

use crate::common::broker::{echo_job, Pool, WorkerProcess, BROKER_LOCK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_echo_jobs_each_get_one_completed_result() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("thousand").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "32"]);
    let ids: Vec<String> = (0..1000).map(|i| format!("job-thousand-{i:05}")).collect();
    for id in &ids {
        pool.publish(&echo_job(id, json!({ "n": id }))).await;
    }
    let results = pool.results(1000, Duration::from_secs(120)).await;
    let mut seen = HashSet::new();
    for r in &results {
        assert_eq!(r.body["status"], "completed", "{:?}", r.body);
        let id = r.body["job_id"].as_str().unwrap().to_string();
        assert_eq!(r.body["output"]["n"], id.as_str(), "echo returns its data");
        assert_eq!(r.headers["x-guestkit-status"], "completed");
        assert_eq!(
            r.routing_key,
            format!("{}.completed.system.echo", pool.pool())
        );
        assert!(seen.insert(id), "job_id seen twice");
    }
    assert_eq!(seen, ids.into_iter().collect::<HashSet<_>>());
    pool.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(
        pool.results_within(Duration::from_millis(500)).await.len(),
        0,
        "no extra results"
    );
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_and_correlation_id_round_trip() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("rpc").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &[]);
    let reply = pool
        .ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = pool
        .ch
        .basic_consume(
            reply.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let body = serde_json::to_vec(&echo_job("job-rpc-00001", json!({"hello": "world"}))).unwrap();
    let props = BasicProperties::default()
        .with_reply_to(reply.name().clone())
        .with_correlation_id("corr-42".into());
    pool.publish_raw(&body, props).await;

    use futures_util::StreamExt;
    let d = tokio::time::timeout(Duration::from_secs(30), replies.next())
        .await
        .expect("reply in time")
        .unwrap()
        .unwrap();
    let got = crate::common::broker::Received::from(d);
    assert_eq!(got.correlation_id.as_deref(), Some("corr-42"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.body["output"]["hello"], "world");
    assert_eq!(got.body["job_id"], "job-rpc-00001");
    for h in [
        "x-guestkit-job-id",
        "x-guestkit-status",
        "x-guestkit-operation",
        "x-guestkit-worker-id",
        "x-guestkit-pool",
        "x-guestkit-format",
        "x-guestkit-attempt",
    ] {
        assert!(
            got.headers.contains_key(h),
            "header {h} missing: {:?}",
            got.headers
        );
    }
    assert_eq!(got.headers["x-guestkit-attempt"], "1");
    assert_eq!(got.headers["x-guestkit-format"], "json");
    // The same result also went to guestkit.results, with the job id as correlation
    // when the job had none would apply; here the property wins.
    let on_results = pool.results(1, Duration::from_secs(10)).await;
    assert_eq!(on_results[0].correlation_id.as_deref(), Some("corr-42"));
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_rejected_dead_lettered_and_good_jobs_still_complete() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("poison").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "4"]);

    let good = |n: u32| echo_job(&format!("job-good-{n:04}"), json!({}));
    let mut wrong_version = echo_job("job-badver-01", json!({}));
    wrong_version["version"] = json!("2.0");
    let mut unknown_op = echo_job("job-unknown-01", json!({}));
    unknown_op["operation"] = json!("system.nope");
    unknown_op["payload"]["type"] = json!("system.nope.v1");
    let mut mismatch = echo_job("job-mismatch-1", json!({}));
    mismatch["payload"]["type"] = json!("guestkit.inspect.v1");
    let mut wrong_pool = echo_job("job-wrongpool1", json!({}));
    wrong_pool["routing"] = json!({"worker_pool": "somewhere-else"});
    let huge = vec![b'{'; 8 * 1024 * 1024];

    let poison: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"this is not json".to_vec(), "not_json"),
        ("not an object", b"[1,2,3]".to_vec(), "not_object"),
        (
            "wrong version",
            serde_json::to_vec(&wrong_version).unwrap(),
            "bad_version",
        ),
        (
            "unknown operation",
            serde_json::to_vec(&unknown_op).unwrap(),
            "unknown_operation",
        ),
        (
            "payload.type mismatch",
            serde_json::to_vec(&mismatch).unwrap(),
            "invalid",
        ),
        (
            "wrong pool",
            serde_json::to_vec(&wrong_pool).unwrap(),
            "wrong_pool",
        ),
        ("8 MiB body", huge, "too_large"),
    ];
    pool.publish(&good(1)).await;
    for (_, body, _) in &poison {
        pool.publish_raw(body, BasicProperties::default()).await;
        pool.publish(&good(2 + pool_counter())).await;
    }
    let results = pool
        .results(poison.len() + 1 + poison.len(), Duration::from_secs(60))
        .await;
    let rejected: Vec<_> = results
        .iter()
        .filter(|r| r.body["status"] == "rejected")
        .collect();
    let completed = results
        .iter()
        .filter(|r| r.body["status"] == "completed")
        .count();
    assert_eq!(completed, poison.len() + 1, "every good job completes");
    assert_eq!(rejected.len(), poison.len());
    for (what, _, kind) in &poison {
        let r = rejected
            .iter()
            .find(|r| r.body["error"]["kind"] == *kind)
            .unwrap_or_else(|| {
                panic!("no rejected result of kind {kind} for {what}: {rejected:#?}")
            });
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.len() > 10, "{what}: message too vague: {msg}");
        assert_eq!(r.body["error"]["retryable"], false);
        assert_eq!(r.headers["x-guestkit-status"], "rejected");
    }
    let find = |kind: &str| {
        rejected
            .iter()
            .find(|r| r.body["error"]["kind"] == kind)
            .unwrap()
    };
    assert_eq!(
        find("bad_version").body["job_id"],
        "job-badver-01",
        "job_id kept when readable"
    );
    assert!(find("too_large").body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("8388608"));
    assert!(find("unknown_operation").body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("system.nope"));
    assert!(find("wrong_pool").body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("somewhere-else"));
    assert!(find("invalid").body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("payload.type"));

    // Every poison message sits in the dead-letter queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (ready, _) = pool.counts(&pool.names.dead);
        if ready == poison.len() as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead queue has {ready}, want {}",
            poison.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pool.wait_drained(Duration::from_secs(10)).await;
    pool.cleanup().await;
}

fn pool_counter() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Jobs finishing out of delivery order, with rejections and retries between them: the
/// worker acks runs of deliveries with one `multiple` ack, so every outcome must still
/// settle its own delivery exactly once (nothing acked early, nothing left unacked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_outcomes_settle_each_delivery_exactly_once() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("settle").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "16"]);
    let mut rng = crate::common::Rng(0x05e7_71e5);
    let (mut valid, mut poison, mut retried) = (Vec::new(), 0, 0);
    for i in 0..400 {
        if i % 25 == 7 {
            poison += 1;
            pool.publish_raw(b"not json at all", BasicProperties::default())
                .await;
            continue;
        }
        let id = format!("job-settle-{i:05}");
        let mut job = echo_job(&id, json!({ "sleep_ms": rng.below(40) }));
        if i % 10 == 3 {
            retried += 1;
            job = echo_job(&id, json!({ "succeed_on_attempt": 2 }));
            job["execution"] = json!({ "max_attempts": 2 });
        }
        pool.publish(&job).await;
        valid.push(id);
    }
    let results = pool.results(400, Duration::from_secs(120)).await;
    let mut completed = HashSet::new();
    let mut rejected = 0;
    for r in &results {
        match r.body["status"].as_str() {
            Some("completed") => {
                let id = r.body["job_id"].as_str().unwrap().to_string();
                let attempt = r.body["attempt"].as_u64();
                let retry = id[11..].parse::<u32>().unwrap() % 10 == 3;
                assert_eq!(attempt, Some(if retry { 2 } else { 1 }), "{id}");
                assert!(completed.insert(id), "completed twice: {:?}", r.body);
            }
            Some("rejected") => rejected += 1,
            other => panic!("unexpected status {other:?}: {:?}", r.body),
        }
    }
    assert_eq!(completed, valid.into_iter().collect::<HashSet<_>>());
    assert_eq!((rejected, retried), (poison, 40));
    pool.wait_drained(Duration::from_secs(30)).await;
    pool.wait_counts(
        &pool.names.dead,
        (poison as u64, 0),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        pool.results_within(Duration::from_millis(500))
            .await
            .is_empty(),
        "no extra results"
    );
    pool.cleanup().await;
}

/// A long job at a low delivery tag must not hold back the acks of the quick jobs
/// delivered after it: held acks would fill the prefetch window and stall the pool
/// until the long job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_does_not_hold_back_the_acks_of_later_ones() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("holdback").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--max-concurrent", "4"]);
    pool.publish(&echo_job("job-long-00001", json!({ "sleep_ms": 8000 })))
        .await;
    pool.wait_events("started", 1, Duration::from_secs(30))
        .await;
    let quick: Vec<String> = (0..60).map(|i| format!("job-quick-{i:04}")).collect();
    for id in &quick {
        pool.publish(&echo_job(id, json!({}))).await;
    }
    // With a window of 4 and the long job in one slot, the 60 quick jobs only get
    // through if their acks free their slots while the long job still runs (the
    // broker's unacked count would show it too, but lags by up to its 5 s stats
    // interval).
    let results = pool.results(60, Duration::from_secs(6)).await;
    assert!(
        results.iter().all(|r| r.body["job_id"] != "job-long-00001"),
        "the quick jobs finish first"
    );
    let long = pool.results(1, Duration::from_secs(30)).await;
    assert_eq!(long[0].body["job_id"], "job-long-00001");
    pool.wait_drained(Duration::from_secs(10)).await;
    pool.cleanup().await;
}
