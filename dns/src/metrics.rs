//! `/metrics` (queries by transport, zone and response code, their duration, cache hits; in
//! Prometheus' text format, CoreDNS's names with a `skiff_dns_` prefix), `/healthz` and
//! `/readyz` (200 once the Services and EndpointSlices are listed), served over plain HTTP on
//! `--healthz-bind-address` as the proxy serves its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(String, String)>;

/// What `/metrics` and `/readyz` report.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    responses: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
    cache_hits: Counter,
    cache_misses: Counter,
    ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let requests = Family::<Labels, Counter>::default();
        let responses = Family::<Labels, Counter>::default();
        let duration: Family<Labels, Histogram> =
            Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let mut registry = Registry::default();
        // Registered without the suffix: the encoder adds `_total` to a counter's samples.
        registry.register(
            "skiff_dns_requests",
            "DNS queries, by transport (proto) and zone (cluster, forward)",
            requests.clone(),
        );
        registry.register(
            "skiff_dns_responses",
            "DNS responses, by response code",
            responses.clone(),
        );
        registry.register(
            "skiff_dns_request_duration_seconds",
            "Time to answer a query, by zone",
            duration.clone(),
        );
        registry.register(
            "skiff_dns_cache_hits",
            "Forwarded queries answered from the cache",
            cache_hits.clone(),
        );
        registry.register(
            "skiff_dns_cache_misses",
            "Forwarded queries sent upstream",
            cache_misses.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            responses,
            duration,
            cache_hits,
            cache_misses,
            ready: AtomicBool::new(false),
        })
    }

    /// A query over `proto` for `zone` was answered with `rcode` after `took`.
    pub fn request(&self, proto: &str, zone: &str, rcode: ResponseCode, took: Duration) {
        self.requests
            .get_or_create(&vec![
                ("proto".into(), proto.into()),
                ("zone".into(), zone.into()),
            ])
            .inc();
        self.responses
            .get_or_create(&vec![("rcode".into(), rcode_name(rcode))])
            .inc();
        self.duration
            .get_or_create(&vec![("zone".into(), zone.into())])
            .observe(took.as_secs_f64());
    }

    /// A forwarded query was answered from the cache (`true`) or upstream.
    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    /// The caches are filled: `/readyz` answers 200 from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The `/metrics` text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// 25 µs to about 6 s: cluster answers take microseconds, forwarded ones up to the upstream
/// timeout.
fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000025, 4.0, 10,
    ))
}

/// A response code as CoreDNS's metrics and dig spell it.
fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let for_ready = metrics.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let m = for_ready.clone();
                async move {
                    if m.is_ready() {
                        (StatusCode::OK, "ok")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Services and EndpointSlices are not listed yet",
                        )
                    }
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
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

/// Binds the health endpoint (a clear error when the port is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_zone_and_rcode() {
        let m = Metrics::new();
        m.request(
            "udp",
            "cluster",
            ResponseCode::NXDomain,
            Duration::from_micros(30),
        );
        m.cache(true);
        let text = m.render();
        assert!(
            text.contains("skiff_dns_requests_total{proto=\"udp\",zone=\"cluster\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("skiff_dns_responses_total{rcode=\"NXDOMAIN\"} 1"),
            "{text}"
        );
        assert!(text.contains("skiff_dns_cache_hits_total 1"), "{text}");
        assert!(!m.is_ready());
        m.set_ready();
        assert!(m.is_ready());
    }
}
