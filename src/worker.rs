//! The daemon: consume the pool's queue, run each job under the semaphore, publish its
//! result with confirms, and only then ack.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use guestkit_job_spec::{JobStatus, OutputSpec, ResultDocument};
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::broker::connection::Broker;
use crate::broker::publisher::{PublishError, Publisher};
use crate::broker::reply_to;
use crate::broker::settler::{Settle, Settler, Unsettled};
use crate::broker::topology::{
    self, long_string, PoolNames, HEADER_ATTEMPT, HEADER_FORMAT, HEADER_JOB_ID, HEADER_OPERATION,
    HEADER_POOL, HEADER_RENDER_ERROR, HEADER_STATUS, HEADER_WORKER_ID, RESULTS_EXCHANGE,
};
use crate::config::Config;
use crate::executor::{self, Accepted, Rejection, ResultStamp};
use crate::http::{self, Health};
use crate::isolation::Isolation;
use crate::metrics::Metrics;
use crate::ops::{OpEnv, OpError, Registry};
use crate::progress::{run_events_publisher, EventSink, Progress};
use crate::render::{Rendered, Renderer};
use crate::shutdown::Shutdown;

/// How long the worker waits for its broker at start before giving up (and letting the
/// supervisor restart it).
const CONNECT_DEADLINE: Duration = Duration::from_secs(120);

/// What every job task shares.
struct Shared {
    cfg: Config,
    broker: Broker,
    worker_id: String,
    names: PoolNames,
    registry: Registry,
    env: Arc<OpEnv>,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
    renderer: Renderer,
    events: EventSink,
    semaphore: Arc<Semaphore>,
}

/// Runs the worker until `shutdown` fires and running jobs are drained.
pub async fn run(cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let worker_id = cfg
        .worker_id
        .clone()
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    let names = PoolNames::new(&cfg.pool);
    let metrics = Arc::new(Metrics::new(
        env!("CARGO_PKG_VERSION"),
        &worker_id,
        &cfg.pool,
    ));
    let health = Arc::new(Health::default());

    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind --metrics-addr {}: {e}", cfg.metrics_addr))?;
    tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));

    let broker = Broker::from_config(&cfg)?;
    let publisher = Arc::new(Publisher::new(
        broker.clone(),
        &format!("guestkit-worker {worker_id} publisher"),
    ));
    let (events, events_rx) = EventSink::new();
    let events_task = tokio::spawn(run_events_publisher(
        events_rx,
        publisher.clone(),
        names.progress_key(),
    ));

    let remote = cfg.remote_config(&cfg.image_url_allow, None, Some(&metrics))?;
    let shared = Arc::new(Shared {
        env: Arc::new(OpEnv {
            image_roots: cfg.image_roots.clone(),
            metrics: Some(metrics.clone()),
            isolation: Some(Arc::new(
                Isolation::own_binary(cfg.inspect_memory_limit)
                    .with_luks_keys_dir(cfg.luks_keys_dir.clone())
                    .without_sandbox(cfg.no_inspect_sandbox)
                    .with_remote(remote.clone()),
            )),
            remote,
        }),
        semaphore: Arc::new(Semaphore::new(cfg.max_concurrent as usize)),
        registry: Registry::standard(),
        renderer: match &cfg.templates_dir {
            Some(dir) => Renderer::with_overrides(dir)
                .map_err(|e| anyhow::anyhow!("--templates-dir {}: {e}", dir.display()))?,
            None => Renderer::new(),
        },
        worker_id: worker_id.clone(),
        names,
        publisher,
        metrics,
        events,
        broker,
        cfg,
    });
    tracing::info!(
        worker_id = %shared.worker_id, pool = %shared.cfg.pool, max_concurrent = shared.cfg.max_concurrent,
        metrics_addr = %shared.cfg.metrics_addr, "worker starting"
    );

    let tracker = TaskTracker::new();
    let result = consume(&shared, &health, &tracker, shutdown).await;

    health.set_draining();
    tracker.close();
    let grace = shared.cfg.shutdown_grace();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            unfinished = tracker.len(),
            grace_s = grace.as_secs(),
            "jobs still running after the shutdown grace; they stay unacked and return to the queue"
        );
    }
    drop(shared);
    events_task.abort();
    tracing::info!("worker stopped");
    result
}

