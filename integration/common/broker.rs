//! Test side of the broker: a plain lapin client (what another service would use),
//! the real `guestkit-worker` binary as a child process, and queue statistics from
//! `rabbitmqctl` (an oracle that does not go through our code).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt;
use guestkit_worker::broker::topology::{self, PoolNames, JOBS_EXCHANGE, RESULTS_EXCHANGE};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;

use super::rabbit_node::PrivateNode;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Tests that break every broker connection take this for writing; every other broker
/// test holds it for reading, so they never run at the same time.
pub static BROKER_LOCK: LazyLock<tokio::sync::RwLock<()>> =
    LazyLock::new(|| tokio::sync::RwLock::new(()));

/// A pool name no other test (or earlier run) uses.
pub fn unique_pool(name: &str) -> String {
    format!("t-{name}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A free TCP port on loopback for the worker's metrics server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn connect() -> Connection {
    connect_to(AMQP_URL).await
}

pub async fn connect_to(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ must answer on {url} (see .ci/run): {e}"))
}

/// A consumer on `queue` over its own connection (the test's main connection may have
/// been closed by a test that breaks connections). Without `auto_ack`, prefetch is
/// bounded so unread messages return to the queue when the connection closes.
async fn consume(url: &str, queue: &str, auto_ack: bool) -> (Connection, lapin::Consumer) {
    let conn = connect_to(url).await;
    let ch = conn.create_channel().await.unwrap();
    if !auto_ack {
        ch.basic_qos(64, BasicQosOptions::default()).await.unwrap();
    }
    let options = BasicConsumeOptions {
        no_ack: auto_ack,
        ..Default::default()
    };
    let consumer = ch
        .basic_consume(queue.into(), "".into(), options, FieldTable::default())
        .await
        .unwrap();
    (conn, consumer)
}

/// Declares a durable queue bound to `exchange` with `key`.
async fn durable_queue_bound(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), durable, FieldTable::default())
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
}

/// The test's view of one pool: a publishing channel with confirms, and a durable
/// queue collecting every result of the pool (durable so results published while the
/// test's own connection is being closed are not lost).
pub struct Pool {
    pub names: PoolNames,
    /// The broker, as a user allowed to declare and read everything (the test's view).
    pub url: String,
    /// The private node the pool lives on; `None` for the shared node on 5672.
    node: Option<Arc<PrivateNode>>,
    pub conn: Connection,
    pub ch: Channel,
    results_queue: String,
    events_queue: String,
}

impl Pool {
    pub async fn new(name: &str) -> Pool {
        Pool::on(None, AMQP_URL, name).await
    }

    /// A pool on `node` (or the shared node), reached as `url`.
    pub async fn on(node: Option<Arc<PrivateNode>>, url: &str, name: &str) -> Pool {
        let names = PoolNames::new(&unique_pool(name));
        let conn = connect_to(url).await;
        let ch = conn.create_channel().await.unwrap();
        topology::declare(&ch, &names, 5).await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let results_queue = format!("{}.test-results", names.jobs);
        durable_queue_bound(
            &ch,
            &results_queue,
            RESULTS_EXCHANGE,
            &format!("{}.#", names.pool),
        )
        .await;
        let events_queue = format!("{}.test-events", names.jobs);
        durable_queue_bound(
            &ch,
            &events_queue,
            topology::EVENTS_EXCHANGE,
            &names.progress_key(),
        )
        .await;
        Pool {
            names,
            url: url.to_string(),
            node,
            conn,
            ch,
            results_queue,
            events_queue,
        }
    }

    pub fn pool(&self) -> &str {
        &self.names.pool
    }

