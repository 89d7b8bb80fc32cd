//! Prometheus metrics of one worker process.

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

impl Metrics {
    /// Creates and registers the metrics; `worker_info` is set once here.
    pub fn new(version: &str, worker_id: &str, pool: &str) -> Metrics {
        let registry = Registry::new();
        let jobs_total = IntCounterVec::new(
            Opts::new("guestkit_jobs_total", "Jobs finished, by final status"),
            &["pool", "operation", "status"],
        )
        .expect("metric");
        let job_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "guestkit_job_duration_seconds",
                "Time from start to result, by status",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["pool", "operation", "status"],
        )
        .expect("metric");
        let jobs_in_flight = IntGaugeVec::new(
            Opts::new("guestkit_jobs_in_flight", "Jobs running now"),
            &["pool"],
        )
        .expect("metric");
        let job_retries_total = IntCounterVec::new(
            Opts::new(
                "guestkit_job_retries_total",
                "Jobs republished to the retry queue",
            ),
            &["pool", "operation"],
        )
        .expect("metric");
        let messages_rejected_total = IntCounterVec::new(
            Opts::new(
                "guestkit_messages_rejected_total",
                "Messages rejected as invalid jobs, by reason",
            ),
            &["pool", "reason"],
        )
        .expect("metric");
        let result_publish_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "guestkit_result_publish_seconds",
                "Time to publish a result until confirmed",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("metric");
        let amqp_reconnects_total = IntCounter::new(
            "guestkit_amqp_reconnects_total",
            "Times the consumer connection was recovered",
        )
        .expect("metric");
        let replies_total = IntCounterVec::new(
            Opts::new(
                "guestkit_replies_total",
                "Jobs that asked for a reply_to, by outcome: delivered, returned (no such \
                 queue), or refused by the reply_to rule (the reason)",
            ),
            &["pool", "outcome"],
        )
        .expect("metric");
        let inspect_bytes_read_total = IntCounter::new(
            "guestkit_inspect_bytes_read_total",
            "Bytes read from disk images by inspections",
        )
        .expect("metric");
        let remote_bytes_total = IntCounter::new(
            "guestkit_remote_bytes_total",
            "Bytes fetched over HTTP for remote images",
        )
        .expect("metric");
        let remote_requests_total = IntCounter::new(
            "guestkit_remote_requests_total",
            "HTTP range requests made for remote images",
        )
        .expect("metric");
        let worker_info = IntGaugeVec::new(
            Opts::new(
                "guestkit_worker_info",
                "Constant 1, labelled with what this worker is",
            ),
            &["version", "worker_id", "pool"],
        )
        .expect("metric");
        worker_info
            .with_label_values(&[version, worker_id, pool])
            .set(1);

        for c in [
            Box::new(jobs_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(job_duration_seconds.clone()),
            Box::new(jobs_in_flight.clone()),
            Box::new(job_retries_total.clone()),
            Box::new(messages_rejected_total.clone()),
            Box::new(result_publish_seconds.clone()),
            Box::new(amqp_reconnects_total.clone()),
            Box::new(replies_total.clone()),
            Box::new(inspect_bytes_read_total.clone()),
            Box::new(remote_bytes_total.clone()),
            Box::new(remote_requests_total.clone()),
            Box::new(worker_info.clone()),
        ] {
            registry.register(c).expect("register metric");
        }
        jobs_in_flight.with_label_values(&[pool]).set(0);
        Metrics {
            registry,
            jobs_total,
            job_duration_seconds,
            jobs_in_flight,
            job_retries_total,
            messages_rejected_total,
            result_publish_seconds,
            amqp_reconnects_total,
            replies_total,
            inspect_bytes_read_total,
            remote_bytes_total,
            remote_requests_total,
            worker_info,
        }
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
