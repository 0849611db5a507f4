//! The scheduling framework: filter plugins decide which nodes can take a pod, score plugins
//! rank those that can, and [`Framework::schedule`] runs one scheduling cycle over the cache.
//! Which plugins run, and each score's weight, is set in one place: [`crate::plugins::registry`].

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use rand::Rng;

use crate::cache::{Cache, NodeInfo};
use crate::podinfo::PodInfo;

/// The best score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node cannot take a pod, in kubectl's words ("Insufficient cpu").
pub type Reasons = Vec<Cow<'static, str>>;

/// Per-cycle data that a plugin computes once for a pod (over all nodes) and reads per node.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref())
    }
}

/// A plugin that rules nodes out.
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Runs once per pod before any node is filtered, with the whole cache in view.
    fn pre_filter(&self, _pod: &PodInfo, _cache: &Cache, _state: &mut CycleState) {}
    /// `Err` with the reasons when the node cannot take the pod.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons>;
}

/// A plugin that ranks the nodes that passed every filter.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Runs once per pod before scoring, with the feasible nodes in view.
    fn pre_score(
        &self,
        _pod: &PodInfo,
        _cache: &Cache,
        _feasible: &[&NodeInfo],
        _state: &mut CycleState,
    ) {
    }
    /// The node's raw score.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Brings raw scores into `0..=MAX_NODE_SCORE` (the default: they already are).
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Why no node could take a pod: how many nodes there were and how many gave each reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    /// Kubernetes' summary: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't
    /// match Pod's node affinity/selector.` (counts and reasons sorted as strings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_nodes == 0 {
            return write!(f, "no nodes available to schedule pods");
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        parts.sort();
        write!(f, "0/{} nodes are available", self.num_nodes)?;
        if parts.is_empty() {
            write!(f, ".")
        } else {
            write!(f, ": {}.", parts.join(", "))
        }
    }
}

/// Pods that a preemption made room for (`status.nominatedNodeName`), still waiting in the
/// queue: the room is kept for them, so a pod of no higher priority may not take it.
#[derive(Debug, Clone, Default)]
pub struct Nominated {
    by_node: HashMap<String, Vec<Arc<PodInfo>>>,
    node_of: HashMap<String, String>,
}

impl Nominated {
    /// Nominates `pod` (its key) to `node`.
    pub fn add(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.node_of.insert(pod.key.clone(), node.to_string());
        self.by_node.entry(node.to_string()).or_default().push(pod);
    }

    /// The node `key` is nominated to.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.node_of.get(key).map(String::as_str)
    }

    /// The pods nominated to `node`.
    pub fn on(&self, node: &str) -> &[Arc<PodInfo>] {
        self.by_node
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }
}

/// The plugins of one scheduler profile.
pub struct Framework {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Score plugins with their weights.
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
    /// Stop filtering once this share of nodes is feasible (0 = Kubernetes' adaptive default).
    pub percentage_of_nodes_to_score: u32,
}

impl Framework {
    /// How many feasible nodes are enough, as kube-scheduler computes it: all of them below
    /// 100 nodes; otherwise a percentage that shrinks from 50% as the cluster grows (down to
    /// 5%), but never fewer than 100.
    pub fn feasible_nodes_to_find(&self, all: usize) -> usize {
        const MIN_FEASIBLE: usize = 100;
        if all < MIN_FEASIBLE || self.percentage_of_nodes_to_score >= 100 {
            return all;
        }
        let pct = match self.percentage_of_nodes_to_score {
            0 => (50 - (all / 125) as i64).max(5) as usize,
            p => p as usize,
        };
        (all * pct / 100).max(MIN_FEASIBLE)
    }

    /// Runs every filter on one node, stopping at the first that fails.
    pub fn run_filters(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Result<(), Reasons> {
        for f in &self.filters {
            f.filter(state, pod, node)?;
        }
        Ok(())
    }

    /// Runs the filters on one node as if the pods nominated to it with at least `pod`'s
    /// priority were already there (and, when there are some, without them as well: as in
    /// kube-scheduler, a nominated pod may never come, so `pod` must fit either way).
    pub fn run_filters_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &Nominated,
    ) -> Result<(), Reasons> {
        let mut ahead = nominated
            .on(&node.name)
            .iter()
            .filter(|p| p.key != pod.key && p.priority >= pod.priority)
            .peekable();
        if ahead.peek().is_none() {
            return self.run_filters(state, pod, node);
        }
        let mut with = node.clone();
        for p in ahead {
            let mut placed = (**p).clone().assigned();
            placed.node_name = Some(node.name.clone());
            with.add_pod(Arc::new(placed));
        }
        self.run_filters(state, pod, &with)?;
        self.run_filters(state, pod, node)
    }