    /// Publishes raw bytes as a persistent job message, confirmed.
    pub async fn publish_raw(&self, body: &[u8], props: BasicProperties) {
        let confirm = self
            .ch
            .basic_publish(
                JOBS_EXCHANGE.into(),
                self.names.pool.as_str().into(),
                BasicPublishOptions::default(),
                body,
                props.with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }

    /// Publishes a job document.
    pub async fn publish(&self, job: &Value) {
        self.publish_raw(
            &serde_json::to_vec(job).unwrap(),
            BasicProperties::default(),
        )
        .await;
    }

    /// Collects `n` results (body as JSON, plus headers), failing the test after `wait`.
    /// Each result is acked as it is taken, so results the broker pushed beyond `n`
    /// return to the queue when the connection closes (with auto-ack they would be lost).
    pub async fn results(&self, n: usize, wait: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < n {
            let (conn, mut consumer) = consume(&self.url, &self.results_queue, false).await;
            while out.len() < n {
                let next = tokio::time::timeout_at(deadline, consumer.next()).await;
                match next {
                    Ok(Some(Ok(d))) => {
                        d.acker.ack(BasicAckOptions::default()).await.unwrap();
                        out.push(Received::from(d));
                    }
                    Ok(_) => break,
                    Err(_) => panic!("only {} of {n} results arrived in {wait:?}", out.len()),
                }
            }
            let _ = conn.close(200, "done".into()).await;
        }
        out
    }

    /// Collects results until every job id in `ids` has been seen (at-least-once: a
    /// job may report more than once); returns them all, duplicates included.
    pub async fn results_for_all(&self, ids: &[String], wait: Duration) -> Vec<Received> {
        let want: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while seen.len() < want.len() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "results missing for {:?}",
                want.iter()
                    .filter(|i| !seen.contains(**i))
                    .collect::<Vec<_>>()
            );
            for r in self.results(want.len() - seen.len(), left).await {
                if let Some(id) = r.body["job_id"].as_str() {
                    if want.contains(id) {
                        seen.insert(id.to_string());
                    }
                }
                all.push(r);
            }
        }
        all
    }

    /// Results that arrive within `wait` (for checking that nothing more comes).
    pub async fn results_within(&self, wait: Duration) -> Vec<Received> {
        let (conn, mut consumer) = consume(&self.url, &self.results_queue, false).await;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, consumer.next()).await {
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
            out.push(Received::from(d));
        }
        let _ = conn.close(200, "done".into()).await;
        out
    }

    /// Waits for `n` progress events named `event` (`started`, `finished`...); quicker
    /// and more precise than polling queue statistics.
    pub async fn wait_events(&self, event: &str, n: usize, wait: Duration) {
        let (conn, mut consumer) = consume(&self.url, &self.events_queue, true).await;
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = 0;
        while seen < n {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(d))) => {
                    // Each message is an array of events.
                    let batch: Vec<Value> = serde_json::from_slice(&d.data).unwrap();
                    seen += batch.iter().filter(|v| v["event"] == event).count();
                }
                _ => panic!("only {seen} of {n} {event} events within {wait:?}"),
            }
        }
        let _ = conn.close(200, "done".into()).await;
    }

    /// Messages in `queue` as (ready, unacked), from rabbitmqctl.
    pub fn counts(&self, queue: &str) -> (u64, u64) {
        match &self.node {
            Some(node) => node.queue_counts(queue),
            None => queue_counts(queue),
        }
    }

    /// Waits until `queue` holds `want` (ready, unacked) messages: queue counts are
    /// asynchronous state (a dead-letter or a retry lands a moment after the outcome
    /// that caused it), so a test polls them, within a bound, instead of reading once.
    pub async fn wait_counts(&self, queue: &str, want: (u64, u64), wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.counts(queue);
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue}: (ready, unacked) {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the jobs queue has nothing ready and nothing unacked.
    pub async fn wait_drained(&self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (ready, unacked) = self.counts(&self.names.jobs);
            if ready == 0 && unacked == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue not drained: ready {ready}, unacked {unacked}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes the pool's queues.
    pub async fn cleanup(self) {
        let conn = connect_to(&self.url).await;
        let ch = conn.create_channel().await.unwrap();
        for q in [
            &self.names.jobs,
            &self.names.retry,
            &self.names.dead,
            &self.results_queue,
            &self.events_queue,
        ] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "cleanup".into()).await;
    }
}

/// (ready, unacked) of a queue, from `rabbitmqctl list_queues`.
pub fn queue_counts(queue: &str) -> (u64, u64) {
    let out = Command::new("rabbitmqctl")
        .args(LIST_QUEUE_COUNTS)
        .output()
        .expect("rabbitmqctl");
    parse_queue_counts(&String::from_utf8_lossy(&out.stdout), queue)
}

