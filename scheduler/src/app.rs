//! The scheduler's configuration and [`run`]: its informers, health endpoint, leader election
//! and scheduling loop wired together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::runtime::watcher;
use skiff_client::events::Recorder;
use skiff_client::informer::Informer;
use skiff_client::leader::{LeaderElection, Leadership};
use tokio_util::sync::CancellationToken;

use crate::cache::NodeData;
use crate::plugins::volume_binding::Informers;
use crate::podinfo::SeenPod;
use crate::preemption::Budget;
use crate::{Scheduler, plugins};

/// The scheduler's configuration, from flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
    pub leader_election: LeaderElection,
    /// Where `/healthz` and `/metrics` are served (HTTPS).
    pub serve_addr: SocketAddr,
    /// 0 = Kubernetes' adaptive default.
    pub percentage_of_nodes_to_score: u32,
}

/// Runs the scheduler until `shutdown` (Ok) or until it loses leadership (Err).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = skiff_client::client(&config.kubeconfig).await?;
    let identity = skiff_client::identity();
    let recorder = Recorder::new(
        client.clone(),
        &config.scheduler_name,
        &identity,
        shutdown.clone(),
    );
    let volumes = Arc::new(Informers {
        claims: Informer::new(Api::all(client.clone())),
        volumes: Informer::new(Api::all(client.clone())),
        classes: Informer::new(Api::all(client.clone())),
    });
    let sched = Arc::new(
        Scheduler::new(
            client.clone(),
            &config.scheduler_name,
            plugins::registry(config.percentage_of_nodes_to_score, Some(volumes.clone())),
            recorder,
        )
        .with_volumes(volumes.clone()),
    );

    let s = sched.clone();
    let server = skiff_client::health::spawn(
        config.serve_addr,
        move || s.metrics.render(s.queue.stats(), s.recorder.dropped()),
        shutdown.clone(),
    )
    .await?;

    // Work stops on shutdown, or when leadership is lost.
    let Some(leadership) = Leadership::start(
        client.clone(),
        &config.leader_election,
        &identity,
        &shutdown,
    )
    .await
    else {
        return Ok(());
    };
    let work = leadership.work.clone();

    let pods = Informer::mapped(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        SeenPod::from_pod,
    );
    let nodes = Informer::mapped(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        NodeData::from_node,
    );
    // Budgets only steer the choice of preemption victims: scheduling does not wait for them.
    let budgets = Informer::mapped(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
        Budget::from_pdb,
    );
    sched.follow(&pods, &nodes);
    sched.follow_budgets(budgets.clone());
    // A claim or volume that changes (bound, created) may let waiting pods in.
    move_on_change(&volumes.claims, &sched);
    move_on_change(&volumes.volumes, &sched);
    tokio::spawn(pods.clone().run(work.clone()));
    tokio::spawn(nodes.clone().run(work.clone()));
    tokio::spawn(budgets.run(work.clone()));
    tokio::spawn(volumes.claims.clone().run(work.clone()));
    tokio::spawn(volumes.volumes.clone().run(work.clone()));
    tokio::spawn(volumes.classes.clone().run(work.clone()));
    tokio::select! {
        _ = async {
            pods.synced().await;
            nodes.synced().await;
            volumes.claims.synced().await;
            volumes.volumes.synced().await;
            volumes.classes.synced().await;
        } => {}
        _ = work.cancelled() => {}
    }
    tracing::info!(scheduler = %config.scheduler_name, "caches synced; scheduling");

    let flusher = sched.clone();
    let flush_stop = work.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => flusher.queue.flush_stale(),
                _ = flush_stop.cancelled() => return,
            }
        }
    });

    sched.run(work).await;
    leadership
        .finish()
        .await
        .context("stopping: another scheduler may take over")?;
    let _ = server.await;
    Ok(())
}

/// Moves every unschedulable pod back to the active queue when an object of `informer` is
/// added or changed.
fn move_on_change<K: Send + Sync + 'static>(informer: &Arc<Informer<K>>, sched: &Arc<Scheduler>) {
    let s = sched.clone();
    informer.on_change(move |c| {
        if let skiff_client::informer::Change::Applied { .. } = c {
            s.queue.move_all();
        }
    });
}
