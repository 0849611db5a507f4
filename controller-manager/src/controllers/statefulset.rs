//! The StatefulSet controller: pods with a stable identity. For each StatefulSet:
//!
//! - pods are named `<set>-<ordinal>`, with `hostname` = their name and `subdomain` =
//!   `spec.serviceName` (so a headless Service gives each a DNS name), and labelled with
//!   their name, their ordinal and their revision;
//! - each `volumeClaimTemplates` entry gives each pod a PersistentVolumeClaim
//!   `<template>-<set>-<ordinal>`, created before the pod and never deleted with it, so a
//!   replacement pod gets the same storage; `persistentVolumeClaimRetentionPolicy` decides, by
//!   owner references the garbage collector follows, whether claims go when the set is deleted
//!   (`whenDeleted`) or scaled down (`whenScaled`);
//! - `OrderedReady` creates pods one at a time in ordinal order, each only once the one before
//!   is Running and Ready (and available for `minReadySeconds`), and removes them from the
//!   highest ordinal down; `Parallel` creates and removes them all at once;
//! - a pod that failed or was deleted is recreated under the same name;
//! - the template history is kept as ControllerRevisions (shared with DaemonSets); a
//!   `RollingUpdate` replaces pods from the highest ordinal down to `partition`, at most
//!   `maxUnavailable` (default 1) unavailable at a time; `OnDelete` waits for the user;
//! - status (replicas, ready, available, current, updated, the two revisions,
//!   observedGeneration) is what `kubectl rollout status sts/x` reads.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use skiff_client::events::{EventType, Recorder};
use skiff_client::informer::{Change, Informer, key_of, split_key};

use crate::context::Context;
use crate::controller::{Controller, Expectations, Reconciler, Result};
use crate::controllers::daemonset::scaled;
use crate::controllers::history::{self, HASH_LABEL};
use crate::controllers::replicaset::claim;
use crate::pods::{self, CachedPod};
use crate::workqueue::WorkQueue;

/// The label with a StatefulSet pod's name (a Service may select one pod by it).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

// ---- pure rules ----------------------------------------------------------------------------

/// The ordinal of a pod of set `set`, if `pod` is named `<set>-<ordinal>`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// The name of the claim template `template` makes for pod `ordinal` of set `set`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn phase(pod: &CachedPod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn terminating(pod: &CachedPod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Running, Ready for `minReadySeconds`, and not going away: what `OrderedReady` waits for.
pub fn healthy(pod: &CachedPod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    phase(pod) == Some("Running")
        && !terminating(pod)
        && pods::is_available(pod, min_ready_seconds, now)
}

/// The revision (ControllerRevision name) a pod was made from.
pub fn revision_of(pod: &CachedPod) -> Option<&str> {
    pod.labels.get(HASH_LABEL).map(String::as_str)
}

/// How pods are replaced when the template changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// From the highest ordinal down to `partition`, at most `max_unavailable` at a time.
    RollingUpdate {
        partition: i32,
        max_unavailable: i32,
    },
    /// Only when the user deletes a pod.
    OnDelete,
}

impl Strategy {
    pub fn of(spec: &StatefulSetSpec) -> Strategy {
        let s = spec.update_strategy.as_ref();
        if s.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
            return Strategy::OnDelete;
        }
        let ru = s.and_then(|s| s.rolling_update.as_ref());
        let replicas = spec.replicas.unwrap_or(1);
        Strategy::RollingUpdate {
            partition: ru.and_then(|r| r.partition).unwrap_or(0).max(0),
            max_unavailable: scaled(ru.and_then(|r| r.max_unavailable.as_ref()), 1, replicas)
                .max(1),
        }
    }
}

/// What one sync asks for: pods to create (by ordinal) and pods to delete (by name).
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<i32>,
    pub delete: Vec<String>,
}

/// The facts [`plan`] decides from.
pub struct Facts<'a> {
    /// The first ordinal (`spec.ordinals.start`) and how many pods are wanted.
    pub start: i32,
    pub replicas: i32,
    /// `OrderedReady` (else `Parallel`).
    pub ordered: bool,
    pub strategy: Strategy,
    pub update_revision: &'a str,
    pub min_ready_seconds: i32,
    pub now: jiff::Timestamp,
}