/// The `rabbitmqctl` arguments listing each queue's (ready, unacked).
pub const LIST_QUEUE_COUNTS: [&str; 6] = [
    "list_queues",
    "-q",
    "--no-table-headers",
    "name",
    "messages_ready",
    "messages_unacknowledged",
];

/// (ready, unacked) of `queue` in the output of `rabbitmqctl` with [`LIST_QUEUE_COUNTS`].
pub fn parse_queue_counts(text: &str, queue: &str) -> (u64, u64) {
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() == 3 && cols[0] == queue {
            return (cols[1].parse().unwrap_or(0), cols[2].parse().unwrap_or(0));
        }
    }
    panic!("queue {queue} not listed by rabbitmqctl:\n{text}");
}

/// One result message as the test sees it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The body parsed as JSON (`Null` when it is not JSON, e.g. an html result).
    pub body: Value,
    /// The body as published.
    pub data: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub content_type: Option<String>,
    pub correlation_id: Option<String>,
    pub routing_key: String,
}

impl From<lapin::message::Delivery> for Received {
    fn from(d: lapin::message::Delivery) -> Received {
        let mut headers = HashMap::new();
        if let Some(h) = d.properties.headers() {
            for (k, v) in h.inner() {
                let v = match v {
                    AMQPValue::LongString(s) => s.to_string(),
                    AMQPValue::LongLongInt(i) => i.to_string(),
                    AMQPValue::LongInt(i) => i.to_string(),
                    other => format!("{other:?}"),
                };
                headers.insert(k.to_string(), v);
            }
        }
        Received {
            body: serde_json::from_slice(&d.data).unwrap_or(Value::Null),
            data: d.data.clone(),
            headers,
            content_type: d.properties.content_type().as_ref().map(|s| s.to_string()),
            correlation_id: d
                .properties
                .correlation_id()
                .as_ref()
                .map(|s| s.to_string()),
            routing_key: d.routing_key.to_string(),
        }
    }
}

/// A job document as another service would write it by hand.
pub fn echo_job(job_id: &str, data: Value) -> Value {
    serde_json::json!({
        "version": "1.0", "job_id": job_id, "kind": "VMOperation",
        "created_at": chrono::Utc::now().to_rfc3339(),
        "operation": "system.echo",
        "payload": { "type": "system.echo.v1", "data": data },
    })
}

/// The real worker binary as a child process.
pub struct WorkerProcess {
    pub child: Child,
    pub metrics_port: u16,
}

impl WorkerProcess {
    pub fn spawn(pool: &str, extra: &[&str]) -> WorkerProcess {
        WorkerProcess::spawn_logged(pool, extra, None)
    }

    /// [`WorkerProcess::spawn`], its stderr (logs, at debug level) written to `log` when
    /// given.
    pub fn spawn_logged(pool: &str, extra: &[&str], log: Option<&Path>) -> WorkerProcess {
        WorkerProcess::spawn_on_logged(AMQP_URL, pool, extra, log)
    }

    /// The worker connecting to `url` (another node, user or scheme).
    pub fn spawn_on(url: &str, pool: &str, extra: &[&str]) -> WorkerProcess {
        WorkerProcess::spawn_on_logged(url, pool, extra, None)
    }

    /// The worker connecting to `url`, its stderr written to `log` when given.
    fn spawn_on_logged(url: &str, pool: &str, extra: &[&str], log: Option<&Path>) -> WorkerProcess {
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .args([
                "--pool",
                pool,
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--log-level",
                // A log asked for is there to be read: all of it.
                if log.is_some() { "debug" } else { "warn" },
            ])
            .args(extra)
            .env("GUESTKIT_AMQP_URL", url)
            .stdout(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None if std::env::var_os("GUESTKIT_TEST_LOGS").is_some() => Stdio::inherit(),
                None => Stdio::null(),
            })
            .spawn()
            .expect("spawn guestkit-worker");
        WorkerProcess {
            child,
            metrics_port,
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit, up to `wait`; returns the exit status.
    pub async fn wait_exit(&mut self, wait: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker did not exit within {wait:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET on the worker's HTTP server: (status, body).
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if let Some((200, _)) = self.http_get("/readyz").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("worker not ready within {wait:?}");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
