//! The Deployment controller (one concern, kept in one file: the rollout rules read best side
//! by side with the reconcile that applies them). A Deployment owns ReplicaSets, one per pod template, named by a
//! hash of the template (`<name>-<pod-template-hash>`); the one whose template matches the
//! Deployment's is the *new* ReplicaSet, the others are *old*. Each sync:
//!
//! - claims ReplicaSets by selector (adopting orphans, releasing strays);
//! - if `replicas` changed while several ReplicaSets run, scales them proportionally;
//! - otherwise rolls out: RollingUpdate scales the new ReplicaSet up while total pods stay
//!   within `replicas + maxSurge` and old ones down while available pods stay at least
//!   `replicas - maxUnavailable`; Recreate scales old ones to zero, waits for their pods to be
//!   gone, then scales the new one up;
//! - keeps the `deployment.kubernetes.io/revision` annotations (a template that comes back,
//!   as after `kubectl rollout undo`, gets the next revision), trims old ReplicaSets to
//!   `revisionHistoryLimit`, and reports status with the Available and Progressing conditions
//!   (including `ProgressDeadlineExceeded`). A paused Deployment is only scaled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use skiff_client::events::{EventType, Recorder};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::controllers::replicaset::claim;
use crate::pods;
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, key_of, split_key};

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

// ---- pure rules ----------------------------------------------------------------------------

/// Resolves an int-or-percent against `total`, rounding up (surge) or down (unavailable).
fn resolve(v: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    let s = match v {
        Some(IntOrString::Int(i)) => return (*i).max(0),
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) else {
        return s.parse().unwrap_or(0);
    };
    let exact = pct * total as f64 / 100.0;
    (if round_up {
        exact.ceil()
    } else {
        exact.floor()
    }) as i32
}

/// (maxSurge, maxUnavailable) as numbers; both zero is impossible, so unavailable becomes 1.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let replicas = replicas_of(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), "25%", replicas, true);
    let unavailable = resolve(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

pub fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// The revision annotation of an object (0 when absent).
pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The template with the pod-template-hash label removed (for comparing templates).
fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            t.metadata.as_mut().expect("metadata").labels = None;
        }
    }
    t
}

/// The template as JSON without empty objects: Kubernetes compares and hashes the Go structs,
/// where `resources: {}` (which kubectl sends, e.g. in `rollout undo`) and no `resources` are
/// the same zero value.
fn canonical(t: &PodTemplateSpec) -> serde_json::Value {
    fn prune(v: serde_json::Value) -> Option<serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => {
                let m: serde_json::Map<String, serde_json::Value> = m
                    .into_iter()
                    .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                    .collect();
                (!m.is_empty()).then_some(serde_json::Value::Object(m))
            }
            serde_json::Value::Array(a) => Some(serde_json::Value::Array(
                a.into_iter()
                    .map(|v| prune(v).unwrap_or(serde_json::json!({})))
                    .collect(),
            )),
            other => Some(other),
        }
    }
    let v = serde_json::to_value(without_hash(t)).unwrap_or_default();
    prune(v).unwrap_or(serde_json::Value::Null)
}

/// Whether two templates are equal apart from the hash label.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    canonical(a) == canonical(b)
}

/// The pod-template-hash: FNV-1a of the template (and the collision count), written with
/// Kubernetes' alphabet of consonants and digits that cannot spell words.
pub fn template_hash(t: &PodTemplateSpec, collision_count: i32) -> String {
    let bytes = serde_json::to_vec(&canonical(t)).unwrap_or_default();
    let mut h: u32 = 0x811c9dc5;
    for b in bytes.iter().chain(collision_count.to_le_bytes().iter()) {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|c| ALPHABET[c as usize % ALPHABET.len()] as char)
        .collect()
}

