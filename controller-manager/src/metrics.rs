//! Prometheus metrics at `/metrics`, named as kube-controller-manager's work queues name them:
//! each controller's queue depth, reconciles by result, retries, and how long a reconcile takes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::workqueue::WorkQueue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueName {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: String,
}

/// How one reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; nothing to look at again unless something changes.
    Success,
    /// Done, and asked to be looked at again after a while.
    Requeue,
    /// Failed; retried with the key's backoff.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Requeue => "requeue_after",
            Outcome::Error => "error",
        }
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    queues: Mutex<Vec<(&'static str, Arc<WorkQueue>)>>,
    depth: Family<QueueName, Gauge>,
    reconciles: Family<ResultLabels, Counter>,
    retries: Family<QueueName, Counter>,
    work_duration: Family<QueueName, Histogram>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let depth = Family::<QueueName, Gauge>::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        let retries = Family::<QueueName, Counter>::default();
        let work_duration = Family::<QueueName, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ])
        });
        let mut registry = Registry::default();
        registry.register(
            "workqueue_depth",
            "Keys waiting in each controller's work queue",
            depth.clone(),
        );
        registry.register(
            "controller_reconciles",
            "Reconciles by controller and result (success, requeue_after, error)",
            reconciles.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Keys put back with their backoff after a failed reconcile",
            retries.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long one reconcile takes",
            work_duration.clone(),
        );
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            queues: Mutex::default(),
            depth,
            reconciles,
            retries,
            work_duration,
        })
    }

    /// Reports `queue`'s depth as controller `name`'s.
    pub fn watch_queue(&self, name: &'static str, queue: Arc<WorkQueue>) {
        self.queues
            .lock()
            .expect("metrics lock")
            .push((name, queue));
    }

    /// One reconcile of controller `name`.
    pub fn reconciled(&self, name: &str, outcome: Outcome, took: Duration) {
        let labels = ResultLabels {
            controller: name.to_string(),
            result: outcome.as_str().to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        let queue = QueueName {
            name: name.to_string(),
        };
        if outcome == Outcome::Error {
            self.retries.get_or_create(&queue).inc();
        }
        self.work_duration
            .get_or_create(&queue)
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text, with the queue depths read now.
    pub fn render(&self) -> String {
        for (name, queue) in self.queues.lock().expect("metrics lock").iter() {
            self.depth
                .get_or_create(&QueueName {
                    name: name.to_string(),
                })
                .set(queue.len() as i64);
        }
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics lock");
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_depth_results_and_latency_per_controller() {
        let m = Metrics::new();
        let q = Arc::new(WorkQueue::new());
        q.add("default/a");
        q.add("default/b");
        m.watch_queue("deployment", q);
        m.reconciled("deployment", Outcome::Success, Duration::from_millis(3));
        m.reconciled("deployment", Outcome::Error, Duration::from_millis(3));
        let text = m.render();
        for line in [
            "workqueue_depth{name=\"deployment\"} 2",
            "controller_reconciles_total{controller=\"deployment\",result=\"success\"} 1",
            "controller_reconciles_total{controller=\"deployment\",result=\"error\"} 1",
            "workqueue_retries_total{name=\"deployment\"} 1",
            "workqueue_work_duration_seconds_count{name=\"deployment\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