    /// Whether `pod` fits on node `name` of `cache`, with pre-filter state computed afresh
    /// (preemption asks this of a cache it has changed).
    pub fn fits(
        &self,
        cache: &Cache,
        pod: &PodInfo,
        name: &str,
        nominated: &Nominated,
    ) -> Result<(), Reasons> {
        let Some(node) = cache.node(name) else {
            return Err(vec!["node not found".into()]);
        };
        let mut state = CycleState::default();
        for f in &self.filters {
            f.pre_filter(pod, cache, &mut state);
        }
        self.run_filters_with_nominated(&state, pod, node, nominated)
    }

    /// One scheduling cycle: the name of the node chosen for `pod`, or why none fits.
    /// A pod nominated to a node by an earlier preemption gets that node if it fits there.
    /// `next_start` rotates where filtering begins, so that stopping early does not always
    /// favour the same nodes.
    pub fn schedule(
        &self,
        cache: &Cache,
        pod: &PodInfo,
        nominated: &Nominated,
        next_start: &mut usize,
    ) -> Result<String, FitError> {
        let all = cache.node_count();
        if all == 0 {
            return Err(FitError {
                num_nodes: 0,
                reasons: BTreeMap::new(),
            });
        }
        let mut state = CycleState::default();
        for f in &self.filters {
            f.pre_filter(pod, cache, &mut state);
        }
        if let Some(node) = nominated.node_of(&pod.key).and_then(|n| cache.node(n))
            && self
                .run_filters_with_nominated(&state, pod, node, nominated)
                .is_ok()
        {
            return Ok(node.name.clone());
        }
        let want = self.feasible_nodes_to_find(all);
        let start = *next_start % all;
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(all));
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut processed = 0;
        for i in 0..all {
            let node = cache.node_at((start + i) % all);
            processed += 1;
            match self.run_filters_with_nominated(&state, pod, node, nominated) {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= want {
                        break;
                    }
                }
                Err(rs) => {
                    for r in rs {
                        *reasons.entry(r.into_owned()).or_default() += 1;
                    }
                }
            }
        }
        *next_start = (start + processed) % all;
        match feasible.len() {
            0 => Err(FitError {
                num_nodes: all,
                reasons,
            }),
            1 => Ok(feasible[0].name.clone()),
            _ => Ok(self.pick(cache, pod, &feasible, &mut state)),
        }
    }

    /// Scores the feasible nodes and picks the best; ties are broken at random so that equal
    /// nodes share the load.
    fn pick(
        &self,
        cache: &Cache,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        state: &mut CycleState,
    ) -> String {
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.scores {
            plugin.pre_score(pod, cache, feasible, state);
            for (s, node) in scores.iter_mut().zip(feasible) {
                *s = plugin.score(state, pod, node);
            }
            plugin.normalize(&mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        let mut rng = rand::rng();
        let mut best = 0;
        let mut ties = 0u32;
        for (i, t) in totals.iter().enumerate() {
            if *t > totals[best] {
                best = i;
                ties = 1;
            } else if *t == totals[best] {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = i;
                }
            }
        }
        feasible[best].name.clone()
    }
}

/// Scales raw scores so the highest becomes `MAX_NODE_SCORE` (`reverse`: the lowest does),
/// as Kubernetes' DefaultNormalizeScore.
pub fn normalize_scores(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_reads_like_kubernetes() {
        let e = FitError {
            num_nodes: 3,
            reasons: [
                (
                    "node(s) didn't match Pod's node affinity/selector".to_string(),
                    2,
                ),
                ("Insufficient cpu".to_string(), 1),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        let none = FitError {
            num_nodes: 0,
            reasons: BTreeMap::new(),
        };
        assert_eq!(none.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn feasible_nodes_shrink_with_the_cluster() {
        let fw = Framework {
            filters: vec![],
            scores: vec![],
            percentage_of_nodes_to_score: 0,
        };
        assert_eq!(fw.feasible_nodes_to_find(50), 50);
        assert_eq!(fw.feasible_nodes_to_find(1000), 420);
        assert_eq!(fw.feasible_nodes_to_find(5000), 500);
        assert_eq!(fw.feasible_nodes_to_find(100_000), 5000);
        assert_eq!(fw.feasible_nodes_to_find(150), 100);
    }

    #[test]
    fn normalization() {
        let mut s = vec![0, 5, 10];
        normalize_scores(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        normalize_scores(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        normalize_scores(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
