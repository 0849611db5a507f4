//! Watches the pods bound to this node (a shared informer on `spec.nodeName=<node>`) and keeps
//! one worker per pod, by uid; passes the eviction manager's evictions to their workers, and
//! turns away new pods while node pressure forbids them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use skiff_client::informer::{Event, Informer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::eviction::{self, Eviction, Pressure};
use crate::worker::{PodUpdate, Worker};

/// The informer of the pods bound to this node (not yet running).
pub fn pod_informer(ctx: &Context) -> Arc<Informer<Pod>> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    Informer::with_config(api, cfg)
}

/// Runs until shutdown, feeding each pod's worker.
pub async fn run(
    ctx: Arc<Context>,
    pods: Arc<Informer<Pod>>,
    pressure: Pressure,
    mut evictions: mpsc::UnboundedReceiver<Eviction>,
    shutdown: CancellationToken,
) {
    let mut changes = pods.changes();
    tokio::spawn(pods.clone().run(shutdown.clone()));
    let mut workers: BTreeMap<String, mpsc::UnboundedSender<PodUpdate>> = BTreeMap::new();
    let mut first_list_done = false;
    let feed = |workers: &mut BTreeMap<String, mpsc::UnboundedSender<PodUpdate>>, pod: &Pod| {
        dispatch(&ctx, &pressure, workers, pod, &shutdown)
    };
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            Some(e) = evictions.recv() => {
                if let Some(tx) = workers.get(&e.uid) {
                    let _ = tx.send(PodUpdate::Evict(e));
                }
                continue;
            }
            _ = shutdown.cancelled() => return,
        };
        let Some(change) = change else { return };
        match change {
            Event::Applied { new, .. } => feed(&mut workers, &new),
            Event::Deleted(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref()
                    && let Some(tx) = workers.remove(uid)
                {
                    let _ = tx.send(PodUpdate::Gone);
                }
            }
            Event::Resynced => {
                let listed = pods.list();
                for pod in &listed {
                    feed(&mut workers, pod);
                }
                // Pods that vanished while we were not watching (another uid under the same
                // name counts as gone too).
                let present: BTreeSet<String> = listed
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect();
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
    pressure: &Pressure,
    workers: &mut BTreeMap<String, mpsc::UnboundedSender<PodUpdate>>,
    pod: &Pod,
    shutdown: &CancellationToken,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(tx) = workers.get(&uid)
        && tx.send(PodUpdate::Changed(Box::new(pod.clone()))).is_ok()
    {
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut worker = Worker::new(ctx.clone(), pod.clone(), rx);
    // A pod not started yet is admitted only if node pressure allows it (one already running
    // when the kubelet restarted stays).
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, None | Some("Pending"))
        && let Err(message) = eviction::admit_new(pressure, pod)
    {
        tracing::info!(pod = ?pod.metadata.name, %message, "pod rejected under node pressure");
        worker.reject("Evicted", message);
    }
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
