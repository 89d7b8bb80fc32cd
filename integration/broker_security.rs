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

/// Waits until the worker counted `n` replies of `outcome` for `pool`.
async fn wait_replies(worker: &WorkerProcess, pool: &Pool, outcome: &str, n: u64) {
    let line = format!(
        "guestkit_replies_total{{outcome=\"{outcome}\",pool=\"{}\"}}",
        pool.pool()
    );
    wait_metric(worker, &line, &n.to_string()).await;
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
    wait_replies(&worker, &pool, "guestkit_queue", 1).await;
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
    wait_replies(&worker, &pool, "not_private", 1).await;
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
    wait_replies(&worker, &pool, "returned", 1).await;
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
    wait_replies(&worker, &pool, "delivered", 1).await;
    pool.cleanup().await;
}

/// Strings from a message end up in log lines (an unreadable job id, a rejection that
/// quotes a field). In text logs a newline in them must not forge a line of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_strings_cannot_forge_log_lines() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("loginj").await;
    let dir = crate::common::tempdir();
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = crate::common::broker::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .args([
            "--pool",
            pool.pool(),
            "--log-format",
            "text",
            "--log-level",
            "info",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("GUESTKIT_AMQP_URL", crate::common::broker::AMQP_URL)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let forged = "x\n2026-11-29T00:00:00.000000Z  INFO guestkit_worker::worker: job finished job_id=\"forged\" status=\"completed\"\r\u{1b}[2K";
    let body = serde_json::to_vec(&json!({
        "version": "1.0", "job_id": forged, "kind": "VMOperation",
        "operation": forged, "payload": { "type": forged, "data": {} }
    }))
    .unwrap();
    pool.publish_raw(&body, BasicProperties::default()).await;
    let results = pool.results(1, Duration::from_secs(30)).await;
    assert_eq!(results[0].body["status"], "rejected");
    // The rejection is logged before its result is published.
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("message rejected"), "{text}");
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-11-29T00:00:00"),
            "a forged line reached the log:\n{text}"
        );
        assert!(!line.contains('\r') && !line.contains('\u{1b}'), "{line:?}");
    }
    pool.cleanup().await;
}

/// Headers and properties are the publisher's to set: a forged `x-death` claiming many
/// earlier deaths, a huge header table and non-UTF-8 strings change nothing; the attempt
/// comes from the job document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_are_not_trusted() {
    use lapin::types::{AMQPValue, FieldArray, LongString, ShortString};
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("hdrs").await;
    let worker = WorkerProcess::spawn(pool.pool(), &[]);
    worker.wait_ready(Duration::from_secs(30)).await;

    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(99));
    death.insert("reason".into(), AMQPValue::LongString("rejected".into()));
    death.insert(
        "queue".into(),
        AMQPValue::LongString(pool.names.jobs.as_str().into()),
    );
    let mut headers = FieldTable::default();
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(1000));
    headers.insert("x-guestkit-attempt".into(), AMQPValue::LongInt(7));
    for i in 0..2000 {
        headers.insert(
            ShortString::from(format!("h{i}")),
            AMQPValue::LongString(LongString::from(vec![0xffu8, 0xfe, b'\n', 0])),
        );
    }
    let body = serde_json::to_vec(&echo_job("job-hdrs-forged", json!({"ok": true}))).unwrap();
    pool.publish_raw(&body, BasicProperties::default().with_headers(headers))
        .await;
    let got = pool.results(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].body["status"], "completed", "{:?}", got[0].body);
    assert_eq!(got[0].body["attempt"], 1, "attempt comes from the document");
    assert_eq!(got[0].headers["x-guestkit-attempt"], "1");
    pool.wait_drained(Duration::from_secs(30)).await;
    pool.cleanup().await;
}

/// The frame parser recurses once per nested header table: a job whose header nests
/// tables as deeply as a 128 KiB frame allows (about 21,800 levels; 200 aborted the
/// worker with a stack overflow before) must neither crash the worker nor stop it
/// serving. Published by hand-written frames, since a client library overflows its own
/// stack serialising such a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_headers_do_not_crash_the_worker() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("deephdr").await;
    let mut worker = WorkerProcess::spawn(pool.pool(), &[]);
    worker.wait_ready(Duration::from_secs(30)).await;

    let depth = 21_800;
    let body = serde_json::to_vec(&echo_job("job-deep-1", json!({"deep": depth}))).unwrap();
    let queue = pool.names.jobs.clone();
    tokio::task::spawn_blocking(move || raw_amqp::publish_nested(&queue, depth, &body))
        .await
        .unwrap();
    let got = pool.results(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].body["job_id"], "job-deep-1");
    assert_eq!(got[0].body["status"], "completed", "{:?}", got[0].body);
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker must still run"
    );
    pool.publish(&echo_job("job-deep-after", json!({}))).await;
    let got = pool.results(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].body["job_id"], "job-deep-after");
    pool.cleanup().await;
}

