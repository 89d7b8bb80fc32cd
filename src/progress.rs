//! Progress events on `guestkit.events` (`<pool>.progress`): a side path that never
//! holds a job back.

use std::sync::Arc;

use chrono::Utc;
use lapin::BasicProperties;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::broker::publisher::Publisher;
use crate::broker::topology::EVENTS_EXCHANGE;

/// Events queued for publishing before new ones are dropped: a slow broker loses
/// progress detail, never jobs.
const QUEUE_DEPTH: usize = 4096;

/// Where progress events go: a bounded queue of serialized events drained by
/// [`run_events_publisher`].
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    /// Events are written as JSON lines on stderr (an isolated inspection process,
    /// whose parent re-emits them with the job's identity).
    lines: bool,
}

impl EventSink {
    /// A sink and the receiving end for the publisher task.
    pub fn new() -> (EventSink, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        (
            EventSink {
                tx: Some(tx),
                lines: false,
            },
            rx,
        )
    }

    /// A sink that drops everything (the broker-less `inspect` subcommand).
    pub fn disabled() -> EventSink {
        EventSink {
            tx: None,
            lines: false,
        }
    }

    fn send(&self, event: Vec<u8>) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                tracing::debug!("progress event dropped: queue full");
            }
        }
    }
}

/// Which job an event is about; shared by all events of the job.
struct JobIdent {
    job_id: String,
    operation: String,
    attempt: u32,
    worker_id: String,
    pool: String,
}

/// One event as published (typed, so emitting one costs a single serialization).
#[derive(Serialize)]
struct Event<'a> {
    job_id: &'a str,
    operation: &'a str,
    attempt: u32,
    worker_id: &'a str,
    pool: &'a str,
    event: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
}

/// A job's progress reporter, handed to its operation.
#[derive(Clone)]
pub struct Progress {
    sink: EventSink,
    ident: Arc<JobIdent>,
}

/// The optional fields of one event.
#[derive(Default)]
struct Detail<'a> {
    phase: Option<&'a str>,
    percent: Option<u8>,
    status: Option<&'a str>,
    duration_ms: Option<u64>,
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
        let ident = JobIdent {
            job_id: job_id.to_string(),
            operation: operation.to_string(),
            attempt,
            worker_id: worker_id.to_string(),
            pool: pool.to_string(),
        };
        Progress {
            sink,
            ident: Arc::new(ident),
        }
    }

    /// A reporter writing each event as one JSON line on stderr (see
    /// `isolation::protocol::ProgressLine`); the parent process adds the job's identity.
    pub fn lines() -> Progress {
        let sink = EventSink {
            tx: None,
            lines: true,
        };
        Progress::new(sink, "", "", 0, "", "")
    }

    /// The job's id (empty for a reporter of no job).
    pub fn job_id(&self) -> &str {
        &self.ident.job_id
    }

    /// A reporter that reports nowhere.
    pub fn disabled() -> Progress {
        Progress::new(EventSink::disabled(), "", "", 0, "", "")
    }

    fn emit(&self, event: &str, detail: Detail) {
        if self.sink.lines {
            let line = crate::isolation::protocol::ProgressLine {
                progress: event,
                phase: detail.phase,
                percent: detail.percent,
            };
            if let Ok(mut bytes) = serde_json::to_vec(&line) {
                bytes.push(b'\n');
                use std::io::Write;
                // One write per line, so lines never interleave with log lines.
                let _ = std::io::stderr().lock().write_all(&bytes);
            }
            return;
        }
        if self.sink.tx.is_none() {
            return;
        }
        let id = &*self.ident;
        let event = Event {
            job_id: &id.job_id,
            operation: &id.operation,
            attempt: id.attempt,
            worker_id: &id.worker_id,
            pool: &id.pool,
            event,
            timestamp: Utc::now().to_rfc3339(),
            phase: detail.phase,
            percent: detail.percent,
            status: detail.status,
            duration_ms: detail.duration_ms,
        };
        if let Ok(bytes) = serde_json::to_vec(&event) {
            self.sink.send(bytes);
        }
    }

    /// The job began running.
    pub fn started(&self) {
        self.emit("started", Detail::default());
    }

    /// The job entered a named phase (`open-image`, `partitions`, ...).
    pub fn phase(&self, phase: &str) {
        self.emit(
            "phase",
            Detail {
                phase: Some(phase),
                ..Detail::default()
            },
        );
    }

    /// Rough completion, 0-100.
    pub fn percent(&self, percent: u8) {
        self.emit(
            "progress",
            Detail {
                percent: Some(percent.min(100)),
                ..Detail::default()
            },
        );
    }

    /// The job ended with `status`.
    pub fn finished(&self, status: &str, duration_ms: u64) {
        self.emit(
            "finished",
            Detail {
                status: Some(status),
                duration_ms: Some(duration_ms),
                ..Detail::default()
            },
        );
    }
}

/// How long the publisher gathers events after the first one before sending.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// Most events carried by one message.
const MAX_BATCH: usize = 256;

/// Drains the event queue into `guestkit.events` until every sender is gone.
///
/// Each message body is a JSON array of events: whatever is queued when the publisher
/// is free goes out together. An idle worker sends one-event arrays at once; a busy one
/// sends fewer, larger messages, so events never cost the broker as much as the jobs
/// themselves (one message per event halved throughput on a 2-core broker).
pub async fn run_events_publisher(
    mut rx: mpsc::Receiver<Vec<u8>>,
    publisher: Arc<Publisher>,
    routing_key: String,
) {
    let mut body = Vec::new();
    while let Some(first) = rx.recv().await {
        // Gather for a moment: while this task sleeps, sending an event wakes nobody,
        // so a busy worker pays for a few wake-ups a second, not two per job.
        tokio::time::sleep(GATHER).await;
        // A JSON array of the already serialized events.
        body.clear();
        body.push(b'[');
        body.extend_from_slice(&first);
        let mut count = 1;
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => {
                    body.push(b',');
                    body.extend_from_slice(&event);
                    count += 1;
                }
                Err(_) => break,
            }
        }
        body.push(b']');
        let props = BasicProperties::default().with_content_type("application/json".into());
        if let Err(err) = publisher
            .publish_unconfirmed(EVENTS_EXCHANGE, &routing_key, &body, props)
            .await
        {
            tracing::debug!(error = %err, "progress event not published");
        }
    }
}
