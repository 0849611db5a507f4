//! Which pod goes first, what its eviction says, and which new pods a node under pressure
//! turns away: the kubelet's ranking (pods using more than they request first, then lower
//! priority, then the larger excess), its messages, and its admission rule.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, Taint};
use skiff_api::Quantity;

use super::thresholds::{Observation, PressureCondition, Threshold, bytes};

/// Pods at or above this priority are critical (`system-cluster-critical` and up): never
/// evicted, always admitted.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The memory-pressure taint a BestEffort pod must tolerate to land on a node under memory
/// pressure.
pub const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

/// One container's use of the resource being reclaimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: u64,
    pub request: u64,
}

/// A pod the eviction manager might evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub priority: i32,
    /// `spec.terminationGracePeriodSeconds`.
    pub termination_grace_seconds: Option<i64>,
    pub containers: Vec<ContainerUsage>,
}

impl Candidate {
    pub fn usage(&self) -> u64 {
        self.containers.iter().map(|c| c.usage).sum()
    }

    pub fn request(&self) -> u64 {
        self.containers.iter().map(|c| c.request).sum()
    }

    fn exceeds_requests(&self) -> bool {
        self.usage() > self.request()
    }

    fn excess(&self) -> i128 {
        i128::from(self.usage()) - i128::from(self.request())
    }
}

/// Orders candidates for eviction, first to go first.
pub fn rank(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| -> Ordering {
        b.exceeds_requests()
            .cmp(&a.exceeds_requests())
            .then(a.priority.cmp(&b.priority))
            .then(b.excess().cmp(&a.excess()))
    });
}

/// A container's request for `resource` (`memory`, `ephemeral-storage`) in bytes.
pub fn request_of(container: &k8s_openapi::api::core::v1::Container, resource: &str) -> u64 {
    container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map(|q| q.value().max(0) as u64)
        .unwrap_or(0)
}

/// The pod's status message (and event message) for an eviction, in the kubelet's words.
pub fn eviction_message(
    threshold: &Threshold,
    observation: Observation,
    candidate: &Candidate,
) -> String {
    let resource = threshold.signal.resource();
    let mut m = format!(
        "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
        threshold.amount.display(observation.capacity),
        bytes(observation.available),
    );
    for c in candidate.containers.iter().filter(|c| c.usage > c.request) {
        m.push_str(&format!(
            "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
            c.name,
            bytes(c.usage),
            bytes(c.request),
        ));
    }
    m
}

/// Static pods (and their mirror pods) and pods of a system-critical priority.
pub fn is_critical(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let static_or_mirror = annotations.is_some_and(|a| {
        a.contains_key("kubernetes.io/config.mirror")
            || a.get("kubernetes.io/config.source")
                .is_some_and(|s| s != "api")
    });
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    static_or_mirror || priority >= SYSTEM_CRITICAL_PRIORITY
}

/// Whether the pod is BestEffort: its QoS class, or, when the apiserver set none, no cpu or
/// memory request or limit on any container.
pub fn is_best_effort(pod: &Pod) -> bool {
    if let Some(class) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        return class == "BestEffort";
    }
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = c.resources.clone().unwrap_or_default();
            [r.requests, r.limits]
                .iter()
                .flatten()
                .all(|m| !m.contains_key("cpu") && !m.contains_key("memory"))
        })
}

/// Whether a node under these conditions takes a new pod, as the kubelet's eviction admit
/// handler: everything when there is no pressure, critical pods always, under memory
/// pressure alone all but BestEffort pods (unless they tolerate the memory-pressure taint);
/// under disk pressure nothing else. Err is the rejected pod's status message.
pub fn admit(conditions: &BTreeSet<PressureCondition>, pod: &Pod) -> Result<(), String> {
    if conditions.is_empty() || is_critical(pod) {
        return Ok(());
    }
    if conditions.len() == 1 && conditions.contains(&PressureCondition::MemoryPressure) {
        let taint = Taint {
            key: MEMORY_PRESSURE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        if !is_best_effort(pod) || skiff_client::tolerations::tolerates(&tolerations, &taint) {
            return Ok(());
        }
    }
    let names: Vec<&str> = conditions.iter().map(|c| c.type_name()).collect();
    Err(format!("The node had condition: [{}]. ", names.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::thresholds::parse_thresholds;
    use serde_json::json;

    const MI: u64 = 1 << 20;

    fn candidate(name: &str, priority: i32, usage_mib: u64, request_mib: u64) -> Candidate {
        Candidate {
            namespace: "default".into(),
            name: name.into(),
            uid: name.into(),
            priority,
            termination_grace_seconds: None,
            containers: vec![ContainerUsage {
                name: "main".into(),
                usage: usage_mib * MI,
                request: request_mib * MI,
            }],
        }
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn pods_over_their_requests_go_first_then_low_priority_then_the_largest_excess() {
        let mut c = vec![
            // Guaranteed-like: within its request.
            candidate("within", 0, 100, 200),
            // BestEffort: no request, any use exceeds it.
            candidate("besteffort-small", 0, 10, 0),
            candidate("besteffort-big", 0, 300, 0),
            // Burstable over its request, but important.
            candidate("burstable-high", 1000, 400, 100),
            // Low priority within its request still goes before higher priority within.
            candidate("within-low", -10, 1, 200),
        ];
        rank(&mut c);
        assert_eq!(
            names(&c),
            [
                "besteffort-big",
                "besteffort-small",
                "burstable-high",
                "within-low",
                "within"
            ]
        );
    }

    #[test]
    fn the_message_names_the_threshold_and_the_containers_over_their_requests() {
        let t = &parse_thresholds("memory.available<100Mi", "", "", "").unwrap()[0];
        let obs = Observation {
            available: 50 * MI,
            capacity: 1000 * MI,
        };
        let mut c = candidate("p", 0, 20, 0);
        c.containers.push(ContainerUsage {
            name: "quiet".into(),
            usage: MI,
            request: 10 * MI,
        });
        assert_eq!(
            eviction_message(t, obs, &c),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container main was using 20Mi, request is 0, has larger consumption of memory. "
        );
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn admission_under_pressure_is_upstreams() {
        let best_effort =
            pod(json!({"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c"}]}}));
        let burstable = pod(
            json!({"metadata": {"name": "u"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"memory": "10Mi"}}}]}}),
        );
        let tolerating = pod(
            json!({"metadata": {"name": "t"}, "spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": MEMORY_PRESSURE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        let critical = pod(
            json!({"metadata": {"name": "k"}, "spec": {"containers": [{"name": "c"}],
            "priority": SYSTEM_CRITICAL_PRIORITY}}),
        );
        let memory = BTreeSet::from([PressureCondition::MemoryPressure]);
        let disk = BTreeSet::from([PressureCondition::DiskPressure]);
        let both = BTreeSet::from([
            PressureCondition::MemoryPressure,
            PressureCondition::DiskPressure,
        ]);
        assert!(admit(&BTreeSet::new(), &best_effort).is_ok());
        assert_eq!(
            admit(&memory, &best_effort),
            Err("The node had condition: [MemoryPressure]. ".into())
        );
        assert!(admit(&memory, &burstable).is_ok());
        assert!(admit(&memory, &tolerating).is_ok());
        assert!(admit(&disk, &burstable).is_err());
        assert_eq!(
            admit(&both, &burstable),
            Err("The node had condition: [MemoryPressure DiskPressure]. ".into())
        );
        assert!(admit(&both, &critical).is_ok());
    }
}
