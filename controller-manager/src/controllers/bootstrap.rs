//! The bootstrap-token controllers (kube-controller-manager's `bootstrapsigner` and
//! `tokencleaner`, off unless `--controllers` names them, as kubeadm does):
//! - [`BootstrapSigner`] keeps `kube-public/cluster-info` signed: one `jws-kubeconfig-<id>`
//!   key per valid token marked `usage-bootstrap-signing`, so that `kubeadm join
//!   --discovery-token-ca-cert-hash` can tell the ConfigMap came from someone holding the token;
//! - [`TokenCleaner`] deletes bootstrap-token Secrets once their `expiration` has passed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use skiff_api::bootstrap_token::{self as bt, TokenSecret};
use skiff_client::informer::Change;

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;

/// A Secret in the form the shared rules read.
pub fn token_secret(s: &Secret) -> TokenSecret {
    TokenSecret {
        name: s.name_any(),
        type_: s.type_.clone().unwrap_or_default(),
        deleting: s.metadata.deletion_timestamp.is_some(),
        data: s
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
            .collect(),
    }
}

/// How long until `now` passes `at`, at least a second (so that a deadline just reached is
/// looked at again rather than spun on).
fn until(at: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    let left = at.as_millisecond().saturating_sub(now.as_millisecond());
    Duration::from_millis(left.max(0) as u64 + 1000)
}

/// The `cluster-info` data with exactly one signature per signing token (`tokens`: id and
/// secret), or `None` when what is there is already that. Without a `kubeconfig` key there is
/// nothing to sign and nothing is changed.
pub fn signed_data(
    data: &BTreeMap<String, String>,
    tokens: &[(String, String)],
) -> Option<BTreeMap<String, String>> {
    let content = data.get(bt::KUBECONFIG_KEY)?;
    let mut out: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(bt::JWS_KEY_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (id, secret) in tokens {
        out.insert(
            format!("{}{id}", bt::JWS_KEY_PREFIX),
            bt::detached_signature(content, id, secret),
        );
    }
    (&out != data).then_some(out)
}

pub struct BootstrapSigner {
    ctx: Arc<Context>,
    client: Client,
}

/// The signer's one work-queue key.
const CLUSTER_INFO_KEY: &str = "kube-public/cluster-info";

impl Controller for BootstrapSigner {
    const SERVICE_ACCOUNT: &'static str = "bootstrap-signer";
    const ENABLED_BY_DEFAULT: bool = false;

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        // Any change to a token or to the ConfigMap may change the signatures.
        let q = queue.clone();
        ctx.bootstrap_token_secrets()
            .on_change(move |_| q.add(CLUSTER_INFO_KEY));
        let q = queue;
        ctx.cluster_info()
            .on_change(move |_| q.add(CLUSTER_INFO_KEY));
        Arc::new(BootstrapSigner {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx: ctx.clone(),
        })
    }
}

impl Reconciler for BootstrapSigner {
    const NAME: &'static str = "bootstrapsigner";

    async fn reconcile(&self, _key: &str) -> Result<Option<Duration>> {
        let Some(cm) = self
            .ctx
            .cluster_info()
            .get(Some(bt::CLUSTER_INFO_NAMESPACE), bt::CLUSTER_INFO)
        else {
            return Ok(None);
        };
        let now = jiff::Timestamp::now();
        let mut tokens = Vec::new();
        let mut next_expiry: Option<jiff::Timestamp> = None;
        for s in self.ctx.bootstrap_token_secrets().list_in(bt::NAMESPACE) {
            let t = token_secret(&s);
            if t.type_ != bt::SECRET_TYPE {
                continue;
            }
            if let Ok(token) = t.for_signing(now) {
                // Its signature must go when it expires.
                if let Some(at) = t.expiration() {
                    next_expiry = Some(next_expiry.map_or(at, |n| n.min(at)));
                }
                if !tokens.iter().any(|(id, _)| *id == token.0) {
                    tokens.push(token);
                }
            }
        }
        let again = next_expiry.map(|at| until(at, now));
        let data = cm.data.clone().unwrap_or_default();
        let Some(signed) = signed_data(&data, &tokens) else {
            return Ok(again);
        };
        let mut cm = (*cm).clone();
        cm.data = Some(signed);
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), bt::CLUSTER_INFO_NAMESPACE);
        match api
            .replace(bt::CLUSTER_INFO, &PostParams::default(), &cm)
            .await
        {
            Ok(_) => Ok(again),
            // A newer ConfigMap is on its way through the watch, or it is gone: the event
            // queues another pass (as upstream ignores these two).
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(again),
            Err(e) => Err(e.into()),
        }
    }
}

pub struct TokenCleaner {
    ctx: Arc<Context>,
    client: Client,
}

impl Controller for TokenCleaner {
    const SERVICE_ACCOUNT: &'static str = "token-cleaner";
    const ENABLED_BY_DEFAULT: bool = false;

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let informer = ctx.bootstrap_token_secrets();
        let all = informer.clone();
        informer.on_change(move |c| match c {
            Change::Applied { new, .. } => queue.add(new.name_any()),
            Change::Deleted(_) => {}
            Change::Resynced => all
                .list_in(bt::NAMESPACE)
                .iter()
                .for_each(|s| queue.add(s.name_any())),
        });
        Arc::new(TokenCleaner {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx: ctx.clone(),
        })
    }
}

impl Reconciler for TokenCleaner {
    const NAME: &'static str = "tokencleaner";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(secret) = self
            .ctx
            .bootstrap_token_secrets()
            .get(Some(bt::NAMESPACE), key)
        else {
            return Ok(None);
        };
        let t = token_secret(&secret);
        if t.type_ != bt::SECRET_TYPE || t.deleting {
            return Ok(None);
        }
        let now = jiff::Timestamp::now();
        if !t.expired(now) {
            return Ok(t.expiration().map(|at| until(at, now)));
        }
        tracing::info!(secret = %key, "deleting expired bootstrap token");
        let api: Api<Secret> = Api::namespaced(self.client.clone(), bt::NAMESPACE);
        let dp = DeleteParams {
            // Only the Secret that expired: not one made again under the same name.
            preconditions: secret.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(key, &dp).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cluster_info_gets_one_signature_per_token_and_loses_stale_ones() {
        let kubeconfig = "apiVersion: v1\nkind: Config\n";
        let tokens = vec![("abcdef".to_string(), "0123456789abcdef".to_string())];
        let signed = signed_data(
            &data(&[("kubeconfig", kubeconfig), ("jws-kubeconfig-zzzzzz", "old")]),
            &tokens,
        )
        .unwrap();
        assert_eq!(
            signed,
            data(&[
                ("kubeconfig", kubeconfig),
                (
                    "jws-kubeconfig-abcdef",
                    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..vH_kT4yiol-nrAWgjfCYqvum5wsKETXe0S7OOp1VgnE"
                ),
            ])
        );
        // Already signed: nothing to write.
        assert_eq!(signed_data(&signed, &tokens), None);
        // No kubeconfig: nothing to sign.
        assert_eq!(signed_data(&data(&[("other", "x")]), &tokens), None);
        // No tokens: signatures go.
        assert_eq!(
            signed_data(&signed, &[]),
            Some(data(&[("kubeconfig", kubeconfig)]))
        );
    }
}
