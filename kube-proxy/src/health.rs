//! `/healthz` (kube-proxy's JSON: when the rules were last synced) and `/metrics` (the sync
//! figures in Prometheus' text format, kube-proxy's names with a `skiff_proxy_` prefix), served
//! over plain HTTP on `--healthz-bind-address`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What `/healthz` and `/metrics` report, written by the sync loop.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// When the last sync finished (rules written, conntrack cleaned, routes set).
    last_sync: Mutex<Option<SystemTime>>,
    duration: Gauge<f64, AtomicU64>,
    /// When the last sync's rules were in place in the kernel (0 until then).
    last_applied: Gauge<f64, AtomicU64>,
    syncs: Counter,
    rules: Gauge,
    service_ports: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let duration = Gauge::<f64, AtomicU64>::default();
        let last_applied = Gauge::<f64, AtomicU64>::default();
        let syncs = Counter::default();
        let rules = Gauge::default();
        let service_ports = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "skiff_proxy_sync_proxy_rules_duration_seconds",
            "How long the last sync took",
            duration.clone(),
        );
        registry.register(
            "skiff_proxy_sync_proxy_rules_last_timestamp_seconds",
            "When the last sync's rules were in place in the kernel (Unix time)",
            last_applied.clone(),
        );
        // Registered without the suffix: the encoder adds `_total` to a counter's samples.
        registry.register("skiff_proxy_syncs", "Completed syncs", syncs.clone());
        registry.register(
            "skiff_proxy_iptables_rules",
            "Rules in Skiff's chains",
            rules.clone(),
        );
        registry.register(
            "skiff_proxy_service_ports",
            "Service ports programmed",
            service_ports.clone(),
        );
        Arc::new(Metrics {
            registry,
            last_sync: Mutex::new(None),
            duration,
            last_applied,
            syncs,
            rules,
            service_ports,
        })
    }

    /// The rules were in place in the kernel at `at`.
    pub fn applied(&self, at: SystemTime) {
        self.last_applied.set(unix_seconds(at));
    }

    /// A sync finished at `at` after `took`, leaving `rules` rules for `service_ports` ports.
    pub fn synced(&self, at: SystemTime, took: Duration, rules: usize, service_ports: usize) {
        *self.last_sync.lock().expect("health lock") = Some(at);
        self.duration.set(took.as_secs_f64());
        self.syncs.inc();
        self.rules.set(rules as i64);
        self.service_ports.set(service_ports as i64);
    }

    /// When the last sync finished, if one has.
    pub fn last_sync(&self) -> Option<SystemTime> {
        *self.last_sync.lock().expect("health lock")
    }

    /// The `/metrics` text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The `/healthz` answer: 200 once a sync has finished (503 before), with kube-proxy's
    /// `lastUpdated` and `currentTime` in Unix seconds.
    pub fn healthz(&self) -> (u16, String) {
        let last = self.last_sync();
        let since = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        let body = serde_json::json!({
            "lastUpdated": last.map(since),
            "currentTime": since(SystemTime::now()),
        })
        .to_string();
        (if last.is_some() { 200 } else { 503 }, body)
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Serves `/healthz` and `/metrics` on `addr` until `shutdown` (logs and returns if it cannot
/// bind).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let for_health = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let m = for_health.clone();
                async move {
                    let (code, body) = m.healthz();
                    (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), body)
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        );
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot serve /healthz");
            return;
        }
    };
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_keep_their_names_and_healthz_waits_for_a_sync() {
        let m = Metrics::new();
        assert_eq!(m.healthz().0, 503);
        let text = m.render();
        assert!(text.contains("skiff_proxy_syncs_total 0\n"), "{text}");
        assert!(
            text.contains("skiff_proxy_sync_proxy_rules_last_timestamp_seconds 0.0\n"),
            "{text}"
        );

        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        m.applied(at);
        m.synced(at, Duration::from_millis(36), 4009, 1000);
        let text = m.render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in {text}"))
        };
        assert_eq!(value("skiff_proxy_syncs_total"), 1.0);
        assert_eq!(
            value("skiff_proxy_sync_proxy_rules_last_timestamp_seconds"),
            1_700_000_000.25
        );
        assert_eq!(
            value("skiff_proxy_sync_proxy_rules_duration_seconds"),
            0.036
        );
        assert_eq!(value("skiff_proxy_iptables_rules"), 4009.0);
        assert_eq!(value("skiff_proxy_service_ports"), 1000.0);
        let (code, body) = m.healthz();
        assert_eq!(code, 200);
        assert!(body.contains("\"lastUpdated\":1700000000"), "{body}");
    }
}
