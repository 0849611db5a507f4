//! Informers: kube-runtime watchers on pods and nodes feeding the scheduler's cache and queue.
//! On every (re)list, objects that the list no longer shows are treated as deleted.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
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

/// Watches all pods until `shutdown`; `synced` fires after the first complete list.
pub async fn pods(s: Arc<Scheduler>, synced: oneshot::Sender<()>, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::all(s.client.clone());
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
            Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
            Some(Ok(watcher::Event::Init)) => listed.clear(),
            Some(Ok(watcher::Event::InitApply(pod))) => {
                listed.insert(pod_key(&pod));
                s.on_pod(pod);
            }
            Some(Ok(watcher::Event::InitDone)) => {
                let known: Vec<String> = {
                    let cache = s.cache.lock().expect("cache lock");
                    cache.confirmed_pod_keys()
                };
                for key in known.into_iter().chain(s.queue.keys()) {
                    if !listed.contains(&key) {
                        s.on_pod_deleted(&key);
                    }
                }
                listed = HashSet::new();
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Some(Ok(watcher::Event::Apply(pod))) => s.on_pod(pod),
            Some(Ok(watcher::Event::Delete(pod))) => s.on_pod_deleted(&pod_key(&pod)),
        }
    }
}

/// Watches all nodes until `shutdown`; `synced` fires after the first complete list.
pub async fn nodes(s: Arc<Scheduler>, synced: oneshot::Sender<()>, shutdown: CancellationToken) {
    let api: Api<Node> = Api::all(s.client.clone());
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
            Some(Err(e)) => tracing::warn!(error = %e, "node watch failed; retrying"),
            Some(Ok(watcher::Event::Init)) => listed.clear(),
            Some(Ok(watcher::Event::InitApply(node))) => {
                listed.insert(node.metadata.name.clone().unwrap_or_default());
                s.on_node(&node);
            }
            Some(Ok(watcher::Event::InitDone)) => {
                let known = s.cache.lock().expect("cache lock").node_names();
                for name in known {
                    if !listed.contains(&name) {
                        s.on_node_deleted(&name);
                    }
                }
                listed = HashSet::new();
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Some(Ok(watcher::Event::Apply(node))) => s.on_node(&node),
            Some(Ok(watcher::Event::Delete(node))) => {
                s.on_node_deleted(node.metadata.name.as_deref().unwrap_or_default())
            }
        }
    }
}
