//! Throughput of the worker against the broker's own ceiling on this machine, measured
//! side by side in one run (absolute numbers on a shared machine mean little; the ratio
//! does).
//!
//! Needs RabbitMQ on 127.0.0.1:5672. `GUESTKIT_BENCH_JOBS` sets N (default 20000),
//! `GUESTKIT_BENCH_ROUNDS` the number of rounds (default 3),
//! `GUESTKIT_BENCH_CONCURRENCY` the prefetch / --max-concurrent (default 64),
//! `GUESTKIT_BENCH_WORKER_THREADS` the worker's tokio threads (default: one per core;
//! 1 measured worse here: ratio 0.55 against 0.70 in the same session).
//!
//! Sides, alternated each round so drift on a shared machine hits all alike:
//! - ceiling: a minimal lapin loop in its own process (as the worker is): consume from
//!   a quorum queue (prefetch C), publish a persistent reply with confirm, ack after the
//!   confirm; replies counted on a collector queue. Minimal messages: `{"n":i}` in, the
//!   same bytes out;
//! - contract-shaped ceiling: the same loop moving the worker's message shapes: the
//!   job documents in, an echo result rendered by the worker's renderer with the
//!   worker's own properties and seven `x-guestkit-*` headers
//!   (`worker::result_properties`) out, on a `<key>.<status>.<operation>` topic key.
//!   What the broker and the collector pay for the contract's messages, without any job
//!   handling;
//! - in-process loop: the minimal loop as a task of this bench process (the ceiling of
//!   earlier notes; it shares threads, and their wake-ups, with the collector);
//! - worker: the real `guestkit-worker` binary with `--max-concurrent C` on N
//!   preloaded `system.echo` jobs, results counted on a collector queue.
//!
//! All are timed from the first collected reply to the N-th, so connection set-up and
//! process start count against none. Each line also gives the CPU per message of the
//! broker, of the process under test and of this process (the collector).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use guestkit_job_spec::{JobStatus, OutputSpec, ResultDocument};
use guestkit_worker::broker::topology::{self, PoolNames, JOBS_EXCHANGE, RESULTS_EXCHANGE};
use guestkit_worker::render::{Rendered, Renderer};
use guestkit_worker::worker::result_properties;
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

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`
/// (clock ticks of 1/100 s on Linux); 0 when unreadable.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// The broker's Erlang VM, to tell its CPU from ours.
fn broker_pid() -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (name.chars().all(|c| c.is_ascii_digit()) && cmd.contains("beam") && cmd.contains("rabbit"))
            .then_some(name)
    })
}

/// What one side cost: wall seconds from the first to the n-th message, and CPU
/// seconds of the broker, of this bench process and of the worker process (if any)
/// over the same span.
#[derive(Default, Clone, Copy)]
struct Span {
    secs: f64,
    broker_cpu: f64,
    bench_cpu: f64,
    worker_cpu: f64,
}

/// Times the first to the n-th message on `consumer`, with the CPU each process used.
async fn time_n(consumer: &mut lapin::Consumer, n: usize, worker: Option<u32>) -> Span {
    let broker = broker_pid().unwrap_or_default();
    let me = std::process::id().to_string();
    let worker = worker.map(|p| p.to_string()).unwrap_or_default();
    let cpu = || (cpu_seconds(&broker), cpu_seconds(&me), cpu_seconds(&worker));
    let mut first = None;
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(300), consumer.next())
            .await
            .expect("reply in time");
        d.unwrap().unwrap();
        first.get_or_insert_with(|| (Instant::now(), cpu()));
    }
    let end = cpu();
    first
        .map(|(t, start)| Span {
            secs: t.elapsed().as_secs_f64(),
            broker_cpu: end.0 - start.0,
            bench_cpu: end.1 - start.1,
            worker_cpu: end.2 - start.2,
        })
        .unwrap_or_default()
}

/// The messages a ceiling loop moves.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// `{"n":i}` in, the same bytes out, two properties.
    Minimal,
    /// The worker's shapes: job documents in, results with the contract's headers out.
    Contract,
}

impl Shape {
    fn arg(self) -> &'static str {
        match self {
            Shape::Minimal => "minimal",
            Shape::Contract => "contract",
        }
    }
}

/// The job document the worker is given (and the contract-shaped ceiling too).
fn job_body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"version":"1.0","job_id":"job-bench-{i:08}","kind":"VMOperation","operation":"system.echo","payload":{{"type":"system.echo.v1","data":{{"n":{i}}}}}}}"#
    )
    .into_bytes()
}

/// A result as the worker writes it for an echo job, rendered by the worker's own
/// renderer: the body and the document its properties are made from.
fn echo_result() -> (ResultDocument, Rendered) {
    let now = chrono::Utc::now();
    let doc = ResultDocument {
        job_id: Some("job-bench-00000000".into()),
        status: JobStatus::Completed,
        worker_id: ulid::Ulid::new().to_string(),
        pool: format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase()),
        operation: Some("system.echo".into()),
        attempt: 1,
        started_at: now,
        finished_at: now,
        duration_ms: 0,
        output: Some(serde_json::json!({"n": 12345})),
        error: None,
    };
    let rendered = Renderer::new().render(&doc, OutputSpec::default());
    (doc, rendered)
}

/// The consume-publish-confirm-ack loop: its own connections, as the worker has;
/// replies go to `reply_key` on the results exchange. Runs until aborted.
async fn ceiling_loop(queue: String, reply_key: String, concurrency: u16, shape: Shape) {
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
    let result = std::sync::Arc::new(echo_result());
    let key = match shape {
        Shape::Minimal => reply_key,
        Shape::Contract => format!("{reply_key}.completed.system.echo"),
    };
    while let Some(Ok(d)) = consumer.next().await {
        let pch = pch.clone();
        let key = key.clone();
        let result = result.clone();
        tokio::spawn(async move {
            let (body, props) = match shape {
                Shape::Minimal => (
                    &d.data[..],
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                ),
                Shape::Contract => {
                    let (doc, rendered) = &*result;
                    let correlation = format!("job-bench-{:08}", d.delivery_tag);
                    let props = result_properties(
                        doc,
                        rendered,
                        &ulid::Ulid::new().to_string(),
                        &correlation,
                        chrono::Utc::now().timestamp() as u64,
                    );
                    (&rendered.body[..], props)
                }
            };
            let confirm = pch
                .basic_publish(
                    RESULTS_EXCHANGE.into(),
                    key.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
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
}

/// A ceiling: N preloaded messages through [`ceiling_loop`], run in its own process
/// when `separate` (as the worker is), else as a task of this process.
async fn ceiling(n: usize, concurrency: u16, shape: Shape, separate: bool) -> Span {
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
    preload(&ch, "", &queue, n, |i| match shape {
        Shape::Minimal => format!("{{\"n\":{i}}}").into_bytes(),
        Shape::Contract => job_body(i),
    })
    .await;
    // On a fresh broker no worker has declared the results exchange yet.
    ch.exchange_declare(
        RESULTS_EXCHANGE.into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let reply_key = format!("bench-ceiling.{}", ulid::Ulid::new());
    let (_cconn, cch) = channel().await;
    let binding = match shape {
        Shape::Minimal => reply_key.clone(),
        Shape::Contract => format!("{reply_key}.#"),
    };
    let mut replies = collector(
        &cch,
        &format!("{reply_key}.collect"),
        RESULTS_EXCHANGE,
        &binding,
    )
    .await;

    let span = if separate {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--ceiling-loop", &queue, &reply_key])
            .args([concurrency.to_string().as_str(), shape.arg()])
            .spawn()
            .expect("spawn ceiling loop");
        let span = time_n(&mut replies, n, Some(child.id())).await;
        let _ = child.kill();
        let _ = child.wait();
        span
    } else {
        let looper = tokio::spawn(ceiling_loop(queue.clone(), reply_key, concurrency, shape));
        let span = time_n(&mut replies, n, None).await;
        looper.abort();
        span
    };
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bench".into()).await;
    span
}

async fn worker(n: usize, concurrency: u16) -> Span {
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
    preload(&ch, JOBS_EXCHANGE, &names.pool, n, job_body).await;
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
    let span = time_n(&mut results, n, Some(child.id())).await;
    let _ = child.kill();
    let _ = child.wait();
    for q in [&names.jobs, &names.retry, &names.dead] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bench".into()).await;
    span
}

/// The median of `v` (which it sorts).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // A separate-process ceiling: this binary again, running only the loop.
    if let [_, flag, queue, key, c, shape] = args.as_slice() {
        if flag == "--ceiling-loop" {
            let c = c.parse().expect("concurrency");
            let shape = if shape == "contract" {
                Shape::Contract
            } else {
                Shape::Minimal
            };
            rt.block_on(ceiling_loop(queue.clone(), key.clone(), c, shape));
            return;
        }
    }
    // `cargo bench` passes --bench; `cargo test --benches` would run us too: skip then.
    if !args.iter().any(|a| a == "--bench") {
        println!("throughput: run with `cargo bench --bench throughput`");
        return;
    }
    let n = env_usize("GUESTKIT_BENCH_JOBS", 20_000);
    let c = env_usize("GUESTKIT_BENCH_CONCURRENCY", 64) as u16;
    let rounds = env_usize("GUESTKIT_BENCH_ROUNDS", 3).max(1);
    let us = |cpu: f64| cpu * 1e6 / n as f64;
    let rate = |s: &Span| n as f64 / s.secs;
    let cpu = |s: &Span, client: f64| {
        format!(
            "{:>5.1} {:>5.1} {:>5.1}",
            us(s.broker_cpu),
            us(client),
            us(s.bench_cpu)
        )
    };
    rt.block_on(async {
        // Per round: ratios of the worker to each ceiling.
        let mut ratios: [Vec<f64>; 3] = Default::default();
        for round in 1..=rounds {
            let minimal = ceiling(n, c, Shape::Minimal, true).await;
            let shaped = ceiling(n, c, Shape::Contract, true).await;
            let in_process = ceiling(n, c, Shape::Minimal, false).await;
            let work = worker(n, c).await;
            let w = rate(&work);
            let row = [rate(&minimal), rate(&shaped), rate(&in_process)].map(|r| w / r);
            println!(
                "round {round}: msg/s ceiling {:>6.0}  contract-shaped {:>6.0}  in-process {:>6.0}  worker {w:>6.0}   ratio {:.2} / {:.2} / {:.2}",
                rate(&minimal), rate(&shaped), rate(&in_process), row[0], row[1], row[2]
            );
            println!(
                "   cpu us/msg (broker client collector): ceiling {}  contract-shaped {}  in-process {}  worker {}",
                cpu(&minimal, minimal.worker_cpu),
                cpu(&shaped, shaped.worker_cpu),
                cpu(&in_process, 0.0),
                cpu(&work, work.worker_cpu)
            );
            for (all, r) in ratios.iter_mut().zip(row) {
                all.push(r);
            }
        }
        let [a, b, c2] = ratios.map(|mut v| median(&mut v));
        println!(
            "throughput N={n} concurrency={c} rounds={rounds}: median ratio of the worker to the ceiling {a:.2}, to the contract-shaped ceiling {b:.2}, to the in-process loop {c2:.2}"
        );
    });
}