/// One sync of Kubernetes' StatefulSet algorithm: create missing pods and replace failed ones
/// (in ordinal order, one at a time and each waiting for the one before to be healthy when
/// `OrderedReady`), then remove pods beyond `replicas` (highest ordinal first), then roll the
/// template out (highest ordinal first, down to the partition).
pub fn plan(f: &Facts, pods: &BTreeMap<i32, Arc<CachedPod>>) -> Plan {
    let mut p = Plan::default();
    let end = f.start + f.replicas.max(0);
    let ok = |pod: &CachedPod| healthy(pod, f.min_ready_seconds, f.now);
    for ord in f.start..end {
        match pods.get(&ord) {
            None => {
                p.create.push(ord);
                if f.ordered {
                    return p;
                }
            }
            Some(pod) if terminating(pod) => {
                // Recreated under the same name once it is gone.
                if f.ordered {
                    return p;
                }
            }
            Some(pod) if matches!(phase(pod), Some("Failed" | "Succeeded")) => {
                p.delete.push(pod.name_any());
                if f.ordered {
                    return p;
                }
            }
            Some(pod) if !ok(pod) && f.ordered => return p,
            Some(_) => {}
        }
    }
    if !p.create.is_empty() || !p.delete.is_empty() {
        return p;
    }
    // Pods beyond the wanted range, highest ordinal first.
    for (_, pod) in pods
        .iter()
        .rev()
        .filter(|(o, _)| **o < f.start || **o >= end)
    {
        if terminating(pod) {
            if f.ordered {
                return p;
            }
            continue;
        }
        p.delete.push(pod.name_any());
        if f.ordered {
            return p;
        }
    }
    if !p.delete.is_empty() {
        return p;
    }
    let Strategy::RollingUpdate {
        partition,
        max_unavailable,
    } = f.strategy
    else {
        return p;
    };
    let mut unavailable = (f.start..end)
        .filter(|o| pods.get(o).is_none_or(|pod| !ok(pod)))
        .count() as i32;
    for ord in (f.start + partition..end).rev() {
        let Some(pod) = pods.get(&ord) else { continue };
        if terminating(pod) || revision_of(pod) == Some(f.update_revision) {
            continue;
        }
        if !ok(pod) {
            // Already unavailable: replacing it costs nothing.
            p.delete.push(pod.name_any());
        } else if unavailable < max_unavailable {
            unavailable += 1;
            p.delete.push(pod.name_any());
        }
    }
    p
}

/// A pod of the set: the template's labels and spec, with its identity (name, hostname,
/// subdomain, name and index labels), its revision, and its claims as volumes.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = format!("{}-{ordinal}", set.name_any());
    let ns = set.namespace().unwrap_or_default();
    let mut pod =
        pods::pod_from_template(template, &ns, &set.name_any(), pods::controller_ref(set));
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name.clone());
    if let Some(svc) = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc);
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for t in claim_templates(set) {
        let tname = t.metadata.name.clone().unwrap_or_default();
        let volume = Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tname, &set.name_any(), ordinal),
                read_only: None,
            }),
            ..Default::default()
        };
        match volumes.iter_mut().find(|v| v.name == tname) {
            Some(v) => *v = volume,
            None => volumes.push(volume),
        }
    }
    pod
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

/// `persistentVolumeClaimRetentionPolicy`: whether claims are deleted with the set, and when
/// the set is scaled down.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Retention {
    pub delete_with_set: bool,
    pub delete_when_scaled: bool,
}

impl Retention {
    pub fn of(set: &StatefulSet) -> Retention {
        let p = set
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        Retention {
            delete_with_set: p.and_then(|p| p.when_deleted.as_deref()) == Some("Delete"),
            delete_when_scaled: p.and_then(|p| p.when_scaled.as_deref()) == Some("Delete"),
        }
    }
}

