//! The DaemonSet controller: one pod per eligible node. For each DaemonSet:
//!
//! - keeps its template history as ControllerRevisions (`<name>-<hash>`, labelled
//!   `controller-revision-hash`, holding a patch that replaces `spec.template`, which is what
//!   `kubectl rollout history|undo ds/x` read and apply), the current one numbered highest;
//! - decides per node whether a pod should run there (`nodeName`, `nodeSelector`, required
//!   node affinity, NoSchedule/NoExecute taints against the template's tolerations plus the
//!   ones Kubernetes adds to every daemon pod) and whether a running one may stay (an untolerated
//!   NoSchedule taint keeps it, an untolerated NoExecute one does not);
//! - creates missing pods, placed through the scheduler by a required node-affinity term
//!   `matchFields metadata.name In [node]`, deletes pods on nodes that stopped matching,
//!   extra pods, and failed pods (with a per-node backoff so a crashing pod is not replaced in
//!   a tight loop);
//! - rolls a template change out: `RollingUpdate` deletes old pods while at most
//!   `maxUnavailable` nodes lack an available pod (or, with `maxSurge`, starts new pods beside
//!   old ones on at most `maxSurge` nodes), `OnDelete` waits for the user to delete them;
//! - reports status (scheduled, misscheduled, desired, ready, updated, available, unavailable,
//!   observedGeneration), which `kubectl rollout status ds/x` reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use skiff_client::events::{EventType, Recorder};
use skiff_client::informer::{Change, Informer, key_of, split_key};
use skiff_client::tolerations::tolerates;
use tokio::time::Instant;

use crate::context::Context;
use crate::controller::{Controller, Expectations, PARALLEL, Reconciler, Result};
use crate::controllers::history;
use crate::controllers::replicaset::claim;
use crate::pods::{self, CachedPod};
use crate::workqueue::WorkQueue;

pub use crate::controllers::history::HASH_LABEL;
/// The deprecated label with the DaemonSet's template generation, still set and read.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation (kept by the apiserver) counting template changes.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// At most this many pods are created or deleted in one sync (Kubernetes' burstReplicas for
/// DaemonSets).
pub const BURST: usize = 250;
/// Failed-pod replacement backoff per (DaemonSet, node): 1 s doubling to 15 min.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

// ---- pure rules ----------------------------------------------------------------------------

/// The tolerations Kubernetes adds to every daemon pod, so that node conditions (which the
/// node lifecycle controller turns into taints) neither evict nor block it; `hostNetwork`
/// pods also tolerate an unconfigured pod network.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut all = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    all
}

/// Adds the daemon tolerations to a pod spec; one with the same key, operator, value and
/// effect is replaced (Kubernetes' AddOrUpdateTolerationInPod).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut list = spec.tolerations.take().unwrap_or_default();
    for d in daemon_tolerations(spec.host_network == Some(true)) {
        let same = |t: &Toleration| {
            t.key == d.key
                && t.operator.as_deref().unwrap_or("Equal") == d.operator.as_deref().unwrap_or("")
                && t.value.as_deref().unwrap_or("") == d.value.as_deref().unwrap_or("")
                && t.effect == d.effect
        };
        match list.iter_mut().find(|t| same(t)) {
            Some(t) => *t = d,
            None => list.push(d),
        }
    }
    spec.tolerations = Some(list);
}

/// The affinity with its required node terms replaced by `matchFields metadata.name In
/// [node]` (the node was already checked against them), as Kubernetes places daemon pods.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let pinned = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(pinned);
    a
}

/// Whether a daemon pod should be started on `node`, and whether one already there may keep
/// running (Kubernetes' NodeShouldRunDaemonPod). `spec` is the template's pod spec with the
/// daemon tolerations added.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && n != name
    {
        return (false, false);
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_fits = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity_fits = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|s| {
            s.node_selector_terms
                .iter()
                .any(|t| skiff_client::selector::term_matches(t, name, labels))
        });
    if !selector_fits || !affinity_fits {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .any(|t| t.effect == effect && !tolerates(tolerations, t))
    };
    let no_execute = untolerated("NoExecute");
    if no_execute || untolerated("NoSchedule") {
        return (false, !no_execute);
    }
    (true, true)
}

