//! The ReplicaSet and ReplicationController controllers (one implementation; they differ only
//! in how a selector is written). For each owner: claim the pods its selector matches (adopting
//! orphans, releasing pods whose labels no longer match), create or delete pods until the
//! active ones number `replicas` (creations in slow-start batches, deletions in Kubernetes'
//! order), and report status. Expectations keep a slow watch from causing double creation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use skiff_client::events::{EventType, Recorder};

use crate::context::Context;
use crate::controller::{Controller, Expectations, PARALLEL, Reconciler, Result};
use crate::pods::{self, CachedPod};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, Informer, Object, key_of, split_key};

/// At most this many pods are created or deleted in one sync (Kubernetes' burstReplicas).
pub const BURST: usize = 500;

/// What the controller needs from a ReplicaSet or a ReplicationController.
pub trait ReplicaKind:
    Object + Resource<Scope = k8s_openapi::NamespaceResourceScope> + serde::Serialize
{
    /// The controller's `--controllers` name.
    const NAME: &'static str;
    /// The component its events are reported by.
    const CONTROLLER: &'static str;
    /// Its ServiceAccount ([`Controller::SERVICE_ACCOUNT`]).
    const SERVICE_ACCOUNT: &'static str;
    /// The shared informer of the owners.
    fn informer(ctx: &Context) -> Arc<Informer<Self>>;
    fn selector(&self) -> LabelSelector;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The owner's current status as JSON (for change detection).
    fn status_value(&self) -> Value;
}