/// How one channel's consume loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelEnd {
    /// The worker is stopping: drain this channel.
    Shutdown,
    /// The channel is gone for good: open a new connection.
    Reconnect,
}

/// The consume loop, with reconnects, until shutdown. Returns after the consumer is
/// cancelled and buffered deliveries went back to the queue; running jobs continue.
async fn consume(
    shared: &Arc<Shared>,
    health: &Arc<Health>,
    tracker: &TaskTracker,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let tag = format!("guestkit-worker-{}", shared.worker_id);
    let mut first = true;
    loop {
        let opened = tokio::select! {
            opened = open_consumer(shared, &tag) => opened,
            _ = shutdown.recv() => return Ok(()),
        };
        let (conn, channel, mut consumer) = match opened {
            Ok(opened) => opened,
            Err(err) if first => return Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "reconnect failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !first {
            reconnected(&shared.metrics, health);
        }
        first = false;
        // One settler per channel: delivery tags are per channel.
        let settler = Settler::start(tracker, shared.cfg.max_concurrent);
        health.set_channel(Some(channel.clone()));
        health.set_consuming(true);
        tokio::spawn(watch_connection(
            conn.events_listener(),
            shared.metrics.clone(),
            health.clone(),
        ));
        tracing::info!(queue = %shared.names.jobs, "consuming");

        let end = serve_channel(
            shared,
            health,
            tracker,
            &channel,
            &mut consumer,
            &settler,
            &mut shutdown,
        )
        .await;
        match end {
            ChannelEnd::Reconnect => {
                let _ = conn.close(200, "reconnecting".into()).await;
            }
            ChannelEnd::Shutdown => {
                drain(
                    shared, health, tracker, conn, &channel, consumer, &settler, &tag,
                )
                .await;
                return Ok(());
            }
        }
    }
}

/// Hands every delivery of one channel to a job task until the channel ends.
///
/// Two bounds on concurrency, on purpose: the prefetch (`basic.qos` =
/// `--max-concurrent`) stops the broker pushing more than that many unacked deliveries
/// to this channel, and the semaphore in `process` caps the jobs running. The prefetch
/// alone is not enough: after a reconnect the new channel gets a fresh window while the
/// old channel's jobs still run, and each delivery is spawned before it takes a permit.
async fn serve_channel(
    shared: &Arc<Shared>,
    health: &Health,
    tracker: &TaskTracker,
    channel: &Channel,
    consumer: &mut lapin::Consumer,
    settler: &Settler,
    shutdown: &mut Shutdown,
) -> ChannelEnd {
    loop {
        let next = tokio::select! {
            next = consumer.next() => next,
            _ = shutdown.recv() => return ChannelEnd::Shutdown,
        };
        match next {
            Some(Ok(delivery)) => {
                let unsettled = settler.track(&delivery);
                // Boxed: the job's future is large, and spawning moves it several
                // times; a box moves once (measured: memmove was 8% of CPU).
                tracker.spawn(Box::pin(process(
                    shared.clone(),
                    delivery,
                    unsettled,
                    shutdown.clone(),
                )));
            }
            Some(Err(err)) => {
                health.set_consuming(false);
                tracing::warn!(error = %err, "consumer connection lost; waiting for recovery");
                let recovered = tokio::select! {
                    r = channel.wait_for_recovery(err) => r,
                    _ = shutdown.recv() => return ChannelEnd::Shutdown,
                };
                match recovered {
                    Ok(()) => tracing::info!("consumer recovered"),
                    Err(err) => {
                        tracing::warn!(error = %err, "automatic recovery failed; reconnecting");
                        return ChannelEnd::Reconnect;
                    }
                }
            }
            None => {
                health.set_consuming(false);
                tracing::warn!("consumer cancelled by the broker; reconnecting");
                return ChannelEnd::Reconnect;
            }
        }
    }
}

