//! `App`, the shared state of a running apiserver that every request handler reads: built by
//! [`crate::server`], used by [`crate::handlers`], [`crate::proxy`] and
//! [`crate::resource_metrics`].

use std::sync::Arc;

use crate::auth::{AUTHENTICATED, Authorizer, TokenFile, UserInfo};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Shared state of the running apiserver.
pub struct App {
    pub registry: Arc<Registry>,
    pub tokens: TokenFile,
    pub authz: Box<dyn Authorizer>,
    /// Requests without credentials run as `system:anonymous` (`--anonymous-auth`).
    pub anonymous: bool,
    pub metrics: Metrics,
    /// `host:port` clients should use, for `/api` discovery.
    pub advertise: String,
    /// Calls kubelets for `pods/log` and `pods/exec`.
    pub kubelet: crate::proxy::KubeletClient,
    /// Node and pod usage scraped from the kubelets (`metrics.k8s.io`).
    pub resource_metrics: crate::resource_metrics::MetricsStore,
}

impl App {
    /// The user a bearer token names, as a `TokenReview` answers it.
    pub fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
        let mut user = self.tokens.lookup(token)?.clone();
        if !user.in_group(AUTHENTICATED) {
            user.groups.push(AUTHENTICATED.into());
        }
        Some(user)
    }
}