/// How many replicas the new ReplicaSet should have now (RollingUpdate): as many more as
/// `replicas + maxSurge` allows, never more than `replicas`.
pub fn new_rs_target(d: &Deployment, all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> i32 {
    let replicas = replicas_of(d);
    let current_new = new_rs.map(rs_replicas).unwrap_or(0);
    if is_recreate(d) {
        return replicas;
    }
    if current_new >= replicas {
        return replicas;
    }
    let (surge, _) = fenceposts(d);
    let total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let max_total = replicas + surge;
    if total >= max_total {
        return current_new;
    }
    current_new + (max_total - total).min(replicas - current_new)
}

/// How many old pods may go now (RollingUpdate): keep `replicas - maxUnavailable` available,
/// counting new pods that are not yet available as unavailable.
pub fn max_scale_down(d: &Deployment, all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> i32 {
    let (_, unavailable) = fenceposts(d);
    let min_available = replicas_of(d) - unavailable;
    let all_pods: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let new_unavailable = new_rs
        .map(|r| rs_replicas(r) - rs_available(r))
        .unwrap_or(0)
        .max(0);
    all_pods - min_available - new_unavailable
}

/// Desired sizes of the old ReplicaSets after a RollingUpdate step: first unhealthy pods go
/// (they cost no availability), then available ones down to the minimum, oldest first.
pub fn scale_down_old(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Vec<(String, i32)> {
    let mut budget = max_scale_down(d, all, new_rs);
    let mut sizes: BTreeMap<String, i32> =
        old.iter().map(|r| (r.name_any(), rs_replicas(r))).collect();
    if budget <= 0 {
        return Vec::new();
    }
    let mut oldest: Vec<&&ReplicaSet> = old.iter().filter(|r| rs_replicas(r) > 0).collect();
    oldest.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    });
    for rs in &oldest {
        if budget <= 0 {
            break;
        }
        let unhealthy = (rs_replicas(rs) - rs_available(rs)).max(0);
        let cut = unhealthy.min(budget);
        if cut > 0 {
            *sizes.get_mut(&rs.name_any()).expect("known") -= cut;
            budget -= cut;
        }
    }
    // Availability after removing unhealthy pods.
    let (_, unavailable) = fenceposts(d);
    let min_available = replicas_of(d) - unavailable;
    let available: i32 = all.iter().map(|r| rs_available(r)).sum();
    let mut can_remove = (available - min_available).max(0);
    for rs in &oldest {
        if can_remove <= 0 {
            break;
        }
        let size = sizes[&rs.name_any()];
        let cut = size.min(can_remove).min(rs_available(rs));
        if cut > 0 {
            *sizes.get_mut(&rs.name_any()).expect("known") -= cut;
            can_remove -= cut;
        }
    }
    old.iter()
        .filter(|r| sizes[&r.name_any()] != rs_replicas(r))
        .map(|r| (r.name_any(), sizes[&r.name_any()]))
        .collect()
}

/// Proportional scaling (`replicas` changed mid-rollout): spreads the change over the active
/// ReplicaSets in proportion to their size, the remainder to the largest.
pub fn proportional_sizes(d: &Deployment, active: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let replicas = replicas_of(d);
    let (surge, _) = fenceposts(d);
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let current: i32 = active.iter().map(|r| rs_replicas(r)).sum();
    let to_add = allowed - current;
    let mut sorted: Vec<&&ReplicaSet> = active.iter().collect();
    sorted.sort_by(|a, b| {
        rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
            b.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &sorted {
        let mut part = 0;
        if to_add != 0 && added != to_add && rs_replicas(rs) > 0 {
            let annotated = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MAX_REPLICAS))
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(current.max(1));
            let fraction = if replicas == 0 {
                -rs_replicas(rs)
            } else {
                ((rs_replicas(rs) as f64 * allowed as f64) / annotated.max(1) as f64).round() as i32
                    - rs_replicas(rs)
            };
            let left = to_add - added;
            part = if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            };
        }
        added += part;
        sizes.push((rs.name_any(), rs_replicas(rs) + part));
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

// ---- the controller ------------------------------------------------------------------------

pub struct DeploymentController {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    recorder: Recorder,
}

impl DeploymentController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.deployments.clone();
        ctx.deployments.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(o) => q.add(key_of(*o)),
            Change::Resynced => all.list().iter().for_each(|o| q.add(key_of(o.as_ref()))),
        });
        let q = queue.clone();
        let deployments = ctx.deployments.clone();
        ctx.replicasets.on_change(move |c| {
            let rs = match c {
                Change::Applied { new, .. } => *new,
                Change::Deleted(o) => *o,
                Change::Resynced => return,
            };
            let ns = rs.namespace().unwrap_or_default();
            match pods::controller_of(&rs.metadata) {
                Some(r) if r.kind == "Deployment" => q.add(format!("{ns}/{}", r.name)),
                Some(_) => {}
                None => {
                    let empty = BTreeMap::new();
                    let labels = rs.metadata.labels.as_ref().unwrap_or(&empty);
                    for d in deployments.list_in(&ns) {
                        if let Some(sel) = d.spec.as_ref().map(|s| &s.selector)
                            && skiff_client::selector::matches(sel, labels)
                        {
                            q.add(key_of(d.as_ref()));
                        }
                    }
                }
            }
        });
        // Recreate waits for old pods to be gone.
        let q = queue.clone();
        let replicasets = ctx.replicasets.clone();
        ctx.pods.on_change(move |c| {
            let Change::Deleted(pod) = c else { return };
            let ns = pod.namespace().unwrap_or_default();
            if let Some(r) = pods::controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")
                && let Some(rs) = replicasets.get(Some(&ns), &r.name)
                && let Some(d) =
                    pods::controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")
            {
                q.add(format!("{ns}/{}", d.name));
            }
        });
        Arc::new(DeploymentController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                "deployment-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            ctx,
        })
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Sets a ReplicaSet's size and its replica annotations; emits ScalingReplicaSet.
    async fn scale(&self, d: &Deployment, rs: &ReplicaSet, size: i32) -> Result<bool> {
        let (surge, _) = fenceposts(d);
        let desired = replicas_of(d).to_string();
        let max = (replicas_of(d) + surge).to_string();
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let same_size = rs_replicas(rs) == size;
        if same_size
            && annotations.get(DESIRED_REPLICAS) == Some(&desired)
            && annotations.get(MAX_REPLICAS) == Some(&max)
        {
            return Ok(false);
        }
        // Guarded by the ReplicaSet's resourceVersion: sizes computed from a stale cache must
        // fail (and be recomputed), never move a ReplicaSet backwards.
        let patch = json!({
            "metadata": {
                "annotations": { DESIRED_REPLICAS: desired, MAX_REPLICAS: max },
                "resourceVersion": rs.metadata.resource_version,
            },
            "spec": { "replicas": size },
        });
        self.rs_api(&rs.namespace().unwrap_or_default())
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        if !same_size {
            let from = rs_replicas(rs);
            let dir = if size > from { "up" } else { "down" };
            self.recorder.publish(
                d.object_ref(&()),
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {dir} replica set {} from {from} to {size}",
                    rs.name_any()
                ),
            );
        }
        Ok(!same_size)
    }

    /// Finds the new ReplicaSet (template equal to the Deployment's), makes it carry the
    /// newest revision, or creates it when `create` (None while paused).
    async fn new_replica_set(
        &self,
        d: &Deployment,
        owned: &[Arc<ReplicaSet>],
        create: bool,
    ) -> Result<Option<Arc<ReplicaSet>>> {
        let spec = d.spec.clone().unwrap_or_default();
        let ns = d.namespace().unwrap_or_default();
        let existing = owned.iter().find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignoring_hash(t, &spec.template))
        });
        let max_old = owned
            .iter()
            .filter(|rs| Some(rs) != existing.as_ref().map(|e| *e).as_ref())
            .map(|rs| revision_of(&rs.metadata))
            .max()
            .unwrap_or(0);
        let next_revision = max_old + 1;
        let mut annotations: BTreeMap<String, String> = d
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .collect();
        if let Some(rs) = existing {
            let current = revision_of(&rs.metadata);
            let mut patch_ann: BTreeMap<String, Option<String>> = BTreeMap::new();
            if current < next_revision {
                patch_ann.insert(REVISION.into(), Some(next_revision.to_string()));
                if current > 0 {
                    let history = rs
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(REVISION_HISTORY))
                        .map(|h| format!("{h},{current}"))
                        .unwrap_or_else(|| current.to_string());
                    patch_ann.insert(REVISION_HISTORY.into(), Some(history));
                }
            }
            let rs_ann = rs.metadata.annotations.clone().unwrap_or_default();
            for (k, v) in &annotations {
                if rs_ann.get(k) != Some(v) {
                    patch_ann.insert(k.clone(), Some(v.clone()));
                }
            }
            let min_ready = spec.min_ready_seconds;
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if patch_ann.is_empty() && min_ready.unwrap_or(0) == rs_min_ready.unwrap_or(0) {
                return Ok(Some(rs.clone()));
            }
            let patch = json!({
                "metadata": { "annotations": patch_ann },
                "spec": { "minReadySeconds": min_ready.unwrap_or(0) },
            });
            let updated = self
                .rs_api(&ns)
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            if current < next_revision && current > 0 {
                self.set_progressing(
                    d,
                    "True",
                    "FoundNewReplicaSet",
                    &format!("Found new replica set \"{}\"", rs.name_any()),
                )
                .await?;
            }
            return Ok(Some(Arc::new(updated)));
        }
        if !create {
            return Ok(None);
        }
        let collisions = d
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let all_refs: Vec<&ReplicaSet> = owned.iter().map(|r| r.as_ref()).collect();
        let size = new_rs_target(d, &all_refs, None);
        let (surge, _) = fenceposts(d);
        annotations.insert(REVISION.into(), next_revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), replicas_of(d).to_string());
        annotations.insert(MAX_REPLICAS.into(), (replicas_of(d) + surge).to_string());
        let name = format!("{}-{hash}", d.name_any());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![pods::controller_ref(d)]),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if size > 0 {
                    self.recorder.publish(
                        d.object_ref(&()),
                        EventType::Normal,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} from 0 to {size}"),
                    );
                }
                self.set_progressing(
                    d,
                    "True",
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{name}\""),
                )
                .await?;
                Ok(Some(Arc::new(created)))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A ReplicaSet of that name with another template: count a collision, which
                // changes the hash on the next sync.
                let other = self.rs_api(&ns).get_opt(&name).await?;
                let same = other
                    .as_ref()
                    .and_then(|o| o.spec.as_ref())
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignoring_hash(t, &spec.template));
                let mine = other
                    .as_ref()
                    .and_then(|o| pods::controller_of(&o.metadata))
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                if same && mine {
                    return Ok(other.map(Arc::new));
                }
                let mut status = serde_json::to_value(&d.status).unwrap_or_else(|_| json!({}));
                if !status.is_object() {
                    status = json!({});
                }
                status["collisionCount"] = json!(collisions + 1);
                crate::update::status(
                    &Api::<Deployment>::namespaced(self.client.clone(), &ns),
                    &d.name_any(),
                    &status,
                )
                .await?;
                Err(crate::controller::Error::Invalid(format!(
                    "replica set {name} exists with another template; retrying with a new hash"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn set_progressing(
        &self,
        d: &Deployment,
        status: &str,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        let mut conds = d
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        upsert_condition(
            &mut conds,
            "Progressing",
            status,
            reason,
            message,
            jiff::Timestamp::now(),
        );
        let mut status = serde_json::to_value(&d.status).unwrap_or_else(|_| json!({}));
        if !status.is_object() {
            status = json!({});
        }
        status["conditions"] = json!(conds);
        crate::update::status(
            &Api::<Deployment>::namespaced(self.client.clone(), &d.namespace().unwrap_or_default()),
            &d.name_any(),
            &status,
        )
        .await?;
        Ok(())
    }

    /// The Deployment carries its new ReplicaSet's revision (what `kubectl rollout` reads).
    async fn sync_revision(&self, d: &Deployment, new_rs: &ReplicaSet) -> Result<()> {
        let want = revision_of(&new_rs.metadata);
        if want == 0 || revision_of(&d.metadata) == want {
            return Ok(());
        }
        // An update of the Deployment as cached, guarded by its resourceVersion (a conflict
        // retries the sync), as the upstream role grants update and not patch.
        let mut updated = d.clone();
        updated
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REVISION.to_string(), want.to_string());
        Api::<Deployment>::namespaced(self.client.clone(), &d.namespace().unwrap_or_default())
            .replace(&d.name_any(), &PostParams::default(), &updated)
            .await?;
        Ok(())
    }

    /// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit`, oldest revision first.
    async fn cleanup(&self, d: &Deployment, old: &[Arc<ReplicaSet>]) -> Result<()> {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut empty: Vec<&Arc<ReplicaSet>> = old
            .iter()
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if empty.len() <= limit {
            return Ok(());
        }
        empty.sort_by_key(|rs| revision_of(&rs.metadata));
        let excess = empty.len() - limit;
        for rs in empty.into_iter().take(excess) {
            match self
                .rs_api(&rs.namespace().unwrap_or_default())
                .delete(&rs.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Whether pods of the old ReplicaSets still exist (Recreate waits for none).
    fn old_pods_running(&self, ns: &str, old: &[Arc<ReplicaSet>]) -> bool {
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|r| r.metadata.uid.as_deref())
            .collect();
        self.ctx
            .pods
            .list_in(ns)
            .iter()
            .any(|p: &Arc<crate::pods::CachedPod>| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded") | Some("Failed"))
                    && pods::controller_of(&p.metadata)
                        .is_some_and(|r| uids.contains(&r.uid.as_str()))
            })
    }

    /// Writes status (counts, Available, Progressing); returns when to look again.
    async fn sync_status(
        &self,
        d: &Deployment,
        all: &[Arc<ReplicaSet>],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<Option<Duration>> {
        let now = jiff::Timestamp::now();
        let (status, again) = compute_status(d, all, new_rs, now);
        let current = serde_json::to_value(&d.status).unwrap_or_default();
        let wanted = serde_json::to_value(&status).unwrap_or_default();
        if current != wanted {
            crate::update::status(
                &Api::<Deployment>::namespaced(
                    self.client.clone(),
                    &d.namespace().unwrap_or_default(),
                ),
                &d.name_any(),
                &wanted,
            )
            .await?;
        }
        Ok(again)
    }
}

/// Sets a condition, keeping `lastTransitionTime` when the status does not change.
pub fn upsert_condition(
    conds: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let t = Time(now.round(jiff::Unit::Second).unwrap_or(now));
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(t.clone());
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_update_time = Some(t);
        }
        None => conds.push(DeploymentCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(t.clone()),
            last_transition_time: Some(t),
        }),
    }
}

