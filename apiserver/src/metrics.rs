//! Prometheus metrics served at `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabel {
    verb: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<VerbLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<VerbLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "Requests by HTTP verb and response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Request latency by HTTP verb",
            latency.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
        }
    }
}

impl Metrics {
    pub fn observe(&self, verb: &str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.into(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&VerbLabel { verb: verb.into() })
            .observe(took.as_secs_f64());
    }

    /// Adds a metric kept elsewhere (the audit log's counters) to those served.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register(name, help, metric);
    }

    pub fn render(&self) -> Response {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            out,
        )
            .into_response()
    }
}
