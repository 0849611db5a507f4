//! What every controller shares: the client, the shared informers, the configuration, and
//! each controller's client for its writes ([`Context::client_for`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim,
    ReplicationController, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use skiff_client::informer::{Informer, Object};

use crate::controllers::rootcacert::ROOT_CA_CONFIG_MAP;
use crate::controllers::serviceaccount::DEFAULT_SERVICE_ACCOUNT;
use crate::credentials::Credentials;

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
    /// The cluster CA bundle (PEM) published as `kube-root-ca.crt` in every namespace:
    /// `--root-ca-file`, else the kubeconfig's certificate authority. None: the publisher
    /// does not run.
    pub root_ca: Option<String>,
    /// The CA the CSR signer issues certificates with (`--cluster-signing-cert-file` and
    /// `--cluster-signing-key-file`). None: the signer does not run.
    pub cluster_signing: Option<skiff_common::pki::CertKey>,
    /// The longest certificate the CSR signer issues (`--cluster-signing-duration`).
    pub cluster_signing_duration: Duration,
}

/// kube-controller-manager's default `--cluster-signing-duration`: a year.
pub const DEFAULT_CLUSTER_SIGNING_DURATION: Duration = Duration::from_secs(8760 * 3600);

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
            root_ca: None,
            cluster_signing: None,
            cluster_signing_duration: DEFAULT_CLUSTER_SIGNING_DURATION,
        }
    }
}

/// An informer made on first use, so that a type only some controllers read is not watched
/// (and cached) when they are off.
struct Lazy<K> {
    cell: OnceLock<Arc<Informer<K>>>,
}

impl<K: Object> Lazy<K> {
    fn new() -> Self {
        Lazy {
            cell: OnceLock::new(),
        }
    }

    fn get_or_init(&self, make: impl FnOnce() -> Arc<Informer<K>>) -> Arc<Informer<K>> {
        self.cell.get_or_init(make).clone()
    }

    /// Starts the informer if it was made; returns it to wait on.
    fn start(&self, stop: &CancellationToken) -> Option<Arc<Informer<K>>> {
        let informer = self.cell.get()?;
        tokio::spawn(informer.clone().run(stop.clone()));
        Some(informer.clone())
    }
}