/// Shutdown of one channel: stop new deliveries at once, hand back what was prefetched
/// but not started; running jobs keep the channel open until they are acked.
#[allow(clippy::too_many_arguments)]
async fn drain(
    shared: &Shared,
    health: &Health,
    tracker: &TaskTracker,
    conn: Connection,
    channel: &Channel,
    mut consumer: lapin::Consumer,
    settler: &Settler,
    tag: &str,
) {
    health.set_draining();
    let _ = channel
        .basic_cancel(tag.into(), BasicCancelOptions::default())
        .await;
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(300), consumer.next()).await
    {
        settler.track(&delivery).settle(Settle::Requeue);
    }
    // The connection stays open (held by the running jobs' ackers) until `run` has
    // drained them; lapin closes it when the last handle goes, after the acks went out.
    tokio::spawn(close_after(
        conn,
        tracker.clone(),
        shared.cfg.shutdown_grace(),
    ));
}

/// The one place a reconnect is counted: ours after a lost channel, or lapin's own
/// automatic recovery (seen in [`watch_connection`]).
fn reconnected(metrics: &Metrics, health: &Health) {
    metrics.amqp_reconnects_total.inc();
    health.set_consuming(true);
}

/// Follows lapin's connection events: its automatic recovery may reconnect without the
/// consumer stream ever seeing an error, and readiness and the reconnect count must
/// still tell the truth.
async fn watch_connection(
    events: impl futures_util::Stream<Item = lapin::Event> + Send + 'static,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) {
    futures_util::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            lapin::Event::Error(err) => {
                health.set_consuming(false);
                tracing::warn!(error = %err, "broker connection error; lapin is recovering");
            }
            lapin::Event::Connected => {
                reconnected(&metrics, &health);
                tracing::info!("broker connection recovered");
            }
            _ => {}
        }
    }
}

/// Closes the consumer connection once jobs are done (or the grace is over), so acks
/// of draining jobs still reach the broker.
async fn close_after(conn: Connection, tracker: TaskTracker, grace: Duration) {
    let _ = tokio::time::timeout(grace, tracker.wait()).await;
    let _ = conn.close(200, "shutdown".into()).await;
}

