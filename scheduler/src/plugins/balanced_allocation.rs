//! BalancedAllocation: prefers nodes where, with the pod placed, cpu and memory would be used in
//! similar proportions (so neither is stranded).

use crate::cache::NodeInfo;
use crate::framework::{CycleState, MAX_NODE_SCORE, ScorePlugin};
use crate::podinfo::PodInfo;

pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    /// `(1 - std) * 100`, where std is the standard deviation of the cpu and memory fractions
    /// (for two values, half their difference), as Kubernetes computes it.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(data) = &node.node else { return 0 };
        let frac = |req: i64, cap: i64| {
            if cap <= 0 {
                1.0
            } else {
                (req as f64 / cap as f64).min(1.0)
            }
        };
        let cpu = frac(
            node.nonzero_requested.milli_cpu + pod.nonzero.milli_cpu,
            data.allocatable.milli_cpu,
        );
        let mem = frac(
            node.nonzero_requested.memory + pod.nonzero.memory,
            data.allocatable.memory,
        );
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::score_all;
    use crate::testing::PodBuilder;

    #[test]
    fn balance_beats_imbalance() {
        const GI: i64 = 1 << 30;
        let nodes = vec![
            // After placing 1 cpu / 1 Gi: 50% cpu, 50% memory.
            NodeInfo::for_test("even", 2000, 2 * GI, 10),
            // After placing: 100% cpu, 25% memory.
            NodeInfo::for_test("skewed", 1000, 4 * GI, 10),
        ];
        let pod = PodBuilder::new("p").cpu("1").memory("1Gi").info();
        assert_eq!(score_all(&BalancedAllocation, &pod, nodes), vec![100, 62]);
    }
}
