//! The kubelet server's Prometheus metrics at `/metrics`: running pods and containers (read
//! from the runtime at each scrape) and the server's request counters.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerStateLabel {
    container_state: String,
}

/// The kubelet server's metrics (names as the kubelet's).
pub struct Metrics {
    registry: Mutex<Registry>,
    running_pods: Gauge,
    running_containers: Family<ContainerStateLabel, Gauge>,
    requests: Counter,
    unauthorized: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let running_pods = Gauge::default();
        let running_containers = Family::<ContainerStateLabel, Gauge>::default();
        let requests = Counter::default();
        let unauthorized = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "kubelet_server_requests",
            "Requests to the kubelet's HTTPS server",
            requests.clone(),
        );
        registry.register(
            "kubelet_server_unauthorized_requests",
            "Requests refused for want of credentials the kubelet accepts",
            unauthorized.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            running_pods,
            running_containers,
            requests,
            unauthorized,
        }
    }

    /// Counts one request to the server.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// Counts one request refused (401) for want of credentials the kubelet accepts.
    pub fn unauthorized(&self) {
        self.unauthorized.inc();
    }

    /// The OpenMetrics text, with the gauges set to what the runtime shows now.
    pub fn render(&self, running_pods: usize, running_containers: usize) -> String {
        self.running_pods.set(running_pods as i64);
        self.running_containers
            .get_or_create(&ContainerStateLabel {
                container_state: "running".into(),
            })
            .set(running_containers as i64);
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
    fn renders_the_kubelet_metric_names() {
        let m = Metrics::new();
        m.request();
        m.request();
        m.unauthorized();
        let text = m.render(1, 2);
        for line in [
            "kubelet_running_pods 1",
            "kubelet_running_containers{container_state=\"running\"} 2",
            "kubelet_server_requests_total 2",
            "kubelet_server_unauthorized_requests_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }
}