async fn open_consumer(
    shared: &Shared,
    tag: &str,
) -> anyhow::Result<(Connection, Channel, lapin::Consumer)> {
    let conn = shared
        .broker
        .connect_with_retry(
            &format!("guestkit-worker {} consumer", shared.worker_id),
            CONNECT_DEADLINE,
        )
        .await?;
    let channel =
        topology::declare_for_worker(&conn, &shared.names, shared.cfg.delivery_limit).await?;
    channel
        .basic_qos(shared.cfg.max_concurrent, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            shared.names.jobs.as_str().into(),
            tag.into(),
            BasicConsumeOptions {
                no_ack: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((conn, channel, consumer))
}

/// One delivery, from permit to settle.
async fn process(
    shared: Arc<Shared>,
    delivery: Delivery,
    unsettled: Unsettled,
    mut shutdown: Shutdown,
) {
    let _permit = tokio::select! {
        permit = shared.semaphore.clone().acquire_owned() => match permit {
            Ok(p) => p,
            Err(_) => return unsettled.settle(Settle::Requeue),
        },
        _ = shutdown.recv() => return unsettled.settle(Settle::Requeue),
    };
    let stamp = ResultStamp {
        worker_id: &shared.worker_id,
        pool: &shared.cfg.pool,
        started_at: Utc::now(),
        started: tokio::time::Instant::now(),
    };
    let accepted = executor::accept(
        &delivery.data,
        shared.cfg.max_message_bytes,
        &shared.cfg.pool,
        &shared.registry,
        &shared.env,
    );
    let how = match accepted {
        Err(rejection) => reject(&shared, &delivery, &stamp, rejection).await,
        Ok(accepted) => run_job(&shared, &delivery, &stamp, accepted).await,
    };
    unsettled.settle(how);
}

async fn reject(
    shared: &Shared,
    delivery: &Delivery,
    stamp: &ResultStamp<'_>,
    rejection: Rejection,
) -> Settle {
    let doc = stamp.rejected(&rejection);
    tracing::warn!(
        job_id = doc.job_id.as_deref().unwrap_or("-"), reason = %rejection.reason,
        message = %rejection.message, "message rejected"
    );
    let m = &shared.metrics;
    m.messages_rejected_total
        .with_label_values(&[&shared.cfg.pool, rejection.reason.as_str()])
        .inc();
    let op = metric_operation(&doc);
    m.jobs_total
        .with_label_values(&[&shared.cfg.pool, &op, "rejected"])
        .inc();
    let published = publish_result(shared, &doc, OutputSpec::default(), &delivery.properties)
        .await
        .inspect_err(
            |err| tracing::error!(error = %err, "rejected result not published; message requeued"),
        )
        .is_ok();
    settlement(Disposition::Reject, published)
}

async fn run_job(
    shared: &Shared,
    delivery: &Delivery,
    stamp: &ResultStamp<'_>,
    accepted: Accepted,
) -> Settle {
    let job = accepted.job.clone();
    let attempt = job.attempt();
    let progress = Progress::new(
        shared.events.clone(),
        &job.job_id,
        &job.operation,
        attempt,
        &shared.worker_id,
        &shared.cfg.pool,
    );
    let pool = shared.cfg.pool.as_str();
    let in_flight = shared.metrics.jobs_in_flight.with_label_values(&[pool]);
    tracing::info!(
        job_id = %job.job_id, operation = %job.operation, attempt, max_attempts = job.max_attempts(),
        redelivered = delivery.redelivered, "job started"
    );
    progress.started();
    in_flight.inc();
    let timeout = executor::job_timeout(&job, shared.cfg.max_job_timeout());
    let outcome = executor::run(&accepted, progress.clone(), shared.env.clone(), timeout).await;
    in_flight.dec();

    if let (Disposition::Retry, Err(err)) = (
        disposition(Some(&outcome), attempt, job.max_attempts()),
        &outcome,
    ) {
        let published = retry(shared, delivery, stamp, &accepted, err, &progress).await;
        return settlement(Disposition::Retry, published);
    }
    let doc = stamp.finished(&job, outcome);
    let status = doc.status.as_str();
    let op = metric_operation(&doc);
    shared
        .metrics
        .jobs_total
        .with_label_values(&[pool, &op, status])
        .inc();
    shared
        .metrics
        .job_duration_seconds
        .with_label_values(&[pool, &op, status])
        .observe(stamp.started.elapsed().as_secs_f64());
    progress.finished(status, doc.duration_ms);
    let published = match publish_result(shared, &doc, accepted.output, &delivery.properties).await
    {
        Ok(()) => {
            log_finished(&doc);
            true
        }
        Err(err) => {
            tracing::error!(job_id = %job.job_id, error = %err, "result not published; job requeued");
            false
        }
    };
    settlement(Disposition::Result, published)
}

/// What is done with a handled message before it is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Never a valid job: publish the `rejected` result, then dead-letter it.
    Reject,
    /// A retryable failure with attempts left: republish to the retry queue, then ack.
    Retry,
    /// Completed, or failed for good: publish the result, then ack.
    Result,
}

/// The ack/retry decision. `outcome` is `None` for a message rejected before it ran.
fn disposition(
    outcome: Option<&Result<serde_json::Value, OpError>>,
    attempt: u32,
    max_attempts: u32,
) -> Disposition {
    match outcome {
        None => Disposition::Reject,
        Some(Err(err)) if err.retryable && attempt < max_attempts => Disposition::Retry,
        Some(_) => Disposition::Result,
    }
}

/// How a message is settled once what its disposition publishes was confirmed or not:
/// it leaves the queue only after its result (or retry) is safely on the broker.
fn settlement(disposition: Disposition, published: bool) -> Settle {
    match (disposition, published) {
        (_, false) => Settle::Requeue,
        (Disposition::Reject, true) => Settle::Reject,
        (Disposition::Retry | Disposition::Result, true) => Settle::Ack,
    }
}

fn log_finished(doc: &ResultDocument) {
    let job_id = doc.job_id.as_deref().unwrap_or("-");
    let operation = doc.operation.as_deref().unwrap_or("-");
    match &doc.error {
        None => tracing::info!(
            job_id,
            operation,
            status = doc.status.as_str(),
            duration_ms = doc.duration_ms,
            attempt = doc.attempt,
            "job finished"
        ),
        Some(e) => tracing::warn!(
            job_id, operation, status = doc.status.as_str(), duration_ms = doc.duration_ms, attempt = doc.attempt,
            error_kind = %e.kind, error = %e.message, "job finished"
        ),
    }
}

/// Republishes the job with attempt + 1 to the retry queue (its TTL then dead-letters
/// it back to the jobs queue); whether the broker confirmed it.
async fn retry(
    shared: &Shared,
    delivery: &Delivery,
    stamp: &ResultStamp<'_>,
    accepted: &Accepted,
    err: &OpError,
    progress: &Progress,
) -> bool {
    let job = &accepted.job;
    let next = job.attempt() + 1;
    let delay = executor::retry_delay(next);
    let body = match serde_json::to_vec(&job.with_attempt(next)) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize retry");
            return false;
        }
    };
    let props = delivery
        .properties
        .clone()
        .with_delivery_mode(2)
        .with_expiration(delay.as_millis().to_string().into());
    tracing::info!(
        job_id = %job.job_id, operation = %job.operation, attempt = job.attempt(), next_attempt = next,
        delay_ms = delay.as_millis() as u64, error_kind = %err.kind, error = %err.message,
        duration_ms = stamp.started.elapsed().as_millis() as u64, "job failed, retry scheduled"
    );
    progress.finished("retrying", stamp.started.elapsed().as_millis() as u64);
    match shared
        .publisher
        .publish_confirmed("", &shared.names.retry, &body, || props.clone())
        .await
    {
        Ok(()) => {
            shared
                .metrics
                .job_retries_total
                .with_label_values(&[&shared.cfg.pool, &job.operation])
                .inc();
            true
        }
        Err(e) => {
            tracing::error!(job_id = %job.job_id, error = %e, "retry not published; job requeued");
            false
        }
    }
}

