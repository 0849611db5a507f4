//! The storage protection controllers, as kube-controller-manager's `pvc-protection` and
//! `pv-protection`: a claim being deleted keeps its `kubernetes.io/pvc-protection` finalizer
//! while a pod that has not finished uses it, and a volume being deleted keeps
//! `kubernetes.io/pv-protection` while it is Bound. The apiserver adds both finalizers at
//! creation (`StorageObjectInUseProtection` admission).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use skiff_client::informer::{Change, Informer, key_of, split_key};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

fn has_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

fn without_finalizer(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) {
    if let Some(list) = meta.finalizers.as_mut() {
        list.retain(|x| x != f);
    }
}

/// Whether `pod` uses claim `name` and may still run (upstream counts a pod until it has
/// finished, whatever its node).
pub fn pod_uses_claim(pod: &Pod, name: &str) -> bool {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !finished
        && pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == name)
            })
}

pub struct PvcProtection {
    client: kube::Client,
    claims: Arc<Informer<PersistentVolumeClaim>>,
}

impl Controller for PvcProtection {
    const SERVICE_ACCOUNT: &'static str = "pvc-protection-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let claims = ctx.persistent_volume_claims();
        let (q, all) = (queue.clone(), claims.clone());
        claims.on_change(move |c| match c {
            Change::Applied { new, .. } if new.metadata.deletion_timestamp.is_some() => {
                q.add(key_of(*new))
            }
            Change::Applied { .. } | Change::Deleted(_) => {}
            Change::Resynced => all
                .list()
                .iter()
                .filter(|c| c.metadata.deletion_timestamp.is_some())
                .for_each(|c| q.add(key_of(c.as_ref()))),
        });
        // A pod that goes away or finishes may free the claims being deleted in its namespace.
        let (q, all) = (queue, claims.clone());
        ctx.pods.on_change(move |c| {
            let ns = match c {
                Change::Deleted(p) => p.metadata.namespace.clone(),
                Change::Applied { new, .. }
                    if new
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .is_some_and(|p| p == "Succeeded" || p == "Failed") =>
                {
                    new.metadata.namespace.clone()
                }
                _ => None,
            };
            if let Some(ns) = ns {
                all.list_in(&ns)
                    .iter()
                    .filter(|c| c.metadata.deletion_timestamp.is_some())
                    .for_each(|c| q.add(key_of(c.as_ref())));
            }
        });
        Arc::new(PvcProtection {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            claims,
        })
    }
}

impl Reconciler for PvcProtection {
    const NAME: &'static str = "pvc-protection";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(claim) = self.claims.get(Some(ns), name) else {
            return Ok(None);
        };
        if claim.metadata.deletion_timestamp.is_none()
            || !has_finalizer(&claim.metadata, PVC_PROTECTION)
        {
            return Ok(None);
        }
        // The pod cache keeps no volumes; a claim being deleted is rare enough to ask.
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let in_use = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|p| pod_uses_claim(p, name));
        if in_use {
            tracing::debug!(claim = %key, "claim being deleted is still used by a pod");
            return Ok(Some(Duration::from_secs(10)));
        }
        let mut body = (*claim).clone();
        without_finalizer(&mut body.metadata, PVC_PROTECTION);
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        match api.replace(name, &PostParams::default(), &body).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

pub struct PvProtection {
    client: kube::Client,
    volumes: Arc<Informer<PersistentVolume>>,
}

impl Controller for PvProtection {
    const SERVICE_ACCOUNT: &'static str = "pv-protection-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let volumes = ctx.persistent_volumes();
        let all = volumes.clone();
        volumes.on_change(move |c| match c {
            Change::Applied { new, .. } if new.metadata.deletion_timestamp.is_some() => {
                queue.add(key_of(*new))
            }
            Change::Applied { .. } | Change::Deleted(_) => {}
            Change::Resynced => all
                .list()
                .iter()
                .filter(|v| v.metadata.deletion_timestamp.is_some())
                .for_each(|v| queue.add(key_of(v.as_ref()))),
        });
        Arc::new(PvProtection {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            volumes,
        })
    }
}

impl Reconciler for PvProtection {
    const NAME: &'static str = "pv-protection";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(pv) = self.volumes.get(None, key) else {
            return Ok(None);
        };
        if pv.metadata.deletion_timestamp.is_none() || !has_finalizer(&pv.metadata, PV_PROTECTION) {
            return Ok(None);
        }
        let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            return Ok(None);
        }
        let mut body = (*pv).clone();
        without_finalizer(&mut body.metadata, PV_PROTECTION);
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api
            .replace(&pv.name_any(), &PostParams::default(), &body)
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_unfinished_pods_that_mount_the_claim_use_it() {
        let pod = |phase: &str, claim: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        assert!(pod_uses_claim(&pod("Running", "data"), "data"));
        assert!(pod_uses_claim(&pod("Pending", "data"), "data"));
        assert!(!pod_uses_claim(&pod("Succeeded", "data"), "data"));
        assert!(!pod_uses_claim(&pod("Running", "other"), "data"));
    }
}
