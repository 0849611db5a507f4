//! What the scheduler needs to know about a pod, computed once when the pod is seen: its
//! resource requests (as Kubernetes counts them), host ports, owner, tolerations and affinity.
//! Assigned pods are kept in this form only (not as full objects), which keeps the cache small.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, Pod, PodAffinityTerm, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU (millicores) and memory (bytes) a container without requests is counted as when
/// scoring, as Kubernetes does, so that request-less pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`, ...), in their base unit.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a ResourceList (`requests`, `allocatable`); `pods` is not a resource here.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            let Ok(q) = skiff_api::Quantity::try_from(q) else {
                continue;
            };
            // Rounded up as Kubernetes' MilliValue() and Value() round.
            match name.as_str() {
                "cpu" => r.milli_cpu = q.milli_value(),
                "memory" => r.memory = q.value(),
                "ephemeral-storage" => r.ephemeral_storage = q.value(),
                "pods" => {}
                other => {
                    r.scalar.insert(other.to_string(), q.value());
                }
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
        self.scalar.retain(|_, v| *v != 0);
    }

    /// Each resource the larger of the two.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// A host port a pod claims: (protocol, hostIP, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide: same port and protocol, and one of them is on every address
    /// or both on the same one.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// A pod as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub node_name: Option<String>,
    pub scheduler_name: String,
    pub priority: i32,
    /// `preemptionPolicy: Never`: the pod waits for room rather than preempting.
    pub preempt_never: bool,
    /// `status.nominatedNodeName`: where a preemption made room for the pod.
    pub nominated_node: Option<String>,
    /// `status.startTime` (none until the kubelet starts the pod).
    pub start_time: Option<jiff::Timestamp>,
    pub requests: Resources,
    /// Requests with Kubernetes' defaults for containers that request nothing (for scoring).
    pub nonzero: Resources,
    pub host_ports: Vec<HostPort>,
    /// The uid of the controller that owns the pod, for spreading its pods.
    pub controller_uid: Option<String>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    pub node_affinity: Option<NodeAffinity>,
    pub affinity_terms: Vec<PodAffinityTerm>,
    pub anti_affinity_terms: Vec<PodAffinityTerm>,
    pub spread: Vec<TopologySpreadConstraint>,
    pub terminal: bool,
    pub deleting: bool,
    /// The PersistentVolumeClaims its volumes name (a generic ephemeral volume's claim is
    /// `<pod>-<volume>`).
    pub claims: Vec<String>,
}

impl PodInfo {
    pub fn new(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let (requests, nonzero) = pod_requests(&spec);
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.unwrap_or(0) > 0)
            .map(|p| HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let controller_uid = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let Affinity {
            node_affinity,
            pod_affinity,
            pod_anti_affinity,
        } = spec.affinity.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        PodInfo {
            key: format!("{namespace}/{name}"),
            namespace,
            name,
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            priority: spec.priority.unwrap_or(0),
            preempt_never: spec.preemption_policy.as_deref() == Some("Never"),
            nominated_node: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0),
            requests,
            nonzero,
            host_ports,
            controller_uid,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            node_affinity,
            affinity_terms: pod_affinity
                .and_then(|a| a.required_during_scheduling_ignored_during_execution)
                .unwrap_or_default(),
            anti_affinity_terms: pod_anti_affinity
                .and_then(|a| a.required_during_scheduling_ignored_during_execution)
                .unwrap_or_default(),
            spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
            terminal: matches!(phase, Some("Succeeded") | Some("Failed")),
            deleting: meta.deletion_timestamp.is_some(),
            claims: spec
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
                    (Some(c), _) => Some(c.claim_name.clone()),
                    (None, Some(_)) => Some(format!(
                        "{}-{}",
                        meta.name.as_deref().unwrap_or_default(),
                        v.name
                    )),
                    (None, None) => None,
                })
                .collect(),
        }
    }

    /// What the cache keeps of an assigned pod: what other pods' scheduling reads (requests,
    /// ports, owner, labels, anti-affinity), without the fields only its own scheduling needed.
    pub fn assigned(mut self) -> PodInfo {
        self.tolerations = Vec::new();
        self.node_selector = BTreeMap::new();
        self.node_affinity = None;
        self.affinity_terms = Vec::new();
        self.spread = Vec::new();
        self.scheduler_name = String::new();
        self.claims = Vec::new();
        self
    }

    /// Whether a pod namespace/labels match an affinity term of this pod (the term's
    /// namespaces default to this pod's own; an empty namespaceSelector means all).
    pub fn term_matches(&self, term: &PodAffinityTerm, other: &PodInfo) -> bool {
        term_matches(term, &self.namespace, &other.namespace, &other.labels)
    }
}

/// Whether a pod in `ns` with `labels` matches `term` written by a pod in `owner_ns`.
pub fn term_matches(
    term: &PodAffinityTerm,
    owner_ns: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    let ns_ok = if all_namespaces {
        true
    } else {
        match term.namespaces.as_ref().filter(|n| !n.is_empty()) {
            Some(list) => list.iter().any(|n| n == ns),
            None => owner_ns == ns,
        }
    };
    ns_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| crate::selector::matches_label_selector(s, labels))
}