/// Operation label for metrics: only names this worker knows, so hostile messages
/// cannot grow label cardinality.
fn metric_operation(doc: &ResultDocument) -> String {
    match doc.operation.as_deref() {
        Some(op) if doc.status != JobStatus::Rejected => op.to_string(),
        _ => "unknown".to_string(),
    }
}

/// The properties and `x-guestkit-*` headers of a result message, as the contract
/// lists them. Public so the throughput bench can send messages of the same shape.
pub fn result_properties(
    doc: &ResultDocument,
    rendered: &Rendered,
    message_id: &str,
    correlation: &str,
    timestamp: u64,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    let mut put = |k: &str, v: AMQPValue| {
        headers.insert(ShortString::from(k), v);
    };
    put(
        HEADER_JOB_ID,
        long_string(doc.job_id.as_deref().unwrap_or("")),
    );
    put(HEADER_STATUS, long_string(doc.status.as_str()));
    put(
        HEADER_OPERATION,
        long_string(doc.operation.as_deref().unwrap_or("")),
    );
    put(HEADER_WORKER_ID, long_string(&doc.worker_id));
    put(HEADER_POOL, long_string(&doc.pool));
    put(HEADER_FORMAT, long_string(rendered.format.as_str()));
    put(
        HEADER_ATTEMPT,
        AMQPValue::LongLongInt(i64::from(doc.attempt)),
    );
    if let Some(err) = &rendered.render_error {
        put(HEADER_RENDER_ERROR, long_string(err));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(rendered.content_type.into())
        .with_message_id(message_id.into())
        .with_correlation_id(correlation.into())
        .with_timestamp(timestamp)
        .with_headers(headers)
}

/// Publishes the result to `guestkit.results` and, when asked, to `reply_to`; both
/// confirmed before this returns.
async fn publish_result(
    shared: &Shared,
    doc: &ResultDocument,
    spec: OutputSpec,
    job_props: &BasicProperties,
) -> Result<(), PublishError> {
    let rendered = shared.renderer.render(doc, spec);
    let message_id = ulid::Ulid::new().to_string();
    let correlation = job_props
        .correlation_id()
        .as_ref()
        .map(|c| c.to_string())
        .or_else(|| doc.job_id.clone())
        .unwrap_or_default();
    let timestamp = Utc::now().timestamp().max(0) as u64;
    // Built per publish attempt (lapin takes the properties by value).
    let props = || result_properties(doc, &rendered, &message_id, &correlation, timestamp);
    let started = std::time::Instant::now();
    let routing_key = doc.routing_key();
    let results =
        shared
            .publisher
            .publish_confirmed(RESULTS_EXCHANGE, &routing_key, &rendered.body, &props);
    let reply_to = job_props
        .reply_to()
        .as_ref()
        .map(|r| r.as_str())
        .filter(|r| !r.is_empty());
    // The reply is a courtesy beside `guestkit.results`: one refused or returned never
    // fails the job, while a publish error does (the job is then redelivered).
    let outcome = match reply_to.map(reply_to::check) {
        None => {
            results.await?;
            None
        }
        Some(Err(refused)) => {
            results.await?;
            tracing::warn!(job_id = doc.job_id.as_deref().unwrap_or(""), reason = %refused,
                "reply_to refused; the result went to guestkit.results only");
            Some(refused.label())
        }
        Some(Ok(target)) => {
            let reply = shared.publisher.publish_reply(
                target.queue,
                target.mandatory,
                &rendered.body,
                &props,
            );
            let ((), routed) = tokio::try_join!(results, reply)?;
            if !routed {
                tracing::warn!(
                    job_id = doc.job_id.as_deref().unwrap_or(""),
                    "reply not delivered: the reply_to queue does not exist"
                );
            }
            Some(if routed { "delivered" } else { "returned" })
        }
    };
    if let Some(outcome) = outcome {
        shared
            .metrics
            .replies_total
            .with_label_values(&[shared.cfg.pool.as_str(), outcome])
            .inc();
    }
    shared
        .metrics
        .result_publish_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestkit_job_spec::ErrorKind;

    fn failed(retryable: bool) -> Result<serde_json::Value, OpError> {
        let kind = ErrorKind::IoError;
        Err(if retryable {
            OpError::retryable(kind, "x")
        } else {
            OpError::fatal(kind, "x")
        })
    }

    #[test]
    fn retry_only_a_retryable_failure_with_attempts_left() {
        assert_eq!(disposition(None, 1, 3), Disposition::Reject);
        assert_eq!(disposition(Some(&failed(true)), 1, 3), Disposition::Retry);
        assert_eq!(disposition(Some(&failed(true)), 2, 3), Disposition::Retry);
        // The last attempt's failure is the result, retryable or not.
        assert_eq!(disposition(Some(&failed(true)), 3, 3), Disposition::Result);
        assert_eq!(disposition(Some(&failed(false)), 1, 3), Disposition::Result);
        let ok = Ok(serde_json::Value::Null);
        assert_eq!(disposition(Some(&ok), 1, 3), Disposition::Result);
    }

    #[test]
    fn a_message_leaves_the_queue_only_after_its_publish_is_confirmed() {
        for d in [Disposition::Reject, Disposition::Retry, Disposition::Result] {
            assert_eq!(settlement(d, false), Settle::Requeue, "{d:?}");
        }
        assert_eq!(settlement(Disposition::Reject, true), Settle::Reject);
        assert_eq!(settlement(Disposition::Retry, true), Settle::Ack);
        assert_eq!(settlement(Disposition::Result, true), Settle::Ack);
    }
}
