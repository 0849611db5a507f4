//! Node lifecycle: watches each node's heartbeat (its Lease in `kube-node-lease` and its Ready
//! condition). A node not heard from for `--node-monitor-grace-period` gets its conditions set
//! to Unknown ("Kubelet stopped posting node status."). The Ready condition becomes taints, as
//! Kubernetes does it: `node.kubernetes.io/not-ready` (Ready=False) or
//! `node.kubernetes.io/unreachable` (Unknown), each with NoSchedule and NoExecute. Pods on a
//! node with NoExecute taints are evicted once their tolerations run out (every pod tolerates
//! these two for 300 s by default), so their controllers recreate them elsewhere. The pressure
//! conditions become NoSchedule taints too, as upstream's TaintNodesByCondition:
//! `node.kubernetes.io/memory-pressure`, `disk-pressure` and `pid-pressure` while
//! MemoryPressure, DiskPressure or PIDPressure is True.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use skiff_client::events::{EventType, Recorder};
use skiff_client::tolerations::toleration_matches;
use tokio::time::Instant;

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, key_of};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The taints the Ready condition calls for.
pub fn taints_for(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("True") => None,
        Some("False") => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    }
}

/// The node's taints with the readiness taints set to what `ready` calls for (others kept;
/// `timeAdded` kept for taints already there).
pub fn desired_taints(current: &[Taint], ready: Option<&str>, now: jiff::Timestamp) -> Vec<Taint> {
    let want = taints_for(ready);
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !(t.key == NOT_READY || t.key == UNREACHABLE) || Some(t.key.as_str()) == want)
        .cloned()
        .collect();
    if let Some(key) = want {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    out
}

/// The NoSchedule taints each pressure condition calls for while True.
pub const CONDITION_TAINTS: [(&str, &str); 3] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];

/// The node's taints with the pressure taints set to what its conditions call for (others
/// kept).
pub fn condition_taints(current: &[Taint], conditions: &[NodeCondition]) -> Vec<Taint> {
    let wanted: Vec<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(ty, _)| {
            conditions
                .iter()
                .any(|c| c.type_ == *ty && c.status == "True")
        })
        .map(|(_, key)| *key)
        .collect();
    let managed = |key: &str| CONDITION_TAINTS.iter().any(|(_, k)| *k == key);
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !managed(&t.key) || (wanted.contains(&t.key.as_str()) && t.effect == "NoSchedule")
        })
        .cloned()
        .collect();
    for key in wanted {
        if !out.iter().any(|t| t.key == key) {
            out.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                value: None,
                time_added: None,
            });
        }
    }
    out
}

/// When a pod on a node with these NoExecute taints must go: `Some(now-or-past)` if a taint is
/// not tolerated, the earliest end of a bounded toleration otherwise, None if it may stay.
pub fn eviction_time(
    pod: &crate::pods::CachedPod,
    taints: &[Taint],
    now: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let tolerations: &[k8s_openapi::api::core::v1::Toleration] = &tolerations;
    let mut earliest: Option<jiff::Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations
            .iter()
            .filter(|t| toleration_matches(t, taint))
            .collect();
        if matching.is_empty() {
            return Some(now);
        }
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let at = added + jiff::SignedDuration::from_secs(secs);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}

pub struct NodeLifecycle {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    /// Per node: the last heartbeat marker seen, and when this process saw it change.
    observed: Mutex<HashMap<String, (String, Instant)>>,
    recorder: Recorder,
}

impl NodeLifecycle {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.nodes.clone();
        ctx.nodes.on_change(move |c| match c {
            Change::Applied { old: None, new } => q.add(key_of(*new)),
            Change::Applied { .. } | Change::Deleted(_) => {}
            Change::Resynced => all.list().iter().for_each(|n| q.add(key_of(n.as_ref()))),
        });
        Arc::new(NodeLifecycle {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                "node-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            ctx,
            observed: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the node's heartbeat is older than the grace period (as seen by this process).
    fn stale(&self, node: &Node) -> bool {
        let name = node.name_any();
        let renew = self
            .ctx
            .node_leases
            .get(Some("kube-node-lease"), &name)
            .and_then(|l| {
                l.spec
                    .as_ref()
                    .and_then(|s| s.renew_time.as_ref())
                    .map(|t| t.0.to_string())
            })
            .unwrap_or_default();
        let heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let marker = format!("{renew}|{heartbeat}");
        let mut observed = self.observed.lock().expect("observed lock");
        let entry = observed
            .entry(name)
            .or_insert_with(|| (marker.clone(), Instant::now()));
        if entry.0 != marker {
            *entry = (marker, Instant::now());
        }
        entry.1.elapsed() > self.ctx.settings.node_monitor_grace_period
    }

    async fn mark_unknown(&self, node: &Node) -> Result<()> {
        let now = Time(jiff::Timestamp::now());
        let conds: Vec<_> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|mut c| {
                if ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
                    .contains(&c.type_.as_str())
                    && c.status != "Unknown"
                {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
                c
            })
            .collect();
        let mut conds = conds;
        if !conds.iter().any(|c| c.type_ == "Ready") {
            conds.push(k8s_openapi::api::core::v1::NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_transition_time: Some(now.clone()),
                last_heartbeat_time: None,
            });
        }
        let api: Api<Node> = Api::all(self.client.clone());
        api.patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": { "conditions": conds } })),
        )
        .await?;
        self.recorder.publish(
            node.object_ref(&()),
            EventType::Normal,
            "NodeNotReady",
            format!("Node {} status is now: NodeNotReady", node.name_any()),
        );
        tracing::info!(node = %node.name_any(), "node stopped posting status; marked Unknown");
        Ok(())
    }
}

