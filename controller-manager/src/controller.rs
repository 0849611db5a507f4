//! What every controller is made of: a [`Reconciler`] (compare desired with actual for one key,
//! act idempotently, say when to look again), a [`WorkQueue`] of keys fed by informer
//! handlers, and workers that run the reconciler — never twice at once for one key, with a
//! per-key backoff on errors. [`Expectations`] stop a controller from acting twice on the same
//! need while the watch has not yet shown its last actions.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use skiff_client::events::{EventType, Recorder};
use skiff_client::informer::{Change, Informer, key_of};
use skiff_client::selector;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::metrics::{Metrics, Outcome};
use crate::pods::CachedPod;
use crate::workqueue::WorkQueue;

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Queues the key of every object of `informer` that is added or updated, and of all of them
/// after a relist: the wiring of a controller that reconciles each object of one kind.
pub fn queue_every_change<K>(
    informer: &Arc<skiff_client::informer::Informer<K>>,
    queue: Arc<WorkQueue>,
) where
    K: kube::Resource + Send + Sync + 'static,
{
    let all = informer.clone();
    informer.on_change(move |c| match c {
        skiff_client::informer::Change::Applied { new, .. } => {
            queue.add(skiff_client::informer::key_of(*new))
        }
        skiff_client::informer::Change::Deleted(_) => {}
        skiff_client::informer::Change::Resynced => all
            .list()
            .iter()
            .for_each(|o| queue.add(skiff_client::informer::key_of(o.as_ref()))),
    });
}

/// Concurrent requests when a controller creates or deletes a batch of pods.
pub const PARALLEL: usize = 32;

/// Deletes the pods `names` (in `namespace`) of the owner `owner`, whose work-queue key is
/// `key`, in parallel: each is expected as a deletion first (so the owner waits for the
/// watch to show it), then reported as a `SuccessfulDelete` or `FailedDelete` event on the
/// owner, as Kubernetes' controllers report them. A pod already gone (404) is no failure.
pub async fn delete_pods(
    client: &kube::Client,
    recorder: &Recorder,
    expectations: &Expectations,
    key: &str,
    owner: &ObjectReference,
    namespace: &str,
    names: Vec<String>,
) {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    expectations.expect_deletions(key, names.iter().map(|n| format!("{namespace}/{n}")));
    let results: Vec<_> = futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                let r = api.delete(&name, &DeleteParams::default()).await.map(drop);
                (name, r)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for (name, r) in results {
        match r {
            Ok(()) => recorder.publish(
                owner.clone(),
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(e) => {
                expectations.deletion_observed(key, &format!("{namespace}/{name}"));
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    recorder.publish(
                        owner.clone(),
                        EventType::Warning,
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                }
            }
        }
    }
}

/// Wires the pod informer to the controller of kind `K`: a pod's creation or deletion meets
/// its controller's [`Expectations`], and every change queues that controller (the old one
/// too, if the pod changed hands). An orphan queues every owner in its namespace whose
/// selector (`selector`; `None` selects nothing) matches it, which may adopt it.
pub fn queue_pod_owners<K>(
    pods: &Informer<CachedPod>,
    owners: Arc<Informer<K>>,
    selector: fn(&K) -> Option<LabelSelector>,
    expectations: Arc<Expectations>,
    queue: Arc<WorkQueue>,
) where
    K: kube::Resource<DynamicType = ()> + Send + Sync + 'static,
{
    let owner_key = |p: &CachedPod| {
        crate::pods::controller_of(&p.metadata)
            .filter(|r| r.kind == K::kind(&()))
            .map(|r| format!("{}/{}", p.namespace().unwrap_or_default(), r.name))
    };
    pods.on_change(move |c| match c {
        Change::Applied { old, new } => {
            match owner_key(new) {
                Some(k) => {
                    if old.is_none() {
                        expectations.creation_observed(&k);
                    }
                    if new.metadata.deletion_timestamp.is_some() {
                        expectations.deletion_observed(&k, &key_of(*new));
                    }
                    queue.add(k);
                }
                None => {
                    let ns = new.namespace().unwrap_or_default();
                    for o in owners.list_in(&ns) {
                        if selector(&o).is_some_and(|s| selector::matches(&s, &new.labels)) {
                            queue.add(key_of(o.as_ref()));
                        }
                    }
                }
            }
            if let Some(old) = old
                && let Some(k) = owner_key(old)
                && Some(&k) != owner_key(new).as_ref()
            {
                queue.add(k);
            }
        }
        Change::Deleted(p) => {
            if let Some(k) = owner_key(p) {
                expectations.deletion_observed(&k, &key_of(*p));
                queue.add(k);
            }
        }
        Change::Resynced => {}
    });
}

/// One controller's reconcile function.
pub trait Reconciler: Send + Sync + 'static {
    /// The controller's name, as `--controllers` spells it.
    const NAME: &'static str;

    /// Brings the object named `key` to its desired state. `Ok(Some(d))` asks to be called again
    /// after `d` even if nothing changes (e.g. to check a deadline).
    fn reconcile(&self, key: &str) -> impl Future<Output = Result<Option<Duration>>> + Send;
}

