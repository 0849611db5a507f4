//! The scheduler's view of the cluster: every node with the pods assigned to it and what they
//! request. Pods the scheduler has decided on but whose binding the watch has not shown yet are
//! *assumed*: counted on their node at once, so that the next pod cannot claim the same free
//! capacity in that window. A failed binding *forgets* the pod again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::podinfo::{HostPort, PodInfo, Resources};

/// What the scheduler keeps of a Node object.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeData {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    /// The Ready condition's status: "True", "False", "Unknown", or None when absent.
    pub ready: Option<String>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
}

impl NodeData {
    /// The node informer's conversion (a node without a name is not kept).
    /// Shared (`Arc`) with the cache, so each node is kept once.
    pub fn from_node(node: Node) -> Option<Arc<NodeData>> {
        node.metadata
            .name
            .is_some()
            .then(|| Arc::new(NodeData::new(&node)))
    }

    pub fn new(node: &Node) -> NodeData {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let alloc = status
            .allocatable
            .clone()
            .or(status.capacity.clone())
            .unwrap_or_default();
        let allowed_pods = alloc
            .get("pods")
            .and_then(|q| skiff_api::Quantity::try_from(q).ok())
            .map(|q| q.value())
            .unwrap_or(110);
        NodeData {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            ready: status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status.clone()),
            allocatable: Resources::from_list(&alloc),
            allowed_pods,
        }
    }
}

/// One node and what is assigned to it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// None for a node the cache has pods for but whose object it has not seen (yet).
    pub node: Option<Arc<NodeData>>,
    pub pods: HashMap<String, Arc<PodInfo>>,
    pub requested: Resources,
    pub nonzero_requested: Resources,
    pub used_ports: Vec<HostPort>,
    /// Pods on the node per controller uid (for spreading a controller's pods).
    pub owners: HashMap<String, u32>,
    /// How many pods on the node have required anti-affinity terms.
    pub with_anti_affinity: u32,
}

impl NodeInfo {
    /// Counts `pod` on this node (replacing an earlier version of it).
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.nonzero_requested.add(&pod.nonzero);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(uid) = &pod.controller_uid {
            *self.owners.entry(uid.clone()).or_default() += 1;
        }
        if !pod.anti_affinity_terms.is_empty() {
            self.with_anti_affinity += 1;
        }
        if let Some(old) = self.pods.insert(pod.key.clone(), pod) {
            self.account_removed(&old);
        }
    }

    /// Stops counting the pod `key` on this node; whether it was there.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        match self.pods.remove(key) {
            Some(old) => {
                self.account_removed(&old);
                true
            }
            None => false,
        }
    }

    fn account_removed(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests);
        self.nonzero_requested.sub(&pod.nonzero);
        for p in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == p) {
                self.used_ports.swap_remove(i);
            }
        }
        if let Some(uid) = &pod.controller_uid
            && let Some(n) = self.owners.get_mut(uid)
        {
            *n -= 1;
            if *n == 0 {
                self.owners.remove(uid);
            }
        }
        if !pod.anti_affinity_terms.is_empty() {
            self.with_anti_affinity -= 1;
        }
    }

    /// A node for tests: `allocatable` as (millicores, bytes, pods).
    pub fn for_test(name: &str, cpu: i64, memory: i64, pods: i64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            node: Some(Arc::new(NodeData {
                name: name.into(),
                labels: [("kubernetes.io/hostname".to_string(), name.to_string())]
                    .into_iter()
                    .collect(),
                taints: Vec::new(),
                unschedulable: false,
                ready: Some("True".into()),
                allocatable: Resources {
                    milli_cpu: cpu,
                    memory,
                    ..Default::default()
                },
                allowed_pods: pods,
            })),
            ..Default::default()
        }
    }

    /// Adds a pod (for tests and the cache).
    pub fn with_pod(mut self, pod: PodInfo) -> NodeInfo {
        self.add_pod(Arc::new(pod));
        self
    }
}

/// Where the cache has a pod.
#[derive(Debug, Clone)]
struct PodState {
    node: String,
    /// Placed by this scheduler, not yet confirmed by the watch.
    assumed: bool,
}

/// All nodes, in a stable order for round-robin filtering. Preemption simulates on a clone.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    nodes: HashMap<String, NodeInfo>,
    /// Names of the nodes whose objects are known, in insertion order.
    order: Vec<String>,
    pods: HashMap<String, PodState>,
}

impl Cache {
    /// Adds or updates a node; returns whether anything scheduling depends on changed.
    pub fn apply_node(&mut self, data: &Arc<NodeData>) -> bool {
        let name = data.name.clone();
        let info = self.nodes.entry(name.clone()).or_insert_with(|| NodeInfo {
            name: name.clone(),
            ..Default::default()
        });
        if info.node.as_deref() == Some(&**data) {
            return false;
        }
        if info.node.is_none() {
            self.order.push(name);
        }
        info.node = Some(data.clone());
        true
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(info) = self.nodes.get_mut(name) else {
            return;
        };
        if info.node.take().is_some() {
            self.order.retain(|n| n != name);
        }
        if info.pods.is_empty() {
            self.nodes.remove(name);
        }
    }

