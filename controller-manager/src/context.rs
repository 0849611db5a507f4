//! What every controller shares: the client, the shared informers, the configuration.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use skiff_client::informer::Informer;

/// Settings the controllers read (from flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Node IPAM: the cluster's pod range and the size of each node's share.
    pub cluster_cidr: ipnet::Ipv4Net,
    pub node_cidr_mask_size: u8,
    pub allocate_node_cidrs: bool,
    /// A node whose Lease is older than this is unreachable.
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    pub node_monitor_period: Duration,
    /// How often each HorizontalPodAutoscaler is synced.
    pub hpa_sync_period: Duration,
    /// Autoscalers without `spec.behavior`: how long scale-downs are stabilized.
    pub hpa_downscale_stabilization: Duration,
    pub hpa_tuning: crate::controllers::hpa::calc::Tuning,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_cidr: "10.244.0.0/16".parse().expect("a valid CIDR"),
            node_cidr_mask_size: 24,
            allocate_node_cidrs: true,
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            hpa_sync_period: Duration::from_secs(15),
            hpa_downscale_stabilization: Duration::from_secs(300),
            hpa_tuning: Default::default(),
        }
    }
}

pub struct Context {
    pub client: Client,
    /// This process's identity (Lease holder, event reporting instance).
    pub identity: String,
    pub shutdown: CancellationToken,
    pub settings: Settings,
    /// Pods in the compact form controllers read ([`crate::pods::CachedPod`]).
    pub pods: Arc<Informer<crate::pods::CachedPod>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub replication_controllers: Arc<Informer<ReplicationController>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub nodes: Arc<Informer<Node>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub endpoint_slices: Arc<Informer<EndpointSlice>>,
    /// Node heartbeats (`kube-node-lease`).
    pub node_leases: Arc<Informer<Lease>>,
    pub hpas: Arc<Informer<HorizontalPodAutoscaler>>,
}

impl Context {
    pub fn new(
        client: Client,
        identity: String,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Context {
        Context {
            pods: Informer::new(Api::all(client.clone())),
            replicasets: Informer::new(Api::all(client.clone())),
            replication_controllers: Informer::new(Api::all(client.clone())),
            deployments: Informer::new(Api::all(client.clone())),
            nodes: Informer::new(Api::all(client.clone())),
            namespaces: Informer::new(Api::all(client.clone())),
            services: Informer::new(Api::all(client.clone())),
            endpoints: Informer::new(Api::all(client.clone())),
            endpoint_slices: Informer::new(Api::all(client.clone())),
            node_leases: Informer::new(Api::namespaced(client.clone(), "kube-node-lease")),
            hpas: Informer::new(Api::all(client.clone())),
            client,
            identity,
            shutdown,
            settings,
        }
    }

    /// Starts every informer; returns once all have listed.
    pub async fn start_informers(&self) {
        let stop = self.shutdown.clone();
        tokio::spawn(self.pods.clone().run(stop.clone()));
        tokio::spawn(self.replicasets.clone().run(stop.clone()));
        tokio::spawn(self.replication_controllers.clone().run(stop.clone()));
        tokio::spawn(self.deployments.clone().run(stop.clone()));
        tokio::spawn(self.nodes.clone().run(stop.clone()));
        tokio::spawn(self.namespaces.clone().run(stop.clone()));
        tokio::spawn(self.services.clone().run(stop.clone()));
        tokio::spawn(self.endpoints.clone().run(stop.clone()));
        tokio::spawn(self.endpoint_slices.clone().run(stop.clone()));
        tokio::spawn(self.node_leases.clone().run(stop.clone()));
        tokio::spawn(self.hpas.clone().run(stop));
        self.pods.synced().await;
        self.replicasets.synced().await;
        self.replication_controllers.synced().await;
        self.deployments.synced().await;
        self.nodes.synced().await;
        self.namespaces.synced().await;
        self.services.synced().await;
        self.endpoints.synced().await;
        self.endpoint_slices.synced().await;
        self.node_leases.synced().await;
        self.hpas.synced().await;
    }
}
