//! Watches the pods bound to this node (a shared informer on `spec.nodeName=<node>`) and keeps
//! one worker per pod, by uid.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use skiff_client::informer::{Event, Informer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::worker::{PodUpdate, Worker};

/// Runs until shutdown, feeding each pod's worker.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let pods = Informer::with_config(api, cfg);
    let mut changes = pods.changes();
    tokio::spawn(pods.clone().run(shutdown.clone()));
    let mut workers: BTreeMap<String, mpsc::UnboundedSender<PodUpdate>> = BTreeMap::new();
    let mut first_list_done = false;
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = shutdown.cancelled() => return,
        };
        let Some(change) = change else { return };
        match change {
            Event::Applied { new, .. } => dispatch(&ctx, &mut workers, &new, &shutdown),
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
                    dispatch(&ctx, &mut workers, pod, &shutdown);
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
    let worker = Worker::new(ctx.clone(), pod.clone(), rx);
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
