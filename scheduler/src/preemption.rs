//! Preemption, as kube-scheduler's DefaultPreemption PostFilter: when no node can take a pod,
//! find on each node the fewest lower-priority pods (*victims*) whose removal lets it fit,
//! choose the node whose eviction hurts least, and report the victims to delete and the node
//! to nominate. Pure over the cache: the [`crate::scheduler`] loop does the API writes.
//!
//! On a node: remove every pod of lower priority; if the pod still does not fit, preemption
//! cannot help there. Otherwise give pods back (*reprieve* them) from the most important down,
//! those whose PodDisruptionBudget would be violated first, keeping each that still leaves
//! room. Among the nodes, the first of: fewest budget violations, lowest highest-victim
//! priority, smallest sum of victim priorities, fewest victims, latest start of the most
//! important victims, wins.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{FitError, Framework, Nominated, Reasons};
use crate::podinfo::PodInfo;
use crate::selector::matches_label_selector;

/// Why a node is no candidate when it has no pod of lower priority.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Why a node is no candidate when it fails a filter that removing pods cannot change.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// Filters whose failure no eviction can cure (kube-scheduler's UnschedulableAndUnresolvable).
const UNRESOLVABLE: &[&str] = &[
    "NodeUnschedulable",
    "NodeName",
    "NodeReady",
    "TaintToleration",
    "NodeAffinity",
];

/// What the scheduler keeps of a PodDisruptionBudget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub namespace: String,
    pub selector: Option<LabelSelector>,
    /// `status.disruptionsAllowed`; absent (no controller wrote it yet) counts as 0, as in
    /// kube-scheduler, which only makes its pods less preferred as victims.
    pub disruptions_allowed: i32,
    /// `status.disruptedPods`: evictions already counted against the budget.
    pub disrupted: BTreeSet<String>,
}

impl Budget {
    /// The PDB informer's conversion.
    pub fn from_pdb(pdb: PodDisruptionBudget) -> Option<Budget> {
        let status = pdb.status.unwrap_or_default();
        Some(Budget {
            namespace: pdb.metadata.namespace.unwrap_or_default(),
            selector: pdb.spec.and_then(|s| s.selector),
            disruptions_allowed: status.disruptions_allowed,
            disrupted: status
                .disrupted_pods
                .map(|m| m.into_keys().collect())
                .unwrap_or_default(),
        })
    }

    /// Whether the budget covers `pod`: an absent or empty selector covers nothing here.
    fn covers(&self, pod: &PodInfo) -> bool {
        self.namespace == pod.namespace
            && self.selector.as_ref().is_some_and(|s| {
                (s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                    || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty()))
                    && matches_label_selector(s, &pod.labels)
            })
    }
}

/// The pods to evict from one node.
#[derive(Debug, Clone)]
pub struct Victims {
    /// Most important first.
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of them a budget does not allow to go.
    pub pdb_violations: usize,
}

/// A node where preemption makes room, and what it costs.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Victims,
}

/// What preemption decided for a pod.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The pod may not preempt (the reason, in kube-scheduler's words).
    NotEligible(&'static str),
    /// No node would take the pod even after evictions; per-node reasons.
    NoCandidate(FitError),
    Chosen(Candidate),
}

impl Outcome {
    /// The part kube-scheduler appends to a FailedScheduling message (`preemption: ...`).
    pub fn describe(&self) -> Option<String> {
        match self {
            Outcome::NotEligible(why) => Some(format!("preemption: {why}")),
            Outcome::NoCandidate(fit) => Some(format!("preemption: {fit}")),
            Outcome::Chosen(_) => None,
        }
    }
}

/// Higher priority first; then the pod that started earlier (one not started yet counts as
/// starting `now`), as kube-scheduler's MoreImportantPod.
fn more_important(a: &PodInfo, b: &PodInfo, now: jiff::Timestamp) -> Ordering {
    b.priority.cmp(&a.priority).then_with(|| {
        a.start_time
            .unwrap_or(now)
            .cmp(&b.start_time.unwrap_or(now))
    })
}

