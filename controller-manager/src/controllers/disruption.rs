//! The disruption controller: keeps each PodDisruptionBudget's status (how many of its pods
//! are healthy, how many must be, how many disruptions the eviction subresource may grant)
//! current, as kube-controller-manager's does. The expected pod count comes from the
//! controllers owning the pods (their `spec.replicas`, or the scale subresource for kinds it
//! does not cache) when the budget is a `maxUnavailable` or a percentage; evictions the
//! apiserver granted but the pod informer has not yet seen (`disruptedPods`) count as gone for
//! two minutes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use skiff_client::events::{EventType, Recorder};
use skiff_client::informer::{Change, Informer, key_of, split_key};

use crate::context::Context;
use crate::controller::{Controller, Error, Reconciler, Result};
use crate::pods::{self, CachedPod};
use crate::workqueue::WorkQueue;

/// How long an eviction the apiserver granted keeps its pod out of the healthy count while
/// the pod is not yet seen deleted (upstream's DeletionTimeout).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// The condition kube-controller-manager keeps on every budget, and its reasons.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// How soon a budget whose sync failed is looked at again (upstream waits for the next change
/// of a pod or of the budget; a missing controller may appear without either).
const RETRY_FAILED: Duration = Duration::from_secs(30);

/// What the status needs of the pods' owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// `minAvailable` as a number: the matching pods are the expected ones.
    Pods,
    /// `maxUnavailable`, or `minAvailable` as a percentage: the owners' scale is.
    Scale,
}

/// Whether the budget's arithmetic needs the owners' scale.
pub fn counting(pdb: &PodDisruptionBudget) -> Counting {
    let spec = pdb.spec.as_ref();
    let max_unavailable = spec.and_then(|s| s.max_unavailable.as_ref());
    let min_available = spec.and_then(|s| s.min_available.as_ref());
    match (max_unavailable, min_available) {
        (Some(_), _) | (None, Some(IntOrString::String(_))) => Counting::Scale,
        _ => Counting::Pods,
    }
}

/// An int-or-percent scaled against `total`, rounding up (upstream's
/// GetScaledValueFromIntOrPercent with roundUp).
pub fn scaled(value: &IntOrString, total: i32) -> std::result::Result<i32, String> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok(((pct * total as i64 + 99) / 100) as i32)
        }
    }
}

/// `(expectedPods, desiredHealthy)` of a budget over `pods` matching pods whose owners' scale
/// adds up to `scale` (needed only when [`counting`] says so): upstream's getExpectedPodCount.
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: usize,
    scale: Option<i32>,
) -> std::result::Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let need_scale = || scale.ok_or_else(|| "the owners' scale is unknown".to_string());
    if let Some(max_unavailable) = &spec.max_unavailable {
        let expected = need_scale()?;
        let desired = (expected - scaled(max_unavailable, expected)?).max(0);
        return Ok((expected, desired));
    }
    match &spec.min_available {
        Some(n @ IntOrString::Int(_)) => Ok((pods as i32, scaled(n, 0)?)),
        Some(pct @ IntOrString::String(_)) => {
            let expected = need_scale()?;
            Ok((expected, scaled(pct, expected)?))
        }
        None => Ok((0, 0)),
    }
}

/// The budget's `disruptedPods` pruned to the pods that still exist, are not yet being
/// deleted and were granted less than [`DELETION_TIMEOUT`] ago; with the earliest time one of
/// them expires (the budget must be looked at again then) and the pods whose grant expired
/// without their deletion.
pub fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<CachedPod>],
    now: jiff::Timestamp,
) -> (
    BTreeMap<String, jiff::Timestamp>,
    Option<jiff::Timestamp>,
    Vec<String>,
) {
    let granted = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let mut kept = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    let mut expired = Vec::new();
    let Some(granted) = granted else {
        return (kept, recheck, expired);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
        let Some(at) = granted.get(&name) else {
            continue;
        };
        let deadline = at.0 + timeout();
        if deadline < now {
            expired.push(name);
        } else {
            recheck = Some(recheck.map_or(deadline, |r| r.min(deadline)));
            kept.insert(name, at.0);
        }
    }
    (kept, recheck, expired)
}

