//! Watches the pods bound to this node and keeps one worker per pod.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::worker::{PodUpdate, Worker};

/// Runs until shutdown: list + watch `spec.nodeName=<node>`, feeding each pod's worker.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut events = watcher(api, cfg).default_backoff().boxed();
    let mut workers: BTreeMap<String, mpsc::UnboundedSender<PodUpdate>> = BTreeMap::new();
    let mut listing: Option<BTreeSet<String>> = None;
    let mut first_list_done = false;
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = shutdown.cancelled() => return,
        };
        let Some(ev) = ev else { return };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => listing = Some(BTreeSet::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                if let Some(l) = listing.as_mut() {
                    l.insert(uid.clone());
                }
                dispatch(&ctx, &mut workers, uid, pod, &shutdown);
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref()
                    && let Some(tx) = workers.remove(uid)
                {
                    let _ = tx.send(PodUpdate::Gone);
                }
            }
            watcher::Event::InitDone => {
                let present = listing.take().unwrap_or_default();
                // Pods that vanished while we were not watching.
                workers.retain(|uid, tx| {
                    let keep = present.contains(uid);
                    if !keep {
                        let _ = tx.send(PodUpdate::Gone);
                    }
                    keep
                });
                if !first_list_done {
                    first_list_done = true;
                    remove_orphans(&ctx, &present).await;
                }
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
}

fn dispatch(
    ctx: &Arc<Context>,
    workers: &mut BTreeMap<String, mpsc::UnboundedSender<PodUpdate>>,
    uid: String,
    pod: Pod,
    shutdown: &CancellationToken,
) {
    if let Some(tx) = workers.get(&uid)
        && tx.send(PodUpdate::Changed(Box::new(pod.clone()))).is_ok()
    {
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let worker = Worker::new(ctx.clone(), pod, rx);
    tokio::spawn(worker.run(shutdown.clone()));
    workers.insert(uid, tx);
}

/// Removes sandboxes and containers whose pod no longer exists (the kubelet was down when
/// the pod was deleted).
async fn remove_orphans(ctx: &Context, present: &BTreeSet<String>) {
    if let Ok(containers) = ctx.runtime.list_containers().await {
        for c in containers
            .iter()
            .filter(|c| ctx.owns(&c.labels) && !present.contains(&c.pod_uid))
        {
            tracing::info!(pod = %c.pod_name, container = %c.name, "removing a container whose pod is gone");
            let _ = ctx
                .runtime
                .stop_container(&c.id, std::time::Duration::from_secs(2))
                .await;
            let _ = ctx.runtime.remove_container(&c.id).await;
        }
    }
    if let Ok(sandboxes) = ctx.runtime.list_sandboxes().await {
        for s in sandboxes
            .iter()
            .filter(|s| ctx.owns(&s.labels) && !present.contains(&s.uid))
        {
            let _ = ctx.runtime.remove_sandbox(&s.id).await;
        }
    }
}
