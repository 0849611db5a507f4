//! Pod facts the controllers share: active, ready, available; controller references; making
//! a pod from a template; and Kubernetes' order for choosing which pods to delete first.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;

use crate::intern::Interner;

/// A pod as the controller-manager caches it: only what the controllers read (identity,
/// labels, owners, node, tolerations, container names, ports and requests, phase, IP, the Ready
/// condition, restart counts). Watch events are decoded straight into this shape, so 10,000
/// cached pods take a fraction of what full `k8s-openapi` pods would (whose many inline
/// optional fields cost several kB per pod even when empty). Labels, tolerations and containers
/// are interned: the pods of one template share one copy of each. Of the annotations only
/// [`KEPT_ANNOTATIONS`] are kept; managedFields and generateName are not. Field names follow `Pod`'s, except that labels sit beside
/// `metadata` rather than in it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(from = "WirePod")]
pub struct CachedPod {
    pub metadata: ObjectMeta,
    pub labels: Arc<BTreeMap<String, String>>,
    pub spec: Option<CachedPodSpec>,
    pub status: Option<CachedPodStatus>,
}

/// A pod as the watch delivers it, before [`CachedPod`] moves its labels out of `metadata`.
#[derive(serde::Deserialize)]
struct WirePod {
    #[serde(default)]
    metadata: WireMeta,
    spec: Option<CachedPodSpec>,
    status: Option<CachedPodStatus>,
}

/// The annotations a controller reads: an Indexed Job pod's per-index failure counts.
pub const KEPT_ANNOTATIONS: [&str; 2] = [
    "batch.kubernetes.io/job-index-failure-count",
    "batch.kubernetes.io/job-index-ignored-failure-count",
];

/// The metadata fields a controller reads. Annotations other than [`KEPT_ANNOTATIONS`], managedFields (whose `fieldsV1` trees
/// are the largest part of a pod's JSON), generateName and selfLink are skipped while parsing
/// rather than parsed and dropped: the transient allocations of 10,000 pods' managedFields
/// otherwise stay in the allocator's free lists as resident memory.
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "kept_annotations")]
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    finalizers: Option<Vec<String>>,
}

/// Reads a pod's annotations keeping only [`KEPT_ANNOTATIONS`]: the others' values are skipped
/// unparsed.
fn kept_annotations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Kept;
    impl<'de> serde::de::Visitor<'de> for Kept {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = m.next_key::<String>()? {
                if KEPT_ANNOTATIONS.contains(&key.as_str()) {
                    kept.insert(key, m.next_value::<String>()?);
                } else {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok((!kept.is_empty()).then_some(kept))
        }
    }
    d.deserialize_option(Kept)
}

static LABELS: Interner<BTreeMap<String, String>> = Interner::new();
static TOLERATIONS: Interner<Vec<Toleration>> = Interner::new();
static CONTAINERS: Interner<Vec<CachedContainer>> = Interner::new();

/// A parsed list holds room for four elements even when it has one (`Vec`'s first growth); a
/// pod's single owner reference would keep three empty slots (300 bytes) for its lifetime.
fn exact<T>(v: Option<Vec<T>>) -> Option<Vec<T>> {
    v.map(|mut v| {
        v.shrink_to_fit();
        v
    })
}

impl From<WirePod> for CachedPod {
    fn from(p: WirePod) -> Self {
        let m = p.metadata;
        let labels = LABELS.intern(m.labels.unwrap_or_default());
        let mut status = p.status;
        if let Some(s) = status.as_mut() {
            s.container_statuses = exact(s.container_statuses.take());
        }
        CachedPod {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                generation: m.generation,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                annotations: m.annotations,
                owner_references: exact(m.owner_references),
                finalizers: exact(m.finalizers),
                ..ObjectMeta::default()
            },
            labels,
            spec: p.spec,
            status,
        }
    }
}

fn interned_containers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Arc<Vec<CachedContainer>>, D::Error> {
    Ok(CONTAINERS.intern(serde::Deserialize::deserialize(d)?))
}

