//! Throughput of the worker against the broker's own ceiling on this machine, measured
//! side by side in one run (absolute numbers on a shared machine mean little; the ratio
//! does).
//!
//! Needs RabbitMQ on 127.0.0.1:5672. `GUESTKIT_BENCH_JOBS` sets N (default 20000),
//! `GUESTKIT_BENCH_CONCURRENCY` the prefetch / --max-concurrent (default 64),
//! `GUESTKIT_BENCH_WORKER_THREADS` the worker's tokio threads (default: one per core;
//! 1 measured worse here: ratio 0.55 against 0.70 in the same session).
//!
//! - ceiling: a minimal lapin loop on a quorum queue: consume (prefetch C), publish a
//!   small persistent reply with confirm, ack after the confirm, replies counted on a
//!   collector queue;
//! - worker: the real `guestkit-worker` binary with `--max-concurrent C` on N
//!   preloaded `system.echo` jobs, results counted on a collector queue.
//!
//! Both are timed from the first collected reply to the N-th, so connection set-up
//! and process start are not counted against either.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use guestkit_worker::broker::topology::{self, PoolNames, JOBS_EXCHANGE, RESULTS_EXCHANGE};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn channel() -> (Connection, Channel) {
    let conn = Connection::connect(URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn preload(
    ch: &Channel,
    exchange: &str,
    key: &str,
    n: usize,
    body: impl Fn(usize) -> Vec<u8>,
) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let props = BasicProperties::default().with_delivery_mode(2);
    for i in 0..n {
        // Confirms are collected all at once below, not awaited one by one.
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                &body(i),
                props.clone(),
            )
            .await
            .unwrap();
        drop(confirm);
    }
    ch.wait_for_confirms().await.unwrap();
}

async fn collector(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Consumer {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
}

/// Seconds from the first to the n-th message on `consumer`.
async fn time_n(consumer: &mut lapin::Consumer, n: usize) -> f64 {
    let mut first = None;
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(300), consumer.next())
            .await
            .expect("reply in time");
        d.unwrap().unwrap();
        first.get_or_insert_with(Instant::now);
    }
    first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0)
}

async fn ceiling(n: usize, concurrency: u16) -> f64 {
    let (conn, ch) = channel().await;
    let queue = format!("guestkit.bench.ceiling.{}", ulid::Ulid::new());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    preload(&ch, "", &queue, n, |i| {
        format!("{{\"n\":{i}}}").into_bytes()
    })
    .await;
    let reply_key = format!("bench-ceiling.{}", ulid::Ulid::new());
    let (_cconn, cch) = channel().await;
    let mut replies = collector(
        &cch,
        &format!("{reply_key}.collect"),
        RESULTS_EXCHANGE,
        &reply_key,
    )
    .await;

    // The loop under test: its own connections, as the worker has.
    let (_wconn, wch) = channel().await;
    let (_pconn, pch) = channel().await;
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    wch.basic_qos(concurrency, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = wch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let looper = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let pch = pch.clone();
            let key = reply_key.clone();
            tokio::spawn(async move {
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into());
                let confirm = pch
                    .basic_publish(
                        RESULTS_EXCHANGE.into(),
                        key.as_str().into(),
                        BasicPublishOptions::default(),
                        &d.data,
                        props,
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                assert!(confirm.is_ack());
                d.acker.ack(BasicAckOptions::default()).await.unwrap();
            });
        }
    });
    let secs = time_n(&mut replies, n).await;
    looper.abort();
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bench".into()).await;
    secs
}

async fn worker(n: usize, concurrency: u16) -> f64 {
    let names = PoolNames::new(&format!(
        "bench-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    ));
    let (conn, ch) = channel().await;
    topology::declare(&ch, &names, 5).await.unwrap();
    let (_cconn, cch) = channel().await;
    let mut results = collector(
        &cch,
        &format!("{}.collect", names.jobs),
        RESULTS_EXCHANGE,
        &format!("{}.#", names.pool),
    )
    .await;
    preload(&ch, JOBS_EXCHANGE, &names.pool, n, |i| {
        format!(
            r#"{{"version":"1.0","job_id":"job-bench-{i:08}","kind":"VMOperation","operation":"system.echo","payload":{{"type":"system.echo.v1","data":{{"n":{i}}}}}}}"#
        )
        .into_bytes()
    })
    .await;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .args([
            "--pool",
            &names.pool,
            "--max-concurrent",
            &concurrency.to_string(),
            "--log-level",
            "warn",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("GUESTKIT_AMQP_URL", URL)
        .envs(
            std::env::var("GUESTKIT_BENCH_WORKER_THREADS")
                .ok()
                .map(|t| ("TOKIO_WORKER_THREADS", t)),
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker");
    let secs = time_n(&mut results, n).await;
    let _ = child.kill();
    let _ = child.wait();
    for q in [&names.jobs, &names.retry, &names.dead] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bench".into()).await;
    secs
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run us too: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("throughput: run with `cargo bench --bench throughput`");
        return;
    }
    let n = env_usize("GUESTKIT_BENCH_JOBS", 20_000);
    let c = env_usize("GUESTKIT_BENCH_CONCURRENCY", 64) as u16;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Alternate twice so drift on a shared machine hits both sides alike.
        let mut rows = Vec::new();
        for round in 1..=2 {
            let ceil = n as f64 / ceiling(n, c).await;
            let work = n as f64 / worker(n, c).await;
            println!("round {round}: ceiling {ceil:>8.0} msg/s   worker {work:>8.0} jobs/s   ratio {:.2}", work / ceil);
            rows.push((ceil, work));
        }
        let (ceil, work) = rows.iter().fold((0.0, 0.0), |a, r| (a.0 + r.0 / 2.0, a.1 + r.1 / 2.0));
        println!("throughput N={n} concurrency={c}: ceiling {ceil:.0} msg/s, worker {work:.0} jobs/s, ratio {:.2}", work / ceil);
    });
}