/// What a pod requests, as Kubernetes computes it: the sum of its containers (restartable
/// init containers, i.e. sidecars, included), or the largest single init container if that is
/// more, plus the pod's overhead. The second value counts request-less containers with the
/// scoring defaults.
pub fn pod_requests(spec: &k8s_openapi::api::core::v1::PodSpec) -> (Resources, Resources) {
    let container = |c: &k8s_openapi::api::core::v1::Container| -> (Resources, Resources) {
        let r = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
        let mut nz = r.clone();
        let asked = |name: &str| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|m| m.contains_key(name))
        };
        if !asked("cpu") {
            nz.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !asked("memory") {
            nz.memory = DEFAULT_MEMORY;
        }
        (r, nz)
    };
    let mut sum = Resources::default();
    let mut sum_nz = Resources::default();
    for c in &spec.containers {
        let (r, nz) = container(c);
        sum.add(&r);
        sum_nz.add(&nz);
    }
    // Init containers run one at a time, before the app containers; sidecars (restartPolicy
    // Always) keep running, so each counts on top of the ones started before it.
    let mut sidecars = Resources::default();
    let mut sidecars_nz = Resources::default();
    let mut init_max = Resources::default();
    let mut init_max_nz = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let (r, nz) = container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sidecars_nz.add(&nz);
            sum.add(&r);
            sum_nz.add(&nz);
        } else {
            let mut peak = sidecars.clone();
            peak.add(&r);
            init_max.max_with(&peak);
            let mut peak_nz = sidecars_nz.clone();
            peak_nz.add(&nz);
            init_max_nz.max_with(&peak_nz);
        }
    }
    sum.max_with(&init_max);
    sum_nz.max_with(&init_max_nz);
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_list(overhead);
        sum.add(&o);
        sum_nz.add(&o);
    }
    (sum, sum_nz)
}

/// A pending pod in the queue: the full object (for events and status) and its summary.
#[derive(Debug, Clone)]
pub struct PendingPod {
    pub pod: Arc<Pod>,
    pub info: Arc<PodInfo>,
}

/// What the scheduler's pod informer keeps of a pod: an assigned pod in the compact form the
/// cache holds (the same `Arc`), a pod without a node with its object (the same `Arc`s the
/// queue holds), so the informer's store costs little beyond the cache and the queue.
#[derive(Debug, Clone)]
pub enum SeenPod {
    Assigned(Arc<PodInfo>),
    Unassigned(PendingPod),
}

impl SeenPod {
    /// The pod informer's conversion.
    pub fn from_pod(pod: Pod) -> Option<SeenPod> {
        let info = PodInfo::new(&pod);
        Some(if info.node_name.is_some() {
            SeenPod::Assigned(Arc::new(info.assigned()))
        } else {
            SeenPod::Unassigned(PendingPod {
                pod: Arc::new(pod),
                info: Arc::new(info),
            })
        })
    }

    pub fn info(&self) -> &Arc<PodInfo> {
        match self {
            SeenPod::Assigned(info) => info,
            SeenPod::Unassigned(p) => &p.info,
        }
    }
}

impl PendingPod {
    pub fn new(pod: Pod) -> PendingPod {
        let info = Arc::new(PodInfo::new(&pod));
        PendingPod {
            pod: Arc::new(pod),
            info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> k8s_openapi::api::core::v1::PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn requests_follow_kubernetes_rules() {
        struct Case {
            name: &'static str,
            spec: serde_json::Value,
            cpu: i64,
            memory: i64,
            nonzero_cpu: i64,
        }
        let cases = [
            Case {
                name: "sum of containers",
                spec: json!({"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "0.5", "memory": "1Mi"}}}]}),
                cpu: 600,
                memory: 2 << 20,
                nonzero_cpu: 600,
            },
            Case {
                name: "largest init container wins when bigger",
                spec: json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}},
                                       {"name": "j", "resources": {"requests": {"cpu": "1"}}}]}),
                cpu: 2000,
                memory: 0,
                nonzero_cpu: 2000,
            },
            Case {
                name: "sidecars add up",
                spec: json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                    "initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                                       {"name": "i", "resources": {"requests": {"cpu": "250m"}}}]}),
                cpu: 450,
                memory: 0,
                nonzero_cpu: 450,
            },
            Case {
                name: "no requests count as defaults when scoring",
                spec: json!({"containers": [{"name": "a"}]}),
                cpu: 0,
                memory: 0,
                nonzero_cpu: DEFAULT_MILLI_CPU,
            },
            Case {
                name: "overhead is added",
                spec: json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
                    "overhead": {"cpu": "250m"}}),
                cpu: 1250,
                memory: 0,
                nonzero_cpu: 1250,
            },
        ];
        for c in cases {
            let (r, nz) = pod_requests(&spec(c.spec));
            assert_eq!(r.milli_cpu, c.cpu, "{}", c.name);
            assert_eq!(r.memory, c.memory, "{}", c.name);
            assert_eq!(nz.milli_cpu, c.nonzero_cpu, "{}", c.name);
        }
    }

    #[test]
    fn host_ports_conflict_on_wildcard_or_same_ip() {
        let p = |ip: &str, port, proto: &str| HostPort {
            protocol: proto.into(),
            ip: ip.into(),
            port,
        };
        assert!(p("0.0.0.0", 80, "TCP").conflicts(&p("10.0.0.1", 80, "TCP")));
        assert!(p("10.0.0.1", 80, "TCP").conflicts(&p("10.0.0.1", 80, "TCP")));
        assert!(!p("10.0.0.1", 80, "TCP").conflicts(&p("10.0.0.2", 80, "TCP")));
        assert!(!p("0.0.0.0", 80, "TCP").conflicts(&p("0.0.0.0", 80, "UDP")));
        assert!(!p("0.0.0.0", 80, "TCP").conflicts(&p("0.0.0.0", 81, "TCP")));
    }
}
