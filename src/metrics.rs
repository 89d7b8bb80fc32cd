//! Prometheus metrics of one worker process.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the worker exposes, registered in a private registry (not the global
/// one), so tests can run several workers in one process.
pub struct Metrics {
    registry: Registry,
    pub jobs_total: IntCounterVec,
    pub job_duration_seconds: HistogramVec,
    pub jobs_in_flight: IntGaugeVec,
    pub job_retries_total: IntCounterVec,
    pub messages_rejected_total: IntCounterVec,
    pub result_publish_seconds: Histogram,
    pub amqp_reconnects_total: IntCounter,
    pub replies_total: IntCounterVec,
    pub inspect_bytes_read_total: IntCounter,
    pub remote_bytes_total: IntCounter,
    pub remote_requests_total: IntCounter,
    pub worker_info: IntGaugeVec,
}

/// Job-duration buckets: from a millisecond (an echo) to an hour (a huge image).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    1800.0, 3600.0,
];

/// Result-publish buckets: from half a millisecond to a slow broker's seconds.
const PUBLISH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Registers `metric` (its definition is constant, so an error is a bug) and returns it.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("register metric");
    metric
}

impl Metrics {
    /// Creates and registers the metrics; `worker_info` is set once here.
    pub fn new(version: &str, worker_id: &str, pool: &str) -> Metrics {
        let r = Registry::new();
        let metrics = Metrics {
            jobs_total: registered(
                &r,
                IntCounterVec::new(
                    Opts::new("guestkit_jobs_total", "Jobs finished, by final status"),
                    &["pool", "operation", "status"],
                ),
            ),
            job_duration_seconds: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "guestkit_job_duration_seconds",
                        "Time from start to result, by status",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                    &["pool", "operation", "status"],
                ),
            ),
            jobs_in_flight: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new("guestkit_jobs_in_flight", "Jobs running now"),
                    &["pool"],
                ),
            ),
            job_retries_total: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "guestkit_job_retries_total",
                        "Jobs republished to the retry queue",
                    ),
                    &["pool", "operation"],
                ),
            ),
            messages_rejected_total: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "guestkit_messages_rejected_total",
                        "Messages rejected as invalid jobs, by reason",
                    ),
                    &["pool", "reason"],
                ),
            ),
            result_publish_seconds: registered(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "guestkit_result_publish_seconds",
                        "Time to publish a result until confirmed",
                    )
                    .buckets(PUBLISH_BUCKETS.to_vec()),
                ),
            ),
            amqp_reconnects_total: registered(
                &r,
                IntCounter::new(
                    "guestkit_amqp_reconnects_total",
                    "Times the consumer connection was recovered",
                ),
            ),
            replies_total: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "guestkit_replies_total",
                        "Jobs that asked for a reply_to, by outcome: delivered, returned (no such \
                         queue), or refused by the reply_to rule (the reason)",
                    ),
                    &["pool", "outcome"],
                ),
            ),
            inspect_bytes_read_total: registered(
                &r,
                IntCounter::new(
                    "guestkit_inspect_bytes_read_total",
                    "Bytes read from disk images by inspections",
                ),
            ),
            remote_bytes_total: registered(
                &r,
                IntCounter::new(
                    "guestkit_remote_bytes_total",
                    "Bytes fetched over HTTP for remote images",
                ),
            ),
            remote_requests_total: registered(
                &r,
                IntCounter::new(
                    "guestkit_remote_requests_total",
                    "HTTP range requests made for remote images",
                ),
            ),
            worker_info: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "guestkit_worker_info",
                        "Constant 1, labelled with what this worker is",
                    ),
                    &["version", "worker_id", "pool"],
                ),
            ),
            registry: r,
        };
        metrics
            .worker_info
            .with_label_values(&[version, worker_id, pool])
            .set(1);
        metrics.jobs_in_flight.with_label_values(&[pool]).set(0);
        metrics
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_exposed_as_documented() {
        let m = Metrics::new("0.1.0", "w1", "p");
        m.jobs_total
            .with_label_values(&["p", "system.echo", "completed"])
            .inc();
        m.job_duration_seconds
            .with_label_values(&["p", "system.echo", "completed"])
            .observe(0.002);
        m.job_retries_total
            .with_label_values(&["p", "system.echo"])
            .inc();
        m.messages_rejected_total
            .with_label_values(&["p", "not_json"])
            .inc();
        m.result_publish_seconds.observe(0.001);
        m.replies_total.with_label_values(&["p", "delivered"]).inc();
        let text = m.render();
        for (name, kind) in [
            ("guestkit_jobs_total", "counter"),
            ("guestkit_job_duration_seconds", "histogram"),
            ("guestkit_jobs_in_flight", "gauge"),
            ("guestkit_job_retries_total", "counter"),
            ("guestkit_messages_rejected_total", "counter"),
            ("guestkit_result_publish_seconds", "histogram"),
            ("guestkit_amqp_reconnects_total", "counter"),
            ("guestkit_replies_total", "counter"),
            ("guestkit_inspect_bytes_read_total", "counter"),
            ("guestkit_remote_bytes_total", "counter"),
            ("guestkit_remote_requests_total", "counter"),
            ("guestkit_worker_info", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} missing:\n{text}"
            );
        }
        assert!(!text.contains("_total_total"));
        assert!(text.contains(
            "guestkit_jobs_total{operation=\"system.echo\",pool=\"p\",status=\"completed\"} 1"
        ));
    }
}
