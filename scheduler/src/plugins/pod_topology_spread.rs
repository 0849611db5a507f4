//! PodTopologySpread: `topologySpreadConstraints`. For each constraint, pods matching its
//! selector (in the pod's namespace) are counted per topology domain (the value of the node
//! label `topologyKey`, e.g. `kubernetes.io/hostname`) over the nodes the pod could use.
//! `DoNotSchedule` constraints filter out nodes where placing the pod would make the domain
//! exceed the smallest by more than `maxSkew`; `ScheduleAnyway` constraints only score.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, Reasons, ScorePlugin};
use crate::plugins::node_affinity::required_matches;
use crate::podinfo::PodInfo;
use crate::selector::matches_label_selector;

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const FILTER_STATE: &str = "PodTopologySpread/filter";
const SCORE_STATE: &str = "PodTopologySpread/score";

/// Matching pods per domain for one constraint.
struct Counts {
    key: String,
    max_skew: i64,
    min_domains: usize,
    /// Whether the pod itself matches the selector (then placing it adds one).
    self_match: bool,
    per_domain: HashMap<String, i64>,
}

impl Counts {
    fn compute(c: &TopologySpreadConstraint, pod: &PodInfo, cache: &Cache) -> Counts {
        let selector = c.label_selector.clone().unwrap_or_default();
        let mut per_domain: HashMap<String, i64> = HashMap::new();
        for node in cache.nodes() {
            let Some(data) = &node.node else { continue };
            let Some(domain) = data.labels.get(&c.topology_key) else {
                continue;
            };
            if !required_matches(pod, node) {
                continue;
            }
            let n = node
                .pods
                .values()
                .filter(|p| p.namespace == pod.namespace && !p.deleting)
                .filter(|p| {
                    c.label_selector.is_some() && matches_label_selector(&selector, &p.labels)
                })
                .count() as i64;
            *per_domain.entry(domain.clone()).or_default() += n;
        }
        Counts {
            key: c.topology_key.clone(),
            max_skew: c.max_skew.max(1) as i64,
            min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
            self_match: c.label_selector.is_some()
                && matches_label_selector(&selector, &pod.labels),
            per_domain,
        }
    }

    fn min(&self) -> i64 {
        if self.per_domain.len() < self.min_domains {
            return 0;
        }
        self.per_domain.values().copied().min().unwrap_or(0)
    }
}

fn constraints<'a>(
    pod: &'a PodInfo,
    when: &'a str,
) -> impl Iterator<Item = &'a TopologySpreadConstraint> {
    pod.spread
        .iter()
        .filter(move |c| c.when_unsatisfiable == when)
}

pub struct PodTopologySpread;

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
        let counts: Vec<(Counts, i64)> = constraints(pod, "DoNotSchedule")
            .map(|c| {
                let counts = Counts::compute(c, pod, cache);
                let min = counts.min();
                (counts, min)
            })
            .collect();
        if !counts.is_empty() {
            state.write(FILTER_STATE, counts);
        }
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(all) = state.read::<Vec<(Counts, i64)>>(FILTER_STATE) else {
            return Ok(());
        };
        let Some(data) = &node.node else {
            return Ok(());
        };
        for (counts, min) in all {
            let Some(domain) = data.labels.get(&counts.key) else {
                return Err(vec![REASON_LABEL.into()]);
            };
            let here = counts.per_domain.get(domain).copied().unwrap_or(0);
            let skew = here + i64::from(counts.self_match) - min;
            if skew > counts.max_skew {
                return Err(vec![REASON.into()]);
            }
        }
        Ok(())
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_score(&self, pod: &PodInfo, cache: &Cache, _: &[&NodeInfo], state: &mut CycleState) {
        let counts: Vec<Counts> = constraints(pod, "ScheduleAnyway")
            .map(|c| Counts::compute(c, pod, cache))
            .collect();
        if !counts.is_empty() {
            state.write(SCORE_STATE, counts);
        }
    }

    /// Matching pods in the node's domains, summed over the soft constraints (fewer is better);
    /// -1 for a node lacking a constraint's label.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(all) = state.read::<Vec<Counts>>(SCORE_STATE) else {
            return 0;
        };
        let Some(data) = &node.node else { return -1 };
        let mut total = 0;
        for counts in all {
            match data.labels.get(&counts.key) {
                Some(domain) => total += counts.per_domain.get(domain).copied().unwrap_or(0),
                None => return -1,
            }
        }
        total
    }

    /// The least crowded node gets the full score, the most crowded the least; nodes without
    /// the labels get nothing.
    fn normalize(&self, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s >= 0);
        let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::{filter_all, score_all};
    use crate::testing::PodBuilder;
    use serde_json::json;

    fn app(name: &str, node: &str) -> PodInfo {
        PodBuilder::new(name)
            .label("app", "web")
            .on_node(node)
            .info()
    }

    fn nodes() -> Vec<NodeInfo> {
        vec![
            NodeInfo::for_test("a", 1000, 1 << 30, 10)
                .with_pod(app("w1", "a"))
                .with_pod(app("w2", "a")),
            NodeInfo::for_test("b", 1000, 1 << 30, 10).with_pod(app("w3", "b")),
            NodeInfo::for_test("c", 1000, 1 << 30, 10),
        ]
    }

    fn constraint(max_skew: i32, when: &str) -> serde_json::Value {
        json!({"maxSkew": max_skew, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": when,
               "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    #[test]
    fn do_not_schedule_bounds_the_skew() {
        let r = Some(REASON.to_string());
        let cases = [
            // Counts a=2, b=1, c=0; min 0. Placing adds 1.
            ("maxSkew 1", 1, vec![r.clone(), r.clone(), None]),
            ("maxSkew 2", 2, vec![r.clone(), None, None]),
            ("maxSkew 3", 3, vec![None, None, None]),
        ];
        for (name, skew, want) in cases {
            let pod = PodBuilder::new("p")
                .label("app", "web")
                .spread(constraint(skew, "DoNotSchedule"))
                .info();
            assert_eq!(
                filter_all(&PodTopologySpread, &pod, nodes()),
                want,
                "{name}"
            );
        }
        // A pod outside the selector adds nothing: skew = count - min.
        let other = PodBuilder::new("p")
            .label("app", "db")
            .spread(constraint(1, "DoNotSchedule"))
            .info();
        assert_eq!(
            filter_all(&PodTopologySpread, &other, nodes()),
            vec![r, None, None]
        );
    }

    #[test]
    fn nodes_without_the_key_are_refused() {
        let mut n = NodeInfo::for_test("x", 1000, 1 << 30, 10);
        std::sync::Arc::make_mut(n.node.as_mut().unwrap())
            .labels
            .clear();
        let pod = PodBuilder::new("p")
            .label("app", "web")
            .spread(constraint(1, "DoNotSchedule"))
            .info();
        assert_eq!(
            filter_all(&PodTopologySpread, &pod, vec![n]),
            vec![Some(REASON_LABEL.to_string())]
        );
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_higher() {
        let pod = PodBuilder::new("p")
            .label("app", "web")
            .spread(constraint(1, "ScheduleAnyway"))
            .info();
        // Counts 2, 1, 0: scores 100*(2+0-s)/2.
        assert_eq!(
            score_all(&PodTopologySpread, &pod, nodes()),
            vec![0, 50, 100]
        );
        // ScheduleAnyway never filters.
        assert_eq!(
            filter_all(&PodTopologySpread, &pod, nodes()),
            vec![None, None, None]
        );
    }
}
