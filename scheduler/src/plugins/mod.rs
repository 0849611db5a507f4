//! The plugins, one module each, and [`registry`]: the one place that says which run and with
//! what weights (the weights of kube-scheduler's default profile).

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_ready;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod selector_spread;
pub mod taint_toleration;
pub mod volume_binding;

use std::sync::Arc;

use crate::framework::Framework;

/// The default profile. Filters run in this order and a node's first failure is its reason.
/// `volumes` is where VolumeBinding reads claims (none: pods' claims are not checked).
pub fn registry(
    percentage_of_nodes_to_score: u32,
    volumes: Option<Arc<dyn volume_binding::VolumeListers>>,
) -> Framework {
    Framework {
        filters: vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(node_ready::NodeReady),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources_fit::NodeResourcesFit),
            Box::new(volume_binding::VolumeBinding { listers: volumes }),
            Box::new(pod_topology_spread::PodTopologySpread),
            Box::new(inter_pod_affinity::InterPodAffinity),
        ],
        scores: vec![
            (Box::new(node_resources_fit::LeastAllocated), 1),
            (Box::new(balanced_allocation::BalancedAllocation), 1),
            (Box::new(node_affinity::NodeAffinity), 2),
            (Box::new(taint_toleration::TaintToleration), 3),
            (Box::new(pod_topology_spread::PodTopologySpread), 2),
            (Box::new(selector_spread::SelectorSpread), 2),
        ],
        percentage_of_nodes_to_score,
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::cache::{Cache, NodeInfo};
    use crate::framework::{CycleState, FilterPlugin, ScorePlugin};
    use crate::podinfo::PodInfo;

    /// Runs a filter plugin (with its pre-filter) for a pod on every node of `nodes`;
    /// returns per node `None` (fits) or the reasons joined.
    pub fn filter_all(
        plugin: &dyn FilterPlugin,
        pod: &PodInfo,
        nodes: Vec<NodeInfo>,
    ) -> Vec<Option<String>> {
        let cache = Cache::from_nodes(nodes);
        let mut state = CycleState::default();
        plugin.pre_filter(pod, &cache, &mut state);
        cache
            .nodes()
            .map(|n| plugin.filter(&state, pod, n).err().map(|r| r.join("; ")))
            .collect()
    }

    /// Runs a score plugin over all `nodes`; returns normalized scores in node order.
    pub fn score_all(plugin: &dyn ScorePlugin, pod: &PodInfo, nodes: Vec<NodeInfo>) -> Vec<i64> {
        let cache = Cache::from_nodes(nodes);
        let feasible: Vec<&NodeInfo> = cache.nodes().collect();
        let mut state = CycleState::default();
        plugin.pre_score(pod, &cache, &feasible, &mut state);
        let mut scores: Vec<i64> = feasible
            .iter()
            .map(|n| plugin.score(&state, pod, n))
            .collect();
        plugin.normalize(&mut scores);
        scores
    }
}
