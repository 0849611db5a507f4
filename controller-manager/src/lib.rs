//! `skiff-controller-manager`: many controllers in one process. Shared informers
//! ([`skiff_client::informer`]) keep one cache per resource type; each controller is a
//! [`controller::Reconciler`] fed by a [`workqueue::WorkQueue`] of keys; [`controllers`] holds
//! them.

pub mod context;
pub mod controller;
pub mod controllers;
pub mod intern;
pub mod pods;
pub mod workqueue;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;
use skiff_client::leader::{LeaderElection, Leadership};
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Settings};
use crate::controllers::replicaset::ReplicaController;
use crate::workqueue::WorkQueue;

/// The controller-manager's configuration, from flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    /// `--controllers`: `*` (all), names, and `-name` to leave one out.
    pub controllers: Vec<String>,
    pub leader_election: LeaderElection,
    pub serve_addr: SocketAddr,
    /// Workers per controller (`--concurrent-*-syncs`).
    pub workers: usize,
    pub settings: Settings,
}

/// Resolves `--controllers` to the set of controllers to run.
pub fn enabled(spec: &[String]) -> anyhow::Result<BTreeSet<&'static str>> {
    let mut out = BTreeSet::new();
    let mut star = false;
    for s in spec
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if s == "*" {
            star = true;
            continue;
        }
        let name = s.trim_start_matches('-');
        let Some(known) = controllers::ALL.iter().find(|c| **c == name) else {
            anyhow::bail!(
                "unknown controller {name:?} in --controllers; known: {}",
                controllers::ALL.join(", ")
            );
        };
        if !s.starts_with('-') {
            out.insert(*known);
        }
    }
    if star {
        for c in controllers::ALL {
            if !spec
                .iter()
                .flat_map(|s| s.split(','))
                .any(|s| s.trim() == format!("-{c}"))
            {
                out.insert(*c);
            }
        }
    }
    Ok(out)
}

/// Runs the enabled controllers until `shutdown` (Ok) or until leadership is lost (Err).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let enabled = enabled(&config.controllers)?;
    let client = skiff_client::client(&config.kubeconfig).await?;
    let identity = skiff_client::identity();

    let listener = skiff_client::health::bind(config.serve_addr).await?;
    let server = tokio::spawn(skiff_client::health::serve(
        listener,
        axum::Router::new(),
        shutdown.clone(),
    ));

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

    let ctx = Arc::new(Context::new(
        client,
        identity,
        config.settings.clone(),
        work.clone(),
    ));
    let mut tasks = Vec::new();
    // Handlers are registered before the informers start, so no event is missed.
    if enabled.contains("replicaset") {
        let q = Arc::new(WorkQueue::new());
        let c =
            ReplicaController::<ReplicaSet>::new(ctx.clone(), ctx.replicasets.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("replicationcontroller") {
        let q = Arc::new(WorkQueue::new());
        let c = ReplicaController::<ReplicationController>::new(
            ctx.clone(),
            ctx.replication_controllers.clone(),
            q.clone(),
        );
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("deployment") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::deployment::DeploymentController::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("garbagecollector") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::gc::GarbageCollector::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers.max(10),
            work.clone(),
        )));
    }
    if enabled.contains("namespace") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::namespace::NamespaceController::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("nodeipam") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::nodeipam::NodeIpam::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("nodelifecycle") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::nodelifecycle::NodeLifecycle::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("endpoint") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::endpoints::EndpointsController::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("horizontalpodautoscaling") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::hpa::HpaController::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    if enabled.contains("service-lb") {
        let q = Arc::new(WorkQueue::new());
        let c = controllers::servicelb::ServiceLb::new(ctx.clone(), q.clone());
        tasks.push(tokio::spawn(controller::run(
            c,
            q,
            config.workers,
            work.clone(),
        )));
    }
    tokio::select! {
        _ = ctx.start_informers() => {}
        _ = work.cancelled() => {}
    }
    tracing::info!(controllers = ?enabled, "caches synced; controllers running");
    for t in tasks {
        let _ = t.await;
    }
    leadership
        .finish()
        .await
        .context("stopping: another controller-manager may take over")?;
    let _ = server.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(enabled(&s(&["*"])).unwrap().len(), controllers::ALL.len());
        let e = enabled(&s(&["*,-replicaset"])).unwrap();
        assert!(!e.contains("replicaset") && e.contains("replicationcontroller"));
        assert_eq!(
            enabled(&s(&["replicaset"]))
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["replicaset"]
        );
        assert!(
            enabled(&s(&["nope"]))
                .unwrap_err()
                .to_string()
                .contains("unknown controller")
        );
    }
}