/// AMQP short strings (the correlation id, reply_to, message id, header names) are
/// UTF-8 for the client library, but the broker passes any bytes through. A job whose
/// correlation id is not UTF-8 cannot even be decoded by the worker's AMQP parser: the
/// worker must survive it, the broker must end up dead-lettering it (delivery limit),
/// and the next job must run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_utf8_short_string_property_does_not_wedge_the_worker() {
    let _shared = BROKER_LOCK.read().await;
    let pool = Pool::new("badutf8").await;
    let mut worker = WorkerProcess::spawn(pool.pool(), &[]);
    worker.wait_ready(Duration::from_secs(30)).await;

    let body = serde_json::to_vec(&echo_job("job-badutf8-1", json!({}))).unwrap();
    let queue = pool.names.jobs.clone();
    // delivery mode 2, then correlation-id = 3 bytes that are not UTF-8.
    let props = [2u8, 3, 0xff, 0xfe, b'\n'];
    tokio::task::spawn_blocking(move || {
        raw_amqp::publish_with_properties(&queue, 0x1000 | 0x0400, &props, &body)
    })
    .await
    .unwrap();
    pool.wait_counts(&pool.names.dead, (1, 0), Duration::from_secs(120))
        .await;
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker must still run"
    );
    pool.publish(&echo_job("job-badutf8-after", json!({})))
        .await;
    let got = pool.results(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].body["job_id"], "job-badutf8-after");
    pool.wait_drained(Duration::from_secs(30)).await;
    pool.cleanup().await;
}

/// Just enough AMQP 0-9-1, written by hand, to publish one message whose header table
/// no client library would serialise.
mod raw_amqp {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    const FRAME_END: u8 = 0xce;

    fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(FRAME_END);
        f
    }

    fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
        let mut m = class.to_be_bytes().to_vec();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(args);
        m
    }

    fn short(s: &str) -> Vec<u8> {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// Reads one frame: (type, payload).
    fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 7];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes(head[3..7].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len + 1];
        s.read_exact(&mut payload).unwrap();
        assert_eq!(payload.pop(), Some(FRAME_END));
        (head[0], payload)
    }

    /// Reads frames until the method `class.id` arrives; returns its arguments.
    fn expect(s: &mut TcpStream, class: u16, id: u16) -> Vec<u8> {
        loop {
            let (kind, p) = read_frame(s);
            if kind == 1 {
                let got = (
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                );
                assert!(
                    got == (class, id),
                    "expected method {class}.{id}, got {got:?}: {}",
                    String::from_utf8_lossy(&p)
                );
                return p[4..].to_vec();
            }
        }
    }

    /// A field table nesting `depth` tables, each under an empty name.
    fn nested_table(depth: usize) -> Vec<u8> {
        let mut t = vec![0u8; 4];
        for _ in 0..depth {
            let mut outer = ((t.len() + 2) as u32).to_be_bytes().to_vec();
            outer.extend_from_slice(&[0, b'F']);
            outer.extend_from_slice(&t);
            t = outer;
        }
        t
    }

    /// Publishes `body` to `queue` (default exchange), persistent, with a header table
    /// nested `depth` deep, as guest/guest on 127.0.0.1:5672; returns once the broker
    /// has closed the connection cleanly (so the publish was handled).
    pub fn publish_nested(queue: &str, depth: usize, body: &[u8]) {
        let mut props = nested_table(depth);
        props.push(2); // delivery mode
        publish_with_properties(queue, 0x2000 | 0x1000, &props, body);
    }

    /// Publishes `body` to `queue` with a content header of property `flags` and the
    /// properties' encoded bytes `props`, written as given (any bytes, valid or not).
    pub fn publish_with_properties(queue: &str, flags: u16, props: &[u8], body: &[u8]) {
        let mut s = TcpStream::connect("127.0.0.1:5672").unwrap();
        s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
        expect(&mut s, 10, 10); // start
        let mut ok = vec![0, 0, 0, 0]; // client properties: none
        ok.extend(short("PLAIN"));
        ok.extend_from_slice(&12u32.to_be_bytes());
        ok.extend_from_slice(b"\0guest\0guest");
        ok.extend(short("en_US"));
        s.write_all(&frame(1, 0, &method(10, 11, &ok))).unwrap();
        let tune = expect(&mut s, 10, 30);
        let mut tune_ok = tune[0..2].to_vec(); // the server's channel_max
        tune_ok.extend_from_slice(&131_072u32.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
        s.write_all(&frame(1, 0, &method(10, 31, &tune_ok)))
            .unwrap();
        let mut open = short("/");
        open.extend(short(""));
        open.push(0);
        s.write_all(&frame(1, 0, &method(10, 40, &open))).unwrap();
        expect(&mut s, 10, 41);
        s.write_all(&frame(1, 1, &method(20, 10, &short(""))))
            .unwrap();
        expect(&mut s, 20, 11);

        let mut publish = vec![0, 0];
        publish.extend(short(""));
        publish.extend(short(queue));
        publish.push(0);
        let mut header = 60u16.to_be_bytes().to_vec();
        header.extend_from_slice(&[0, 0]);
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        header.extend_from_slice(&flags.to_be_bytes());
        header.extend_from_slice(props);
        assert!(header.len() + 8 <= 131_072, "the header frame must fit");
        let mut out = frame(1, 1, &method(60, 40, &publish));
        out.extend(frame(2, 1, &header));
        out.extend(frame(3, 1, body));
        let mut close = 200u16.to_be_bytes().to_vec();
        close.extend(short(""));
        close.extend_from_slice(&[0, 0, 0, 0]);
        out.extend(frame(1, 0, &method(10, 50, &close)));
        s.write_all(&out).unwrap();
        expect(&mut s, 10, 51);
    }
}
