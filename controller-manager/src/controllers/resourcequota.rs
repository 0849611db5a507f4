//! The resource quota controller: keeps each ResourceQuota's `status.hard` equal to its
//! `spec.hard` and recounts `status.used` from the objects of its namespace, so that usage
//! falls when pods are deleted or finish (admission only ever adds to it). As upstream's, it
//! syncs a quota when it is created or its spec changes, the quotas of a namespace when one of
//! its pods is deleted or finishes or one of its Services is deleted, and every quota every
//! five minutes (`--resource-quota-sync-period`), which also catches the other kinds.
//!
//! The usage arithmetic is the one admission charges with ([`skiff_api::quota`]). Objects are
//! listed from the apiserver at each sync: the shared pod cache keeps too little of a pod
//! (limits, scopes' fields), and quotas may count any kind.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceQuota, Service};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use skiff_api::quota::{self, ResourceList};
use skiff_client::informer::{Change, Informer, key_of, split_key};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::pods::CachedPod;
use crate::workqueue::WorkQueue;

/// kube-controller-manager's default `--resource-quota-sync-period`.
pub const FULL_RESYNC: Duration = Duration::from_secs(300);

pub struct ResourceQuotaController {
    client: kube::Client,
    quotas: Arc<Informer<ResourceQuota>>,
}

/// Whether a quota needs a recount now: new, its spec changed, or its status does not yet
/// cover its spec (upstream's add and update handlers).
fn needs_sync(old: Option<&ResourceQuota>, new: &ResourceQuota) -> bool {
    let hard = |q: &ResourceQuota| q.spec.as_ref().and_then(|s| s.hard.clone());
    let Some(old) = old else {
        return true;
    };
    if old.spec != new.spec {
        return true;
    }
    let status = new.status.as_ref();
    let status_hard = status.and_then(|s| s.hard.clone());
    let used = status.and_then(|s| s.used.clone()).unwrap_or_default();
    let spec_hard = hard(new).unwrap_or_default();
    status_hard.unwrap_or_default() != spec_hard || spec_hard.keys().any(|k| !used.contains_key(k))
}

fn terminal(pod: &CachedPod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// Queues every quota of `ns`.
fn queue_namespace(quotas: &Informer<ResourceQuota>, queue: &WorkQueue, ns: Option<&str>) {
    let Some(ns) = ns else {
        return;
    };
    for q in quotas.list_in(ns) {
        queue.add(key_of(q.as_ref()));
    }
}

impl Controller for ResourceQuotaController {
    const SERVICE_ACCOUNT: &'static str = "resourcequota-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        // Only this controller reads quotas: its own informer rather than a shared one.
        let quotas: Arc<Informer<ResourceQuota>> = Informer::new(Api::all(ctx.client.clone()));
        let (all, q) = (quotas.clone(), queue.clone());
        quotas.on_change(move |c| match c {
            Change::Applied { old, new } if needs_sync(*old, new) => q.add(key_of(*new)),
            Change::Applied { .. } | Change::Deleted(_) => {}
            Change::Resynced => all.list().iter().for_each(|o| q.add(key_of(o.as_ref()))),
        });
        let (by_ns, q) = (quotas.clone(), queue.clone());
        ctx.pods.on_change(move |c| match c {
            Change::Deleted(p) => queue_namespace(&by_ns, &q, p.metadata.namespace.as_deref()),
            Change::Applied {
                old: Some(old),
                new,
            } if terminal(new) && !terminal(old) => {
                queue_namespace(&by_ns, &q, new.metadata.namespace.as_deref())
            }
            _ => {}
        });
        let (by_ns, q) = (quotas.clone(), queue.clone());
        ctx.services.on_change(move |c: &Change<'_, Service>| {
            if let Change::Deleted(s) = c {
                queue_namespace(&by_ns, &q, s.metadata.namespace.as_deref())
            }
        });
        tokio::spawn(quotas.clone().run(ctx.shutdown.clone()));
        let (all, stop) = (quotas.clone(), ctx.shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(FULL_RESYNC) => {}
                    _ = stop.cancelled() => return,
                }
                for q in all.list() {
                    queue.add(key_of(q.as_ref()));
                }
            }
        });
        Arc::new(ResourceQuotaController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            quotas,
        })
    }
}

