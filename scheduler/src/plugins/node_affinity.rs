//! NodeAffinity: `nodeSelector` and required node affinity (terms ORed, expressions ANDed, all
//! operators) filter nodes; preferred node affinity adds the weights of the terms a node
//! matches to its score.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Reasons, ScorePlugin, normalize_scores};
use crate::podinfo::PodInfo;
use crate::selector::term_matches;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

/// Whether a node satisfies the pod's nodeSelector and required node affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let Some(data) = &node.node else {
        return false;
    };
    if pod
        .node_selector
        .iter()
        .any(|(k, v)| data.labels.get(k) != Some(v))
    {
        return false;
    }
    match pod.node_affinity.as_ref().and_then(|a| {
        a.required_during_scheduling_ignored_during_execution
            .as_ref()
    }) {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, &node.name, &data.labels)),
        None => true,
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        if required_matches(pod, node) {
            Ok(())
        } else {
            Err(vec![REASON.into()])
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(data) = &node.node else { return 0 };
        pod.node_affinity
            .as_ref()
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|prefs| {
                prefs
                    .iter()
                    .filter(|p| {
                        p.weight != 0 && term_matches(&p.preference, &node.name, &data.labels)
                    })
                    .map(|p| p.weight as i64)
                    .sum()
            })
            .unwrap_or(0)
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_scores(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::{filter_all, score_all};
    use crate::testing::PodBuilder;
    use serde_json::json;

    fn labelled(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        let mut n = NodeInfo::for_test(name, 1000, 1 << 30, 10);
        for (k, v) in labels {
            std::sync::Arc::make_mut(n.node.as_mut().unwrap())
                .labels
                .insert(k.to_string(), v.to_string());
        }
        n
    }

    #[test]
    fn selector_and_required_affinity() {
        let nodes = || {
            vec![
                labelled("a", &[("disk", "ssd"), ("zone", "1")]),
                labelled("b", &[("zone", "2")]),
            ]
        };
        let required = |terms: serde_json::Value| {
            PodBuilder::new("p").affinity(json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}))
        };
        let r = Some(REASON.to_string());
        let cases = [
            ("no constraints", PodBuilder::new("p"), vec![None, None]),
            (
                "nodeSelector",
                PodBuilder::new("p").node_selector("disk", "ssd"),
                vec![None, r.clone()],
            ),
            (
                "nodeSelector unmatched",
                PodBuilder::new("p").node_selector("disk", "hdd"),
                vec![r.clone(), r.clone()],
            ),
            (
                "In",
                required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["2"]}]}]),
                ),
                vec![r.clone(), None],
            ),
            (
                "terms are ORed",
                required(json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["2"]}]},
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}])),
                vec![None, None],
            ),
            (
                "expressions are ANDed",
                required(json!([{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["1"]},
                {"key": "disk", "operator": "DoesNotExist"}]}])),
                vec![r.clone(), r.clone()],
            ),
            (
                "matchFields",
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]),
                ),
                vec![r.clone(), None],
            ),
            (
                "selector and affinity both apply",
                required(json!([{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]))
                    .node_selector("disk", "ssd"),
                vec![None, r.clone()],
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(
                filter_all(&NodeAffinity, &pod.info(), nodes()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn preferred_affinity_scores_by_weight() {
        let pod = PodBuilder::new("p").affinity(json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["1"]}]}}]}}));
        let nodes = vec![
            labelled("a", &[("disk", "ssd"), ("zone", "1")]),
            labelled("b", &[("disk", "ssd")]),
            labelled("c", &[("zone", "1")]),
            labelled("d", &[]),
        ];
        assert_eq!(
            score_all(&NodeAffinity, &pod.info(), nodes),
            vec![100, 80, 20, 0]
        );
    }
}
