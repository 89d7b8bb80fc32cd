//! Progress events on `guestkit.events` (`<pool>.progress`): a side path that never
//! holds a job back.

use std::sync::Arc;

use chrono::Utc;
use lapin::BasicProperties;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::broker::publisher::Publisher;
use crate::broker::topology::EVENTS_EXCHANGE;

/// Events queued for publishing before new ones are dropped: a slow broker loses
/// progress detail, never jobs.
const QUEUE_DEPTH: usize = 4096;

/// Where progress events go: a bounded queue drained by [`run_events_publisher`].
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<Value>>,
}

impl EventSink {
    /// A sink and the receiving end for the publisher task.
    pub fn new() -> (EventSink, mpsc::Receiver<Value>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        (EventSink { tx: Some(tx) }, rx)
    }

    /// A sink that drops everything (the broker-less `inspect` subcommand).
    pub fn disabled() -> EventSink {
        EventSink { tx: None }
    }

    fn send(&self, event: Value) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                tracing::debug!("progress event dropped: queue full");
            }
        }
    }
}

/// A job's progress reporter, handed to its operation.
#[derive(Clone)]
pub struct Progress {
    sink: EventSink,
    base: Arc<Value>,
}

impl Progress {
    /// Reporter for one job; every event carries these identifying fields.
    pub fn new(
        sink: EventSink,
        job_id: &str,
        operation: &str,
        attempt: u32,
        worker_id: &str,
        pool: &str,
    ) -> Progress {
        let base = json!({
            "job_id": job_id, "operation": operation, "attempt": attempt,
            "worker_id": worker_id, "pool": pool,
        });
        Progress {
            sink,
            base: Arc::new(base),
        }
    }

    /// A reporter that reports nowhere.
    pub fn disabled() -> Progress {
        Progress {
            sink: EventSink::disabled(),
            base: Arc::new(json!({})),
        }
    }

    fn emit(&self, event: &str, extra: Value) {
        let mut doc = (*self.base).clone();
        if let (Some(obj), Value::Object(more)) = (doc.as_object_mut(), extra) {
            obj.insert("event".into(), event.into());
            obj.insert("timestamp".into(), Utc::now().to_rfc3339().into());
            obj.extend(more);
        }
        self.sink.send(doc);
    }

    /// The job began running.
    pub fn started(&self) {
        self.emit("started", json!({}));
    }

    /// The job entered a named phase (`open-image`, `partitions`, ...).
    pub fn phase(&self, phase: &str) {
        self.emit("phase", json!({ "phase": phase }));
    }

    /// Rough completion, 0-100.
    pub fn percent(&self, percent: u8) {
        self.emit("progress", json!({ "percent": percent.min(100) }));
    }

    /// The job ended with `status`.
    pub fn finished(&self, status: &str, duration_ms: u64) {
        self.emit(
            "finished",
            json!({ "status": status, "duration_ms": duration_ms }),
        );
    }
}

/// Most events carried by one message.
const MAX_BATCH: usize = 256;

/// Drains the event queue into `guestkit.events` until every sender is gone.
///
/// Each message body is a JSON array of events: whatever is queued when the publisher
/// is free goes out together. An idle worker sends one-event arrays at once; a busy one
/// sends fewer, larger messages, so events never cost the broker as much as the jobs
/// themselves (one message per event halved throughput on a 2-core broker).
pub async fn run_events_publisher(
    mut rx: mpsc::Receiver<Value>,
    publisher: Arc<Publisher>,
    routing_key: String,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let body = serde_json::to_vec(&batch).unwrap_or_default();
        let props = BasicProperties::default().with_content_type("application/json".into());
        if let Err(err) = publisher
            .publish_unconfirmed(EVENTS_EXCHANGE, &routing_key, &body, props)
            .await
        {
            tracing::debug!(error = %err, "progress event not published");
        }
    }
}
