//! `App`, the shared state of a running apiserver that every request handler reads: built by
//! [`crate::server`], used by [`crate::handlers`], [`crate::proxy`] and
//! [`crate::resource_metrics`].

use std::sync::Arc;

use crate::auth::{Authorizer, TokenFile};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Shared state of the running apiserver.
pub struct App {
    pub registry: Arc<Registry>,
    pub tokens: TokenFile,
    pub authz: Box<dyn Authorizer>,
    pub metrics: Metrics,
    /// `host:port` clients should use, for `/api` discovery.
    pub advertise: String,
    /// Calls kubelets for `pods/log` and `pods/exec`.
    pub kubelet: crate::proxy::KubeletClient,
    /// Node and pod usage scraped from the kubelets (`metrics.k8s.io`).
    pub resource_metrics: crate::resource_metrics::MetricsStore,
}
