//! The work queue of a controller, as client-go's: a key added many times before a worker takes
//! it is queued once; a key being processed is never handed to a second worker (a change
//! during processing queues it again afterwards); failed keys come back after a per-key
//! exponential backoff; keys can be scheduled for later.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use skiff_common::Backoff;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Inner {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    delayed: BinaryHeap<Reverse<(Instant, String)>>,
    failures: HashMap<String, Backoff>,
}

#[derive(Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    wake: Notify,
}

impl WorkQueue {
    pub fn new() -> WorkQueue {
        WorkQueue::default()
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut inner = self.inner.lock().expect("queue lock");
        if !inner.dirty.insert(key.clone()) {
            return;
        }
        if !inner.processing.contains(&key) {
            inner.queue.push_back(key);
            drop(inner);
            self.wake.notify_one();
        }
    }

    /// Adds `key` once `delay` has passed.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut inner = self.inner.lock().expect("queue lock");
        inner
            .delayed
            .push(Reverse((Instant::now() + delay, key.into())));
        drop(inner);
        // A waiting worker must recompute how long to sleep.
        self.wake.notify_waiters();
    }

    /// Adds `key` after its next backoff delay (5 ms doubling to 1000 s, as client-go's).
    pub fn add_rate_limited(&self, key: &str) {
        let delay = {
            let mut inner = self.inner.lock().expect("queue lock");
            inner
                .failures
                .entry(key.to_string())
                .or_insert_with(|| {
                    Backoff::new(Duration::from_millis(5), Duration::from_secs(1000))
                })
                .next_delay()
        };
        self.add_after(key, delay);
    }

    /// Resets the key's backoff after a success.
    pub fn forget(&self, key: &str) {
        self.inner.lock().expect("queue lock").failures.remove(key);
    }

    /// The next key to process, or None on `shutdown`.
    pub async fn get(&self, shutdown: &CancellationToken) -> Option<String> {
        loop {
            let notified = self.wake.notified();
            let next_due = {
                let mut inner = self.inner.lock().expect("queue lock");
                let now = Instant::now();
                while inner
                    .delayed
                    .peek()
                    .is_some_and(|Reverse((at, _))| *at <= now)
                {
                    let Some(Reverse((_, key))) = inner.delayed.pop() else {
                        break;
                    };
                    if inner.dirty.insert(key.clone()) && !inner.processing.contains(&key) {
                        inner.queue.push_back(key);
                    }
                }
                if let Some(key) = inner.queue.pop_front() {
                    inner.dirty.remove(&key);
                    inner.processing.insert(key.clone());
                    return Some(key);
                }
                inner.delayed.peek().map(|Reverse((at, _))| *at)
            };
            let sleep = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = notified => {}
                _ = sleep => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    /// The worker finished `key`; if it changed meanwhile it is queued again.
    pub fn done(&self, key: &str) {
        let mut inner = self.inner.lock().expect("queue lock");
        inner.processing.remove(key);
        if inner.dirty.contains(key) {
            inner.queue.push_back(key.to_string());
            drop(inner);
            self.wake.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_now(q: &WorkQueue) -> Option<String> {
        let t = CancellationToken::new();
        tokio::time::timeout(Duration::from_millis(1), q.get(&t))
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_merge_and_a_key_is_never_processed_twice_at_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(get_now(&q).await.as_deref(), Some("a"));
        q.add("a"); // changed while processing
        assert_eq!(get_now(&q).await.as_deref(), Some("b"));
        assert_eq!(get_now(&q).await, None, "a is still being processed");
        q.done("a");
        assert_eq!(get_now(&q).await.as_deref(), Some("a"));
        q.done("a");
        q.done("b");
        assert_eq!(get_now(&q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_and_rate_limited_keys_come_back_later() {
        let q = WorkQueue::new();
        q.add_after("later", Duration::from_secs(5));
        assert_eq!(get_now(&q).await, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(get_now(&q).await.as_deref(), Some("later"));
        q.done("later");
        for _ in 0..5 {
            q.add_rate_limited("x");
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(get_now(&q).await.as_deref(), Some("x"));
        q.done("x");
        q.forget("x");
        q.add_rate_limited("x");
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(
            get_now(&q).await.as_deref(),
            Some("x"),
            "backoff reset by forget"
        );
    }
}