/// The owner references a claim should carry (Kubernetes' retention by owner references): its
/// pod's once that pod is condemned by a scale-down with `whenScaled: Delete` (and then only
/// that one, so the claim goes with the pod), else the set's with `whenDeleted: Delete`.
/// References to anything else are kept as they are.
pub fn claim_owners(
    current: &[OwnerReference],
    retention: Retention,
    set: &OwnerReference,
    pod: Option<&OwnerReference>,
    condemned: bool,
) -> Vec<OwnerReference> {
    let mut refs: Vec<OwnerReference> = current
        .iter()
        .filter(|r| r.uid != set.uid && pod.is_none_or(|p| r.uid != p.uid))
        .cloned()
        .collect();
    match pod {
        Some(p) if retention.delete_when_scaled && condemned => refs.push(p.clone()),
        _ if retention.delete_with_set => refs.push(set.clone()),
        _ => {}
    }
    refs
}

fn plain_ref(r: OwnerReference) -> OwnerReference {
    OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..r
    }
}

/// The claim template `t` makes for pod `ordinal`: its labels plus the set's selector labels.
pub fn new_claim(
    set: &StatefulSet,
    t: &PersistentVolumeClaim,
    ordinal: i32,
) -> PersistentVolumeClaim {
    let tname = t.metadata.name.clone().unwrap_or_default();
    let mut labels = t.metadata.labels.clone().unwrap_or_default();
    if let Some(ml) = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
    {
        labels.extend(ml.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let owners = claim_owners(
        &[],
        Retention::of(set),
        &plain_ref(pods::controller_ref(set)),
        None,
        false,
    );
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(&tname, &set.name_any(), ordinal)),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: t.metadata.annotations.clone(),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..Default::default()
        },
        spec: t.spec.clone(),
        status: None,
    }
}