fn timeout() -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(DELETION_TIMEOUT).expect("a small duration")
}

/// Pods that are ready, not being deleted, and not about to be (a recent grant in
/// `disrupted`): upstream's countHealthyPods.
pub fn current_healthy(
    pods: &[Arc<CachedPod>],
    disrupted: &BTreeMap<String, jiff::Timestamp>,
    now: jiff::Timestamp,
) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .is_none_or(|at| *at + timeout() <= now)
        })
        .filter(|p| pods::is_ready(p))
        .count() as i32
}

/// The counts a budget's status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
    pub disrupted_pods: BTreeMap<String, jiff::Timestamp>,
}

impl Counts {
    /// Disruptions the budget allows: the healthy pods above the desired, none while it
    /// expects no pods (so a budget whose first pods appear before this controller looks at
    /// them is safe).
    pub fn disruptions_allowed(&self) -> i32 {
        if self.expected_pods <= 0 {
            return 0;
        }
        (self.current_healthy - self.desired_healthy).max(0)
    }
}

/// The `DisruptionAllowed` condition in `conditions` set to `(status, reason, message)`, its
/// transition time kept unless its status changes (metav1's SetStatusCondition).
fn set_condition(
    conditions: &[Value],
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: jiff::Timestamp,
) -> Vec<Value> {
    let mut out: Vec<Value> = conditions.to_vec();
    let old = out.iter().position(|c| c["type"] == DISRUPTION_ALLOWED);
    let since = match old.map(|i| &out[i]) {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(skiff_common::time::rfc3339(now)),
    };
    let cond = json!({
        "type": DISRUPTION_ALLOWED, "status": status, "observedGeneration": generation,
        "lastTransitionTime": since, "reason": reason, "message": message,
    });
    match old {
        Some(i) => out[i] = cond,
        None => out.push(cond),
    }
    out
}

fn current_conditions(pdb: &PodDisruptionBudget) -> Vec<Value> {
    pdb.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The budget's status for `counts`, or None when the stored one already says it
/// (upstream's updatePdbStatus, with ConditionsAreUpToDate).
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    counts: &Counts,
    now: jiff::Timestamp,
) -> Option<Value> {
    let generation = pdb.metadata.generation.unwrap_or(0);
    let allowed = counts.disruptions_allowed();
    let (status, reason) = if allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let old = pdb.status.clone().unwrap_or_default();
    let old_disrupted: BTreeMap<String, jiff::Timestamp> = old
        .disrupted_pods
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0))
        .collect();
    let condition_current = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
        .is_some_and(|c| c.status == status && c.reason == reason);
    if old.current_healthy == counts.current_healthy
        && old.desired_healthy == counts.desired_healthy
        && old.expected_pods == counts.expected_pods
        && old.disruptions_allowed == allowed
        && old_disrupted == counts.disrupted_pods
        && old.observed_generation == Some(generation)
        && condition_current
    {
        return None;
    }
    let disrupted: serde_json::Map<String, Value> = counts
        .disrupted_pods
        .iter()
        .map(|(k, v)| (k.clone(), json!(skiff_common::time::rfc3339(*v))))
        .collect();
    let mut out = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": counts.current_healthy,
        "desiredHealthy": counts.desired_healthy,
        "expectedPods": counts.expected_pods,
        "conditions": set_condition(&current_conditions(pdb), status, reason, "", generation, now),
    });
    if !disrupted.is_empty() {
        out["disruptedPods"] = Value::Object(disrupted);
    }
    Some(out)
}

