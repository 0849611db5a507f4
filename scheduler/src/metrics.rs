//! Prometheus metrics at `/metrics`: queue depth, attempts by result, and latency histograms
//! (names as kube-scheduler's).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::queue::QueueStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

/// Outcome of one scheduling attempt.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Scheduled,
    Unschedulable,
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Scheduled => "scheduled",
            Outcome::Unschedulable => "unschedulable",
            Outcome::Error => "error",
        }
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    profile: String,
    attempts: Family<ResultLabels, Counter>,
    attempt_duration: Family<ResultLabels, Histogram>,
    e2e: Histogram,
    pending: Family<QueueLabel, Gauge>,
    events_dropped: Counter,
}

impl Metrics {
    pub fn new(profile: &str) -> Arc<Metrics> {
        let attempts = Family::<ResultLabels, Counter>::default();
        let attempt_duration = Family::<ResultLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
            ])
        });
        let e2e = Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let pending = Family::<QueueLabel, Gauge>::default();
        let events_dropped = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Scheduling attempts by result",
            attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Duration of one scheduling cycle (filter and score) by result",
            attempt_duration.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "Time from a pod entering the queue to its binding",
            e2e.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Pods waiting, by queue (active, backoff, unschedulable, inflight)",
            pending.clone(),
        );
        registry.register(
            "scheduler_events_dropped",
            "Events dropped because the event queue was full",
            events_dropped.clone(),
        );
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            profile: profile.to_string(),
            attempts,
            attempt_duration,
            e2e,
            pending,
            events_dropped,
        })
    }

    pub fn attempt(&self, outcome: Outcome, took: Duration) {
        let labels = ResultLabels {
            result: outcome.as_str().into(),
            profile: self.profile.clone(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn bound(&self, since_queued: Duration) {
        self.e2e.observe(since_queued.as_secs_f64());
    }

    /// The Prometheus text, with the gauges read now.
    pub fn render(&self, queue: QueueStats, events_dropped: u64) -> String {
        for (name, n) in [
            ("active", queue.active),
            ("backoff", queue.backoff),
            ("unschedulable", queue.unschedulable),
            ("inflight", queue.in_flight),
        ] {
            self.pending
                .get_or_create(&QueueLabel { queue: name.into() })
                .set(n as i64);
        }
        let seen = self.events_dropped.get();
        if events_dropped > seen {
            self.events_dropped.inc_by(events_dropped - seen);
        }
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics lock");
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
