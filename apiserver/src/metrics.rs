//! Prometheus metrics served at `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What a request was, for its metrics: every field comes from a fixed set (a verb upstream's
/// `apiserver_request_total` knows, a resource the server serves, a path it routes), never from
/// the raw request, so a client cannot grow the series without bound.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub struct RequestKind {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    /// The subresource, or for a non-resource request its path (as kube-apiserver labels it).
    pub subresource: &'static str,
    /// "namespace", "resource" (a named cluster-scoped object), "cluster", or "" for a
    /// non-resource request.
    pub scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
    scope: &'static str,
    component: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
    scope: &'static str,
    component: &'static str,
}

/// How authentication went, as kube-apiserver's `authentication_attempts{result}` says it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AuthResult {
    /// Credentials named a user (or anonymous requests are allowed).
    Success,
    /// No credentials that any authenticator accepts.
    Failure,
    /// Credentials were presented but are invalid (an unknown or expired token).
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The verbs upstream's request metrics report; anything else is counted as [`OTHER_VERB`].
const VALID_VERBS: &[&str] = &[
    "APPLY",
    "CONNECT",
    "CREATE",
    "DELETE",
    "DELETECOLLECTION",
    "GET",
    "LIST",
    "PATCH",
    "POST",
    "PROXY",
    "PUT",
    "UPDATE",
    "WATCH",
    "WATCHLIST",
];

/// The verb label for methods and verbs outside [`VALID_VERBS`].
pub const OTHER_VERB: &str = "other";

/// The reported verb, from the request's own verb (a resource verb such as "list", or an HTTP
/// method for a non-resource request), upper-cased as kube-apiserver reports it: the legacy
/// WATCHLIST is WATCH, a HEAD is a GET, and anything not in the fixed set is "other".
pub fn clean_verb(verb: &str) -> &'static str {
    let upper = verb.to_ascii_uppercase();
    match upper.as_str() {
        "WATCHLIST" => "WATCH",
        "HEAD" => "GET",
        v => VALID_VERBS
            .iter()
            .find(|known| **known == v)
            .copied()
            .unwrap_or(OTHER_VERB),
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    authentication: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        let authentication = Family::<ResultLabel, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, API resource and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb and API resource",
            latency.clone(),
        );
        registry.register(
            "authentication_attempts",
            "Counter of authenticated attempts",
            authentication.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            authentication,
        }
    }
}

impl Metrics {
    /// Counts an authenticated request (or one that needs no authentication, such as a health
    /// check) and its latency.
    pub fn observe(&self, kind: &RequestKind, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: kind.verb,
                group: kind.group,
                version: kind.version,
                resource: kind.resource,
                subresource: kind.subresource,
                scope: kind.scope,
                component: "apiserver",
                code,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                verb: kind.verb,
                group: kind.group,
                version: kind.version,
                resource: kind.resource,
                subresource: kind.subresource,
                scope: kind.scope,
                component: "apiserver",
            })
            .observe(took.as_secs_f64());
    }

    /// Counts an authentication attempt. A request that fails it is counted only here: what
    /// it asked for is the caller's to choose, and unauthenticated callers choose nothing.
    pub fn authenticated(&self, result: AuthResult) {
        let result = match result {
            AuthResult::Success => "success",
            AuthResult::Failure => "failure",
            AuthResult::Error => "error",
        };
        self.authentication
            .get_or_create(&ResultLabel { result })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_cleaned_to_a_fixed_set() {
        for (verb, want) in [
            ("get", "GET"),
            ("list", "LIST"),
            ("watch", "WATCH"),
            ("watchlist", "WATCH"),
            ("deletecollection", "DELETECOLLECTION"),
            ("POST", "POST"),
            ("HEAD", "GET"),
            ("OPTIONS", "other"),
            ("PROPFIND", "other"),
            ("X-RANDOM-1234", "other"),
            ("", "other"),
        ] {
            assert_eq!(clean_verb(verb), want, "{verb}");
        }
    }

    #[test]
    fn random_methods_add_no_series() {
        let m = Metrics::default();
        for i in 0..1000 {
            let kind = RequestKind {
                verb: clean_verb(&format!("M{i}")),
                ..RequestKind::default()
            };
            m.observe(&kind, 405, Duration::from_millis(1));
        }
        let body = m.render();
        let text = futures::executor::block_on(axum::body::to_bytes(body.into_body(), usize::MAX))
            .unwrap();
        let text = String::from_utf8(text.to_vec()).unwrap();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .collect();
        assert_eq!(series.len(), 1, "{series:#?}");
        assert!(series[0].contains("verb=\"other\""), "{}", series[0]);
    }
}
