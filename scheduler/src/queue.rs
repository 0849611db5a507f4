//! The scheduling queue, as kube-scheduler's: an *active* queue of pods ready to be tried
//! (highest priority first, then oldest), a *backoff* queue of pods that failed recently
//! (1 s doubling to 10 s per attempt), and an *unschedulable* set of pods that no node could
//! take, which are moved back only when something that could help happens (a node added or
//! changed, an assigned pod deleted or finished) or after five minutes. A pod popped for
//! scheduling is *in flight* until the cycle reports back, so it is never tried twice at once.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::framework::Nominated;
use crate::podinfo::PendingPod;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod may sit in the unschedulable set with nothing happening.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Active,
    Backoff,
    Unschedulable { since: Instant },
    InFlight,
}

struct Entry {
    pending: PendingPod,
    location: Location,
    attempts: u32,
    last_attempt: Option<Instant>,
    /// Bumped whenever the entry is pushed onto a heap; older heap items are stale.
    generation: u64,
    queued_at: Instant,
}

impl Entry {
    fn backoff_until(&self) -> Instant {
        let Some(last) = self.last_attempt else {
            return Instant::now();
        };
        let exp = self.attempts.saturating_sub(1).min(16);
        last + (INITIAL_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF)
    }
}

#[derive(PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    seq: u64,
    key: String,
    generation: u64,
}

impl Ord for ActiveItem {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String, u64)>>,
    seq: u64,
    /// Counts move requests, so a cycle can tell whether something changed while it ran.
    moves: u64,
    /// Queued pods nominated to a node by a preemption: key → node.
    nominated: HashMap<String, String>,
}

impl Inner {
    fn push_active(&mut self, key: &str) {
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        e.generation += 1;
        e.location = Location::Active;
        self.active.push(ActiveItem {
            priority: e.pending.info.priority,
            seq,
            key: key.to_string(),
            generation: e.generation,
        });
    }

    fn push_backoff(&mut self, key: &str) {
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        e.generation += 1;
        e.location = Location::Backoff;
        self.backoff.push(Reverse((
            e.backoff_until(),
            seq,
            key.to_string(),
            e.generation,
        )));
    }

    /// Active if its backoff has passed, else backoff.
    fn requeue(&mut self, key: &str, now: Instant) {
        let Some(e) = self.pods.get(key) else { return };
        if e.backoff_until() <= now {
            self.push_active(key);
        } else {
            self.push_backoff(key);
        }
    }

    fn move_unschedulable(&mut self, older_than: Option<Duration>) -> bool {
        let now = Instant::now();
        let keys: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| match e.location {
                Location::Unschedulable { since } => older_than.is_none_or(|d| now - since >= d),
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.requeue(k, now);
        }
        !keys.is_empty()
    }
}

/// A pod handed out for one scheduling cycle.
#[derive(Debug, Clone)]
pub struct Popped {
    pub pending: PendingPod,
    pub attempts: u32,
    /// The move counter when the pod was popped (see [`SchedulingQueue::unschedulable`]).
    pub moves_at_pop: u64,
    /// When the pod first entered the queue, for the end-to-end latency.
    pub queued_at: Instant,
}

/// Sizes of the queue's parts, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
}

#[derive(Default)]
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    wake: Notify,
}

impl SchedulingQueue {
    pub fn new() -> SchedulingQueue {
        SchedulingQueue::default()
    }

    /// A pending pod was seen (added or updated by the watch).
    pub fn add_or_update(&self, pending: PendingPod) {
        let mut inner = self.inner.lock().expect("queue lock");
        let key = pending.info.key.clone();
        // The watch may not show a nomination made here yet: only a shown one is taken.
        if let Some(node) = &pending.info.nominated_node {
            inner.nominated.insert(key.clone(), node.clone());
        }
        match inner.pods.get_mut(&key) {
            Some(e) => {
                let changed = e.pending.pod.spec != pending.pod.spec
                    || e.pending.pod.metadata.labels != pending.pod.metadata.labels;
                e.pending = pending;
                // An unschedulable pod whose spec or labels changed may fit now.
                if changed && matches!(e.location, Location::Unschedulable { .. }) {
                    inner.requeue(&key, Instant::now());
                    drop(inner);
                    self.wake.notify_one();
                }
            }
            None => {
                inner.pods.insert(
                    key.clone(),
                    Entry {
                        pending,
                        location: Location::Active,
                        attempts: 0,
                        last_attempt: None,
                        generation: 0,
                        queued_at: Instant::now(),
                    },
                );
                inner.push_active(&key);
                drop(inner);
                self.wake.notify_one();
            }
        }
    }

    /// The pod is gone, assigned, or no longer ours.
    pub fn delete(&self, key: &str) {
        let mut inner = self.inner.lock().expect("queue lock");
        inner.pods.remove(key);
        inner.nominated.remove(key);
    }

    /// Records (or with `None` clears) the node a preemption made room on for the pod `key`.
    pub fn nominate(&self, key: &str, node: Option<&str>) {
        let mut inner = self.inner.lock().expect("queue lock");
        match node {
            Some(n) if inner.pods.contains_key(key) => {
                inner.nominated.insert(key.to_string(), n.to_string());
            }
            _ => {
                inner.nominated.remove(key);
            }
        }
    }

