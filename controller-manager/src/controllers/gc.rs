//! The garbage collector, driven by `ownerReferences`:
//!
//! - **Background**: a dependent whose owners are all gone (checked against the cache, then
//!   confirmed with a live read, so a slow watch never deletes a healthy object) is deleted;
//!   owners that are gone are dropped from a dependent that still has others.
//! - **Foreground**: an owner being deleted with the `foregroundDeletion` finalizer has its
//!   dependents deleted first; when none that block (`blockOwnerDeletion`) remain, the
//!   finalizer is removed and the owner goes.
//! - **Orphan**: an owner being deleted with the `orphan` finalizer has its reference removed
//!   from every dependent, then the finalizer.
//!
//! It covers the kinds Skiff's controllers own and create: Deployments, ReplicaSets,
//! ReplicationControllers, DaemonSets, StatefulSets, Services, Jobs and CronJobs as owners;
//! ReplicaSets, Pods, Endpoints, EndpointSlices, ControllerRevisions, Jobs and
//! PersistentVolumeClaims (a StatefulSet's, under its retention policy) as dependents.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Endpoints, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, Informer, Object};

/// The kinds the collector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    ReplicaSet,
    Deployment,
    ReplicationController,
    Service,
    Endpoints,
    EndpointSlice,
    Job,
    CronJob,
    DaemonSet,
    ControllerRevision,
    StatefulSet,
    PersistentVolumeClaim,
}

