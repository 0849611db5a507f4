//! Informers: kube-runtime watchers on pods and nodes feeding the scheduler's cache and queue.
//! On every (re)list, objects that the list no longer shows are treated as deleted.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::scheduler::Scheduler;

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// What one informer does with its objects.
struct Handlers<K> {
    kind: &'static str,
    key: fn(&K) -> String,
    apply: Box<dyn Fn(K) + Send>,
    delete: Box<dyn Fn(&str) + Send>,
    /// Keys of the objects the scheduler holds, for pruning after a relist.
    known: Box<dyn Fn() -> Vec<String> + Send>,
}

/// Watches `api` until `shutdown`; `synced` fires after the first complete list.
async fn run<K>(
    api: Api<K>,
    h: Handlers<K>,
    synced: oneshot::Sender<()>,
    shutdown: CancellationToken,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listed: HashSet<String> = HashSet::new();
    let mut synced = Some(synced);
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.cancelled() => return,
        };
        match event {
            None => return,
            Some(Err(e)) => tracing::warn!(kind = h.kind, error = %e, "watch failed; retrying"),
            Some(Ok(watcher::Event::Init)) => listed.clear(),
            Some(Ok(watcher::Event::InitApply(obj))) => {
                listed.insert((h.key)(&obj));
                (h.apply)(obj);
            }
            Some(Ok(watcher::Event::InitDone)) => {
                for key in (h.known)() {
                    if !listed.contains(&key) {
                        (h.delete)(&key);
                    }
                }
                listed = HashSet::new();
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Some(Ok(watcher::Event::Apply(obj))) => (h.apply)(obj),
            Some(Ok(watcher::Event::Delete(obj))) => (h.delete)(&(h.key)(&obj)),
        }
    }
}

/// Watches all pods until `shutdown`; `synced` fires after the first complete list.
pub async fn pods(s: Arc<Scheduler>, synced: oneshot::Sender<()>, shutdown: CancellationToken) {
    let (a, d, k) = (s.clone(), s.clone(), s.clone());
    let handlers = Handlers {
        kind: "pod",
        key: pod_key,
        apply: Box::new(move |pod| a.on_pod(pod)),
        delete: Box::new(move |key| d.on_pod_deleted(key)),
        known: Box::new(move || {
            let mut keys = k.cache.lock().expect("cache lock").confirmed_pod_keys();
            keys.extend(k.queue.keys());
            keys
        }),
    };
    run(
        Api::<Pod>::all(s.client.clone()),
        handlers,
        synced,
        shutdown,
    )
    .await
}

/// Watches all nodes until `shutdown`; `synced` fires after the first complete list.
pub async fn nodes(s: Arc<Scheduler>, synced: oneshot::Sender<()>, shutdown: CancellationToken) {
    let (a, d, k) = (s.clone(), s.clone(), s.clone());
    let handlers = Handlers {
        kind: "node",
        key: |n: &Node| n.metadata.name.clone().unwrap_or_default(),
        apply: Box::new(move |node| a.on_node(&node)),
        delete: Box::new(move |name| d.on_node_deleted(name)),
        known: Box::new(move || k.cache.lock().expect("cache lock").node_names()),
    };
    run(
        Api::<Node>::all(s.client.clone()),
        handlers,
        synced,
        shutdown,
    )
    .await
}
