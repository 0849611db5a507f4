//! The scheduling loop: pop a pod, run one cycle of the framework over the cache, and either
//! assume it on the chosen node and bind it in the background, or report why it cannot run
//! (a `FailedScheduling` event and the pod's `PodScheduled=False` condition) and park it.
//! Cycles run one at a time (so each sees the previous one's assumptions); bindings run
//! concurrently, up to [`MAX_BINDS_IN_FLIGHT`].

use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource};
use serde_json::json;
use skiff_client::events::{EventType, Recorder};
use skiff_client::informer::{Change, Informer};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, NodeData};
use crate::framework::Framework;
use crate::metrics::{Metrics, Outcome};
use crate::plugins::volume_binding::{self, VolumeListers};
use crate::podinfo::{PendingPod, PodInfo, SeenPod};
use crate::preemption::{self, Budget, Candidate};
use crate::queue::{Popped, SchedulingQueue};

/// Binding requests in flight at once (each is one apiserver write).
pub const MAX_BINDS_IN_FLIGHT: usize = 64;

pub struct Scheduler {
    pub client: Client,
    /// The `schedulerName` this scheduler serves.
    pub name: String,
    pub framework: Framework,
    pub cache: Mutex<Cache>,
    pub queue: SchedulingQueue,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    binds: Arc<Semaphore>,
    /// PodDisruptionBudgets, which preemption prefers not to break.
    budgets: OnceLock<Arc<Informer<Budget>>>,
    /// Claims, volumes and classes, for binding pods' volumes before the pods
    /// ([`crate::plugins::volume_binding::pre_bind`]).
    volumes: Option<Arc<dyn VolumeListers>>,
}

impl Scheduler {
    pub fn new(client: Client, name: &str, framework: Framework, recorder: Recorder) -> Scheduler {
        Scheduler {
            client,
            name: name.to_string(),
            framework,
            cache: Mutex::new(Cache::default()),
            queue: SchedulingQueue::new(),
            recorder,
            metrics: Metrics::new(name),
            binds: Arc::new(Semaphore::new(MAX_BINDS_IN_FLIGHT)),
            budgets: OnceLock::new(),
            volumes: None,
        }
    }

    /// The same scheduler binding pods' volumes through `volumes` before the pods.
    pub fn with_volumes(self, volumes: Arc<dyn VolumeListers>) -> Scheduler {
        Scheduler {
            volumes: Some(volumes),
            ..self
        }
    }

    /// Reads PodDisruptionBudgets from `informer` when choosing preemption victims.
    pub fn follow_budgets(&self, informer: Arc<Informer<Budget>>) {
        let _ = self.budgets.set(informer);
    }

