//! InterPodAffinity (required terms): a pod with pod affinity fits only in topology domains
//! (values of the term's `topologyKey` label, e.g. each hostname) that already run a matching
//! pod; with anti-affinity, only in domains that do not. Existing pods' anti-affinity is
//! honoured too: a pod never lands in a domain whose pods' anti-affinity terms match it.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{CycleState, FilterPlugin, Reasons};
use crate::podinfo::{PodInfo, term_matches};

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

const STATE: &str = "InterPodAffinity";

/// (topologyKey, value) pairs.
type Domains = HashSet<(String, String)>;

struct State {
    /// Domains that existing pods' anti-affinity closes to this pod.
    closed_by_existing: Domains,
    /// Per affinity term: the domains holding a matching pod.
    affinity: Vec<(String, HashSet<String>)>,
    /// No pod anywhere matches the affinity terms, and the pod matches them itself: the first
    /// pod of a group that wants to be together may go anywhere (as in Kubernetes).
    affinity_bootstrap: bool,
    /// Per anti-affinity term: the domains holding a matching pod.
    anti: Vec<(String, HashSet<String>)>,
}

fn domains_with_match(term: &PodAffinityTerm, pod: &PodInfo, cache: &Cache) -> HashSet<String> {
    let mut out = HashSet::new();
    for node in cache.nodes() {
        let Some(data) = &node.node else { continue };
        let Some(value) = data.labels.get(&term.topology_key) else {
            continue;
        };
        if out.contains(value) {
            continue;
        }
        if node.pods.values().any(|p| pod.term_matches(term, p)) {
            out.insert(value.clone());
        }
    }
    out
}

pub struct InterPodAffinity;

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
        let mut closed = Domains::new();
        for node in cache.nodes().filter(|n| n.with_anti_affinity > 0) {
            let Some(data) = &node.node else { continue };
            for existing in node.pods.values() {
                for term in &existing.anti_affinity_terms {
                    if let Some(value) = data.labels.get(&term.topology_key)
                        && term_matches(term, &existing.namespace, &pod.namespace, &pod.labels)
                    {
                        closed.insert((term.topology_key.clone(), value.clone()));
                    }
                }
            }
        }
        if closed.is_empty() && pod.affinity_terms.is_empty() && pod.anti_affinity_terms.is_empty()
        {
            return;
        }
        let affinity: Vec<(String, HashSet<String>)> = pod
            .affinity_terms
            .iter()
            .map(|t| (t.topology_key.clone(), domains_with_match(t, pod, cache)))
            .collect();
        let affinity_bootstrap = !affinity.is_empty()
            && affinity.iter().all(|(_, d)| d.is_empty())
            && pod.affinity_terms.iter().all(|t| pod.term_matches(t, pod));
        let anti = pod
            .anti_affinity_terms
            .iter()
            .map(|t| (t.topology_key.clone(), domains_with_match(t, pod, cache)))
            .collect();
        state.write(
            STATE,
            State {
                closed_by_existing: closed,
                affinity,
                affinity_bootstrap,
                anti,
            },
        );
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(s) = state.read::<State>(STATE) else {
            return Ok(());
        };
        let Some(data) = &node.node else {
            return Ok(());
        };
        // Kubernetes' order: the pod's affinity, its anti-affinity, then existing pods'.
        if !s.affinity_bootstrap {
            for (key, domains) in &s.affinity {
                if !data.labels.get(key).is_some_and(|v| domains.contains(v)) {
                    return Err(vec![REASON_AFFINITY.into()]);
                }
            }
        } else if s
            .affinity
            .iter()
            .any(|(key, _)| !data.labels.contains_key(key))
        {
            return Err(vec![REASON_AFFINITY.into()]);
        }
        for (key, domains) in &s.anti {
            if data.labels.get(key).is_some_and(|v| domains.contains(v)) {
                return Err(vec![REASON_ANTI_AFFINITY.into()]);
            }
        }
        if s.closed_by_existing
            .iter()
            .any(|(k, v)| data.labels.get(k) == Some(v))
        {
            return Err(vec![REASON_EXISTING_ANTI_AFFINITY.into()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::filter_all;
    use crate::testing::PodBuilder;
    use serde_json::json;

    fn term(app: &str) -> serde_json::Value {
        json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}])
    }

    fn nodes() -> Vec<NodeInfo> {
        vec![
            NodeInfo::for_test("a", 1000, 1 << 30, 10).with_pod(
                PodBuilder::new("cache")
                    .label("app", "cache")
                    .on_node("a")
                    .info(),
            ),
            NodeInfo::for_test("b", 1000, 1 << 30, 10),
        ]
    }

    #[test]
    fn required_affinity_and_anti_affinity() {
        let with = |a: serde_json::Value| PodBuilder::new("p").label("app", "web").affinity(a);
        let cases = [
            (
                "affinity to cache",
                with(
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("cache")}}),
                ),
                vec![None, Some(REASON_AFFINITY)],
            ),
            (
                "anti-affinity to cache",
                with(
                    json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("cache")}}),
                ),
                vec![Some(REASON_ANTI_AFFINITY), None],
            ),
            (
                "affinity to nothing",
                with(
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("db")}}),
                ),
                vec![Some(REASON_AFFINITY), Some(REASON_AFFINITY)],
            ),
            (
                "first of a group may go anywhere",
                with(
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}),
                ),
                vec![None, None],
            ),
            ("no affinity", PodBuilder::new("p"), vec![None, None]),
        ];
        for (name, pod, want) in cases {
            let want: Vec<Option<String>> = want.into_iter().map(|w| w.map(String::from)).collect();
            assert_eq!(
                filter_all(&InterPodAffinity, &pod.info(), nodes()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn other_namespaces_do_not_count_unless_named() {
        let pod = |ns_list: serde_json::Value| {
            PodBuilder::new("p").namespace("prod").affinity(json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname", "namespaces": ns_list}]}}))
        };
        let r = Some(REASON_AFFINITY.to_string());
        assert_eq!(
            filter_all(&InterPodAffinity, &pod(json!([])).info(), nodes()),
            vec![r.clone(), r.clone()]
        );
        assert_eq!(
            filter_all(&InterPodAffinity, &pod(json!(["default"])).info(), nodes()),
            vec![None, r]
        );
    }

    #[test]
    fn existing_pods_anti_affinity_keeps_matching_pods_out() {
        let loner = PodBuilder::new("loner")
            .label("app", "loner")
            .affinity(json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}))
            .on_node("a")
            .info();
        let nodes = vec![
            NodeInfo::for_test("a", 1000, 1 << 30, 10).with_pod(loner),
            NodeInfo::for_test("b", 1000, 1 << 30, 10),
        ];
        let web = PodBuilder::new("p").label("app", "web").info();
        assert_eq!(
            filter_all(&InterPodAffinity, &web, nodes.clone()),
            vec![Some(REASON_EXISTING_ANTI_AFFINITY.to_string()), None]
        );
        let db = PodBuilder::new("q").label("app", "db").info();
        assert_eq!(filter_all(&InterPodAffinity, &db, nodes), vec![None, None]);
    }
}
