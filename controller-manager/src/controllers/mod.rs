//! The controllers, one module each, and [`ALL`]: the one table of what `--controllers`
//! accepts and how each controller is made.

pub mod bootstrap;
pub mod clusterroleaggregation;
pub mod cronjob;
pub mod csrapproving;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod history;
pub mod hpa;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod pvprotection;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacert;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod ttlafterfinished;

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller::{self, Controller};
use crate::metrics::Metrics;
use crate::workqueue::WorkQueue;

/// A controller by its `--controllers` name (its [`controller::Reconciler::NAME`]).
pub struct Entry {
    pub name: &'static str,
    /// Its ServiceAccount ([`Controller::SERVICE_ACCOUNT`]).
    pub service_account: &'static str,
    /// Whether `*` in `--controllers` includes it ([`Controller::ENABLED_BY_DEFAULT`]).
    pub enabled_by_default: bool,
    start: fn(&Arc<Context>, &Arc<Metrics>, usize, CancellationToken) -> BoxFuture<'static, ()>,
}

impl Entry {
    /// Makes the controller (its handlers registered before the informers start) and returns
    /// its workers, which run until `stop`.
    pub fn start(
        &self,
        ctx: &Arc<Context>,
        metrics: &Arc<Metrics>,
        workers: usize,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        (self.start)(ctx, metrics, workers, stop)
    }
}

const fn entry<C: Controller>() -> Entry {
    Entry {
        name: C::NAME,
        service_account: C::SERVICE_ACCOUNT,
        enabled_by_default: C::ENABLED_BY_DEFAULT,
        start: start::<C>,
    }
}

fn start<C: Controller>(
    ctx: &Arc<Context>,
    metrics: &Arc<Metrics>,
    workers: usize,
    stop: CancellationToken,
) -> BoxFuture<'static, ()> {
    if let Some(why) = C::disabled(ctx) {
        tracing::warn!(controller = C::NAME, "not starting: {why}");
        return Box::pin(async {});
    }
    let queue = Arc::new(WorkQueue::new());
    let c = C::build(ctx, queue.clone());
    metrics.watch_queue(C::NAME, queue.clone());
    let workers = workers.max(C::MIN_WORKERS);
    Box::pin(controller::run(c, queue, workers, metrics.clone(), stop))
}

/// Every controller.
pub const ALL: &[Entry] = &[
    entry::<replicaset::ReplicaController<ReplicationController>>(),
    entry::<replicaset::ReplicaController<ReplicaSet>>(),
    entry::<deployment::DeploymentController>(),
    entry::<disruption::DisruptionController>(),
    entry::<daemonset::DaemonSetController>(),
    entry::<statefulset::StatefulSetController>(),
    entry::<gc::GarbageCollector>(),
    entry::<namespace::NamespaceController>(),
    entry::<nodeipam::NodeIpam>(),
    entry::<nodelifecycle::NodeLifecycle>(),
    entry::<endpoints::EndpointsController>(),
    entry::<hpa::HpaController>(),
    entry::<servicelb::ServiceLb>(),
    entry::<serviceaccount::ServiceAccountsController>(),
    entry::<rootcacert::RootCaCertPublisher>(),
    entry::<clusterroleaggregation::ClusterRoleAggregation>(),
    entry::<bootstrap::BootstrapSigner>(),
    entry::<bootstrap::TokenCleaner>(),
    entry::<csrapproving::CsrApprover>(),
    entry::<csrsigning::CsrSigner>(),
    entry::<job::JobController>(),
    entry::<ttlafterfinished::TtlAfterFinished>(),
    entry::<cronjob::CronJobController>(),
    entry::<resourcequota::ResourceQuotaController>(),
    entry::<persistentvolume::PersistentVolumeBinder>(),
    entry::<pvprotection::PvcProtection>(),
    entry::<pvprotection::PvProtection>(),
];

/// The names `--controllers` accepts.
pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|e| e.name)
}