/// How to list a kind a quota counts, from the resource table (the version objects are
/// served in first); `None` for kinds Skiff does not serve (custom resources).
fn api_resource(group: &str, plural: &str) -> Option<ApiResource> {
    let served = || {
        skiff_api::resources::all()
            .iter()
            .filter(|r| r.group == group && r.plural == plural && r.namespaced)
    };
    let info = served()
        .find(|r| r.version == r.storage_version)
        .or_else(|| served().next())?;
    Some(ApiResource {
        group: info.group.to_string(),
        version: info.version.to_string(),
        api_version: info.api_version(),
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    })
}

impl ResourceQuotaController {
    /// What the objects of `ns` use of `hard` under the quota's scopes.
    async fn usage(&self, ns: &str, quota: &Value, hard: &ResourceList) -> Result<ResourceList> {
        let scopes = quota::scopes(quota);
        let kinds: BTreeSet<(String, String)> =
            hard.keys().filter_map(|k| quota::kind_of(k)).collect();
        let now = jiff::Timestamp::now();
        let mut used = ResourceList::new();
        for (group, plural) in kinds {
            let Some(ar) = api_resource(&group, &plural) else {
                continue;
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            for obj in api.list(&ListParams::default()).await?.items {
                let obj = serde_json::to_value(&obj).unwrap_or_default();
                if let Some(tracked) = quota::matching(hard.keys(), &scopes, &group, &plural, &obj)
                {
                    let u = quota::usage(&group, &plural, &obj, now);
                    used = quota::add(&used, &quota::mask(&u, &tracked));
                }
            }
        }
        // Every tracked resource has a value, zero when nothing uses it.
        Ok(hard
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    used.get(k).copied().unwrap_or(skiff_api::Quantity::ZERO),
                )
            })
            .collect())
    }
}

impl Reconciler for ResourceQuotaController {
    const NAME: &'static str = "resourcequota";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        self.quotas.synced().await;
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(cached) = self.quotas.get(Some(ns), name) else {
            return Ok(None);
        };
        let value = serde_json::to_value(cached.as_ref()).unwrap_or_default();
        let spec_hard = value.pointer("/spec/hard").cloned().unwrap_or(json!({}));
        let hard = quota::resource_list(Some(&spec_hard));
        let used = self.usage(ns, &value, &hard).await?;
        let current_hard = quota::resource_list(value.pointer("/status/hard"));
        let current_used = quota::resource_list(value.pointer("/status/used"));
        if current_hard == hard && current_used == used {
            return Ok(None);
        }
        // Conditional on the quota read: a charge admission made meanwhile is a conflict, and
        // the recount starts again rather than overwriting it.
        let mut status = ResourceQuota {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                resource_version: cached.resource_version(),
                ..Default::default()
            },
            ..Default::default()
        };
        status.status = serde_json::from_value(json!({
            "hard": spec_hard,
            "used": quota::to_json(&used),
        }))
        .ok();
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), ns);
        tracing::debug!(quota = %key, used = %quota::pretty(&used), "recounted quota usage");
        match api
            .replace_status(name, &PostParams::default(), &status)
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some(Duration::from_millis(200))),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rq(hard: Value, status: Value) -> ResourceQuota {
        serde_json::from_value(json!({"metadata": {"name": "q", "namespace": "ns"},
                                      "spec": {"hard": hard}, "status": status}))
        .unwrap()
    }

    #[test]
    fn a_quota_is_recounted_when_new_or_when_its_spec_changes() {
        let synced = rq(
            json!({"pods": "2"}),
            json!({"hard": {"pods": "2"}, "used": {"pods": "1"}}),
        );
        assert!(needs_sync(None, &synced));
        assert!(
            !needs_sync(Some(&synced), &synced),
            "a charge needs no recount"
        );
        let raised = rq(
            json!({"pods": "3"}),
            json!({"hard": {"pods": "2"}, "used": {"pods": "1"}}),
        );
        assert!(needs_sync(Some(&synced), &raised));
        let unknown = rq(json!({"pods": "2"}), json!({}));
        assert!(needs_sync(Some(&unknown), &unknown));
        assert_eq!(
            api_resource("apps", "deployments").map(|a| a.api_version),
            Some("apps/v1".to_string())
        );
    }
}