fn interned_tolerations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Arc<Vec<Toleration>>>, D::Error> {
    let t: Option<Vec<Toleration>> = serde::Deserialize::deserialize(d)?;
    Ok(t.map(|t| TOLERATIONS.intern(t)))
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodSpec {
    #[serde(default, deserialize_with = "interned_containers")]
    pub containers: Arc<Vec<CachedContainer>>,
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "interned_tolerations")]
    pub tolerations: Option<Arc<Vec<Toleration>>>,
    /// The node a not-yet-scheduled pod is bound for by a required `matchFields
    /// metadata.name In [node]` term (how DaemonSet pods name their node); the rest of the
    /// affinity is not kept.
    #[serde(default, rename = "affinity", deserialize_with = "affinity_node")]
    pub affinity_node: Option<String>,
    /// The pod's own hostname and DNS subdomain (a StatefulSet's pods have both), which the
    /// endpoints controller publishes for the Service the subdomain names.
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
}

/// The node named by the first `metadata.name In [one node]` field requirement of a required
/// node affinity (Kubernetes' GetTargetNodeName).
fn affinity_node<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let a: Option<k8s_openapi::api::core::v1::Affinity> = serde::Deserialize::deserialize(d)?;
    Ok(a.and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .and_then(|s| {
            s.node_selector_terms.into_iter().find_map(|t| {
                t.match_fields
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|r| {
                        let values = r.values.unwrap_or_default();
                        (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                            .then(|| values.into_iter().next())
                            .flatten()
                    })
            })
        }))
}

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct CachedContainer {
    #[serde(default)]
    pub name: String,
    pub ports: Option<Vec<k8s_openapi::api::core::v1::ContainerPort>>,
    #[serde(default)]
    pub resources: Option<CachedResources>,
}

/// A container's requests (what the HorizontalPodAutoscaler measures usage against).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct CachedResources {
    pub requests: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(from = "WireStatus")]
pub struct CachedPodStatus {
    pub phase: Option<String>,
    pub pod_ip: Option<String>,
    /// The `Ready` condition, the only one most controllers read.
    pub ready: Option<CachedCondition>,
    pub container_statuses: Option<Vec<CachedContainerStatus>>,
    pub start_time: Option<Time>,
    /// What a Job's `podFailurePolicy` matches, kept only for a Failed pod (boxed: the
    /// running pods that are most of the cache pay one pointer).
    pub failure: Option<Box<FailureFacts>>,
}

/// Why a pod failed: its containers' non-zero exit codes and its conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureFacts {
    /// (container name, exit code) of each terminated container, init containers last.
    pub exit_codes: Vec<(String, i32)>,
    /// (type, status) of each condition.
    pub conditions: Vec<(String, String)>,
}

/// A pod status as the watch delivers it, before [`CachedPodStatus`] keeps what it needs.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    conditions: Option<Vec<CachedCondition>>,
    container_statuses: Option<Vec<WireContainerStatus>>,
    init_container_statuses: Option<Vec<WireContainerStatus>>,
    start_time: Option<Time>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireContainerStatus {
    #[serde(default)]
    name: String,
    #[serde(default)]
    restart_count: i32,
    #[serde(default)]
    ready: bool,
    state: Option<WireContainerState>,
}

#[derive(serde::Deserialize)]
struct WireContainerState {
    terminated: Option<WireTerminated>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTerminated {
    #[serde(default)]
    exit_code: i32,
}

impl From<WireStatus> for CachedPodStatus {
    fn from(w: WireStatus) -> Self {
        let failure = (w.phase.as_deref() == Some("Failed")).then(|| {
            let exit_codes = w
                .container_statuses
                .iter()
                .chain(w.init_container_statuses.iter())
                .flatten()
                .filter_map(|c| {
                    let t = c.state.as_ref()?.terminated.as_ref()?;
                    Some((c.name.clone(), t.exit_code))
                })
                .collect();
            let conditions = w
                .conditions
                .iter()
                .flatten()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect();
            Box::new(FailureFacts {
                exit_codes,
                conditions,
            })
        });
        CachedPodStatus {
            ready: w
                .conditions
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "Ready"),
            container_statuses: w.container_statuses.map(|cs| {
                cs.into_iter()
                    .map(|c| CachedContainerStatus {
                        name: c.name,
                        restart_count: c.restart_count,
                        ready: c.ready,
                    })
                    .collect()
            }),
            phase: w.phase,
            pod_ip: w.pod_ip,
            start_time: w.start_time,
            failure,
        }
    }
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub last_transition_time: Option<Time>,
}