/// Whether `pod` may preempt at all: not with `preemptionPolicy: Never`, and not while pods
/// it already preempted on its nominated node are still terminating.
pub fn eligible(
    pod: &PodInfo,
    nominated_node: Option<&str>,
    cache: &Cache,
) -> Result<(), &'static str> {
    if pod.preempt_never {
        return Err("not eligible due to preemptionPolicy=Never.");
    }
    if let Some(node) = nominated_node.and_then(|n| cache.node(n))
        && node
            .pods
            .values()
            .any(|p| p.deleting && p.priority < pod.priority)
    {
        return Err("not eligible due to a terminating pod on the nominated node.");
    }
    Ok(())
}

/// Runs preemption for `pod`, which fits nowhere. `now` stands for the start time of pods
/// that have not started.
pub fn preempt(
    fw: &Framework,
    cache: &Cache,
    pod: &PodInfo,
    nominated: &Nominated,
    budgets: &[Arc<Budget>],
    now: jiff::Timestamp,
) -> Outcome {
    let nominated_node = nominated
        .node_of(&pod.key)
        .or(pod.nominated_node.as_deref());
    if let Err(why) = eligible(pod, nominated_node, cache) {
        return Outcome::NotEligible(why);
    }
    // The unresolvable filters read the cache as it is; their pre-filter state is computed
    // once. The simulation works on a copy, made only once some node has possible victims
    // (in a cluster of equal priorities, never).
    let mut state = crate::framework::CycleState::default();
    for f in &fw.filters {
        f.pre_filter(pod, cache, &mut state);
    }
    let mut sim: Option<Cache> = None;
    let mut candidates = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut num_nodes = 0;
    for node in cache.nodes() {
        num_nodes += 1;
        let outcome = match might_help(fw, &state, pod, node) {
            Err(why) => Err(vec![why.into()]),
            Ok(()) => {
                let sim = sim.get_or_insert_with(|| cache.clone());
                victims_on_node(fw, sim, pod, &node.name, nominated, budgets, now)
            }
        };
        match outcome {
            Ok(victims) => candidates.push(Candidate {
                node: node.name.clone(),
                victims,
            }),
            Err(rs) => {
                for r in rs {
                    *reasons.entry(r.into_owned()).or_default() += 1;
                }
            }
        }
    }
    match pick_one_node(&candidates, now) {
        Some(i) => Outcome::Chosen(candidates.swap_remove(i)),
        None => Outcome::NoCandidate(FitError { num_nodes, reasons }),
    }
}

/// Whether evicting pods from `node` could make room: not when a filter no eviction changes
/// rules it out, nor when it runs no pod of lower priority.
fn might_help(
    fw: &Framework,
    state: &crate::framework::CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<(), &'static str> {
    let unresolvable = fw
        .filters
        .iter()
        .filter(|f| UNRESOLVABLE.contains(&f.name()));
    for f in unresolvable {
        if f.filter(state, pod, node).is_err() {
            return Err(NOT_HELPFUL);
        }
    }
    if node.pods.values().all(|p| p.priority >= pod.priority) {
        return Err(NO_VICTIMS);
    }
    Ok(())
}

/// The fewest victims on node `name` that make room for `pod`, simulated on `sim` (which is
/// left as it was found).
fn victims_on_node(
    fw: &Framework,
    sim: &mut Cache,
    pod: &PodInfo,
    name: &str,
    nominated: &Nominated,
    budgets: &[Arc<Budget>],
    now: jiff::Timestamp,
) -> Result<Victims, Reasons> {
    let Some(original) = sim.node(name).cloned() else {
        return Err(vec![NOT_HELPFUL.into()]);
    };
    let mut potential: Vec<Arc<PodInfo>> = original
        .pods
        .values()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    let result = (|| -> Result<Victims, Reasons> {
        let node = sim.node_mut(name).expect("node present");
        for p in &potential {
            node.remove_pod(&p.key);
        }
        fw.fits(sim, pod, name, nominated)?;
        potential.sort_by(|a, b| more_important(a, b, now));
        let (violating, free) = split_by_budget(&potential, budgets);
        let mut victims = Vec::new();
        let mut pdb_violations = 0;
        for (group, violates) in [(violating, true), (free, false)] {
            for p in group {
                sim.node_mut(name).expect("node present").add_pod(p.clone());
                if fw.fits(sim, pod, name, nominated).is_err() {
                    sim.node_mut(name).expect("node present").remove_pod(&p.key);
                    victims.push(p);
                    if violates {
                        pdb_violations += 1;
                    }
                }
            }
        }
        victims.sort_by(|a, b| more_important(a, b, now));
        Ok(Victims {
            pods: victims,
            pdb_violations,
        })
    })();
    *sim.node_mut(name).expect("node present") = original;
    result
}