    /// Adds or updates an assigned pod as the watch shows it (confirming an assumed one).
    pub fn apply_pod(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name.clone() else {
            return;
        };
        if let Some(state) = self.pods.get(&pod.key)
            && state.node != node
        {
            let old = state.node.clone();
            self.detach(&pod.key, &old);
        }
        self.attach(pod.clone(), &node);
        self.pods.insert(
            pod.key.clone(),
            PodState {
                node,
                assumed: false,
            },
        );
    }

    /// Removes a pod (deleted, or finished); returns whether it held a place on a node.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        match self.pods.remove(key) {
            Some(state) => {
                self.detach(key, &state.node);
                true
            }
            None => false,
        }
    }

    /// Counts `pod` on `node` before the binding is confirmed.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        let mut placed = pod.clone().assigned();
        placed.node_name = Some(node.to_string());
        self.attach(Arc::new(placed), node);
        self.pods.insert(
            pod.key.clone(),
            PodState {
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Undoes [`Cache::assume`] after a failed binding (unless the watch confirmed it meanwhile).
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|s| s.assumed) {
            self.remove_pod(key);
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|s| s.assumed)
    }

    /// Whether the cache holds the pod on some node (assumed or confirmed).
    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    fn attach(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeInfo {
                name: node.to_string(),
                ..Default::default()
            })
            .add_pod(pod);
    }

    fn detach(&mut self, key: &str, node: &str) {
        if let Some(info) = self.nodes.get_mut(node) {
            info.remove_pod(key);
            if info.node.is_none() && info.pods.is_empty() {
                self.nodes.remove(node);
            }
        }
    }

    /// Known nodes in their stable order.
    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// The `i`th node of the stable order.
    pub fn node_at(&self, i: usize) -> &NodeInfo {
        &self.nodes[&self.order[i]]
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|n| n.node.is_some())
    }

    /// A known node, to change in a simulation (preemption works on a clone of the cache).
    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.nodes.get_mut(name).filter(|n| n.node.is_some())
    }

    /// Every known node.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.order.iter().map(|n| &self.nodes[n])
    }

    /// Builds a cache from nodes (for tests).
    pub fn from_nodes(nodes: Vec<NodeInfo>) -> Cache {
        let mut cache = Cache::default();
        for n in nodes {
            for (k, _) in n.pods.iter() {
                cache.pods.insert(
                    k.clone(),
                    PodState {
                        node: n.name.clone(),
                        assumed: false,
                    },
                );
            }
            cache.order.push(n.name.clone());
            cache.nodes.insert(n.name.clone(), n);
        }
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    #[test]
    fn assume_counts_at_once_and_forget_releases() {
        let mut cache = Cache::from_nodes(vec![NodeInfo::for_test("n1", 1000, 1 << 30, 10)]);
        let pod = PodBuilder::new("p").cpu("600m").info();
        cache.assume(&pod, "n1");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 600);
        assert!(cache.is_assumed("default/p"));
        cache.forget("default/p");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 0);
        assert!(!cache.has_pod("default/p"));
    }

    #[test]
    fn watch_confirms_an_assumed_pod_without_double_counting() {
        let mut cache = Cache::from_nodes(vec![NodeInfo::for_test("n1", 1000, 1 << 30, 10)]);
        let pod = PodBuilder::new("p").cpu("600m").info();
        cache.assume(&pod, "n1");
        cache.apply_pod(Arc::new(
            PodBuilder::new("p").cpu("600m").on_node("n1").info(),
        ));
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 600);
        assert!(!cache.is_assumed("default/p"));
        // A confirmed pod is not forgotten by a late bind failure.
        cache.forget("default/p");
        assert_eq!(cache.node("n1").unwrap().pods.len(), 1);
        assert!(cache.remove_pod("default/p"));
        assert_eq!(cache.node("n1").unwrap().requested, Resources::default());
    }

    #[test]
    fn pods_of_an_unknown_node_wait_for_it() {
        let mut cache = Cache::default();
        cache.apply_pod(Arc::new(
            PodBuilder::new("p").cpu("1").on_node("later").info(),
        ));
        assert_eq!(cache.node_count(), 0);
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "later"},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}
        }))
        .unwrap();
        let node = Arc::new(NodeData::new(&node));
        assert!(cache.apply_node(&node));
        assert!(!cache.apply_node(&node), "an identical node is no change");
        assert_eq!(cache.node("later").unwrap().requested.milli_cpu, 1000);
        cache.remove_node("later");
        assert_eq!(cache.node_count(), 0);
    }
}
