//! SelectorSpread: spreads the pods of one controller (ReplicaSet, ReplicationController, ...)
//! across nodes by preferring nodes that hold fewer of its pods, as Kubernetes' default
//! spreading does for pods without explicit topology spread constraints.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, ScorePlugin, normalize_scores};
use crate::podinfo::PodInfo;

pub struct SelectorSpread;

impl ScorePlugin for SelectorSpread {
    fn name(&self) -> &'static str {
        "SelectorSpread"
    }

    /// How many pods of the same controller the node already runs (fewer is better).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        match &pod.controller_uid {
            Some(uid) => node.owners.get(uid).copied().unwrap_or(0) as i64,
            None => 0,
        }
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_scores(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::score_all;
    use crate::testing::PodBuilder;

    #[test]
    fn fewer_siblings_score_higher() {
        let sibling = |n: &str, node: &str| PodBuilder::new(n).owner("rs-1").on_node(node).info();
        let nodes = vec![
            NodeInfo::for_test("a", 1000, 1 << 30, 10)
                .with_pod(sibling("s1", "a"))
                .with_pod(sibling("s2", "a")),
            NodeInfo::for_test("b", 1000, 1 << 30, 10).with_pod(sibling("s3", "b")),
            NodeInfo::for_test("c", 1000, 1 << 30, 10)
                .with_pod(PodBuilder::new("other").owner("rs-2").on_node("c").info()),
        ];
        let pod = PodBuilder::new("p").owner("rs-1").info();
        assert_eq!(score_all(&SelectorSpread, &pod, nodes), vec![0, 50, 100]);
    }
}