/// The status written when a sync fails: no disruptions, and why (upstream's failSafe).
pub fn fail_safe_status(pdb: &PodDisruptionBudget, why: &str, now: jiff::Timestamp) -> Value {
    let mut status =
        serde_json::to_value(pdb.status.clone().unwrap_or_default()).unwrap_or_else(|_| json!({}));
    let observed = pdb
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    status["disruptionsAllowed"] = json!(0);
    status["conditions"] = json!(set_condition(
        &current_conditions(pdb),
        "False",
        SYNC_FAILED,
        why,
        observed,
        now,
    ));
    status
}

/// The pods of the budget's namespace its selector matches: policy/v1's rule, where an
/// empty selector matches every pod and a missing one none.
pub fn pods_of(pdb: &PodDisruptionBudget, candidates: Vec<Arc<CachedPod>>) -> Vec<Arc<CachedPod>> {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    candidates
        .into_iter()
        .filter(|p| skiff_client::selector::matches(sel, &p.labels))
        .collect()
}

fn selects(pdb: &PodDisruptionBudget, labels: &BTreeMap<String, String>) -> bool {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s: &LabelSelector| skiff_client::selector::matches(s, labels))
}

pub struct DisruptionController {
    ctx: Arc<Context>,
    client: kube::Client,
    budgets: Arc<Informer<PodDisruptionBudget>>,
    recorder: Recorder,
}

impl Controller for DisruptionController {
    const SERVICE_ACCOUNT: &'static str = "disruption-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let budgets = ctx.pod_disruption_budgets();
        crate::controller::queue_every_change(&budgets, queue.clone());
        // A pod's change concerns every budget of its namespace selecting it, before or after.
        let lookup = budgets.clone();
        ctx.pods.on_change(move |c| {
            let touch = |p: &CachedPod| {
                let ns = p.namespace().unwrap_or_default();
                for b in lookup.list_in(&ns) {
                    if selects(&b, &p.labels) {
                        queue.add(key_of(b.as_ref()));
                    }
                }
            };
            match c {
                Change::Applied { old, new } => {
                    touch(new);
                    if let Some(old) = old
                        && old.labels != new.labels
                    {
                        touch(old);
                    }
                }
                Change::Deleted(p) => touch(p),
                Change::Resynced => {}
            }
        });
        Arc::new(DisruptionController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                "controllermanager",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            ctx: ctx.clone(),
            budgets,
        })
    }
}