/// The status counts (Kubernetes' StatefulSet status): every pod counts toward `replicas`;
/// running and ready ones toward `readyReplicas` (and `availableReplicas` after
/// `minReadySeconds`); pods not going away count toward the revision they run. A rolling
/// update is complete (the current revision becomes the update revision) once every pod runs
/// the update revision and is ready.
pub fn compute_status(
    pods: &BTreeMap<i32, Arc<CachedPod>>,
    current_revision: &str,
    update_revision: &str,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Value {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods.values() {
        replicas += 1;
        if phase(pod) == Some("Running") && pods::is_ready(pod) {
            ready += 1;
            available += i32::from(pods::is_available(pod, min_ready_seconds, now));
        }
        if !terminating(pod) {
            let rev = revision_of(pod);
            current += i32::from(rev == Some(current_revision));
            updated += i32::from(rev == Some(update_revision));
        }
    }
    let mut current_revision = current_revision;
    if updated == replicas && ready == replicas {
        current = updated;
        current_revision = update_revision;
    }
    json!({
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
    })
}

// ---- the controller ------------------------------------------------------------------------

pub struct StatefulSetController {
    ctx: Arc<Context>,
    client: kube::Client,
    sets: Arc<Informer<StatefulSet>>,
    revisions: Arc<Informer<ControllerRevision>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

impl StatefulSetController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let sets = ctx.statefulsets();
        let revisions = ctx.controller_revisions();
        let claims = ctx.persistent_volume_claims();
        let expectations = Arc::new(Expectations::default());

        let q = queue.clone();
        let all = sets.clone();
        sets.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(o) => q.add(key_of(*o)),
            Change::Resynced => all.list().iter().for_each(|o| q.add(key_of(o.as_ref()))),
        });
        let q = queue.clone();
        revisions.on_change(move |c| {
            let cr = match c {
                Change::Applied { new, .. } => *new,
                Change::Deleted(o) => *o,
                Change::Resynced => return,
            };
            if let Some(r) = pods::controller_of(&cr.metadata).filter(|r| r.kind == "StatefulSet") {
                q.add(format!("{}/{}", cr.namespace().unwrap_or_default(), r.name));
            }
        });
        crate::controller::queue_pod_owners(
            &ctx.pods,
            sets.clone(),
            |s: &StatefulSet| s.spec.as_ref().map(|s| s.selector.clone()),
            expectations.clone(),
            queue,
        );
        Arc::new(StatefulSetController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                "statefulset-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            ctx,
            sets,
            revisions,
            claims,
            expectations,
        })
    }

    fn event(&self, set: &StatefulSet, ok: bool, reason: &str, message: String) {
        let t = if ok {
            EventType::Normal
        } else {
            EventType::Warning
        };
        self.recorder
            .publish(set.object_ref(&()), t, reason, message);
    }

    /// Creates pod `ordinal`'s missing claims; an error names the claim that failed.
    async fn create_claims(
        &self,
        set: &StatefulSet,
        ordinal: i32,
    ) -> std::result::Result<(), String> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let pod = format!("{}-{ordinal}", set.name_any());
        for t in claim_templates(set) {
            let claim = new_claim(set, t, ordinal);
            let name = claim.name_any();
            if self.claims.get(Some(&ns), &name).is_some() {
                continue;
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.event(
                    set,
                    true,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {name} Pod {pod} in StatefulSet {} success",
                        set.name_any()
                    ),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    let msg = format!(
                        "create Claim {name} for Pod {pod} in StatefulSet {} failed error: {e}",
                        set.name_any()
                    );
                    self.event(set, false, "FailedCreate", msg.clone());
                    return Err(msg);
                }
            }
        }
        Ok(())
    }

    /// Sets each existing claim's owner references as the retention policy wants them
    /// (Kubernetes' claim owner updates, made before a condemned pod is deleted).
    async fn retain_claims(
        &self,
        set: &StatefulSet,
        pods: &BTreeMap<i32, Arc<CachedPod>>,
        wanted: std::ops::Range<i32>,
    ) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let retention = Retention::of(set);
        let set_ref = plain_ref(pods::controller_ref(set));
        for (ord, pod) in pods {
            let pod_ref = OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod.name_any(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                controller: None,
                block_owner_deletion: None,
            };
            for t in claim_templates(set) {
                let name = claim_name(
                    t.metadata.name.as_deref().unwrap_or_default(),
                    &set.name_any(),
                    *ord,
                );
                let Some(claim) = self.claims.get(Some(&ns), &name) else {
                    continue;
                };
                let have = claim.metadata.owner_references.clone().unwrap_or_default();
                let want = claim_owners(
                    &have,
                    retention,
                    &set_ref,
                    Some(&pod_ref),
                    !wanted.contains(ord),
                );
                let same = have.len() == want.len()
                    && want.iter().all(|w| have.iter().any(|h| h.uid == w.uid));
                if same {
                    continue;
                }
                let mut updated = (*claim).clone();
                updated.metadata.owner_references = (!want.is_empty()).then_some(want);
                // A failure (a conflict with a newer claim, say) stops this sync before any
                // pod is deleted: a condemned pod must not go before its claim follows it.
                match api.replace(&name, &PostParams::default(), &updated).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Creates pod `ordinal` from `template` at `revision`, its claims first.
    async fn create_pod(
        &self,
        key: &str,
        set: &StatefulSet,
        template: &PodTemplateSpec,
        revision: &str,
        ordinal: i32,
    ) -> Option<String> {
        if let Err(e) = self.create_claims(set, ordinal).await {
            return Some(e);
        }
        let pod = new_pod(set, template, ordinal, revision);
        let name = pod.name_any();
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        self.expectations.expect_creations(key, 1);
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.event(
                    set,
                    true,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} successful",
                        set.name_any()
                    ),
                );
                None
            }
            Err(e) => {
                self.expectations.creation_observed(key);
                if matches!(&e, kube::Error::Api(s) if s.code == 409) {
                    // The old pod of that name is still going away.
                    return None;
                }
                let msg = format!(
                    "create Pod {name} in StatefulSet {} failed error: {e}",
                    set.name_any()
                );
                self.event(set, false, "FailedCreate", msg.clone());
                Some(msg)
            }
        }
    }

    async fn delete_pod(&self, key: &str, set: &StatefulSet, name: &str) {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        self.expectations
            .expect_deletions(key, [format!("{ns}/{name}")]);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => self.event(
                set,
                true,
                "SuccessfulDelete",
                format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    set.name_any()
                ),
            ),
            Err(e) => {
                self.expectations
                    .deletion_observed(key, &format!("{ns}/{name}"));
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    self.event(
                        set,
                        false,
                        "FailedDelete",
                        format!(
                            "delete Pod {name} in StatefulSet {} failed error: {e}",
                            set.name_any()
                        ),
                    );
                }
            }
        }
    }
}