/// How the controller-manager makes a controller (see [`crate::controllers::ALL`]).
pub trait Controller: Reconciler + Sized {
    /// The fewest workers it runs, whatever `--concurrent-syncs` says.
    const MIN_WORKERS: usize = 1;

    /// The ServiceAccount (in `kube-system`) it writes as with
    /// `--use-service-account-credentials`: kube-controller-manager's name for it, which the
    /// bootstrap policy grants the role `system:controller:<name>`.
    const SERVICE_ACCOUNT: &'static str;

    /// Whether `--controllers=*` runs it; those that are not (kube-controller-manager's
    /// `bootstrapsigner` and `tokencleaner`) run only when named.
    const ENABLED_BY_DEFAULT: bool = true;

    /// Why it cannot run with this configuration (it is then not started), if so.
    fn disabled(_ctx: &Context) -> Option<String> {
        None
    }

    /// Makes the controller, registering its handlers on the shared informers (before they
    /// start) to fill `queue`.
    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self>;
}

/// Runs `workers` workers over `queue` until `shutdown`, recording each reconcile in
/// `metrics`.
pub async fn run<R: Reconciler>(
    reconciler: Arc<R>,
    queue: Arc<WorkQueue>,
    workers: usize,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let r = reconciler.clone();
        let q = queue.clone();
        let stop = shutdown.clone();
        let metrics = metrics.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = q.get(&stop).await {
                let started = Instant::now();
                let outcome = match r.reconcile(&key).await {
                    Ok(again) => {
                        q.forget(&key);
                        match again {
                            Some(d) => {
                                q.add_after(key.clone(), d);
                                Outcome::Requeue
                            }
                            None => Outcome::Success,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(controller = R::NAME, %key, error = %e, "reconcile failed; will retry");
                        q.add_rate_limited(&key);
                        Outcome::Error
                    }
                };
                metrics.reconciled(R::NAME, outcome, started.elapsed());
                q.done(&key);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// How long an expectation may stay unmet before the controller acts anyway (a lost watch
/// event must not freeze a controller).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expected {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Per controller key: how many creations and which deletions it has asked for but not yet
/// seen through the watch (Kubernetes' ControlleeExpectations with UID tracking).
#[derive(Debug, Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    pub fn expect_creations(&self, key: &str, n: i64) {
        let mut map = self.map.lock().expect("expectations lock");
        let e = map.entry(key.to_string()).or_insert_with(|| Expected {
            adds: 0,
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        e.adds += n;
        e.since = Instant::now();
    }

    pub fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        let mut map = self.map.lock().expect("expectations lock");
        let e = map.entry(key.to_string()).or_insert_with(|| Expected {
            adds: 0,
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        e.deletes.extend(pods);
        e.since = Instant::now();
    }

    /// A pod this key created was seen (or its creation failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.map.lock().expect("expectations lock").get_mut(key) {
            e.adds -= 1;
        }
    }

    /// A pod (by `namespace/name`) is being or was deleted.
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = self.map.lock().expect("expectations lock").get_mut(key) {
            e.deletes.remove(pod);
        }
    }

    /// Whether the controller may act for `key`: all it asked for was seen, or it waited long
    /// enough.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.map.lock().expect("expectations lock").get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > EXPECTATIONS_TTL
            }
        }
    }

    pub fn forget(&self, key: &str) {
        self.map.lock().expect("expectations lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expectations_wait_for_the_watch_or_expire() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 2);
        e.expect_deletions("rs", ["ns/p1".to_string()]);
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        e.creation_observed("rs");
        assert!(!e.satisfied("rs"));
        e.deletion_observed("rs", "ns/p1");
        e.deletion_observed("rs", "ns/p1");
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 1);
        assert!(!e.satisfied("rs"));
        tokio::time::advance(EXPECTATIONS_TTL + Duration::from_secs(1)).await;
        assert!(e.satisfied("rs"));
    }
}
