//! The namespace controller: a Terminating namespace (deleted, with the `kubernetes` finalizer
//! in `spec.finalizers`) has every namespaced object in it deleted; once nothing is left, the
//! finalizer is removed through `/finalize` and the apiserver deletes the namespace. The
//! resource types come from discovery, so every served type is emptied.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, key_of};

pub struct NamespaceController {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    resources: OnceCell<Vec<ApiResource>>,
}

impl NamespaceController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.namespaces.clone();
        ctx.namespaces.on_change(move |c| match c {
            Change::Applied { new, .. } if new.metadata.deletion_timestamp.is_some() => {
                q.add(key_of(*new))
            }
            Change::Applied { .. } | Change::Deleted(_) => {}
            Change::Resynced => all
                .list()
                .iter()
                .filter(|n| n.metadata.deletion_timestamp.is_some())
                .for_each(|n| q.add(key_of(n.as_ref()))),
        });
        Arc::new(NamespaceController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx,
            resources: OnceCell::new(),
        })
    }

    /// Namespaced types that can be listed and deleted (discovered once).
    async fn resources(&self) -> Result<&Vec<ApiResource>> {
        self.resources
            .get_or_try_init(|| async {
                let discovery = Discovery::new(self.client.clone()).run().await?;
                let mut out = Vec::new();
                for group in discovery.groups() {
                    for (ar, caps) in group.recommended_resources() {
                        if caps.scope == Scope::Namespaced
                            && caps.supports_operation(verbs::LIST)
                            && caps.supports_operation(verbs::DELETE)
                            && !ar.plural.contains('/')
                        {
                            out.push(ar);
                        }
                    }
                }
                Ok::<_, kube::Error>(out)
            })
            .await
            .map_err(Into::into)
    }
}

impl Controller for NamespaceController {
    const SERVICE_ACCOUNT: &'static str = "namespace-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for NamespaceController {
    const NAME: &'static str = "namespace";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(ns) = self.ctx.namespaces.get(None, key) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == "kubernetes") {
            return Ok(None);
        }
        let mut remaining = 0usize;
        for ar in self.resources().await? {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), key, ar);
            let list = match api.list_metadata(&ListParams::default()).await {
                Ok(l) => l,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => continue,
                Err(e) => return Err(e.into()),
            };
            for obj in &list.items {
                remaining += 1;
                if obj.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match api
                    .delete(&obj.name_any(), &DeleteParams::background())
                    .await
                {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if remaining > 0 {
            tracing::debug!(namespace = %key, remaining, "waiting for the namespace's objects to go");
            return Ok(Some(Duration::from_secs(1)));
        }
        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != "kubernetes").collect();
        let body = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": key, "resourceVersion": ns.metadata.resource_version },
            "spec": { "finalizers": rest },
        });
        let request = kube::core::Request::new(Namespace::url_path(&(), None)).replace_subresource(
            "finalize",
            key,
            &PostParams::default(),
            serde_json::to_vec(&body).unwrap_or_default(),
        );
        let request = request.map_err(kube::Error::BuildRequest)?;
        match self.client.request_text(request).await {
            Ok(_) => {
                tracing::info!(namespace = %key, "namespace emptied; finalized");
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