/// The node a daemon pod is on, or bound for (Kubernetes' GetTargetNodeName).
pub fn target_node(pod: &CachedPod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    spec.node_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(spec.affinity_node.as_deref())
}

fn is_terminal(pod: &CachedPod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether a pod runs the current template: its hash label or its (deprecated) template
/// generation label says so.
pub fn is_updated(pod: &CachedPod, hash: &str, generation: Option<&str>) -> bool {
    (!hash.is_empty() && pod.labels.get(HASH_LABEL).map(String::as_str) == Some(hash))
        || generation.is_some_and(|g| {
            pod.labels
                .get(TEMPLATE_GENERATION_LABEL)
                .map(String::as_str)
                == Some(g)
        })
}

fn by_age(pods: &mut [&Arc<CachedPod>]) {
    pods.sort_by(|a, b| {
        let t = |p: &CachedPod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// What one node needs (Kubernetes' podsShouldBeOnNode, less the backoff, which the caller
/// applies to `failed`).
#[derive(Debug, Default, PartialEq)]
pub struct NodePlan {
    pub create: bool,
    pub delete: Vec<String>,
    /// Failed pods to replace (deleted unless the node is in backoff).
    pub failed: Vec<String>,
}

/// Decides for one node from [`should_run`]'s answer and the daemon pods bound to it.
#[allow(clippy::too_many_arguments)]
pub fn plan_node(
    run: bool,
    keep: bool,
    pods: &[Arc<CachedPod>],
    hash: &str,
    generation: Option<&str>,
    surge: bool,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> NodePlan {
    let mut plan = NodePlan::default();
    if run && pods.is_empty() {
        plan.create = true;
        return plan;
    }
    if !keep {
        plan.delete = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        return plan;
    }
    let mut running: Vec<&Arc<CachedPod>> = Vec::new();
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Failed") => plan.failed.push(p.name_any()),
            Some("Succeeded") => plan.delete.push(p.name_any()),
            _ => running.push(p),
        }
    }
    if running.len() <= 1 {
        return plan;
    }
    by_age(&mut running);
    if !surge {
        plan.delete
            .extend(running.iter().skip(1).map(|p| p.name_any()));
        return plan;
    }
    // With surge, two pods may share a node only while the oldest new one is not yet
    // available and the oldest old one is ready.
    let (mut new, mut old) = (None, None);
    for p in running {
        let slot = if is_updated(p, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            plan.delete.push(p.name_any());
        }
    }
    if let (Some(n), Some(o)) = (new, old)
        && (!pods::is_ready(o) || pods::is_available(n, min_ready_seconds, now))
    {
        plan.delete.push(o.name_any());
    }
    plan
}

/// Resolves an int-or-percent of `total`, rounding up (as DaemonSets do for both fields).
pub fn scaled(v: Option<&IntOrString>, default: i32, total: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => (*i).max(0),
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<f64>) {
            Some(Ok(pct)) => (pct * total as f64 / 100.0).ceil() as i32,
            _ => s.parse().unwrap_or(default),
        },
    }
}

/// One RollingUpdate step: old pods to delete and nodes to surge a new pod onto. `by_node`
/// holds every node with daemon pods and every node that should run one (empty then).
pub fn rolling_update(
    by_node: &BTreeMap<String, Vec<Arc<CachedPod>>>,
    hash: &str,
    generation: Option<&str>,
    max_surge: i32,
    max_unavailable: i32,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> (Vec<String>, Vec<String>) {
    let available = |p: &CachedPod| pods::is_available(p, min_ready_seconds, now);
    // The node's one new and one old pod; None when it has more (the manage step cleans up).
    let split = |ps: &[Arc<CachedPod>]| {
        let (mut new, mut old) = (None, None);
        for p in ps
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let slot = if is_updated(p, hash, generation) {
                &mut new
            } else {
                &mut old
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(p.clone());
        }
        Some((new, old))
    };
    let mut delete = Vec::new();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for ps in by_node.values() {
            match split(ps) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(n), None)) => unavailable += i32::from(!available(&n)),
                Some((None, Some(o))) => {
                    if !available(&o) {
                        // Already down: replacing it costs no availability.
                        delete.push(o.name_any());
                    } else if unavailable < max_unavailable {
                        candidates.push(o.name_any());
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        delete.extend(candidates.into_iter().take(room));
        return (delete, Vec::new());
    }
    let mut surged = 0;
    let (mut allowed, mut candidates) = (Vec::new(), Vec::new());
    for (node, ps) in by_node {
        match split(ps) {
            None => surged += 1,
            Some((_, None)) => {}
            Some((None, Some(o))) => {
                if !available(&o) {
                    allowed.push(node.clone());
                } else if surged < max_surge {
                    candidates.push(node.clone());
                }
            }
            Some((Some(n), Some(o))) => {
                if available(&n) {
                    delete.push(o.name_any());
                } else {
                    surged += 1;
                }
            }
        }
    }
    let room = (max_surge - surged).max(0) as usize;
    allowed.extend(candidates.into_iter().take(room));
    (delete, allowed)
}

/// The status counts (Kubernetes' updateDaemonSetStatus): per node that should run a pod,
/// whether one is scheduled, and whether its oldest is ready, available and updated; pods on
/// nodes that should not run one are misscheduled.
pub fn compute_status(
    nodes: &[(String, bool)],
    by_node: &BTreeMap<String, Vec<Arc<CachedPod>>>,
    hash: &str,
    generation: Option<&str>,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Value {
    let (mut desired, mut current, mut miss, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    for (node, run) in nodes {
        let mut ps: Vec<&Arc<CachedPod>> = by_node.get(node).into_iter().flatten().collect();
        if *run {
            desired += 1;
            if ps.is_empty() {
                continue;
            }
            current += 1;
            by_age(&mut ps);
            let p = ps[0];
            ready += i32::from(pods::is_ready(p));
            available += i32::from(pods::is_available(p, min_ready_seconds, now));
            updated += i32::from(is_updated(p, hash, generation));
        } else if !ps.is_empty() {
            miss += 1;
        }
    }
    json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": miss,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
        "updatedNumberScheduled": updated,
    })
}

/// Per (DaemonSet, node) backoff for replacing failed pods.
#[derive(Default)]
struct Backoff {
    map: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl Backoff {
    /// Whether the key is still backing off since its last step; if so, for how long.
    fn waiting(&self, key: &str) -> Option<Duration> {
        let map = self.map.lock().expect("backoff lock");
        let (d, at) = map.get(key)?;
        (at.elapsed() < *d).then(|| *d - at.elapsed())
    }

    /// Steps the key's backoff (reset after a long quiet spell).
    fn step(&self, key: &str) {
        let mut map = self.map.lock().expect("backoff lock");
        let now = Instant::now();
        let e = map.entry(key.to_string()).or_insert((Duration::ZERO, now));
        e.0 = if e.0.is_zero() || e.1.elapsed() > 2 * BACKOFF_MAX {
            BACKOFF_INITIAL
        } else {
            (e.0 * 2).min(BACKOFF_MAX)
        };
        e.1 = now;
    }
}

// ---- the controller ------------------------------------------------------------------------

pub struct DaemonSetController {
    ctx: Arc<Context>,
    client: kube::Client,
    daemonsets: Arc<Informer<DaemonSet>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Arc<Expectations>,
    backoff: Backoff,
    recorder: Recorder,
}

fn node_relevant_change(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    old.metadata.labels != new.metadata.labels || spec(old) != spec(new)
}

impl DaemonSetController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let daemonsets = ctx.daemonsets();
        let revisions = ctx.controller_revisions();
        let expectations = Arc::new(Expectations::default());

        let q = queue.clone();
        let all = daemonsets.clone();
        daemonsets.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(o) => q.add(key_of(*o)),
            Change::Resynced => all.list().iter().for_each(|o| q.add(key_of(o.as_ref()))),
        });

        let q = queue.clone();
        let all = daemonsets.clone();
        ctx.nodes.on_change(move |c| {
            let relevant = match c {
                Change::Applied {
                    old: Some(old),
                    new,
                } => node_relevant_change(old, new),
                Change::Applied { old: None, .. } | Change::Deleted(_) => true,
                Change::Resynced => true,
            };
            if relevant {
                all.list().iter().for_each(|o| q.add(key_of(o.as_ref())));
            }
        });

        let q = queue.clone();
        revisions.on_change(move |c| {
            let cr = match c {
                Change::Applied { new, .. } => *new,
                Change::Deleted(o) => *o,
                Change::Resynced => return,
            };
            if let Some(r) = pods::controller_of(&cr.metadata).filter(|r| r.kind == "DaemonSet") {
                q.add(format!("{}/{}", cr.namespace().unwrap_or_default(), r.name));
            }
        });

        crate::controller::queue_pod_owners(
            &ctx.pods,
            daemonsets.clone(),
            |ds: &DaemonSet| ds.spec.as_ref().map(|s| s.selector.clone()),
            expectations.clone(),
            queue,
        );

        Arc::new(DaemonSetController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                "daemonset-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            ctx,
            daemonsets,
            revisions,
            expectations,
            backoff: Backoff::default(),
        })
    }

    /// Creates a pod on each of `nodes` and deletes `delete`; returns a creation error, if any.
    async fn sync_nodes(
        &self,
        key: &str,
        ds: &DaemonSet,
        template: &PodTemplateSpec,
        nodes: Vec<String>,
        delete: Vec<String>,
    ) -> Option<String> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let nodes: Vec<String> = nodes.into_iter().take(BURST).collect();
        let delete: Vec<String> = delete.into_iter().take(BURST).collect();
        self.expectations.expect_creations(key, nodes.len() as i64);
        let base = pods::pod_from_template(template, &ns, &ds.name_any(), pods::controller_ref(ds));
        let created: Vec<_> = futures::stream::iter(nodes)
            .map(|node| {
                let api = api.clone();
                let mut pod = base.clone();
                if let Some(spec) = pod.spec.as_mut() {
                    spec.affinity = Some(pin_to_node(spec.affinity.take(), &node));
                }
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
        for r in created {
            match r {
                Ok(name) => self.recorder.publish(
                    ds.object_ref(&()),
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
                    self.recorder.publish(
                        ds.object_ref(&()),
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {msg}"),
                    );
                    failure = Some(msg);
                }
            }
        }
        crate::controller::delete_pods(
            &self.client,
            &self.recorder,
            &self.expectations,
            key,
            &ds.object_ref(&()),
            &ns,
            delete,
        )
        .await;
        failure
    }
}