impl ReplicaKind for ReplicaSet {
    const NAME: &'static str = "replicaset";
    const CONTROLLER: &'static str = "replicaset-controller";
    const SERVICE_ACCOUNT: &'static str = "replicaset-controller";
    fn informer(ctx: &Context) -> Arc<Informer<Self>> {
        ctx.replicasets.clone()
    }
    fn selector(&self) -> LabelSelector {
        self.spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default()
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status_value(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl ReplicaKind for ReplicationController {
    const NAME: &'static str = "replicationcontroller";
    const CONTROLLER: &'static str = "replicationcontroller-controller";
    const SERVICE_ACCOUNT: &'static str = "replication-controller";
    fn informer(ctx: &Context) -> Arc<Informer<Self>> {
        ctx.replication_controllers.clone()
    }
    fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: self.spec.as_ref().and_then(|s| s.selector.clone()),
            match_expressions: None,
        }
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status_value(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

/// Which objects (pods, or a Deployment's ReplicaSets) an owner keeps, adopts and releases.
#[derive(Debug)]
pub struct Claims<T> {
    pub owned: Vec<Arc<T>>,
    pub adopt: Vec<Arc<T>>,
    pub release: Vec<Arc<T>>,
}

/// Kubernetes' ControllerRefManager: objects controlled by `uid` stay if the selector still
/// matches (else they are released); orphans that match and are not being deleted are adopted
/// (unless the owner itself is being deleted); objects of other controllers are left alone.
pub fn claim<T: Resource + pods::Labels>(
    uid: &str,
    selector: &LabelSelector,
    owner_deleting: bool,
    candidates: Vec<Arc<T>>,
) -> Claims<T> {
    let mut c = Claims {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    for pod in candidates {
        let pod_meta = pod.meta();
        let matches = skiff_client::selector::matches(selector, pod.labels());
        match pods::controller_of(pod_meta) {
            Some(r) if r.uid == uid => {
                if matches {
                    c.owned.push(pod);
                } else if !owner_deleting {
                    c.release.push(pod);
                }
            }
            Some(_) => {}
            None => {
                if matches && !owner_deleting && pod_meta.deletion_timestamp.is_none() {
                    c.adopt.push(pod);
                }
            }
        }
    }
    c
}

/// What one sync does to the pod count.
#[derive(Debug, PartialEq)]
pub enum Plan {
    Nothing,
    Create(usize),
    /// Pods to delete, in order.
    Delete(Vec<String>),
}

/// Compares active pods with `replicas` (at most [`BURST`] changes per sync).
pub fn plan(replicas: i32, active: &[Arc<CachedPod>]) -> Plan {
    let want = replicas.max(0) as usize;
    if active.len() < want {
        return Plan::Create((want - active.len()).min(BURST));
    }
    if active.len() > want {
        let mut victims: Vec<&Arc<CachedPod>> = active.iter().collect();
        victims.sort_by(|a, b| pods::deletion_order(a, b));
        return Plan::Delete(
            victims
                .into_iter()
                .take((active.len() - want).min(BURST))
                .map(|p| p.name_any())
                .collect(),
        );
    }
    Plan::Nothing
}

/// The status fields computed from the active owned pods, and whether a pod is ready but not
/// yet available (then the owner must be looked at again after `minReadySeconds`).
pub fn compute_status(
    active: &[Arc<CachedPod>],
    template_labels: &BTreeMap<String, String>,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> (Value, bool) {
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pods::is_available(p, min_ready_seconds, now))
        .count();
    let labeled = active
        .iter()
        .filter(|p| pods::fully_labeled(p, template_labels))
        .count();
    (
        json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
        }),
        ready > available,
    )
}

pub struct ReplicaController<K: ReplicaKind> {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    owners: Arc<Informer<K>>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

impl<K: ReplicaKind> ReplicaController<K> {
    /// Registers the informer handlers that feed `queue` and returns the controller.
    pub fn new(ctx: Arc<Context>, owners: Arc<Informer<K>>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let expectations = Arc::new(Expectations::default());
        let q = queue.clone();
        let all = owners.clone();
        owners.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(o) => q.add(key_of(*o)),
            Change::Resynced => all.list().iter().for_each(|o| q.add(key_of(o.as_ref()))),
        });
        crate::controller::queue_pod_owners(
            &ctx.pods,
            owners.clone(),
            |o: &K| Some(o.selector()),
            expectations.clone(),
            queue,
        );
        Arc::new(ReplicaController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                K::CONTROLLER,
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            ctx,
            owners,
            expectations,
        })
    }

    async fn create_pods(&self, key: &str, owner: &K, n: usize) -> Option<String> {
        let Some(template) = owner.template() else {
            return Some("the template is missing".into());
        };
        let ns = owner.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod = pods::pod_from_template(
            template,
            &ns,
            &owner.name_any(),
            pods::controller_ref(owner),
        );
        self.expectations.expect_creations(key, n as i64);
        // Slow start: 1, 2, 4, ... so that a template the server rejects costs one request.
        let mut done = 0;
        let mut batch = 1;
        while done < n {
            let size = batch.min(n - done);
            let results: Vec<_> = futures::stream::iter(0..size)
                .map(|_| {
                    let api = api.clone();
                    let pod = pod.clone();
                    // Only the name is kept: a batch of full pods held until the batch ends
                    // is a transient the allocator keeps as resident memory.
                    async move {
                        api.create(&PostParams::default(), &pod)
                            .await
                            .map(|p| p.metadata.name.unwrap_or_default())
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            let mut failure = None;
            for r in results {
                match r {
                    Ok(name) => self.recorder.publish(
                        owner.object_ref(&()),
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    ),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        let msg = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        failure = Some(msg);
                    }
                }
            }
            done += size;
            if let Some(msg) = failure {
                for _ in done..n {
                    self.expectations.creation_observed(key);
                }
                self.recorder.publish(
                    owner.object_ref(&()),
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {msg}"),
                );
                return Some(msg);
            }
            batch *= 2;
        }
        None
    }

    async fn delete_pods(&self, key: &str, owner: &K, names: Vec<String>) {
        let ns = owner.namespace().unwrap_or_default();
        crate::controller::delete_pods(
            &self.client,
            &self.recorder,
            &self.expectations,
            key,
            &owner.object_ref(&()),
            &ns,
            names,
        )
        .await;
    }
}

impl<K: ReplicaKind> Controller for ReplicaController<K> {
    const SERVICE_ACCOUNT: &'static str = K::SERVICE_ACCOUNT;

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), K::informer(ctx), queue)
    }
}