/// The Deployment's status from its ReplicaSets, and when to look again (progress deadline).
pub fn compute_status(
    d: &Deployment,
    all: &[Arc<ReplicaSet>],
    new_rs: Option<&ReplicaSet>,
    now: jiff::Timestamp,
) -> (
    k8s_openapi::api::apps::v1::DeploymentStatus,
    Option<Duration>,
) {
    let old = d.status.clone().unwrap_or_default();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|r| f(r)).sum::<i32>();
    let replicas = sum(&|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let ready = sum(&|r| {
        r.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let available = sum(&rs_available);
    let total_spec = sum(&rs_replicas);
    let updated = new_rs
        .and_then(|r| r.status.as_ref())
        .map(|s| s.replicas)
        .unwrap_or(0);
    let want = replicas_of(d);
    let (_, max_unavailable) = fenceposts(d);
    let mut conds = old.conditions.clone().unwrap_or_default();
    if available >= want - max_unavailable {
        upsert_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        );
    } else {
        upsert_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        );
    }
    // Keep the Available condition's times when nothing but the update time would change.
    if let (Some(prev), Some(c)) = (
        old.conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Available")),
        conds.iter_mut().find(|c| c.type_ == "Available"),
    ) && prev.status == c.status
        && prev.reason == c.reason
    {
        *c = prev.clone();
    }
    let generation = d.metadata.generation.unwrap_or(0);
    let mut status = k8s_openapi::api::apps::v1::DeploymentStatus {
        observed_generation: Some(generation),
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((total_spec - available).max(0)),
        collision_count: old.collision_count,
        conditions: None,
        terminating_replicas: old.terminating_replicas,
    };
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds);
    let rs_name = new_rs.map(|r| r.name_any()).unwrap_or_default();
    let mut again = None;
    let progressing = conds.iter().find(|c| c.type_ == "Progressing").cloned();
    if paused {
        if progressing.as_ref().and_then(|c| c.reason.as_deref()) != Some("DeploymentPaused") {
            upsert_condition(
                &mut conds,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                now,
            );
        }
    } else if progressing.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused") {
        upsert_condition(
            &mut conds,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            now,
        );
    } else if deadline.is_some() {
        let complete = updated == want && replicas == want && available == want && new_rs.is_some();
        let progressed = updated > old.updated_replicas.unwrap_or(0)
            || (replicas - updated)
                < (old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0))
            || ready > old.ready_replicas.unwrap_or(0)
            || available > old.available_replicas.unwrap_or(0);
        let already_complete = progressing.as_ref().is_some_and(|c| {
            c.reason.as_deref() == Some("NewReplicaSetAvailable")
                && c.message.as_deref()
                    == Some(&format!(
                        "ReplicaSet \"{rs_name}\" has successfully progressed."
                    ))
        });
        if complete {
            if !already_complete {
                upsert_condition(
                    &mut conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    now,
                );
            }
        } else if progressed || progressing.is_none() {
            upsert_condition(
                &mut conds,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
                now,
            );
            again = deadline.map(|s| Duration::from_secs(s.max(1) as u64 + 1));
        } else if let Some(c) = &progressing {
            let last = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
            let limit = last + jiff::SignedDuration::from_secs(deadline.unwrap_or(600) as i64);
            if c.reason.as_deref() != Some("ProgressDeadlineExceeded") {
                if now >= limit {
                    upsert_condition(
                        &mut conds,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                        now,
                    );
                } else {
                    let left = limit.duration_since(now).unsigned_abs();
                    again = Some(left + Duration::from_secs(1));
                }
            }
        }
    }
    // Conditions in a stable order: Available first, as Kubernetes writes them.
    conds.sort_by_key(|c| if c.type_ == "Available" { 0 } else { 1 });
    status.conditions = Some(conds);
    (status, again)
}

