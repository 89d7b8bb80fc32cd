//! Broker security boundaries: what a job's properties can and cannot make the worker
//! publish.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::json;

use crate::common::broker::{echo_job, queue_counts, Pool, WorkerProcess, BROKER_LOCK};

/// Reads the worker's `/metrics` until `line` (a full sample line prefix) has `want`,
/// polling because the counter moves after the result is confirmed.
async fn wait_metric(worker: &WorkerProcess, line: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Some((200, body)) = worker.http_get("/metrics").await {
            if body.lines().any(|l| l == format!("{line} {want}")) {
                return;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metric `{line} {want}` not seen; last scrape:\n{last}");
}

/// The bug this rule closes: a job on one pool whose `reply_to` names another pool's job
/// queue made the worker inject its result there. Now the result goes to
/// `guestkit.results` only, the other queue stays empty, and the refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_cannot_target_another_pools_job_queue() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("rta").await;
    let victim = Pool::new("rtb").await;
    let worker = WorkerProcess::spawn(pool.pool(), &[]);
    worker.wait_ready(Duration::from_secs(30)).await;

    let body = serde_json::to_vec(&echo_job("job-rta-inject", json!({"x": 1}))).unwrap();
    let props = BasicProperties::default().with_reply_to(victim.names.jobs.as_str().into());
    pool.publish_raw(&body, props).await;
    let results = pool.results(1, Duration::from_secs(30)).await;
    assert_eq!(results[0].body["status"], "completed");
    wait_metric(
        &worker,
        &format!(
            "guestkit_replies_total{{outcome=\"guestkit_queue\",pool=\"{}\"}}",
            pool.pool()
        ),
        "1",
    )
    .await;
    assert_eq!(
        queue_counts(&victim.names.jobs),
        (0, 0),
        "nothing may reach the other pool's job queue"
    );

    // A queue a client declared under its own name is refused too (not private).
    let ch = pool.conn.create_channel().await.unwrap();
    let named = format!("{}.named-reply", pool.names.jobs.replace("guestkit.", "t-"));
    ch.queue_declare(
        named.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let body = serde_json::to_vec(&echo_job("job-rta-named", json!({}))).unwrap();
    pool.publish_raw(
        &body,
        BasicProperties::default().with_reply_to(named.as_str().into()),
    )
    .await;
    pool.results(1, Duration::from_secs(30)).await;
    wait_metric(
        &worker,
        &format!(
            "guestkit_replies_total{{outcome=\"not_private\",pool=\"{}\"}}",
            pool.pool()
        ),
        "1",
    )
    .await;
    assert_eq!(
        queue_counts(&named).0,
        0,
        "a plain named queue gets no reply"
    );

    pool.cleanup().await;
    victim.cleanup().await;
}

/// A reply queue that is gone: the reply comes back unroutable (mandatory), is counted
/// as `returned`, and the job still completes and is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_a_vanished_queue_is_returned_and_the_job_still_acked() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("rtgone").await;
    let worker = WorkerProcess::spawn(pool.pool(), &[]);
    worker.wait_ready(Duration::from_secs(30)).await;
    let body = serde_json::to_vec(&echo_job("job-rtgone-1", json!({}))).unwrap();
    let props = BasicProperties::default().with_reply_to("amq.gen-no-such-queue-0000".into());
    pool.publish_raw(&body, props).await;
    let results = pool.results(1, Duration::from_secs(30)).await;
    assert_eq!(results[0].body["status"], "completed");
    wait_metric(
        &worker,
        &format!(
            "guestkit_replies_total{{outcome=\"returned\",pool=\"{}\"}}",
            pool.pool()
        ),
        "1",
    )
    .await;
    pool.wait_drained(Duration::from_secs(30)).await;
    pool.cleanup().await;
}

/// RabbitMQ's direct reply-to (no queue at all on the client's side) is a private
/// address and gets the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reply_to_gets_the_reply() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("rtdirect").await;
    let worker = WorkerProcess::spawn(pool.pool(), &[]);
    worker.wait_ready(Duration::from_secs(30)).await;
    // Direct reply-to: consume (no-ack) from the pseudo-queue on the channel that
    // publishes the request.
    let ch = pool.conn.create_channel().await.unwrap();
    let mut replies = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let body = serde_json::to_vec(&echo_job("job-rtdirect-1", json!({"d": 2}))).unwrap();
    ch.basic_publish(
        "".into(),
        pool.names.jobs.as_str().into(),
        Default::default(),
        &body,
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_reply_to("amq.rabbitmq.reply-to".into()),
    )
    .await
    .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(30), replies.next())
        .await
        .expect("reply in time")
        .unwrap()
        .unwrap();
    let got = crate::common::broker::Received::from(d);
    assert_eq!(got.body["job_id"], "job-rtdirect-1");
    assert_eq!(got.body["output"]["d"], 2);
    wait_metric(
        &worker,
        &format!(
            "guestkit_replies_total{{outcome=\"delivered\",pool=\"{}\"}}",
            pool.pool()
        ),
        "1",
    )
    .await;
    pool.cleanup().await;
}