    /// The queued pods nominated to nodes.
    pub fn nominated(&self) -> Nominated {
        let inner = self.inner.lock().expect("queue lock");
        let mut out = Nominated::default();
        for (key, node) in &inner.nominated {
            if let Some(e) = inner.pods.get(key) {
                out.add(e.pending.info.clone(), node);
            }
        }
        out
    }

    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .lock()
            .expect("queue lock")
            .pods
            .contains_key(key)
    }

    /// Waits for the next pod to try; `None` once `shutdown` is cancelled.
    pub async fn pop(&self, shutdown: &CancellationToken) -> Option<Popped> {
        loop {
            let next_backoff = {
                let mut inner = self.inner.lock().expect("queue lock");
                let now = Instant::now();
                while let Some(Reverse((at, _, _, _))) = inner.backoff.peek() {
                    if *at > now {
                        break;
                    }
                    let Some(Reverse((_, _, key, generation))) = inner.backoff.pop() else {
                        break;
                    };
                    if inner.pods.get(&key).is_some_and(|e| {
                        e.generation == generation && e.location == Location::Backoff
                    }) {
                        inner.push_active(&key);
                    }
                }
                while let Some(item) = inner.active.pop() {
                    let moves = inner.moves;
                    let Some(e) = inner.pods.get_mut(&item.key) else {
                        continue;
                    };
                    if e.generation != item.generation || e.location != Location::Active {
                        continue;
                    }
                    e.location = Location::InFlight;
                    return Some(Popped {
                        pending: e.pending.clone(),
                        attempts: e.attempts,
                        moves_at_pop: moves,
                        queued_at: e.queued_at,
                    });
                }
                inner.backoff.peek().map(|Reverse((at, _, _, _))| *at)
            };
            let sleep = async {
                match next_backoff {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = sleep => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&self, key: &str) {
        let mut inner = self.inner.lock().expect("queue lock");
        if inner
            .pods
            .get(key)
            .is_some_and(|e| e.location == Location::InFlight)
        {
            inner.pods.remove(key);
            inner.nominated.remove(key);
        }
    }

    /// No node could take the pod. It waits in the unschedulable set for a change, unless a
    /// change already happened while it was being scheduled (then it only backs off).
    pub fn unschedulable(&self, key: &str, moves_at_pop: u64) {
        let mut inner = self.inner.lock().expect("queue lock");
        let moved_since = inner.moves != moves_at_pop;
        let now = Instant::now();
        let Some(e) = inner.pods.get_mut(key) else {
            return;
        };
        if e.location != Location::InFlight {
            return;
        }
        e.attempts += 1;
        e.last_attempt = Some(now);
        if moved_since {
            inner.push_backoff(key);
        } else {
            e.generation += 1;
            e.location = Location::Unschedulable { since: now };
        }
    }

    /// Scheduling or binding failed for a reason other than fit: try again after a backoff.
    pub fn retry(&self, key: &str) {
        let mut inner = self.inner.lock().expect("queue lock");
        let now = Instant::now();
        let Some(e) = inner.pods.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.last_attempt = Some(now);
        inner.push_backoff(key);
        drop(inner);
        self.wake.notify_one();
    }

    /// Something changed that could let unschedulable pods fit: move them all back.
    pub fn move_all(&self) {
        let mut inner = self.inner.lock().expect("queue lock");
        inner.moves += 1;
        if inner.move_unschedulable(None) {
            drop(inner);
            self.wake.notify_one();
        }
    }

    /// Moves back pods that have been unschedulable for longer than [`MAX_UNSCHEDULABLE`].
    pub fn flush_stale(&self) {
        let mut inner = self.inner.lock().expect("queue lock");
        if inner.move_unschedulable(Some(MAX_UNSCHEDULABLE)) {
            drop(inner);
            self.wake.notify_one();
        }
    }

    /// Keys of every queued pod (for the informer's relist).
    pub fn keys(&self) -> Vec<String> {
        self.inner
            .lock()
            .expect("queue lock")
            .pods
            .keys()
            .cloned()
            .collect()
    }

    pub fn stats(&self) -> QueueStats {
        let inner = self.inner.lock().expect("queue lock");
        let mut s = QueueStats::default();
        for e in inner.pods.values() {
            match e.location {
                Location::Active => s.active += 1,
                Location::Backoff => s.backoff += 1,
                Location::Unschedulable { .. } => s.unschedulable += 1,
                Location::InFlight => s.in_flight += 1,
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    fn pending(name: &str) -> PendingPod {
        PendingPod::new(PodBuilder::new(name).pod())
    }

    fn pending_with_priority(name: &str, p: i32) -> PendingPod {
        let mut pod = PodBuilder::new(name).pod();
        pod.spec.as_mut().unwrap().priority = Some(p);
        PendingPod::new(pod)
    }

    async fn pop_now(q: &SchedulingQueue) -> Option<Popped> {
        let token = CancellationToken::new();
        tokio::time::timeout(Duration::from_millis(1), q.pop(&token))
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_age() {
        let q = SchedulingQueue::new();
        q.add_or_update(pending("old"));
        q.add_or_update(pending("new"));
        q.add_or_update(pending_with_priority("vip", 100));
        let order: Vec<String> = [
            pop_now(&q).await.unwrap(),
            pop_now(&q).await.unwrap(),
            pop_now(&q).await.unwrap(),
        ]
        .iter()
        .map(|p| p.pending.info.name.clone())
        .collect();
        assert_eq!(order, ["vip", "old", "new"]);
        assert!(pop_now(&q).await.is_none());
        assert_eq!(q.stats().in_flight, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_move_then_back_off() {
        let q = SchedulingQueue::new();
        q.add_or_update(pending("p"));
        let p = pop_now(&q).await.unwrap();
        q.unschedulable("default/p", p.moves_at_pop);
        assert_eq!(q.stats().unschedulable, 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            pop_now(&q).await.is_none(),
            "nothing changed: it stays parked"
        );
        q.move_all();
        let p = pop_now(&q)
            .await
            .expect("moved back after its backoff passed");
        assert_eq!(p.attempts, 1);
        // Second failure: a 2 s backoff applies when a move comes at once.
        q.unschedulable("default/p", p.moves_at_pop);
        q.move_all();
        assert_eq!(q.stats().backoff, 1);
        assert!(pop_now(&q).await.is_none());
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert!(pop_now(&q).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_the_cycle_means_backoff_not_parking() {
        let q = SchedulingQueue::new();
        q.add_or_update(pending("p"));
        let p = pop_now(&q).await.unwrap();
        q.move_all(); // e.g. a node was added while the cycle ran
        q.unschedulable("default/p", p.moves_at_pop);
        assert_eq!(q.stats().backoff, 1);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(pop_now(&q).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn nominations_last_until_the_pod_leaves_the_queue() {
        let q = SchedulingQueue::new();
        q.add_or_update(pending_with_priority("vip", 100));
        q.nominate("default/vip", Some("n1"));
        q.nominate("default/unknown", Some("n1"));
        let n = q.nominated();
        assert_eq!(n.node_of("default/vip"), Some("n1"));
        assert_eq!(n.on("n1").len(), 1, "only queued pods are nominated");
        // A watch update that does not show the nomination yet keeps it.
        q.add_or_update(pending_with_priority("vip", 100));
        assert_eq!(q.nominated().node_of("default/vip"), Some("n1"));
        let p = pop_now(&q).await.unwrap();
        q.done(&p.pending.info.key);
        assert!(q.nominated().is_empty(), "bound: no longer nominated");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_the_cap() {
        let q = SchedulingQueue::new();
        q.add_or_update(pending("p"));
        let _ = pop_now(&q).await.unwrap();
        q.retry("default/p");
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(pop_now(&q).await.is_none(), "still backing off");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(pop_now(&q).await.is_some(), "back after 1 s");
        let mut e = Entry {
            pending: pending("x"),
            location: Location::Backoff,
            attempts: 0,
            last_attempt: Some(Instant::now()),
            generation: 0,
            queued_at: Instant::now(),
        };
        let now = Instant::now();
        let delays: Vec<u64> = (1..=6)
            .map(|a| {
                e.attempts = a;
                (e.backoff_until() - now).as_secs()
            })
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn updates_while_in_flight_are_kept_and_deletes_win() {
        let q = SchedulingQueue::new();
        q.add_or_update(pending("p"));
        let _p = pop_now(&q).await.unwrap();
        let mut newer = PodBuilder::new("p").label("v", "2").pod();
        newer.metadata.resource_version = Some("9".into());
        q.add_or_update(PendingPod::new(newer));
        assert_eq!(q.stats().in_flight, 1, "still in flight, not queued twice");
        q.retry("default/p");
        tokio::time::advance(Duration::from_secs(2)).await;
        let again = pop_now(&q).await.unwrap();
        assert_eq!(
            again.pending.info.labels.get("v").map(String::as_str),
            Some("2")
        );
        q.delete("default/p");
        q.unschedulable("default/p", again.moves_at_pop);
        assert_eq!(q.stats(), QueueStats::default());
    }

    #[tokio::test(start_paused = true)]
    async fn parked_pods_return_when_their_spec_changes_or_after_five_minutes() {
        let q = SchedulingQueue::new();
        q.add_or_update(pending("a"));
        q.add_or_update(pending("b"));
        for _ in 0..2 {
            let p = pop_now(&q).await.unwrap();
            q.unschedulable(&p.pending.info.key, p.moves_at_pop);
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        q.add_or_update(PendingPod::new(
            PodBuilder::new("a").node_selector("x", "y").pod(),
        ));
        assert_eq!(pop_now(&q).await.unwrap().pending.info.name, "a");
        q.flush_stale();
        assert!(pop_now(&q).await.is_none());
        tokio::time::advance(MAX_UNSCHEDULABLE).await;
        q.flush_stale();
        assert_eq!(pop_now(&q).await.unwrap().pending.info.name, "b");
    }
}