impl Controller for DaemonSetController {
    const SERVICE_ACCOUNT: &'static str = "daemon-set-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for DaemonSetController {
    const NAME: &'static str = "daemonset";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(ds) = self.daemonsets.get(Some(ns), name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(spec) = ds.spec.as_ref() else {
            return Ok(None);
        };
        if skiff_client::selector::is_empty(&spec.selector)
            || ds.metadata.deletion_timestamp.is_some()
        {
            return Ok(None);
        }
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let claims = claim(&uid, &spec.selector, false, self.ctx.pods.list_in(ns));
        for p in &claims.release {
            pods::set_controller(&self.client, ds.as_ref(), p.as_ref(), false).await?;
        }
        let mut owned = claims.owned;
        for p in claims.adopt {
            pods::set_controller(&self.client, ds.as_ref(), p.as_ref(), true).await?;
            owned.push(p);
        }

        let collisions = ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let (current, old) = history::sync(
            &self.client,
            &self.revisions,
            ds.as_ref(),
            &spec.template,
            collisions,
        )
        .await?;
        let hash = current.hash;
        let generation = ds
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION).cloned());
        let generation = generation.as_deref();

        // The template new pods are made from: the current hash and generation labels, and
        // the daemon tolerations (which the eligibility rules also see).
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        let labels = meta.labels.get_or_insert_with(Default::default);
        labels.insert(HASH_LABEL.into(), hash.clone());
        if let Some(g) = generation {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.into());
        }
        let pod_spec = template.spec.get_or_insert_with(Default::default);
        add_daemon_tolerations(pod_spec);
        let pod_spec = pod_spec.clone();

        let nodes = self.ctx.nodes.list();
        let node_names: std::collections::HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let mut by_node: BTreeMap<String, Vec<Arc<CachedPod>>> = BTreeMap::new();
        let mut stranded = Vec::new();
        for p in owned {
            if p.metadata.deletion_timestamp.is_some() && is_terminal(&p) {
                continue;
            }
            match target_node(&p) {
                Some(n) if node_names.contains(n) => {
                    by_node.entry(n.to_string()).or_default().push(p)
                }
                // A pod bound for a node that is gone (or for none) can never run.
                _ if p.metadata.deletion_timestamp.is_none()
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_none() =>
                {
                    stranded.push(p.name_any())
                }
                _ => {}
            }
        }

        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let strategy = spec.update_strategy.as_ref();
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let on_delete = strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete");
        let now = jiff::Timestamp::now();
        let decisions: Vec<(String, bool, bool)> = nodes
            .iter()
            .map(|n| {
                let (run, keep) = should_run(&pod_spec, n);
                (n.name_any(), run, keep)
            })
            .collect();
        let desired = decisions.iter().filter(|d| d.1).count() as i32;
        let mut max_surge = if on_delete {
            0
        } else {
            scaled(rolling.and_then(|r| r.max_surge.as_ref()), 0, desired)
        };
        let mut max_unavailable =
            scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), 1, desired);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        if on_delete {
            max_surge = 0;
        }

        let mut failure = None;
        let mut again: Option<Duration> = None;
        let mut sooner = |d: Duration| again = Some(again.map_or(d, |a| a.min(d)));
        if self.expectations.satisfied(key) {
            let mut create = Vec::new();
            let mut delete = stranded;
            for (node, run, keep) in &decisions {
                let ps = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
                let plan = plan_node(
                    *run,
                    *keep,
                    ps,
                    &hash,
                    generation,
                    max_surge > 0,
                    min_ready,
                    now,
                );
                if plan.create {
                    create.push(node.clone());
                }
                delete.extend(plan.delete);
                let backoff_key = format!("{key}/{node}");
                for f in plan.failed {
                    if let Some(wait) = self.backoff.waiting(&backoff_key) {
                        sooner(wait);
                        continue;
                    }
                    self.backoff.step(&backoff_key);
                    self.recorder.publish(
                        ds.object_ref(&()),
                        EventType::Warning,
                        "FailedDaemonPod",
                        format!(
                            "Found failed daemon pod {ns}/{f} on node {node}, will try to kill it"
                        ),
                    );
                    delete.push(f);
                }
            }
            if !create.is_empty() || !delete.is_empty() {
                failure = self.sync_nodes(key, &ds, &template, create, delete).await;
            } else if !on_delete {
                let mut wanted = by_node.clone();
                for (node, run, _) in &decisions {
                    if *run {
                        wanted.entry(node.clone()).or_default();
                    }
                }
                let (delete, surge) = rolling_update(
                    &wanted,
                    &hash,
                    generation,
                    max_surge,
                    max_unavailable,
                    min_ready,
                    now,
                );
                if !delete.is_empty() || !surge.is_empty() {
                    failure = self.sync_nodes(key, &ds, &template, surge, delete).await;
                }
            }
            // Revisions a live pod still runs are kept.
            let live: std::collections::HashSet<&str> = by_node
                .values()
                .flatten()
                .filter_map(|p| p.labels.get(HASH_LABEL).map(String::as_str))
                .collect();
            let limit = spec.revision_history_limit.unwrap_or(10);
            history::cleanup(&self.client, ns, old, limit, |cr| {
                live.contains(history::hash_of(cr).as_str())
            })
            .await?;
        }

        let node_runs: Vec<(String, bool)> = decisions
            .iter()
            .map(|(n, run, _)| (n.clone(), *run))
            .collect();
        let mut status = compute_status(&node_runs, &by_node, &hash, generation, min_ready, now);
        status["observedGeneration"] = json!(ds.metadata.generation.unwrap_or(0));
        let current = serde_json::to_value(&ds.status).unwrap_or(json!({}));
        if let Some(c) = current.get("collisionCount") {
            status["collisionCount"] = c.clone();
        }
        if let Some(c) = current.get("conditions") {
            status["conditions"] = c.clone();
        }
        let changed = status
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| current.get(k).cloned().unwrap_or(json!(0)) != *v);
        if changed {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            match crate::update::status(&api, name, &status).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if failure.is_some() {
            sooner(Duration::from_secs(10));
        }
        if min_ready > 0 && status["numberAvailable"] != status["numberReady"] {
            sooner(Duration::from_secs(min_ready as u64));
        }
        Ok(again)
    }
}

#[cfg(test)]
mod tests;