impl DisruptionController {
    /// The scale of the controller owning a pod, by its UID: ReplicaSets (or the Deployment
    /// owning one), ReplicationControllers from the caches, any other kind (StatefulSets,
    /// custom workloads) through its scale subresource. None: no such controller (any more).
    async fn controller_scale(
        &self,
        ns: &str,
        owner: &OwnerReference,
    ) -> Result<Option<(String, i32)>> {
        let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
        match (group, owner.kind.as_str()) {
            ("apps", "ReplicaSet") => {
                let Some(rs) = self.ctx.replicasets.get(Some(ns), &owner.name) else {
                    return Ok(None);
                };
                if rs.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
                    return Ok(None);
                }
                if let Some(d) = pods::controller_of(&rs.metadata)
                    .filter(|r| r.kind == "Deployment" && r.api_version.starts_with("apps/"))
                    && let Some(dep) = self.ctx.deployments.get(Some(ns), &d.name)
                    && dep.metadata.uid.as_deref() == Some(d.uid.as_str())
                {
                    let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Ok(Some((d.uid.clone(), replicas)));
                }
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Ok(Some((owner.uid.clone(), replicas)))
            }
            ("", "ReplicationController") => {
                let Some(rc) = self.ctx.replication_controllers.get(Some(ns), &owner.name) else {
                    return Ok(None);
                };
                if rc.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
                    return Ok(None);
                }
                let replicas = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Ok(Some((owner.uid.clone(), replicas)))
            }
            _ => self.scale_subresource(ns, owner).await,
        }
    }

    async fn scale_subresource(
        &self,
        ns: &str,
        owner: &OwnerReference,
    ) -> Result<Option<(String, i32)>> {
        let (group, version) = owner
            .api_version
            .split_once('/')
            .unwrap_or(("", owner.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
        let (resource, caps) = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            // A kind the server does not serve controls nothing that can be scaled.
            Err(kube::Error::Discovery(_)) => return Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !caps.subresources.iter().any(|(s, _)| s.plural == "scale") {
            return Ok(None);
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        let scale = match api.get_scale(&owner.name).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if scale.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
            return Ok(None);
        }
        let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        Ok(Some((owner.uid.clone(), replicas)))
    }

    /// The sum of the scales of the controllers owning `pods` (each counted once), and the
    /// pods no controller owns (upstream's getExpectedScale).
    async fn expected_scale(
        &self,
        ns: &str,
        pods: &[Arc<CachedPod>],
    ) -> Result<(i32, Vec<String>)> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let Some(owner) = pods::controller_of(&pod.metadata) else {
                unmanaged.push(pod.name_any());
                continue;
            };
            if scales.contains_key(&owner.uid) {
                continue;
            }
            match self.controller_scale(ns, owner).await? {
                Some((uid, n)) => {
                    scales.insert(uid, n);
                    // Pods of a Deployment's ReplicaSets are counted by the Deployment.
                    scales.entry(owner.uid.clone()).or_insert(0);
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "found no controllers for pod {:?}",
                        pod.name_any()
                    )));
                }
            }
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// Computes the counts of `pdb`; `Ok(None)` recheck time aside.
    async fn counts(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Arc<CachedPod>],
        now: jiff::Timestamp,
    ) -> Result<(Counts, Option<jiff::Timestamp>)> {
        let ns = pdb.namespace().unwrap_or_default();
        let scale = match counting(pdb) {
            Counting::Pods => None,
            Counting::Scale => {
                let (scale, unmanaged) = self.expected_scale(&ns, pods).await?;
                if !unmanaged.is_empty() {
                    self.recorder.publish(
                        pdb.object_ref(&()),
                        EventType::Warning,
                        "UnmanagedPods",
                        format!(
                            "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                            selector_text(pdb)
                        ),
                    );
                }
                Some(scale)
            }
        };
        let (expected_pods, desired_healthy) =
            expected_and_desired(pdb, pods.len(), scale).map_err(Error::Invalid)?;
        let (disrupted_pods, recheck, expired) = disrupted_pods(pdb, pods, now);
        for name in expired {
            tracing::info!(pdb = %key_of(pdb), pod = %name, "pod was expected to be deleted but it wasn't");
        }
        let current_healthy = current_healthy(pods, &disrupted_pods, now);
        Ok((
            Counts {
                current_healthy,
                desired_healthy,
                expected_pods,
                disrupted_pods,
            },
            recheck,
        ))
    }

    /// Writes `status` over the budget's, on the version the cache holds: an eviction granted
    /// meanwhile (a newer `disruptedPods`) makes it a conflict, and the budget is synced again
    /// rather than the grant lost.
    async fn write(&self, pdb: &PodDisruptionBudget, status: Value) -> kube::Result<()> {
        let ns = pdb.namespace().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
        let body = json!({
            "apiVersion": PodDisruptionBudget::api_version(&()),
            "kind": PodDisruptionBudget::kind(&()),
            "metadata": {
                "name": pdb.name_any(),
                "resourceVersion": pdb.metadata.resource_version,
            },
            "status": status,
        });
        let object: PodDisruptionBudget =
            serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
        api.replace_status(&pdb.name_any(), &PostParams::default(), &object)
            .await
            .map(drop)
    }
}