#[derive(Clone, Debug, Default)]
pub struct CachedContainerStatus {
    pub name: String,
    pub restart_count: i32,
    pub ready: bool,
}

impl Resource for CachedPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The labels of a cached object: pods keep theirs beside `metadata` (interned).
pub trait Labels {
    fn labels(&self) -> &BTreeMap<String, String>;
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Labels for CachedPod {
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

impl Labels for k8s_openapi::api::apps::v1::ReplicaSet {
    fn labels(&self) -> &BTreeMap<String, String> {
        self.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }
}

/// Not finished (Succeeded/Failed) and not being deleted: counts toward replicas.
pub fn is_active(pod: &CachedPod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition became True, if it is True.
pub fn ready_since(pod: &CachedPod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .ready
        .as_ref()
        .filter(|c| c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        })
}

pub fn is_ready(pod: &CachedPod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &CachedPod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + jiff::SignedDuration::from_secs(min_ready_seconds as i64) <= now,
    }
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner`, as controllers put on what they create.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Adopts `obj` for `owner` (adds the controller reference) or releases it (removes the
/// owner's reference), guarded by the object's resourceVersion. A conflict or a vanished
/// object is not an error: the watch brings the next state and the owner is synced again.
pub async fn set_controller<O, T>(
    client: &kube::Client,
    owner: &O,
    obj: &T,
    adopt: bool,
) -> Result<(), kube::Error>
where
    O: Resource<DynamicType = ()>,
    T: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let meta = obj.meta();
    let api: kube::Api<T> = kube::Api::namespaced(
        client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut refs: Vec<OwnerReference> = meta
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != uid)
        .collect();
    if adopt {
        refs.push(controller_ref(owner));
    }
    let patch = serde_json::json!({ "metadata": {
        "ownerReferences": refs,
        "resourceVersion": meta.resource_version,
    }});
    match api
        .patch(
            meta.name.as_deref().unwrap_or_default(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new pod (to be named by the server from `<prefix>-`) from a template, owned by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Whether every label of `template` is on the pod (`fullyLabeledReplicas`).
pub fn fully_labeled(pod: &CachedPod, template_labels: &BTreeMap<String, String>) -> bool {
    template_labels
        .iter()
        .all(|(k, v)| pod.labels.get(k) == Some(v))
}

fn phase_rank(pod: &CachedPod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn restarts(pod: &CachedPod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Kubernetes' order of deletion (ActivePods' "less"): unscheduled before scheduled, pending
/// before unknown before running, not ready before ready, ready more recently before longer,
/// more restarts before fewer, newer before older.
pub fn deletion_order(a: &CachedPod, b: &CachedPod) -> Ordering {
    let scheduled = |p: &CachedPod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &CachedPod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(b).cmp(&created(a))
        })
}

#[cfg(test)]
pub(crate) mod testing {
    use super::CachedPod;
    use serde_json::{Value, json};

    /// A pod fixture: `pod("p").node("n").ready("2026-01-01T00:00:00Z").build()`.
    pub struct PodFixture(Value);

    pub fn pod(name: &str) -> PodFixture {
        PodFixture(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending"}
        }))
    }

    impl PodFixture {
        pub fn node(mut self, n: &str) -> Self {
            self.0["spec"]["nodeName"] = json!(n);
            self
        }
        pub fn running(mut self) -> Self {
            self.0["status"]["phase"] = json!("Running");
            self
        }
        pub fn ready(mut self, since: &str) -> Self {
            self.0["status"]["phase"] = json!("Running");
            self.0["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": since}]);
            self
        }
        pub fn created(mut self, at: &str) -> Self {
            self.0["metadata"]["creationTimestamp"] = json!(at);
            self
        }
        pub fn restarts(mut self, n: i32) -> Self {
            self.0["status"]["containerStatuses"] = json!([{"name": "c", "image": "busybox", "imageID": "",
                "ready": false, "restartCount": n}]);
            self
        }
        pub fn label(mut self, k: &str, v: &str) -> Self {
            self.0["metadata"]["labels"][k] = json!(v);
            self
        }
        pub fn owner(mut self, kind: &str, name: &str, uid: &str) -> Self {
            self.0["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
                "name": name, "uid": uid, "controller": true}]);
            self
        }
        pub fn affinity_node(mut self, n: &str) -> Self {
            self.0["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]}}});
            self
        }
        pub fn failed(mut self) -> Self {
            self.0["status"]["phase"] = json!("Failed");
            self
        }
        pub fn deleting(mut self) -> Self {
            self.0["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            self
        }
        pub fn build(self) -> CachedPod {
            serde_json::from_value(self.0).expect("pod fixture")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod;
    use super::*;

    #[test]
    fn a_watched_pod_keeps_what_controllers_read_in_exact_allocations() {
        let pod: CachedPod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-1", "namespace": "team", "uid": "u1", "resourceVersion": "7",
                "generateName": "web-", "annotations": {"a": "b"}, "labels": {"app": "web"},
                "managedFields": [{"manager": "m", "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": "web", "uid": "rs1", "controller": true}],
                "finalizers": ["f"],
            },
            "status": {"containerStatuses": [{"name": "c", "restartCount": 2, "ready": true}]},
        }))
        .unwrap();
        let m = &pod.metadata;
        assert_eq!(m.name.as_deref(), Some("web-1"));
        assert_eq!(m.namespace.as_deref(), Some("team"));
        assert_eq!(m.resource_version.as_deref(), Some("7"));
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
        assert!(m.annotations.is_none() && m.managed_fields.is_none());
        assert!(m.generate_name.is_none() && m.labels.is_none());
        let owners = m.owner_references.as_ref().unwrap();
        assert_eq!((owners.len(), owners.capacity()), (1, 1));
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(m.finalizers.as_ref().map(Vec::capacity), Some(1));
        let statuses = pod.status.unwrap().container_statuses.unwrap();
        assert_eq!((statuses.len(), statuses.capacity()), (1, 1));
        assert_eq!(statuses[0].restart_count, 2);
    }

    #[test]
    fn only_the_job_index_failure_counts_are_kept_of_the_annotations() {
        let pod: CachedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j-0-x", "annotations": {
                "batch.kubernetes.io/job-index-failure-count": "2",
                "batch.kubernetes.io/job-completion-index": "0",
                "big": {"not": "a string"},
            }},
        }))
        .unwrap();
        let kept = pod.metadata.annotations.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[KEPT_ANNOTATIONS[0]], "2");
    }

    #[test]
    fn deletion_prefers_unscheduled_then_unready_then_newest() {
        let mut pods = [
            pod("old-ready")
                .node("n")
                .ready("2026-01-01T00:00:00Z")
                .build(),
            pod("unscheduled").build(),
            pod("pending-on-node").node("n").build(),
            pod("running-not-ready").node("n").running().build(),
            pod("new-ready")
                .node("n")
                .ready("2026-01-01T00:00:00Z")
                .created("2026-01-02T00:00:00Z")
                .build(),
            pod("recently-ready")
                .node("n")
                .ready("2026-01-03T00:00:00Z")
                .build(),
            pod("crashy").node("n").running().restarts(5).build(),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending-on-node",
                "crashy",
                "running-not-ready",
                "recently-ready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let p = pod("p").ready("2026-01-01T00:00:00Z").build();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert!(is_available(&p, 0, at("2026-01-01T00:00:00Z")));
        assert!(!is_available(&p, 10, at("2026-01-01T00:00:05Z")));
        assert!(is_available(&p, 10, at("2026-01-01T00:00:10Z")));
        assert!(!is_available(
            &pod("q").build(),
            0,
            at("2026-01-01T00:00:00Z")
        ));
        assert!(!is_active(&pod("d").deleting().build()));
    }
}
