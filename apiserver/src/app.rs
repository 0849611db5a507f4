//! `App`, the shared state of a running apiserver that every request handler reads: built by
//! [`crate::server`], used by [`crate::handlers`], [`crate::proxy`] and
//! [`crate::resource_metrics`].

use std::sync::Arc;

use crate::auth::{AUTHENTICATED, Authenticated, Authorizer, PeerIdentity, TokenFile, UserInfo};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Shared state of the running apiserver.
pub struct App {
    pub registry: Arc<Registry>,
    pub tokens: TokenFile,
    /// ServiceAccount tokens: the key they are signed with and the audiences accepted.
    pub sa_tokens: Option<crate::sa_tokens::Tokens>,
    pub authz: Arc<dyn Authorizer>,
    /// Requests without credentials run as `system:anonymous` (`--anonymous-auth`).
    pub anonymous: bool,
    /// Bearer tokens `<id>.<secret>` are checked against `bootstrap-token-<id>` Secrets
    /// (`--enable-bootstrap-token-auth`).
    pub bootstrap_token_auth: bool,
    pub metrics: Metrics,
    /// `host:port` clients should use, for `/api` discovery.
    pub advertise: String,
    /// Calls kubelets for `pods/log` and `pods/exec`.
    pub kubelet: crate::proxy::KubeletClient,
    /// Node and pod usage scraped from the kubelets (`metrics.k8s.io`).
    pub resource_metrics: crate::resource_metrics::MetricsStore,
    /// The audit policy and log (`--audit-policy-file`, `--audit-log-path`), when set.
    pub audit: Option<Arc<crate::audit::Auditor>>,
}

impl App {
    /// Who a request is: its bearer token's user (a token that names nobody is refused, even
    /// with anonymous requests allowed) or its client certificate's.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<&PeerIdentity>,
    ) -> Authenticated {
        if let Some(token) = crate::auth::bearer_token(headers) {
            return match self.authenticate_token(token) {
                Some(u) => Authenticated::User(Arc::new(u)),
                None => Authenticated::Invalid,
            };
        }
        match peer.and_then(|p| p.0.clone()) {
            Some(u) => Authenticated::User(u),
            None => Authenticated::None,
        }
    }

    /// The user a bearer token names (the token file, then bootstrap tokens, then
    /// ServiceAccount tokens), as a
    /// `TokenReview` answers it.
    pub fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
        if let Some(user) = self.tokens.lookup(token) {
            let mut user = user.clone();
            if !user.in_group(AUTHENTICATED) {
                user.groups.push(AUTHENTICATED.into());
            }
            return Some(user);
        }
        self.bootstrap_token_user(token)
            .or_else(|| self.service_account_user(token))
    }
}
