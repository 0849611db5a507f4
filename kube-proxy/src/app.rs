//! The proxy's configuration and [`run`]: the informers that feed the [`crate::Proxier`], and
//! its health endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::proxier::Network;
use crate::{Inputs, Proxier, cache, health, iptables, model, proxier, routes, vxlan};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The proxy's configuration, from flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    /// `--bootstrap-kubeconfig`: requests the `system:kube-proxy` client certificate when
    /// `kubeconfig` has none valid ([`skiff_client::tls_bootstrap`]).
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// `--cert-dir`: where `kube-proxy-client-*.pem` are kept.
    pub cert_dir: PathBuf,
    pub node_name: String,
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    /// `--service-cluster-ip-range`: lets one rule mark outside traffic to every ClusterIP.
    pub service_cidr: Option<ipnet::Ipv4Net>,
    pub min_sync_period: Duration,
    pub sync_period: Duration,
    pub healthz_addr: SocketAddr,
    /// `--pod-network`: how pods reach the pods of other nodes.
    pub pod_network: PodNetwork,
}

/// How pods reach the pods of other nodes (`--pod-network`, named after flannel's backends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PodNetwork {
    /// A route to every other node's pod CIDR via its InternalIP: the nodes must share an L2
    /// segment.
    #[default]
    HostGw,
    /// A VXLAN overlay (the `skiff.1` device, UDP port 8472) between the nodes' InternalIPs,
    /// which need only reach each other over IP.
    Vxlan,
}

/// Runs the proxy until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    use skiff_client::tls_bootstrap;
    let bootstrapped = tls_bootstrap::ClientBootstrap {
        bootstrap_kubeconfig: config.bootstrap_kubeconfig.clone(),
        kubeconfig: config.kubeconfig.clone(),
        cert_dir: config.cert_dir.clone(),
        prefix: "kube-proxy-client".into(),
        request: tls_bootstrap::CertRequest::proxy_client(),
        wait: tls_bootstrap::DEFAULT_WAIT,
    }
    .load()
    .await?;
    let client = bootstrapped.client;
    // A certificate from the cert dir is renewed before it expires, as the kubelet's with
    // --rotate-certificates (kube-proxy has no such flag; a proxy has no reason not to).
    if let Some(manager) = bootstrapped.manager {
        tokio::spawn(manager.rotate(client.clone(), shutdown.clone()));
    }
    let changed = Arc::new(Notify::new());
    let watched = Watched {
        services: cache::watch(
            Api::<Service>::all(client.clone()),
            model::Svc::from_service,
            changed.clone(),
            shutdown.clone(),
        ),
        slices: cache::watch(
            Api::<EndpointSlice>::all(client.clone()),
            model::Slice::from_slice,
            changed.clone(),
            shutdown.clone(),
        ),
        nodes: cache::watch(
            Api::<Node>::all(client.clone()),
            compact_node,
            changed.clone(),
            shutdown.clone(),
        ),
    };
    let metrics = health::Metrics::new();
    tokio::spawn(health::serve(
        config.healthz_addr,
        metrics.clone(),
        shutdown.clone(),
    ));
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(60), async {
            watched.services.wait_until_ready().await;
            watched.slices.wait_until_ready().await;
            watched.nodes.wait_until_ready().await;
        }) => {}
        _ = shutdown.cancelled() => return Ok(()),
    }

    // NodePorts answer on 127.0.0.1 too (as kube-proxy allows): packets to and from the
    // loopback address may then be routed after DNAT (and are masqueraded on the way out).
    // The firewall against other traffic to 127.0.0.0/8 (CVE-2020-8558) goes in first; without
    // it route_localnet stays off.
    match iptables::Iptables::new().install_firewall() {
        Ok(()) => {
            if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1") {
                tracing::warn!(error = %e, "cannot set route_localnet; NodePorts will not answer on 127.0.0.1");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the localnet firewall; route_localnet stays off and NodePorts will not answer on 127.0.0.1");
        }
    }
    let network: Box<dyn Network + Send> = match config.pod_network {
        PodNetwork::HostGw => {
            // Switching from vxlan: the device goes, and every overlay route with it. (The
            // other way, the overlay's routes replace host-gw's for every node with a pod CIDR.)
            match vxlan::delete_device() {
                Ok(true) => tracing::info!(
                    device = vxlan::DEVICE,
                    "removed the VXLAN device: the pod network is host-gw"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot remove the VXLAN device"),
            }
            Box::new(routes::Router::new(&config.node_name, routes::IpRoute))
        }
        PodNetwork::Vxlan => Box::new(vxlan::Overlay::new(
            &config.node_name,
            vxlan::IpVxlan,
            config.sync_period,
        )),
    };
    let mut proxier = Proxier::new(&config, iptables::Iptables::new(), network, metrics);
    proxier.run(&watched, &changed, &shutdown).await;
    Ok(())
}

/// The watch caches, as the proxier reads them.
struct Watched {
    services: cache::Cache<model::Svc>,
    slices: cache::Cache<model::Slice>,
    nodes: cache::Cache<Node>,
}

impl Inputs for Watched {
    fn service(&self, key: &str) -> Option<Arc<model::Svc>> {
        self.services.get(key)
    }

    fn service_keys(&self) -> Vec<String> {
        self.services
            .entries()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn slice(&self, key: &str) -> Option<Arc<model::Slice>> {
        self.slices.get(key)
    }

    fn slices(&self) -> Vec<(String, Arc<model::Slice>)> {
        self.slices.entries()
    }

    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.values()
    }

    fn take_changes(&self) -> proxier::Changes {
        let services = self.services.take_changes();
        let slices = self.slices.take_changes();
        // Routes follow the nodes on every sync; their change log is not needed.
        let _ = self.nodes.take_changes();
        proxier::Changes {
            all: services.all || slices.all,
            services: services.keys,
            slices: slices.keys,
        }
    }
}

/// What the routes need of a Node: its name, spec (podCIDR) and addresses; the rest (images,
/// conditions, managedFields) is dropped.
fn compact_node(n: &Node) -> Option<Node> {
    Some(Node {
        metadata: kube::api::ObjectMeta {
            name: n.metadata.name.clone(),
            ..Default::default()
        },
        spec: n.spec.clone(),
        status: Some(k8s_openapi::api::core::v1::NodeStatus {
            addresses: n.status.as_ref().and_then(|s| s.addresses.clone()),
            ..Default::default()
        }),
    })
}