impl<K: ReplicaKind> Reconciler for ReplicaController<K> {
    const NAME: &'static str = K::NAME;

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(owner) = self.owners.get(Some(ns), name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let selector = owner.selector();
        if skiff_client::selector::is_empty(&selector) {
            return Ok(None);
        }
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let deleting = owner.meta().deletion_timestamp.is_some();
        let claims = claim(&uid, &selector, deleting, self.ctx.pods.list_in(ns));
        for p in &claims.release {
            pods::set_controller(&self.client, owner.as_ref(), p.as_ref(), false).await?;
        }
        let mut owned = claims.owned;
        for p in claims.adopt {
            pods::set_controller(&self.client, owner.as_ref(), p.as_ref(), true).await?;
            owned.push(p);
        }
        let active: Vec<Arc<CachedPod>> =
            owned.into_iter().filter(|p| pods::is_active(p)).collect();

        let mut failure = None;
        if !deleting && self.expectations.satisfied(key) {
            match plan(owner.replicas(), &active) {
                Plan::Nothing => {}
                Plan::Create(n) => failure = self.create_pods(key, &owner, n).await,
                Plan::Delete(names) => self.delete_pods(key, &owner, names).await,
            }
        }

        let template_labels = owner
            .template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let (mut status, not_yet_available) = compute_status(
            &active,
            &template_labels,
            owner.min_ready_seconds(),
            jiff::Timestamp::now(),
        );
        status["observedGeneration"] = json!(owner.meta().generation.unwrap_or(0));
        let current = owner.status_value();
        let old_failure = current
            .pointer("/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "ReplicaFailure").cloned());
        status["conditions"] = match (&failure, old_failure) {
            (Some(msg), Some(c)) if c["message"] == json!(msg) => json!([c]),
            (Some(msg), _) => json!([{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": msg, "lastTransitionTime": skiff_common::time::now(),
            }]),
            (None, _) => Value::Null,
        };
        let changed = [
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ]
        .iter()
        .any(|f| current.get(*f).cloned().unwrap_or(json!(0)) != status[*f])
            || current.get("conditions").cloned().unwrap_or(Value::Null) != status["conditions"];
        if changed {
            let api: Api<K> = Api::namespaced(self.client.clone(), ns);
            match crate::update::status(&api, name, &status).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if failure.is_some() {
            return Ok(Some(Duration::from_secs(10)));
        }
        if not_yet_available && owner.min_ready_seconds() > 0 {
            return Ok(Some(Duration::from_secs(owner.min_ready_seconds() as u64)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;

    fn sel(app: &str) -> LabelSelector {
        serde_json::from_value(json!({"matchLabels": {"app": app}})).unwrap()
    }

    fn names(v: &[Arc<CachedPod>]) -> Vec<String> {
        v.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn claims_adopt_orphans_release_strays_and_leave_others_alone() {
        let candidates: Vec<Arc<CachedPod>> = vec![
            Arc::new(pod("mine").owner("ReplicaSet", "rs", "u1").build()),
            Arc::new(
                pod("stray")
                    .owner("ReplicaSet", "rs", "u1")
                    .label("app", "db")
                    .build(),
            ),
            Arc::new(pod("orphan").build()),
            Arc::new(pod("orphan-deleting").deleting().build()),
            Arc::new(pod("other-owner").owner("ReplicaSet", "rs2", "u2").build()),
            Arc::new(pod("unmatched").label("app", "db").build()),
        ];
        let c = claim("u1", &sel("web"), false, candidates.clone());
        assert_eq!(names(&c.owned), ["mine"]);
        assert_eq!(names(&c.adopt), ["orphan"]);
        assert_eq!(names(&c.release), ["stray"]);
        let c = claim("u1", &sel("web"), true, candidates);
        assert!(
            c.adopt.is_empty() && c.release.is_empty(),
            "a deleting owner neither adopts nor releases"
        );
    }

    #[test]
    fn plans() {
        let p = |n: &str| Arc::new(pod(n).node("x").ready("2026-01-01T00:00:00Z").build());
        let cases: Vec<(&str, i32, Vec<Arc<CachedPod>>, Plan)> = vec![
            ("steady", 2, vec![p("a"), p("b")], Plan::Nothing),
            ("scale up", 3, vec![p("a")], Plan::Create(2)),
            ("burst limit", 2000, vec![], Plan::Create(BURST)),
            (
                "scale down removes the unscheduled first",
                1,
                vec![p("a"), Arc::new(pod("pending").build())],
                Plan::Delete(vec!["pending".into()]),
            ),
            ("to zero", 0, vec![p("a")], Plan::Delete(vec!["a".into()])),
        ];
        for (name, replicas, active, want) in cases {
            assert_eq!(plan(replicas, &active), want, "{name}");
        }
    }

    #[test]
    fn status_counts_ready_available_and_labeled() {
        let tl: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ]
        .into();
        let active = vec![
            Arc::new(
                pod("a")
                    .label("tier", "fe")
                    .ready("2026-01-01T00:00:00Z")
                    .build(),
            ),
            Arc::new(pod("b").ready("2026-01-01T00:00:08Z").build()),
            Arc::new(pod("c").build()),
        ];
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let (s, pending) = compute_status(&active, &tl, 5, now);
        assert_eq!(
            s,
            json!({"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2, "availableReplicas": 1})
        );
        assert!(pending, "b is ready but not yet available");
    }
}
