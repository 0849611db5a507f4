//! NodeResourcesFit: a pod fits where its requests (cpu, memory, ephemeral storage, extended
//! resources, and one more pod) fit into what is allocatable minus what the node's pods already
//! request. LeastAllocated, its score, prefers nodes with the most room left.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, Reasons, ScorePlugin};
use crate::podinfo::PodInfo;

pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(data) = &node.node else {
            return Ok(());
        };
        let mut reasons: Reasons = Vec::new();
        if node.pods.len() as i64 + 1 > data.allowed_pods {
            reasons.push("Too many pods".into());
        }
        let want = &pod.requests;
        let alloc = &data.allocatable;
        let used = &node.requested;
        if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory > 0 && want.memory > alloc.memory - used.memory {
            reasons.push("Insufficient memory".into());
        }
        if want.ephemeral_storage > 0
            && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
        {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalar {
            let free = alloc.scalar.get(name).copied().unwrap_or(0)
                - used.scalar.get(name).copied().unwrap_or(0);
            if *amount > 0 && *amount > free {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// The share of `capacity` left after `requested`, scaled to 0..=100.
fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// The mean over cpu and memory of the room left once the pod is placed (requests of
    /// request-less containers counted with Kubernetes' defaults).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(data) = &node.node else { return 0 };
        let cpu = least_allocated(
            node.nonzero_requested.milli_cpu + pod.nonzero.milli_cpu,
            data.allocatable.milli_cpu,
        );
        let mem = least_allocated(
            node.nonzero_requested.memory + pod.nonzero.memory,
            data.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::{filter_all, score_all};
    use crate::testing::PodBuilder;

    const GI: i64 = 1 << 30;

    #[test]
    fn requests_must_fit_what_is_left() {
        let busy = || {
            NodeInfo::for_test("n", 2000, 2 * GI, 2).with_pod(
                PodBuilder::new("a")
                    .cpu("1500m")
                    .memory("1Gi")
                    .on_node("n")
                    .info(),
            )
        };
        let mut gpu_node = NodeInfo::for_test("g", 2000, 2 * GI, 10);
        std::sync::Arc::make_mut(gpu_node.node.as_mut().unwrap())
            .allocatable
            .scalar
            .insert("example.com/gpu".into(), 1);
        let cases = [
            (
                "fits",
                PodBuilder::new("p").cpu("500m").memory("1Gi"),
                busy(),
                None,
            ),
            (
                "cpu",
                PodBuilder::new("p").cpu("501m"),
                busy(),
                Some("Insufficient cpu"),
            ),
            (
                "memory",
                PodBuilder::new("p").memory("1025Mi"),
                busy(),
                Some("Insufficient memory"),
            ),
            (
                "both",
                PodBuilder::new("p").cpu("1").memory("2Gi"),
                busy(),
                Some("Insufficient cpu; Insufficient memory"),
            ),
            ("no requests always fit", PodBuilder::new("p"), busy(), None),
            (
                "pod count",
                PodBuilder::new("p"),
                busy().with_pod(PodBuilder::new("b").on_node("n").info()),
                Some("Too many pods"),
            ),
            (
                "extended resource present",
                PodBuilder::new("p").request("example.com/gpu", "1"),
                gpu_node.clone(),
                None,
            ),
            (
                "extended resource exhausted",
                PodBuilder::new("p").request("example.com/gpu", "2"),
                gpu_node,
                Some("Insufficient example.com/gpu"),
            ),
            (
                "extended resource absent",
                PodBuilder::new("p").request("example.com/gpu", "1"),
                busy(),
                Some("Insufficient example.com/gpu"),
            ),
        ];
        for (name, pod, node, want) in cases {
            let got = filter_all(&NodeResourcesFit, &pod.info(), vec![node]);
            assert_eq!(got[0].as_deref(), want, "{name}");
        }
    }

    #[test]
    fn least_allocated_prefers_room() {
        let nodes = vec![
            NodeInfo::for_test("empty", 4000, 4 * GI, 10),
            NodeInfo::for_test("half", 4000, 4 * GI, 10).with_pod(
                PodBuilder::new("a")
                    .cpu("2")
                    .memory("2Gi")
                    .on_node("half")
                    .info(),
            ),
        ];
        let pod = PodBuilder::new("p").cpu("1").memory("1Gi").info();
        // empty: (3/4 + 3/4)/2 = 75; half: (1/4 + 1/4)/2 = 25.
        assert_eq!(score_all(&LeastAllocated, &pod, nodes), vec![75, 25]);
    }
}