    /// Schedules pods until `shutdown`, then waits (briefly) for bindings in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next_start = 0usize;
        while let Some(popped) = self.queue.pop(&shutdown).await {
            self.schedule_one(popped, &mut next_start).await;
        }
        let all = MAX_BINDS_IN_FLIGHT as u32;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.binds.acquire_many(all),
        )
        .await;
    }

    async fn schedule_one(self: &Arc<Self>, popped: Popped, next_start: &mut usize) {
        let info = popped.pending.info.clone();
        let started = Instant::now();
        let nominated = self.queue.nominated();
        let (result, preemption) = {
            let cache = self.cache.lock().expect("cache lock");
            let chosen = self
                .framework
                .schedule(&cache, &info, &nominated, next_start);
            // PostFilter: a pod that fits nowhere may make room by preempting.
            let preemption = chosen.is_err().then(|| {
                let budgets = self.budgets.get().map(|i| i.list()).unwrap_or_default();
                preemption::preempt(
                    &self.framework,
                    &cache,
                    &info,
                    &nominated,
                    &budgets,
                    jiff::Timestamp::now(),
                )
            });
            (chosen, preemption)
        };
        match result {
            Ok(node) => {
                self.cache.lock().expect("cache lock").assume(&info, &node);
                self.metrics.attempt(Outcome::Scheduled, started.elapsed());
                let Ok(permit) = self.binds.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    me.bind(popped, node).await;
                    drop(permit);
                });
            }
            Err(fit) => {
                self.metrics
                    .attempt(Outcome::Unschedulable, started.elapsed());
                let mut message = fit.to_string();
                match preemption {
                    Some(preemption::Outcome::Chosen(c)) => {
                        tracing::info!(pod = %info.key, node = %c.node, victims = c.victims.pods.len(), "preempting");
                        // Pods of lower priority nominated to the node may no longer fit
                        // there: they lose the nomination and look again.
                        let lower: Vec<Arc<PodInfo>> = nominated
                            .on(&c.node)
                            .iter()
                            .filter(|p| p.key != info.key && p.priority < info.priority)
                            .cloned()
                            .collect();
                        for p in &lower {
                            self.queue.nominate(&p.key, None);
                        }
                        self.queue.nominate(&info.key, Some(&c.node));
                        let me = self.clone();
                        let preemptor = popped.pending.clone();
                        tokio::spawn(async move { me.carry_out(preemptor, c, lower).await });
                    }
                    Some(other) => {
                        if let Some(why) = other.describe() {
                            message = format!("{message} {why}");
                        }
                    }
                    None => {}
                }
                tracing::debug!(pod = %info.key, %message, "unschedulable");
                self.queue.unschedulable(&info.key, popped.moves_at_pop);
                self.report_unschedulable(&popped.pending, message);
            }
        }
    }

    /// Carries out a preemption: each victim gets the `DisruptionTarget` condition, is
    /// deleted, and gets a `Preempted` event; the preemptor gets `status.nominatedNodeName`,
    /// and the lower-priority pods that were nominated to the node lose theirs. The preemptor
    /// is tried again when the victims are gone (their deletion moves the queue).
    async fn carry_out(&self, preemptor: PendingPod, c: Candidate, lower: Vec<Arc<PodInfo>>) {
        let by = &preemptor.info;
        for v in &c.victims.pods {
            // Graceful deletion has begun already (an earlier preemption).
            if v.deleting {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &v.namespace);
            let condition = json!({ "status": { "conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": format!("{}: preempting to accommodate a higher priority pod", self.name),
                "lastTransitionTime": Time(jiff::Timestamp::now()),
            }]}});
            if let Err(e) = api
                .patch_status(
                    &v.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&condition),
                )
                .await
            {
                if !is_gone(&e) {
                    tracing::warn!(victim = %v.key, error = %e, "could not mark the victim; it stays");
                }
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(v.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = api.delete(&v.name, &params).await {
                if !is_gone(&e) {
                    tracing::warn!(victim = %v.key, error = %e, "could not delete the victim");
                }
                continue;
            }
            self.recorder.publish(
                pod_ref(v),
                EventType::Normal,
                "Preempted",
                format!("Preempted by pod {} on node {}", by.uid, c.node),
            );
        }
        for p in &lower {
            self.set_nominated_node(p, None).await;
        }
        self.set_nominated_node(by, Some(&c.node)).await;
    }

    /// Writes `status.nominatedNodeName` (`None` clears it).
    async fn set_nominated_node(&self, pod: &PodInfo, node: Option<&str>) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let patch = json!({ "status": { "nominatedNodeName": node } });
        if let Err(e) = api
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            && !is_gone(&e)
        {
            tracing::warn!(pod = %pod.key, error = %e, "could not set nominatedNodeName");
        }
    }

    async fn bind(&self, popped: Popped, node: String) {
        let info = &popped.pending.info;
        if let Some(volumes) = &self.volumes
            && !info.claims.is_empty()
            && let Err(e) =
                volume_binding::pre_bind(&self.client, volumes.as_ref(), info, &node).await
        {
            tracing::warn!(pod = %info.key, %node, error = %e, "binding volumes failed; will retry");
            self.cache.lock().expect("cache lock").forget(&info.key);
            self.queue.retry(&info.key);
            self.recorder.publish(
                popped.pending.pod.object_ref(&()),
                EventType::Warning,
                "FailedScheduling",
                e.to_string(),
            );
            return;
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": info.name, "namespace": info.namespace, "uid": info.uid },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node },
        });
        let url = Pod::url_path(&(), Some(&info.namespace));
        let request = kube::core::Request::new(url).create_subresource(
            "binding",
            &info.name,
            &PostParams::default(),
            serde_json::to_vec(&body).unwrap_or_default(),
        );
        let result = match request {
            Ok(req) => self.client.request_text(req).await.map(|_| ()),
            Err(e) => Err(kube::Error::BuildRequest(e)),
        };
        match result {
            Ok(()) => {
                self.queue.done(&info.key);
                self.metrics.bound(popped.queued_at.elapsed());
                self.recorder.publish(
                    popped.pending.pod.object_ref(&()),
                    EventType::Normal,
                    "Scheduled",
                    format!(
                        "Successfully assigned {}/{} to {node}",
                        info.namespace, info.name
                    ),
                );
            }
            // Gone, already bound by someone else, or being deleted: the watch brings the
            // pod's real state; only the assumption must go.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                tracing::debug!(pod = %info.key, reason = %s.message, "binding refused");
                self.cache.lock().expect("cache lock").forget(&info.key);
                self.queue.done(&info.key);
            }
            Err(e) => {
                tracing::warn!(pod = %info.key, %node, error = %e, "binding failed; will retry");
                self.cache.lock().expect("cache lock").forget(&info.key);
                self.metrics
                    .attempt(Outcome::Error, std::time::Duration::ZERO);
                self.queue.retry(&info.key);
                self.recorder.publish(
                    popped.pending.pod.object_ref(&()),
                    EventType::Warning,
                    "FailedScheduling",
                    format!("Binding rejected: {e}"),
                );
            }
        }
    }

    /// A `FailedScheduling` event, and `PodScheduled=False` with reason Unschedulable on the
    /// pod when the condition does not already say so.
    fn report_unschedulable(&self, pending: &PendingPod, message: String) {
        let pod = &pending.pod;
        self.recorder.publish(
            pod.object_ref(&()),
            EventType::Warning,
            "FailedScheduling",
            message.clone(),
        );
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message.as_str())
        }) {
            return;
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or_else(|| Time(jiff::Timestamp::now()));
        let patch = json!({ "status": { "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]}});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pending.info.namespace);
        let name = pending.info.name.clone();
        tokio::spawn(async move {
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "could not set PodScheduled=False");
            }
        });
    }

    /// Keeps the cache and the queue current from the pod and node informers: registers their
    /// handlers (before the informers run, so nothing is missed).
    pub fn follow(
        self: &Arc<Self>,
        pods: &Arc<Informer<SeenPod>>,
        nodes: &Arc<Informer<Arc<NodeData>>>,
    ) {
        let (s, all) = (self.clone(), pods.clone());
        pods.on_change(move |c| match c {
            Change::Applied { new, .. } => s.on_pod(new),
            Change::Deleted(pod) => s.on_pod_deleted(&pod.info().key),
            // After a relist the informer has reported what vanished; the rest may have changed.
            Change::Resynced => all.list().iter().for_each(|p| s.on_pod(p)),
        });
        let (s, all) = (self.clone(), nodes.clone());
        nodes.on_change(move |c| match c {
            Change::Applied { new, .. } => s.on_node(new),
            Change::Deleted(node) => s.on_node_deleted(&node.name),
            Change::Resynced => all.list().iter().for_each(|n| s.on_node(n)),
        });
    }

    /// A pod as the watch shows it.
    pub fn on_pod(&self, pod: &SeenPod) {
        let pending = match pod {
            SeenPod::Assigned(info) => {
                self.queue.delete(&info.key);
                let mut cache = self.cache.lock().expect("cache lock");
                if info.terminal {
                    // A finished pod frees its resources.
                    if cache.remove_pod(&info.key) {
                        drop(cache);
                        self.queue.move_all();
                    }
                } else {
                    cache.apply_pod(info.clone());
                }
                return;
            }
            SeenPod::Unassigned(pending) => pending,
        };
        let info = &pending.info;
        if info.scheduler_name != self.name {
            return;
        }
        if info.deleting || info.terminal {
            self.queue.delete(&info.key);
            return;
        }
        // A stale event from before the binding the watch has not shown yet.
        if self.cache.lock().expect("cache lock").is_assumed(&info.key) {
            return;
        }
        self.queue.add_or_update(pending.clone());
    }

    pub fn on_pod_deleted(&self, key: &str) {
        self.queue.delete(key);
        let freed = self.cache.lock().expect("cache lock").remove_pod(key);
        if freed {
            self.queue.move_all();
        }
    }

    pub fn on_node(&self, node: &Arc<NodeData>) {
        let changed = self.cache.lock().expect("cache lock").apply_node(node);
        if changed {
            self.queue.move_all();
        }
    }

    pub fn on_node_deleted(&self, name: &str) {
        self.cache.lock().expect("cache lock").remove_node(name);
    }
}

/// Whether an API error means the pod is gone (or replaced by another of the same name).
fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

/// An event's reference to a pod the cache knows.
fn pod_ref(p: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(p.name.clone()),
        namespace: Some(p.namespace.clone()),
        uid: Some(p.uid.clone()),
        ..Default::default()
    }
}