impl Controller for NodeLifecycle {
    const SERVICE_ACCOUNT: &'static str = "node-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for NodeLifecycle {
    const NAME: &'static str = "nodelifecycle";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let period = self.ctx.settings.node_monitor_period;
        let Some(node) = self.ctx.nodes.get(None, key) else {
            self.observed.lock().expect("observed lock").remove(key);
            return Ok(None);
        };
        let mut ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        if self.stale(&node) && ready.as_deref() != Some("Unknown") {
            self.mark_unknown(&node).await?;
            ready = Some("Unknown".into());
        }
        if ready.is_none() {
            // Registered, but its kubelet has not posted a status yet: no verdict (and no
            // taint) until the grace period says it never will.
            return Ok(Some(period));
        }
        let now = jiff::Timestamp::now();
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let taints = condition_taints(
            &desired_taints(&current, ready.as_deref(), now),
            &conditions,
        );
        let same = |a: &[Taint], b: &[Taint]| {
            a.len() == b.len()
                && a.iter().all(|t| {
                    b.iter()
                        .any(|u| u.key == t.key && u.effect == t.effect && u.value == t.value)
                })
        };
        if !same(&current, &taints) {
            let api: Api<Node> = Api::all(self.client.clone());
            let patch = json!({ "metadata": { "resourceVersion": node.metadata.resource_version }, "spec": { "taints": taints } });
            api.patch(key, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(node = %key, ready = ?ready, "node taints updated");
        }
        let mut next = period;
        if taints.iter().any(|t| t.effect == "NoExecute") {
            for pod in self.ctx.pods.list() {
                let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(key);
                if !on_node || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(at) = eviction_time(&pod, &taints, now) else {
                    continue;
                };
                if at <= now {
                    let ns = pod.namespace().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                    match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                        Ok(_) | Err(kube::Error::Api(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.recorder.publish(
                        pod.object_ref(&()),
                        EventType::Normal,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {ns}/{}", pod.name_any()),
                    );
                } else {
                    next = next.min(at.duration_since(now).unsigned_abs());
                }
            }
        }
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn readiness_becomes_taints() {
        let now = at("2026-01-01T00:00:00Z");
        let keys = |ts: &[Taint]| {
            ts.iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect::<Vec<_>>()
        };
        let other = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            value: Some("gpu".into()),
            time_added: None,
        };
        assert_eq!(
            keys(&desired_taints(
                std::slice::from_ref(&other),
                Some("True"),
                now
            )),
            ["dedicated:NoSchedule"]
        );
        assert_eq!(
            keys(&desired_taints(std::slice::from_ref(&other), None, now)),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        let not_ready = desired_taints(&[], Some("False"), now);
        assert_eq!(
            keys(&not_ready),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        // Unknown replaces not-ready; True removes both.
        let unknown = desired_taints(&not_ready, Some("Unknown"), now);
        assert_eq!(
            keys(&unknown),
            [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert!(desired_taints(&unknown, Some("True"), now).is_empty());
    }

    #[test]
    fn pressure_conditions_become_no_schedule_taints() {
        let cond = |ty: &str, status: &str| NodeCondition {
            type_: ty.into(),
            status: status.into(),
            ..Default::default()
        };
        let keys = |ts: &[Taint]| {
            ts.iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect::<Vec<_>>()
        };
        let other = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        let pressed = condition_taints(
            std::slice::from_ref(&other),
            &[
                cond("Ready", "True"),
                cond("MemoryPressure", "True"),
                cond("DiskPressure", "False"),
            ],
        );
        assert_eq!(
            keys(&pressed),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/memory-pressure:NoSchedule"
            ]
        );
        // Unchanged when nothing changed; gone when the condition clears (or is Unknown).
        assert_eq!(
            condition_taints(&pressed, &[cond("MemoryPressure", "True")]),
            pressed
        );
        let both = condition_taints(
            &pressed,
            &[
                cond("MemoryPressure", "Unknown"),
                cond("DiskPressure", "True"),
            ],
        );
        assert_eq!(
            keys(&both),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/disk-pressure:NoSchedule"
            ]
        );
        assert_eq!(
            keys(&condition_taints(&both, &[])),
            ["dedicated:NoSchedule"]
        );
    }

    #[test]
    fn evictions_follow_toleration_seconds() {
        let now = at("2026-01-01T00:01:00Z");
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(at("2026-01-01T00:00:00Z"))),
        };
        let pod = |tolerations: serde_json::Value| -> crate::pods::CachedPod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
        };
        let cases = [
            ("not tolerated: now", json!([]), Some(now)),
            (
                "default 300 s",
                json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
                Some(at("2026-01-01T00:05:00Z")),
            ),
            (
                "forever",
                json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]),
                None,
            ),
            ("tolerate all", json!([{"operator": "Exists"}]), None),
        ];
        for (name, t, want) in cases {
            assert_eq!(
                eviction_time(&pod(t), std::slice::from_ref(&taint), now),
                want,
                "{name}"
            );
        }
    }
}