pub struct Context {
    /// The controller-manager's own client: informers and leader election. Controllers write
    /// with [`Context::client_for`].
    pub client: Client,
    /// Each controller's client by its ServiceAccount name (`--use-service-account-credentials`).
    pub credentials: Credentials,
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
    default_service_accounts: Lazy<ServiceAccount>,
    root_ca_config_maps: Lazy<ConfigMap>,
    cluster_roles: Lazy<ClusterRole>,
    bootstrap_token_secrets: Lazy<Secret>,
    cluster_info: Lazy<ConfigMap>,
    csrs: Lazy<CertificateSigningRequest>,
    jobs: Lazy<Job>,
    cronjobs: Lazy<CronJob>,
    daemonsets: Lazy<DaemonSet>,
    controller_revisions: Lazy<ControllerRevision>,
    statefulsets: Lazy<StatefulSet>,
    pod_disruption_budgets: Lazy<PodDisruptionBudget>,
    persistent_volume_claims: Lazy<PersistentVolumeClaim>,
    persistent_volumes: Lazy<PersistentVolume>,
    storage_classes: Lazy<StorageClass>,
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
            default_service_accounts: Lazy::new(),
            root_ca_config_maps: Lazy::new(),
            cluster_roles: Lazy::new(),
            bootstrap_token_secrets: Lazy::new(),
            cluster_info: Lazy::new(),
            csrs: Lazy::new(),
            jobs: Lazy::new(),
            cronjobs: Lazy::new(),
            daemonsets: Lazy::new(),
            controller_revisions: Lazy::new(),
            statefulsets: Lazy::new(),
            pod_disruption_budgets: Lazy::new(),
            persistent_volume_claims: Lazy::new(),
            persistent_volumes: Lazy::new(),
            storage_classes: Lazy::new(),
            credentials: Credentials::shared(client.clone()),
            client,
            identity,
            shutdown,
            settings,
        }
    }

    /// The same context with controllers writing through `credentials`.
    pub fn with_credentials(self, credentials: Credentials) -> Context {
        Context {
            credentials,
            ..self
        }
    }

    /// The client the controller running as ServiceAccount `kube-system/<account>` writes with
    /// (the controller-manager's own unless `--use-service-account-credentials`).
    pub fn client_for(&self, account: &str) -> Client {
        self.credentials.client(account)
    }

    /// The ServiceAccounts named `default` (and no others: a cluster may hold many).
    pub fn default_service_accounts(&self) -> Arc<Informer<ServiceAccount>> {
        self.default_service_accounts.get_or_init(|| {
            let only = format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}");
            Informer::with_config(
                Api::all(self.client.clone()),
                watcher::Config::default().fields(&only),
            )
        })
    }

    /// The ConfigMaps named `kube-root-ca.crt`, one per namespace: the field selector keeps
    /// every other ConfigMap out of the cache.
    pub fn root_ca_config_maps(&self) -> Arc<Informer<ConfigMap>> {
        self.root_ca_config_maps.get_or_init(|| {
            let only = format!("metadata.name={ROOT_CA_CONFIG_MAP}");
            Informer::with_config(
                Api::all(self.client.clone()),
                watcher::Config::default().fields(&only),
            )
        })
    }

    pub fn cluster_roles(&self) -> Arc<Informer<ClusterRole>> {
        self.cluster_roles
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// The Secrets of `kube-system`, where bootstrap tokens live (the bootstrap-token
    /// controllers' roles let them read no other namespace's).
    pub fn bootstrap_token_secrets(&self) -> Arc<Informer<Secret>> {
        self.bootstrap_token_secrets.get_or_init(|| {
            Informer::new(Api::namespaced(
                self.client.clone(),
                skiff_api::bootstrap_token::NAMESPACE,
            ))
        })
    }

    /// `kube-public/cluster-info`, the one ConfigMap the bootstrap signer writes.
    pub fn cluster_info(&self) -> Arc<Informer<ConfigMap>> {
        self.cluster_info.get_or_init(|| {
            let only = format!("metadata.name={}", skiff_api::bootstrap_token::CLUSTER_INFO);
            Informer::with_config(
                Api::namespaced(
                    self.client.clone(),
                    skiff_api::bootstrap_token::CLUSTER_INFO_NAMESPACE,
                ),
                watcher::Config::default().fields(&only),
            )
        })
    }

    /// CertificateSigningRequests (read by the CSR approver and signer).
    pub fn csrs(&self) -> Arc<Informer<CertificateSigningRequest>> {
        self.csrs
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// Jobs (read by the Job, TTL-after-finished and garbage-collector controllers).
    pub fn jobs(&self) -> Arc<Informer<Job>> {
        self.jobs
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// CronJobs (read by the CronJob and garbage-collector controllers).
    pub fn cronjobs(&self) -> Arc<Informer<CronJob>> {
        self.cronjobs
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// DaemonSets (read by the DaemonSet and garbage-collector controllers).
    pub fn daemonsets(&self) -> Arc<Informer<DaemonSet>> {
        self.daemonsets
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// StatefulSets (read by the StatefulSet and garbage-collector controllers).
    pub fn statefulsets(&self) -> Arc<Informer<StatefulSet>> {
        self.statefulsets
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// ControllerRevisions (the DaemonSet and StatefulSet controllers' template history).
    pub fn controller_revisions(&self) -> Arc<Informer<ControllerRevision>> {
        self.controller_revisions
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// PodDisruptionBudgets (read by the disruption controller).
    pub fn pod_disruption_budgets(&self) -> Arc<Informer<PodDisruptionBudget>> {
        self.pod_disruption_budgets
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// PersistentVolumeClaims (the volume binder, the protection controllers, a StatefulSet's
    /// claims and the garbage collector's dependents).
    pub fn persistent_volume_claims(&self) -> Arc<Informer<PersistentVolumeClaim>> {
        self.persistent_volume_claims
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// PersistentVolumes (the volume binder and the protection controllers).
    pub fn persistent_volumes(&self) -> Arc<Informer<PersistentVolume>> {
        self.persistent_volumes
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// StorageClasses (the volume binder).
    pub fn storage_classes(&self) -> Arc<Informer<StorageClass>> {
        self.storage_classes
            .get_or_init(|| Informer::new(Api::all(self.client.clone())))
    }

    /// Starts every informer (the lazy ones if a controller asked for them); returns once all
    /// have listed.
    pub async fn start_informers(&self) {
        let stop = self.shutdown.clone();
        let service_accounts = self.default_service_accounts.start(&stop);
        let config_maps = self.root_ca_config_maps.start(&stop);
        let cluster_roles = self.cluster_roles.start(&stop);
        let token_secrets = self.bootstrap_token_secrets.start(&stop);
        let cluster_info = self.cluster_info.start(&stop);
        let csrs = self.csrs.start(&stop);
        let jobs = self.jobs.start(&stop);
        let cronjobs = self.cronjobs.start(&stop);
        let daemonsets = self.daemonsets.start(&stop);
        let controller_revisions = self.controller_revisions.start(&stop);
        let statefulsets = self.statefulsets.start(&stop);
        let pod_disruption_budgets = self.pod_disruption_budgets.start(&stop);
        let claims = self.persistent_volume_claims.start(&stop);
        let volumes = self.persistent_volumes.start(&stop);
        let classes = self.storage_classes.start(&stop);
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
        if let Some(i) = service_accounts {
            i.synced().await;
        }
        if let Some(i) = config_maps {
            i.synced().await;
        }
        if let Some(i) = cluster_roles {
            i.synced().await;
        }
        if let Some(i) = token_secrets {
            i.synced().await;
        }
        if let Some(i) = cluster_info {
            i.synced().await;
        }
        if let Some(i) = csrs {
            i.synced().await;
        }
        if let Some(i) = jobs {
            i.synced().await;
        }
        if let Some(i) = cronjobs {
            i.synced().await;
        }
        if let Some(i) = daemonsets {
            i.synced().await;
        }
        if let Some(i) = controller_revisions {
            i.synced().await;
        }
        if let Some(i) = statefulsets {
            i.synced().await;
        }
        if let Some(i) = pod_disruption_budgets {
            i.synced().await;
        }
        if let Some(i) = claims {
            i.synced().await;
        }
        if let Some(i) = volumes {
            i.synced().await;
        }
        if let Some(i) = classes {
            i.synced().await;
        }
    }
}