impl Kind {
    pub fn parse(kind: &str) -> Option<Kind> {
        Some(match kind {
            "Pod" => Kind::Pod,
            "ReplicaSet" => Kind::ReplicaSet,
            "Deployment" => Kind::Deployment,
            "ReplicationController" => Kind::ReplicationController,
            "Service" => Kind::Service,
            "Endpoints" => Kind::Endpoints,
            "EndpointSlice" => Kind::EndpointSlice,
            "Job" => Kind::Job,
            "CronJob" => Kind::CronJob,
            "DaemonSet" => Kind::DaemonSet,
            "ControllerRevision" => Kind::ControllerRevision,
            "StatefulSet" => Kind::StatefulSet,
            "PersistentVolumeClaim" => Kind::PersistentVolumeClaim,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::ReplicationController => "ReplicationController",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::DaemonSet => "DaemonSet",
            Kind::ControllerRevision => "ControllerRevision",
            Kind::StatefulSet => "StatefulSet",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }

    fn api_resource(self) -> ApiResource {
        match self {
            Kind::Pod => ApiResource::erase::<Pod>(&()),
            Kind::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::ReplicationController => ApiResource::erase::<ReplicationController>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::Endpoints => ApiResource::erase::<Endpoints>(&()),
            Kind::EndpointSlice => ApiResource::erase::<EndpointSlice>(&()),
            Kind::Job => ApiResource::erase::<Job>(&()),
            Kind::CronJob => ApiResource::erase::<CronJob>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Kind::ControllerRevision => ApiResource::erase::<ControllerRevision>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::PersistentVolumeClaim => ApiResource::erase::<PersistentVolumeClaim>(&()),
        }
    }
}

const DEPENDENTS: &[Kind] = &[
    Kind::Pod,
    Kind::ReplicaSet,
    Kind::Endpoints,
    Kind::EndpointSlice,
    Kind::ControllerRevision,
    Kind::Job,
    Kind::PersistentVolumeClaim,
];

/// A dependent and the references it holds.
#[derive(Debug, Clone)]
struct Dependent {
    kind: Kind,
    meta: ObjectMeta,
}

pub struct GarbageCollector {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
}

fn meta_of<K: Object>(informer: &Informer<K>, ns: &str, name: &str) -> Option<ObjectMeta> {
    informer.get(Some(ns), name).map(|o| o.meta().clone())
}

fn item_key(prefix: &str, kind: Kind, meta: &ObjectMeta) -> String {
    format!(
        "{prefix}/{}/{}/{}",
        kind.name(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

impl GarbageCollector {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        fn watch_dependents<K: Object>(informer: &Arc<Informer<K>>, kind: Kind, q: Arc<WorkQueue>) {
            let all = informer.clone();
            informer.on_change(move |c| match c {
                Change::Applied { old, new } => {
                    let refs = &new.meta().owner_references;
                    if refs.as_ref().is_some_and(|r| !r.is_empty())
                        && old.is_none_or(|o| &o.meta().owner_references != refs)
                    {
                        q.add(item_key("dep", kind, new.meta()));
                    }
                }
                Change::Deleted(_) => {}
                Change::Resynced => {
                    for o in all.list() {
                        if o.meta()
                            .owner_references
                            .as_ref()
                            .is_some_and(|r| !r.is_empty())
                        {
                            q.add(item_key("dep", kind, o.meta()));
                        }
                    }
                }
            });
        }
        fn watch_owners<K: Object>(informer: &Arc<Informer<K>>, kind: Kind, q: Arc<WorkQueue>) {
            informer.on_change(move |c| match c {
                Change::Applied { new, .. } => {
                    let m = new.meta();
                    if m.deletion_timestamp.is_some()
                        && m.finalizers
                            .iter()
                            .flatten()
                            .any(|f| f == "foregroundDeletion" || f == "orphan")
                    {
                        q.add(item_key("own", kind, m));
                    }
                }
                // The owner is gone: its dependents are looked at (by uid, in `reconcile`).
                Change::Deleted(o) => q.add(format!(
                    "gone/{}",
                    o.meta().uid.as_deref().unwrap_or_default()
                )),
                Change::Resynced => {}
            });
        }
        watch_dependents(&ctx.pods, Kind::Pod, queue.clone());
        watch_dependents(&ctx.replicasets, Kind::ReplicaSet, queue.clone());
        watch_dependents(&ctx.endpoints, Kind::Endpoints, queue.clone());
        watch_dependents(&ctx.endpoint_slices, Kind::EndpointSlice, queue.clone());
        watch_owners(&ctx.deployments, Kind::Deployment, queue.clone());
        watch_owners(&ctx.replicasets, Kind::ReplicaSet, queue.clone());
        watch_owners(
            &ctx.replication_controllers,
            Kind::ReplicationController,
            queue.clone(),
        );
        watch_dependents(
            &ctx.controller_revisions(),
            Kind::ControllerRevision,
            queue.clone(),
        );
        watch_owners(&ctx.daemonsets(), Kind::DaemonSet, queue.clone());
        watch_owners(&ctx.services, Kind::Service, queue.clone());
        watch_owners(&ctx.pods, Kind::Pod, queue.clone());
        watch_owners(&ctx.jobs(), Kind::Job, queue.clone());
        watch_dependents(&ctx.jobs(), Kind::Job, queue.clone());
        watch_owners(&ctx.cronjobs(), Kind::CronJob, queue.clone());
        watch_owners(&ctx.statefulsets(), Kind::StatefulSet, queue.clone());
        watch_dependents(
            &ctx.persistent_volume_claims(),
            Kind::PersistentVolumeClaim,
            queue.clone(),
        );
        Arc::new(GarbageCollector {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx,
        })
    }

    fn cached(&self, kind: Kind, ns: &str, name: &str) -> Option<ObjectMeta> {
        let c = &self.ctx;
        match kind {
            Kind::Pod => meta_of(&c.pods, ns, name),
            Kind::ReplicaSet => meta_of(&c.replicasets, ns, name),
            Kind::Deployment => meta_of(&c.deployments, ns, name),
            Kind::ReplicationController => meta_of(&c.replication_controllers, ns, name),
            Kind::Service => meta_of(&c.services, ns, name),
            Kind::Endpoints => meta_of(&c.endpoints, ns, name),
            Kind::EndpointSlice => meta_of(&c.endpoint_slices, ns, name),
            Kind::Job => meta_of(&c.jobs(), ns, name),
            Kind::CronJob => meta_of(&c.cronjobs(), ns, name),
            Kind::DaemonSet => meta_of(&c.daemonsets(), ns, name),
            Kind::ControllerRevision => meta_of(&c.controller_revisions(), ns, name),
            Kind::StatefulSet => meta_of(&c.statefulsets(), ns, name),
            Kind::PersistentVolumeClaim => meta_of(&c.persistent_volume_claims(), ns, name),
        }
    }

    /// Every cached dependent that references `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<Dependent> {
        fn collect<K: Object>(
            informer: &Informer<K>,
            kind: Kind,
            uid: &str,
            out: &mut Vec<Dependent>,
        ) {
            for o in informer.list() {
                if o.meta()
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid)
                {
                    out.push(Dependent {
                        kind,
                        meta: o.meta().clone(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        for kind in DEPENDENTS {
            match kind {
                Kind::Pod => collect(&self.ctx.pods, *kind, uid, &mut out),
                Kind::ReplicaSet => collect(&self.ctx.replicasets, *kind, uid, &mut out),
                Kind::Endpoints => collect(&self.ctx.endpoints, *kind, uid, &mut out),
                Kind::EndpointSlice => collect(&self.ctx.endpoint_slices, *kind, uid, &mut out),
                Kind::ControllerRevision => {
                    collect(&self.ctx.controller_revisions(), *kind, uid, &mut out)
                }
                Kind::Job => collect(&self.ctx.jobs(), *kind, uid, &mut out),
                Kind::PersistentVolumeClaim => {
                    collect(&self.ctx.persistent_volume_claims(), *kind, uid, &mut out)
                }
                _ => {}
            }
        }
        out
    }

    fn api(&self, kind: Kind, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &kind.api_resource())
    }

    /// Whether the owner a reference names exists (same uid): the cache first, then a live read
    /// before concluding it is gone.
    async fn owner_exists(&self, ns: &str, r: &OwnerReference) -> Result<bool> {
        let Some(kind) = Kind::parse(&r.kind) else {
            // An owner kind this collector does not know is assumed to exist.
            return Ok(true);
        };
        if self
            .cached(kind, ns, &r.name)
            .is_some_and(|m| m.uid.as_deref() == Some(&r.uid))
        {
            return Ok(true);
        }
        match self.api(kind, ns).get_opt(&r.name).await? {
            Some(o) => Ok(o.metadata.uid.as_deref() == Some(&r.uid)),
            None => Ok(false),
        }
    }

    async fn delete(&self, kind: Kind, meta: &ObjectMeta, foreground: bool) -> Result<()> {
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let mut dp = if foreground {
            DeleteParams::foreground()
        } else {
            DeleteParams::background()
        };
        dp.preconditions = meta.uid.clone().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        });
        match self.api(kind, ns).delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_refs(
        &self,
        kind: Kind,
        meta: &ObjectMeta,
        refs: Vec<OwnerReference>,
    ) -> Result<()> {
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        // Guarded by the cached resourceVersion: a conflict is an error, so the item is
        // retried against the newer object.
        let patch = json!({ "metadata": { "ownerReferences": refs, "resourceVersion": meta.resource_version } });
        match self
            .api(kind, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_finalizer(&self, kind: Kind, meta: &ObjectMeta, finalizer: &str) -> Result<()> {
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let rest: Vec<&String> = meta
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        let patch =
            json!({ "metadata": { "finalizers": rest, "resourceVersion": meta.resource_version } });
        match self
            .api(kind, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Background collection of one dependent.
    async fn check_dependent(&self, kind: Kind, ns: &str, name: &str) -> Result<Option<Duration>> {
        let Some(meta) = self.cached(kind, ns, name) else {
            return Ok(None);
        };
        if meta.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let refs = meta.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(None);
        }
        let mut alive = Vec::new();
        for r in &refs {
            if self.owner_exists(ns, r).await? {
                alive.push(r.clone());
            }
        }
        if alive.is_empty() {
            tracing::info!(kind = kind.name(), %ns, %name, "deleting: every owner is gone");
            self.delete(kind, &meta, false).await?;
        } else if alive.len() < refs.len() {
            self.set_refs(kind, &meta, alive).await?;
        }
        Ok(None)
    }

    /// Foreground or orphan deletion of one owner.
    async fn finish_owner(&self, kind: Kind, ns: &str, name: &str) -> Result<Option<Duration>> {
        let Some(meta) = self.cached(kind, ns, name) else {
            return Ok(None);
        };
        if meta.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let uid = meta.uid.clone().unwrap_or_default();
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let dependents = self.dependents_of(&uid);
        if finalizers.iter().any(|f| f == "orphan") {
            for d in &dependents {
                let refs: Vec<OwnerReference> = d
                    .meta
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|r| r.uid != uid)
                    .cloned()
                    .collect();
                self.set_refs(d.kind, &d.meta, refs).await?;
            }
            self.remove_finalizer(kind, &meta, "orphan").await?;
            return Ok(None);
        }
        if finalizers.iter().any(|f| f == "foregroundDeletion") {
            let mut blocking = 0;
            for d in &dependents {
                let blocks = d
                    .meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
                if blocks {
                    blocking += 1;
                }
                if d.meta.deletion_timestamp.is_none() {
                    // Dependents that own things themselves (of the dependent kinds, only
                    // ReplicaSets do) go in the foreground too, so the whole tree is gone
                    // before the owner; pods are not scanned for dependents.
                    let owns = d.kind == Kind::ReplicaSet
                        && !self
                            .dependents_of(d.meta.uid.as_deref().unwrap_or_default())
                            .is_empty();
                    self.delete(d.kind, &d.meta, owns).await?;
                }
            }
            if blocking == 0 {
                self.remove_finalizer(kind, &meta, "foregroundDeletion")
                    .await?;
                return Ok(None);
            }
            // Dependent deletions show up through the watch; look again soon regardless.
            return Ok(Some(Duration::from_secs(1)));
        }
        Ok(None)
    }
}

impl Controller for GarbageCollector {
    const SERVICE_ACCOUNT: &'static str = "generic-garbage-collector";

    const MIN_WORKERS: usize = 10;

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for GarbageCollector {
    const NAME: &'static str = "garbagecollector";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let mut parts = key.splitn(4, '/');
        let what = parts.next().unwrap_or_default();
        if what == "gone" {
            let uid = parts.next().unwrap_or_default();
            for d in self.dependents_of(uid) {
                let ns = d.meta.namespace.clone().unwrap_or_default();
                let name = d.meta.name.clone().unwrap_or_default();
                self.check_dependent(d.kind, &ns, &name).await?;
            }
            return Ok(None);
        }
        let kind = parts.next().and_then(Kind::parse);
        let ns = parts.next().unwrap_or_default();
        let name = parts.next().unwrap_or_default();
        let Some(kind) = kind else { return Ok(None) };
        match what {
            "dep" => self.check_dependent(kind, ns, name).await,
            "own" => self.finish_owner(kind, ns, name).await,
            _ => Ok(None),
        }
    }
}
