//! TaintToleration: a node's NoSchedule and NoExecute taints keep out every pod that does not
//! tolerate them; PreferNoSchedule taints only lower the node's score.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Reasons, ScorePlugin, normalize_scores};
use crate::podinfo::PodInfo;

pub use skiff_client::tolerations::tolerates;

pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(data) = &node.node else {
            return Ok(());
        };
        match data.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(&pod.tolerations, t)
        }) {
            None => Ok(()),
            Some(t) => Err(vec![
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                )
                .into(),
            ]),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// How many PreferNoSchedule taints the pod does not tolerate (fewer is better).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(data) = &node.node else { return 0 };
        data.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerates(&pod.tolerations, t))
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_scores(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::{filter_all, score_all};
    use crate::testing::PodBuilder;
    use serde_json::{Value, json};

    fn tainted(taints: Value) -> NodeInfo {
        let mut n = NodeInfo::for_test("n", 1000, 1 << 30, 10);
        std::sync::Arc::make_mut(n.node.as_mut().unwrap()).taints =
            serde_json::from_value(taints).unwrap();
        n
    }

    #[test]
    fn filter() {
        let gpu = json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]);
        let cases = [
            ("no taints", json!([]), PodBuilder::new("p"), None),
            (
                "untolerated",
                gpu.clone(),
                PodBuilder::new("p"),
                Some("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "equal",
                gpu.clone(),
                PodBuilder::new("p")
                    .toleration(json!({"key": "gpu", "value": "true", "effect": "NoSchedule"})),
                None,
            ),
            (
                "equal, other value",
                gpu.clone(),
                PodBuilder::new("p").toleration(json!({"key": "gpu", "value": "no"})),
                Some("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "exists",
                gpu.clone(),
                PodBuilder::new("p").toleration(json!({"key": "gpu", "operator": "Exists"})),
                None,
            ),
            (
                "wrong effect",
                gpu.clone(),
                PodBuilder::new("p")
                    .toleration(json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"})),
                Some("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "tolerate all",
                gpu.clone(),
                PodBuilder::new("p").toleration(json!({"operator": "Exists"})),
                None,
            ),
            (
                "NoExecute",
                json!([{"key": "k", "effect": "NoExecute"}]),
                PodBuilder::new("p"),
                Some("node(s) had untolerated taint {k: }"),
            ),
            (
                "PreferNoSchedule does not filter",
                json!([{"key": "k", "effect": "PreferNoSchedule"}]),
                PodBuilder::new("p"),
                None,
            ),
        ];
        for (name, taints, pod, want) in cases {
            let got = filter_all(&TaintToleration, &pod.info(), vec![tainted(taints)]);
            assert_eq!(got[0].as_deref(), want, "{name}");
        }
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let mut a = tainted(
            json!([{"key": "x", "effect": "PreferNoSchedule"}, {"key": "y", "effect": "PreferNoSchedule"}]),
        );
        a.name = "a".into();
        let mut b = tainted(json!([{"key": "x", "effect": "PreferNoSchedule"}]));
        b.name = "b".into();
        let mut c = tainted(json!([]));
        c.name = "c".into();
        let scores = score_all(
            &TaintToleration,
            &PodBuilder::new("p").info(),
            vec![a, b, c],
        );
        assert_eq!(scores, vec![0, 50, 100]);
    }
}