/// Splits pods (keeping their order) into those whose eviction a budget does not allow and
/// the others, counting each pod against every budget that covers it.
fn split_by_budget(
    pods: &[Arc<PodInfo>],
    budgets: &[Arc<Budget>],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.disruptions_allowed).collect();
    let mut violating = Vec::new();
    let mut free = Vec::new();
    for p in pods {
        let mut violates = false;
        for (i, b) in budgets.iter().enumerate() {
            // A pod the budget already counts as disrupted costs nothing more.
            if !b.covers(p) || b.disrupted.contains(&p.name) {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(p.clone());
        } else {
            free.push(p.clone());
        }
    }
    (violating, free)
}

/// The index of the candidate to preempt on, by kube-scheduler's criteria in order.
pub fn pick_one_node(candidates: &[Candidate], now: jiff::Timestamp) -> Option<usize> {
    if let Some(i) = candidates.iter().position(|c| c.victims.pods.is_empty()) {
        return Some(i);
    }
    let mut left: Vec<usize> = (0..candidates.len()).collect();
    // Each criterion keeps the candidates with the best value for it.
    let criteria: [&dyn Fn(&Candidate) -> i64; 5] = [
        &|c: &Candidate| c.victims.pdb_violations as i64,
        &|c: &Candidate| c.victims.pods[0].priority as i64,
        // Shifted so every priority counts positive, as upstream sums them.
        &|c: &Candidate| {
            c.victims
                .pods
                .iter()
                .map(|p| p.priority as i64 + i32::MAX as i64 + 1)
                .sum()
        },
        &|c: &Candidate| c.victims.pods.len() as i64,
        // The latest start among the most important victims wins: negate to minimise.
        &|c: &Candidate| {
            let top = c.victims.pods[0].priority;
            let earliest = c
                .victims
                .pods
                .iter()
                .filter(|p| p.priority == top)
                .map(|p| p.start_time.unwrap_or(now))
                .min()
                .unwrap_or(now);
            -earliest.as_millisecond()
        },
    ];
    for criterion in criteria {
        if left.len() <= 1 {
            break;
        }
        let best = left.iter().map(|&i| criterion(&candidates[i])).min()?;
        left.retain(|&i| criterion(&candidates[i]) == best);
    }
    left.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    const GI: i64 = 1 << 30;

    fn now() -> jiff::Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn pod(name: &str, node: &str, cpu: &str, priority: i32) -> PodInfo {
        PodBuilder::new(name)
            .cpu(cpu)
            .priority(priority)
            .label("app", name)
            .on_node(node)
            .info()
    }

    fn started(mut p: PodInfo, at: &str) -> PodInfo {
        p.start_time = Some(at.parse().unwrap());
        p
    }

    fn names(v: &Victims) -> Vec<&str> {
        v.pods.iter().map(|p| p.name.as_str()).collect()
    }

    fn chosen(o: Outcome) -> Candidate {
        match o {
            Outcome::Chosen(c) => c,
            other => panic!("no candidate: {other:?}"),
        }
    }

    fn fw() -> Framework {
        crate::plugins::registry(100, None)
    }

    #[test]
    fn the_fewest_lowest_victims_are_chosen() {
        // n1: 4 cpus full of low pods of 1 cpu; a 2-cpu pod of priority 1000 needs two of them:
        // the least important two (lowest priority, then latest started) go.
        let n1 = NodeInfo::for_test("n1", 4000, 4 * GI, 10)
            .with_pod(pod("a", "n1", "1", 100))
            .with_pod(pod("b", "n1", "1", 50))
            .with_pod(started(pod("c", "n1", "1", 100), "2026-01-01T10:00:00Z"))
            .with_pod(started(pod("d", "n1", "1", 100), "2026-01-01T11:00:00Z"));
        let cache = Cache::from_nodes(vec![n1]);
        let high = PodBuilder::new("high").cpu("2").priority(1000).info();
        let c = chosen(preempt(
            &fw(),
            &cache,
            &high,
            &Nominated::default(),
            &[],
            now(),
        ));
        assert_eq!(c.node, "n1");
        // "a" has not started (counts as starting now), so it is less important than c and d.
        assert_eq!(names(&c.victims), ["a", "b"]);
        assert_eq!(c.victims.pdb_violations, 0);
    }

    #[test]
    fn higher_priority_pods_are_never_victims() {
        let n1 = NodeInfo::for_test("n1", 2000, 4 * GI, 10)
            .with_pod(pod("peer", "n1", "1", 1000))
            .with_pod(pod("top", "n1", "1", 5000));
        let cache = Cache::from_nodes(vec![n1]);
        let high = PodBuilder::new("high").cpu("1").priority(1000).info();
        let out = preempt(&fw(), &cache, &high, &Nominated::default(), &[], now());
        assert_eq!(
            out.describe().unwrap(),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        // Lower pods exist but evicting them all is not enough.
        let n1 = NodeInfo::for_test("n1", 2000, 4 * GI, 10)
            .with_pod(pod("low", "n1", "1", 1))
            .with_pod(pod("top", "n1", "1", 5000));
        let cache = Cache::from_nodes(vec![n1]);
        let big = PodBuilder::new("big").cpu("2").priority(1000).info();
        let out = preempt(&fw(), &cache, &big, &Nominated::default(), &[], now());
        assert_eq!(
            out.describe().unwrap(),
            "preemption: 0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn never_and_terminating_victims_make_a_pod_ineligible() {
        let cache = Cache::from_nodes(vec![
            NodeInfo::for_test("n1", 1000, GI, 10).with_pod(pod("low", "n1", "1", 1)),
        ]);
        let mut never = PodBuilder::new("p").cpu("1").priority(10).info();
        never.preempt_never = true;
        assert!(matches!(
            preempt(&fw(), &cache, &never, &Nominated::default(), &[], now()),
            Outcome::NotEligible("not eligible due to preemptionPolicy=Never.")
        ));
        let mut going = pod("low", "n1", "1", 1);
        going.deleting = true;
        let cache = Cache::from_nodes(vec![NodeInfo::for_test("n1", 1000, GI, 10).with_pod(going)]);
        let mut waiting = PodBuilder::new("p").cpu("1").priority(10).info();
        waiting.nominated_node = Some("n1".into());
        assert!(matches!(
            preempt(&fw(), &cache, &waiting, &Nominated::default(), &[], now()),
            Outcome::NotEligible(_)
        ));
    }

    #[test]
    fn unresolvable_nodes_are_not_candidates() {
        let mut tainted = NodeInfo::for_test("t", 1000, GI, 10).with_pod(pod("x", "t", "1", 1));
        std::sync::Arc::make_mut(tainted.node.as_mut().unwrap()).unschedulable = true;
        let cache = Cache::from_nodes(vec![tainted]);
        let p = PodBuilder::new("p").cpu("1").priority(10).info();
        let out = preempt(&fw(), &cache, &p, &Nominated::default(), &[], now());
        assert_eq!(
            out.describe().unwrap(),
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn budgets_steer_victims_and_nodes() {
        let budget = |app: &str, allowed: i32| {
            Arc::new(Budget {
                namespace: "default".into(),
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                }),
                disruptions_allowed: allowed,
                disrupted: BTreeSet::new(),
            })
        };
        // One node: the protected pod is reprieved first, so the other one goes, even
        // though the protected one is less important.
        let n1 = NodeInfo::for_test("n1", 2000, GI, 10)
            .with_pod(pod("guarded", "n1", "1", 1))
            .with_pod(pod("plain", "n1", "1", 50));
        let cache = Cache::from_nodes(vec![n1]);
        let p = PodBuilder::new("p").cpu("1").priority(1000).info();
        let c = chosen(preempt(
            &fw(),
            &cache,
            &p,
            &Nominated::default(),
            &[budget("guarded", 0)],
            now(),
        ));
        assert_eq!(names(&c.victims), ["plain"]);
        // When the budget allows it, the least important goes.
        let c = chosen(preempt(
            &fw(),
            &cache,
            &p,
            &Nominated::default(),
            &[budget("guarded", 1)],
            now(),
        ));
        assert_eq!(names(&c.victims), ["guarded"]);
        // Two nodes: the one without a violation wins, despite a higher victim priority.
        let cache = Cache::from_nodes(vec![
            NodeInfo::for_test("n1", 1000, GI, 10).with_pod(pod("guarded", "n1", "1", 1)),
            NodeInfo::for_test("n2", 1000, GI, 10).with_pod(pod("plain", "n2", "1", 50)),
        ]);
        let c = chosen(preempt(
            &fw(),
            &cache,
            &p,
            &Nominated::default(),
            &[budget("guarded", 0)],
            now(),
        ));
        assert_eq!((c.node.as_str(), c.victims.pdb_violations), ("n2", 0));
    }

    #[test]
    fn node_choice_follows_upstream_criteria_in_order() {
        let v = |node: &str, violations: usize, pods: Vec<PodInfo>| Candidate {
            node: node.into(),
            victims: Victims {
                pods: pods.into_iter().map(Arc::new).collect(),
                pdb_violations: violations,
            },
        };
        let p = |prio: i32| pod("v", "x", "1", prio);
        let at = |prio: i32, t: &str| started(p(prio), t);
        let cases: Vec<(&str, Vec<Candidate>, &str)> = vec![
            (
                "fewest budget violations",
                vec![v("a", 1, vec![p(1)]), v("b", 0, vec![p(100)])],
                "b",
            ),
            (
                "lowest highest victim",
                vec![v("a", 0, vec![p(100)]), v("b", 0, vec![p(50), p(40)])],
                "b",
            ),
            (
                "smallest priority sum",
                vec![
                    v("a", 0, vec![p(50), p(40), p(40)]),
                    v("b", 0, vec![p(50), p(40)]),
                ],
                "b",
            ),
            (
                // Shifted sums: a = (MAX + S) + (MIN + S) = 2S - 1 = b = MAX + S.
                "fewest victims",
                vec![
                    v("a", 0, vec![p(i32::MAX), p(i32::MIN)]),
                    v("b", 0, vec![p(i32::MAX)]),
                ],
                "b",
            ),
            (
                "latest start of the top victims",
                vec![
                    v("a", 0, vec![at(10, "2026-01-01T09:00:00Z")]),
                    v("b", 0, vec![at(10, "2026-01-01T11:00:00Z")]),
                    v("c", 0, vec![at(10, "2026-01-01T10:00:00Z")]),
                ],
                "b",
            ),
            (
                "first otherwise",
                vec![v("a", 0, vec![p(1)]), v("b", 0, vec![p(1)])],
                "a",
            ),
            (
                "no victims wins",
                vec![v("a", 0, vec![p(1)]), v("b", 3, vec![])],
                "b",
            ),
        ];
        for (name, cands, want) in cases {
            let i = pick_one_node(&cands, now()).unwrap();
            assert_eq!(cands[i].node, want, "{name}");
        }
        assert_eq!(pick_one_node(&[], now()), None);
    }

    #[test]
    fn nominated_pods_keep_their_room_from_lower_pods() {
        let cache = Cache::from_nodes(vec![NodeInfo::for_test("n1", 2000, GI, 10)]);
        let mut nominated = Nominated::default();
        nominated.add(
            Arc::new(PodBuilder::new("vip").cpu("1500m").priority(1000).info()),
            "n1",
        );
        let fw = fw();
        let low = PodBuilder::new("low").cpu("1").priority(10).info();
        assert!(fw.schedule(&cache, &low, &nominated, &mut 0).is_err());
        let higher = PodBuilder::new("higher").cpu("1").priority(2000).info();
        assert_eq!(
            fw.schedule(&cache, &higher, &nominated, &mut 0).unwrap(),
            "n1"
        );
        let vip = PodBuilder::new("vip").cpu("1500m").priority(1000).info();
        assert_eq!(fw.schedule(&cache, &vip, &nominated, &mut 0).unwrap(), "n1");
    }
}