impl Controller for DeploymentController {
    const SERVICE_ACCOUNT: &'static str = "deployment-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for DeploymentController {
    const NAME: &'static str = "deployment";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(d) = self.ctx.deployments.get(Some(ns), name) else {
            return Ok(None);
        };
        let spec = d.spec.clone().unwrap_or_default();
        if skiff_client::selector::is_empty(&spec.selector) {
            return Ok(None);
        }
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let claims = claim(
            &uid,
            &spec.selector,
            deleting,
            self.ctx.replicasets.list_in(ns),
        );
        for rs in &claims.release {
            pods::set_controller(&self.client, d.as_ref(), rs.as_ref(), false).await?;
        }
        let mut owned = claims.owned;
        for rs in claims.adopt {
            pods::set_controller(&self.client, d.as_ref(), rs.as_ref(), true).await?;
            owned.push(rs);
        }
        if deleting {
            let new_rs = owned
                .iter()
                .find(|rs| {
                    rs.spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| equal_ignoring_hash(t, &spec.template))
                })
                .cloned();
            return self.sync_status(&d, &owned, new_rs.as_deref()).await;
        }
        let paused = spec.paused.unwrap_or(false);
        let new_rs = self
            .new_replica_set(&d, &owned, !paused && !is_recreate(&d))
            .await?;
        if let Some(n) = &new_rs {
            self.sync_revision(&d, n).await?;
        }
        let old: Vec<Arc<ReplicaSet>> = owned
            .iter()
            .filter(|rs| {
                Some(rs.metadata.uid.as_deref())
                    != new_rs.as_ref().map(|n| n.metadata.uid.as_deref())
            })
            .cloned()
            .collect();
        let mut all: Vec<Arc<ReplicaSet>> = old.clone();
        if let Some(n) = &new_rs {
            all.push(n.clone());
        }
        let all_refs: Vec<&ReplicaSet> = all.iter().map(|r| r.as_ref()).collect();
        let active: Vec<&ReplicaSet> = all_refs
            .iter()
            .copied()
            .filter(|r| rs_replicas(r) > 0)
            .collect();

        // A scaling event: the active ReplicaSets were sized for another replica count.
        let want = replicas_of(&d).to_string();
        let scaling = active.iter().any(|r| {
            r.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                != Some(&want)
        });
        if paused || scaling {
            if active.len() <= 1 {
                let target = active
                    .first()
                    .copied()
                    .or(new_rs.as_deref())
                    .or(all_refs.last().copied());
                if let Some(rs) = target {
                    self.scale(&d, rs, replicas_of(&d)).await?;
                }
            } else {
                for (rs_name, size) in proportional_sizes(&d, &active) {
                    if let Some(rs) = active.iter().find(|r| r.name_any() == rs_name) {
                        self.scale(&d, rs, size).await?;
                    }
                }
            }
            if paused {
                self.cleanup(&d, &old).await?;
            }
            return self.sync_status(&d, &all, new_rs.as_deref()).await;
        }

        if is_recreate(&d) {
            let mut scaled = false;
            for rs in old.iter().filter(|r| rs_replicas(r) > 0) {
                scaled |= self.scale(&d, rs, 0).await?;
            }
            if scaled || self.old_pods_running(ns, &old) {
                return self.sync_status(&d, &all, new_rs.as_deref()).await;
            }
            let new_rs = match new_rs {
                Some(n) => n,
                None => match self.new_replica_set(&d, &owned, true).await? {
                    Some(n) => n,
                    None => return Ok(None),
                },
            };
            self.sync_revision(&d, &new_rs).await?;
            self.scale(&d, &new_rs, replicas_of(&d)).await?;
            self.cleanup(&d, &old).await?;
            let mut all = old.clone();
            all.push(new_rs.clone());
            return self.sync_status(&d, &all, Some(&new_rs)).await;
        }

        // RollingUpdate: first grow the new ReplicaSet, then shrink old ones.
        let Some(new_rs) = new_rs else {
            return Ok(None);
        };
        let target = new_rs_target(&d, &all_refs, Some(&new_rs));
        if target != rs_replicas(&new_rs) && self.scale(&d, &new_rs, target).await? {
            return self.sync_status(&d, &all, Some(&new_rs)).await;
        }
        let old_refs: Vec<&ReplicaSet> = old.iter().map(|r| r.as_ref()).collect();
        for (rs_name, size) in scale_down_old(&d, &all_refs, Some(&new_rs), &old_refs) {
            if let Some(rs) = old.iter().find(|r| r.name_any() == rs_name) {
                self.scale(&d, rs, size).await?;
            }
        }
        // Keep the new ReplicaSet's annotations current even when its size is right.
        self.scale(&d, &new_rs, rs_replicas(&new_rs)).await?;
        let complete = rs_replicas(&new_rs) == replicas_of(&d)
            && old.iter().all(|r| rs_replicas(r) == 0)
            && rs_available(&new_rs) == replicas_of(&d);
        if complete {
            self.cleanup(&d, &old).await?;
        }
        self.sync_status(&d, &all, Some(&new_rs)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn deployment(replicas: i32, surge: Value, unavailable: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "progressDeadlineSeconds": 600,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}}
        }))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, available: i32, created: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "creationTimestamp": created,
                         "annotations": {MAX_REPLICAS: "13"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available}
        }))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_like_kubernetes() {
        let cases = [
            (10, json!("25%"), json!("25%"), (3, 2)),
            (4, json!(1), json!(0), (1, 0)),
            (3, json!(0), json!(0), (0, 1)),
            (1, json!("25%"), json!("25%"), (1, 0)),
            (10, json!("0%"), json!("50%"), (0, 5)),
        ];
        for (replicas, s, u, want) in cases {
            assert_eq!(
                fenceposts(&deployment(replicas, s.clone(), u.clone())),
                want,
                "{replicas} {s} {u}"
            );
        }
    }

    #[test]
    fn rolling_update_steps_stay_within_surge_and_unavailability() {
        // 10 replicas, maxSurge 3, maxUnavailable 2.
        let d = deployment(10, json!(3), json!(2));
        let old = rs("old", 10, 10, "2026-01-01T00:00:00Z");
        let new = rs("new", 0, 0, "2026-01-02T00:00:00Z");
        // Step 1: the new ReplicaSet may grow to 3 (13 pods in all).
        assert_eq!(new_rs_target(&d, &[&old, &new], Some(&new)), 3);
        // Step 2: with the 3 new pods not yet available, 2 old ones may go (keep 8 available).
        let new = rs("new", 3, 0, "2026-01-02T00:00:00Z");
        assert_eq!(
            scale_down_old(&d, &[&old, &new], Some(&new), &[&old]),
            vec![("old".to_string(), 8)]
        );
        // Once the new pods are available, old ones go down to keep 8 available in all.
        let old = rs("old", 8, 8, "2026-01-01T00:00:00Z");
        let new = rs("new", 3, 3, "2026-01-02T00:00:00Z");
        assert_eq!(new_rs_target(&d, &[&old, &new], Some(&new)), 5);
        let new = rs("new", 5, 3, "2026-01-02T00:00:00Z");
        assert_eq!(
            scale_down_old(&d, &[&old, &new], Some(&new), &[&old]),
            vec![("old".to_string(), 5)]
        );
        // Unhealthy old pods go first without counting against availability.
        let old = rs("old", 5, 2, "2026-01-01T00:00:00Z");
        let new = rs("new", 8, 8, "2026-01-02T00:00:00Z");
        assert_eq!(
            scale_down_old(&d, &[&old, &new], Some(&new), &[&old]),
            vec![("old".to_string(), 0)]
        );
    }

    #[test]
    fn proportional_scaling_splits_by_size() {
        // Mid-rollout at 10 replicas (max 13) with 8 old + 5 new; scaled to 20 (max 23).
        let d = deployment(20, json!(3), json!(2));
        let old = rs("old", 8, 8, "2026-01-01T00:00:00Z");
        let new = rs("new", 5, 5, "2026-01-02T00:00:00Z");
        let sizes: BTreeMap<String, i32> =
            proportional_sizes(&d, &[&old, &new]).into_iter().collect();
        assert_eq!(sizes.values().sum::<i32>(), 23);
        assert_eq!(sizes["old"], 14);
        assert_eq!(sizes["new"], 9);
    }

    #[test]
    fn template_hash_ignores_the_hash_label_and_changes_with_collisions() {
        let d = deployment(1, json!(1), json!(0));
        let t = d.spec.unwrap().template;
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "x".into());
        assert_eq!(template_hash(&t, 0), template_hash(&labelled, 0));
        // An empty `resources: {}` (as kubectl's rollout undo sends it) is no change.
        let mut with_empty = t.clone();
        with_empty.spec.as_mut().unwrap().containers[0].resources = Some(Default::default());
        assert_eq!(template_hash(&t, 0), template_hash(&with_empty, 0));
        assert!(equal_ignoring_hash(&t, &with_empty));
        assert_ne!(template_hash(&t, 0), template_hash(&t, 1));
        assert!(
            template_hash(&t, 0)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        assert!(equal_ignoring_hash(&t, &labelled));
    }

    #[test]
    fn status_and_conditions() {
        let d = deployment(3, json!(1), json!(0));
        let new = Arc::new(rs("web-abc", 3, 3, "2026-01-02T00:00:00Z"));
        let (s, _) = compute_status(
            &d,
            std::slice::from_ref(&new),
            Some(&new),
            jiff::Timestamp::now(),
        );
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(3), Some(3), Some(3), Some(0))
        );
        let conds = s.conditions.unwrap();
        assert_eq!(conds[0].type_, "Available");
        assert_eq!(conds[0].status, "True");
        let p = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
        assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"web-abc\" has successfully progressed.")
        );
    }
}