impl Controller for StatefulSetController {
    const SERVICE_ACCOUNT: &'static str = "statefulset-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for StatefulSetController {
    const NAME: &'static str = "statefulset";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(set) = self.sets.get(Some(ns), name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(spec) = set.spec.as_ref() else {
            return Ok(None);
        };
        if skiff_client::selector::is_empty(&spec.selector)
            || set.metadata.deletion_timestamp.is_some()
        {
            return Ok(None);
        }
        // Only pods named as members of the set are adopted (Kubernetes' isMemberOf).
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let candidates = self
            .ctx
            .pods
            .list_in(ns)
            .into_iter()
            .filter(|p| {
                pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
                    || ordinal_of(name, &p.name_any()).is_some()
            })
            .collect();
        let claims = claim(&uid, &spec.selector, false, candidates);
        for p in &claims.release {
            pods::set_controller(&self.client, set.as_ref(), p.as_ref(), false).await?;
        }
        let mut owned = claims.owned;
        for p in claims.adopt {
            pods::set_controller(&self.client, set.as_ref(), p.as_ref(), true).await?;
            owned.push(p);
        }
        let by_ordinal: BTreeMap<i32, Arc<CachedPod>> = owned
            .into_iter()
            .filter_map(|p| ordinal_of(name, &p.name_any()).map(|o| (o, p)))
            .collect();

        let status = set.status.clone().unwrap_or_default();
        let (update, old) = history::sync(
            &self.client,
            &self.revisions,
            set.as_ref(),
            &spec.template,
            status.collision_count.unwrap_or(0),
        )
        .await?;
        // The current revision is the one the status names, while it exists.
        let current = status
            .current_revision
            .as_deref()
            .and_then(|c| old.iter().find(|cr| cr.name_any() == c))
            .and_then(|cr| Some((cr.name_any(), history::revision_template(cr)?)));
        let (current_name, current_template) =
            current.unwrap_or_else(|| (update.name.clone(), spec.template.clone()));

        let start = spec
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0);
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let strategy = Strategy::of(spec);
        let now = jiff::Timestamp::now();
        let mut failure = None;
        if self.expectations.satisfied(key) {
            if !claim_templates(&set).is_empty() {
                self.retain_claims(&set, &by_ordinal, start..start + replicas)
                    .await?;
            }
            let facts = Facts {
                start,
                replicas,
                ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
                strategy,
                update_revision: &update.name,
                min_ready_seconds: min_ready,
                now,
            };
            let plan = plan(&facts, &by_ordinal);
            for ord in plan.create {
                // Below the partition, pods are made from the current revision.
                let below = matches!(strategy, Strategy::RollingUpdate { partition, .. } if ord < start + partition);
                let (rev, template) = if below {
                    (&current_name, &current_template)
                } else {
                    (&update.name, &spec.template)
                };
                if let Some(e) = self.create_pod(key, &set, template, rev, ord).await {
                    failure = Some(e);
                }
            }
            for victim in plan.delete {
                self.delete_pod(key, &set, &victim).await;
            }
            let live: HashSet<&str> = by_ordinal.values().filter_map(|p| revision_of(p)).collect();
            let limit = spec.revision_history_limit.unwrap_or(10);
            history::cleanup(&self.client, ns, old, limit, |cr| {
                let n = cr.name_any();
                live.contains(n.as_str()) || n == current_name || n == update.name
            })
            .await?;
        }

        let mut new_status =
            compute_status(&by_ordinal, &current_name, &update.name, min_ready, now);
        new_status["observedGeneration"] = json!(set.metadata.generation.unwrap_or(0));
        let existing = serde_json::to_value(&set.status).unwrap_or(json!({}));
        for k in ["collisionCount", "conditions"] {
            if let Some(v) = existing.get(k) {
                new_status[k] = v.clone();
            }
        }
        let changed = new_status
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| existing.get(k).cloned().unwrap_or(json!(0)) != *v);
        if changed {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
            match crate::update::status(&api, name, &new_status).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if failure.is_some() {
            return Ok(Some(Duration::from_secs(10)));
        }
        if min_ready > 0 && new_status["availableReplicas"] != new_status["readyReplicas"] {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