/// The selector as upstream prints a LabelSelector in the UnmanagedPods event.
fn selector_text(pdb: &PodDisruptionBudget) -> String {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .map(|s| format!("{s:?}"))
        .unwrap_or_default()
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Reconciler for DisruptionController {
    const NAME: &'static str = "disruption";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(pdb) = self.budgets.get(Some(ns), name) else {
            return Ok(None);
        };
        if pdb.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let pods = pods_of(&pdb, self.ctx.pods.list_in(ns));
        if pods.is_empty() {
            self.recorder.publish(
                pdb.object_ref(&()),
                EventType::Normal,
                "NoPods",
                "No matching pods found".into(),
            );
        }
        let now = jiff::Timestamp::now();
        match self.counts(&pdb, &pods, now).await {
            Ok((counts, recheck)) => {
                if let Some(status) = desired_status(&pdb, &counts, now) {
                    self.write(&pdb, status).await?;
                }
                Ok(recheck.map(|at| {
                    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
                        + Duration::from_secs(1)
                }))
            }
            Err(Error::Kube(e)) if is_conflict(&e) => Err(Error::Kube(e)),
            Err(e) => {
                let why = match &e {
                    Error::Invalid(m) => m.clone(),
                    other => other.to_string(),
                };
                if matches!(e, Error::Invalid(_)) {
                    self.recorder.publish(
                        pdb.object_ref(&()),
                        EventType::Warning,
                        "CalculateExpectedPodCountFailed",
                        format!("Failed to calculate the number of expected pods: {why}"),
                    );
                }
                tracing::warn!(pdb = %key, error = %why, "failed to sync the budget");
                self.write(&pdb, fail_safe_status(&pdb, &why, now)).await?;
                Ok(Some(RETRY_FAILED))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;
    use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    match_expressions: None,
                }),
                unhealthy_pod_eviction_policy: None,
            }),
            status: None,
        }
    }

    #[test]
    fn expected_and_desired_follow_the_budget_kind() {
        let int = IntOrString::Int;
        let pct = |s: &str| IntOrString::String(s.into());
        let cases = [
            (
                "minAvailable number",
                budget(Some(int(2)), None),
                3,
                Some(5),
                Ok((3, 2)),
            ),
            (
                "minAvailable percent rounds up",
                budget(Some(pct("50%")), None),
                3,
                Some(5),
                Ok((5, 3)),
            ),
            (
                "maxUnavailable number",
                budget(None, Some(int(1))),
                3,
                Some(4),
                Ok((4, 3)),
            ),
            (
                "maxUnavailable percent rounds up",
                budget(None, Some(pct("30%"))),
                3,
                Some(4),
                Ok((4, 2)),
            ),
            (
                "maxUnavailable above scale",
                budget(None, Some(int(9))),
                3,
                Some(4),
                Ok((4, 0)),
            ),
            ("neither", budget(None, None), 3, None, Ok((0, 0))),
            (
                "bad percent",
                budget(Some(pct("half")), None),
                3,
                Some(4),
                Err(()),
            ),
        ];
        for (name, pdb, pods, scale, want) in cases {
            let got = expected_and_desired(&pdb, pods, scale).map_err(drop);
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(counting(&budget(Some(int(2)), None)), Counting::Pods);
        assert_eq!(counting(&budget(Some(pct("50%")), None)), Counting::Scale);
        assert_eq!(counting(&budget(None, Some(int(1)))), Counting::Scale);
    }

    #[test]
    fn healthy_pods_leave_out_unready_deleting_and_recently_evicted_ones() {
        let now = ts("2026-01-01T00:10:00Z");
        let deleting = pod("d").ready("2026-01-01T00:00:00Z").deleting().build();
        let pods: Vec<Arc<CachedPod>> = vec![
            Arc::new(
                pod("a")
                    .label("app", "web")
                    .ready("2026-01-01T00:00:00Z")
                    .build(),
            ),
            Arc::new(
                pod("b")
                    .label("app", "web")
                    .ready("2026-01-01T00:00:00Z")
                    .build(),
            ),
            Arc::new(
                pod("c")
                    .label("app", "web")
                    .ready("2026-01-01T00:00:00Z")
                    .build(),
            ),
            Arc::new(pod("u").label("app", "web").build()),
            Arc::new(deleting),
        ];
        let mut pdb = budget(Some(IntOrString::Int(2)), None);
        pdb.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(
                [
                    // Granted a minute ago: still on its way out.
                    ("b".to_string(), Time(ts("2026-01-01T00:09:00Z"))),
                    // Granted three minutes ago and never deleted: forgotten.
                    ("c".to_string(), Time(ts("2026-01-01T00:07:00Z"))),
                    // Already being deleted: no longer tracked.
                    ("d".to_string(), Time(ts("2026-01-01T00:09:30Z"))),
                    // Gone.
                    ("gone".to_string(), Time(ts("2026-01-01T00:09:30Z"))),
                ]
                .into(),
            ),
            ..Default::default()
        });
        let (kept, recheck, expired) = disrupted_pods(&pdb, &pods, now);
        assert_eq!(kept, [("b".to_string(), ts("2026-01-01T00:09:00Z"))].into());
        assert_eq!(recheck, Some(ts("2026-01-01T00:11:00Z")));
        assert_eq!(expired, vec!["c".to_string()]);
        assert_eq!(current_healthy(&pods, &kept, now), 2, "a and c");
    }

    #[test]
    fn status_reports_counts_and_the_condition_once() {
        let now = ts("2026-01-01T00:00:00Z");
        let pdb = budget(Some(IntOrString::Int(2)), None);
        let counts = Counts {
            current_healthy: 2,
            desired_healthy: 2,
            expected_pods: 2,
            disrupted_pods: BTreeMap::new(),
        };
        let status = desired_status(&pdb, &counts, now).expect("a first status");
        assert_eq!(
            status,
            json!({
                "observedGeneration": 2, "disruptionsAllowed": 0, "currentHealthy": 2,
                "desiredHealthy": 2, "expectedPods": 2,
                "conditions": [{
                    "type": "DisruptionAllowed", "status": "False", "observedGeneration": 2,
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "InsufficientPods",
                    "message": "",
                }],
            })
        );
        // Written once, it is not written again.
        let mut written = pdb.clone();
        written.status = Some(serde_json::from_value(status).unwrap());
        assert_eq!(desired_status(&written, &counts, now), None);
        // A third healthy pod allows one disruption and flips the condition.
        let more = Counts {
            current_healthy: 3,
            expected_pods: 3,
            ..counts.clone()
        };
        let later = ts("2026-01-01T00:01:00Z");
        let status = desired_status(&written, &more, later).expect("a change");
        assert_eq!(status["disruptionsAllowed"], 1);
        assert_eq!(status["conditions"][0]["reason"], "SufficientPods");
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:01:00Z"
        );
        // No expected pods: no disruptions, however many are healthy.
        let none_expected = Counts {
            expected_pods: 0,
            ..more
        };
        assert_eq!(none_expected.disruptions_allowed(), 0);
    }

    #[test]
    fn a_failed_sync_allows_no_disruptions_and_says_why() {
        let now = ts("2026-01-01T00:00:00Z");
        let mut pdb = budget(None, Some(IntOrString::Int(1)));
        pdb.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            current_healthy: 3,
            desired_healthy: 2,
            expected_pods: 3,
            observed_generation: Some(2),
            ..Default::default()
        });
        let s = fail_safe_status(&pdb, "found no controllers for pod \"a\"", now);
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["currentHealthy"], 3);
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
        assert_eq!(
            s["conditions"][0]["message"],
            "found no controllers for pod \"a\""
        );
    }

    fn owned_pod(name: &str, rs_uid: &str, ready: bool) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-1", "uid": rs_uid, "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"},
        });
        if ready {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        }
        p
    }

    fn status_of(v: &Value) -> (i64, i64, i64, i64) {
        let s = &v["status"];
        let n = |f: &str| s[f].as_i64().unwrap_or(-1);
        (
            n("expectedPods"),
            n("desiredHealthy"),
            n("currentHealthy"),
            n("disruptionsAllowed"),
        )
    }

    #[tokio::test]
    async fn the_controller_counts_a_deployments_scale_and_fails_safe_on_unknown_owners() {
        use crate::context::Settings;
        use crate::testing::FakeApi;
        use tokio_util::sync::CancellationToken;

        let api = FakeApi::new();
        api.create(
            "deployments",
            Some("default"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}),
        );
        // The fake names every object's UID itself.
        let uid = |plural: &str, name: &str| {
            api.get(plural, Some("default"), name).unwrap()["metadata"]["uid"].clone()
        };
        let d_uid = uid("deployments", "web");
        api.create(
            "replicasets",
            Some("default"),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "web-1", "namespace": "default",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                        "name": "web", "uid": d_uid, "controller": true}]},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}}),
        );
        let rs_uid = uid("replicasets", "web-1");
        let rs_uid = rs_uid.as_str().unwrap();
        for (name, ready) in [("a", true), ("b", true), ("c", true), ("d", false)] {
            api.create("pods", Some("default"), owned_pod(name, rs_uid, ready));
        }
        api.create(
            "poddisruptionbudgets",
            Some("default"),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}}}),
        );
        let stop = CancellationToken::new();
        let ctx = api.context(Settings::default(), &stop);
        api.start(&ctx, &[DisruptionController::NAME], &stop).await;

        // The Deployment's 4 replicas (not its ReplicaSet's 2) are expected; 25% of them may
        // be unavailable, and the 3 ready pods are all it needs.
        let pdb = api
            .wait_for(
                "poddisruptionbudgets",
                Some("default"),
                "web",
                "counted",
                |o| status_of(o) == (4, 3, 3, 0),
            )
            .await;
        assert_eq!(pdb["status"]["conditions"][0]["reason"], INSUFFICIENT_PODS);

        // The fourth pod becomes ready: one disruption allowed.
        api.replace("pods", Some("default"), owned_pod("d", rs_uid, true));
        let pdb = api
            .wait_for(
                "poddisruptionbudgets",
                Some("default"),
                "web",
                "one allowed",
                |o| status_of(o) == (4, 3, 4, 1),
            )
            .await;
        assert_eq!(pdb["status"]["conditions"][0]["reason"], SUFFICIENT_PODS);

        // A pod whose controller cannot be found: no disruptions, and why.
        let mut stray = owned_pod("e", "rs-gone", true);
        stray["metadata"]["ownerReferences"][0]["name"] = json!("gone");
        api.create("pods", Some("default"), stray);
        let pdb = api
            .wait_for(
                "poddisruptionbudgets",
                Some("default"),
                "web",
                "failed safe",
                |o| o["status"]["conditions"][0]["reason"] == SYNC_FAILED,
            )
            .await;
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            pdb["status"]["conditions"][0]["message"],
            "found no controllers for pod \"e\""
        );
        stop.cancel();
    }

    #[test]
    fn budgets_select_their_pods_an_empty_selector_all_and_none_none() {
        let pods: Vec<Arc<CachedPod>> = vec![
            Arc::new(pod("a").label("app", "web").build()),
            Arc::new(pod("b").label("app", "db").build()),
        ];
        let pdb = budget(Some(IntOrString::Int(1)), None);
        let names: Vec<String> = pods_of(&pdb, pods.clone())
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, vec!["a".to_string()]);
        let mut empty = pdb.clone();
        empty.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
        assert_eq!(pods_of(&empty, pods.clone()).len(), 2);
        let mut missing = pdb.clone();
        missing.spec.as_mut().unwrap().selector = None;
        assert!(pods_of(&missing, pods).is_empty());
    }
}
