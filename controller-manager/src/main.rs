//! `skiff-controller-manager`: flags as kube-controller-manager's; everything else lives in
//! the library.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use skiff_client::leader::LeaderElectFlags;
use skiff_common::parse_duration;
use skiff_controller_manager::context::Settings;

#[derive(Parser, Debug)]
#[command(
    // A flag given again (SKIFF_EXTRA_ARGS after skiffadm's SKIFF_ARGS) wins, as in Kubernetes.
    args_override_self = true,
    name = "skiff-controller-manager",
    version,
    about = "Skiff's controller-manager"
)]
struct Flags {
    /// kubeconfig to reach the apiserver with.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Controllers to run: `*` for all but the off-by-default ones (bootstrapsigner,
    /// tokencleaner), a name to add one, `-name` to leave one out.
    #[arg(long, default_value = "*", value_delimiter = ',')]
    controllers: Vec<String>,
    #[command(flatten)]
    leader_election: LeaderElectFlags,
    /// Address of the HTTPS /healthz and /metrics endpoint. Loopback by default (where
    /// kube-* binds all addresses): the endpoint asks no client for credentials, so reaching
    /// it from elsewhere is a choice (`--bind-address 0.0.0.0`).
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port of the HTTPS /healthz and /metrics endpoint; 0 picks a free one.
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    /// Workers per controller.
    #[arg(long, default_value_t = 5)]
    concurrent_syncs: usize,
    /// The pod range nodes' podCIDRs are cut from.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// Prefix length of each node's podCIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Give every Node a spec.podCIDR from --cluster-cidr.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allocate_node_cidrs: bool,
    /// A node whose heartbeat is older than this becomes Ready=Unknown and unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How often node heartbeats are checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
    /// How often each HorizontalPodAutoscaler is synced.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_sync_period: Duration,
    /// Autoscalers without spec.behavior: how long scale-downs wait for lower recommendations.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// How far usage may stray from the target (as a fraction) before the HPA acts.
    #[arg(long, default_value_t = 0.1)]
    horizontal_pod_autoscaler_tolerance: f64,
    /// After a pod starts, how long its CPU samples count only once it has been ready for a
    /// whole metrics window.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    horizontal_pod_autoscaler_cpu_initialization_period: Duration,
    /// After a pod starts, how long a not-ready pod may still become ready for the first time.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_initial_readiness_delay: Duration,
    /// The CA bundle published to every namespace as ConfigMap kube-root-ca.crt; default: the
    /// kubeconfig's certificate authority.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// Each controller writes as its own ServiceAccount in kube-system (with a TokenRequest
    /// token), so RBAC applies to it; otherwise all use this process's credentials.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    use_service_account_credentials: bool,
    /// PEM CA certificate the CSR signer issues cluster-scoped certificates with.
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    /// PEM private key of --cluster-signing-cert-file.
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    /// The longest certificate the CSR signer issues; a CSR's spec.expirationSeconds may ask
    /// for less.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    cluster_signing_duration: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    skiff_client::init();
    let flags = Flags::parse();
    anyhow::ensure!(
        flags.node_cidr_mask_size >= flags.cluster_cidr.prefix_len()
            && flags.node_cidr_mask_size <= 30,
        "--node-cidr-mask-size {} must be between the --cluster-cidr prefix ({}) and 30",
        flags.node_cidr_mask_size,
        flags.cluster_cidr.prefix_len()
    );
    let config = skiff_controller_manager::Config {
        kubeconfig: flags.kubeconfig,
        controllers: flags.controllers,
        leader_election: flags.leader_election.election("kube-controller-manager"),
        serve_addr: SocketAddr::new(flags.bind_address, flags.secure_port),
        workers: flags.concurrent_syncs,
        settings: Settings {
            cluster_cidr: flags.cluster_cidr,
            node_cidr_mask_size: flags.node_cidr_mask_size,
            allocate_node_cidrs: flags.allocate_node_cidrs,
            node_monitor_grace_period: flags.node_monitor_grace_period,
            node_monitor_period: flags.node_monitor_period,
            hpa_sync_period: flags.horizontal_pod_autoscaler_sync_period,
            hpa_downscale_stabilization: flags.horizontal_pod_autoscaler_downscale_stabilization,
            hpa_tuning: skiff_controller_manager::controllers::hpa::calc::Tuning {
                tolerance: flags.horizontal_pod_autoscaler_tolerance,
                cpu_initialization_period: flags
                    .horizontal_pod_autoscaler_cpu_initialization_period,
                initial_readiness_delay: flags.horizontal_pod_autoscaler_initial_readiness_delay,
            },
            root_ca: None,
            cluster_signing: None,
            cluster_signing_duration: flags.cluster_signing_duration,
        },
        root_ca_file: flags.root_ca_file,
        use_service_account_credentials: flags.use_service_account_credentials,
        cluster_signing_cert_file: flags.cluster_signing_cert_file,
        cluster_signing_key_file: flags.cluster_signing_key_file,
    };
    let shutdown = skiff_client::shutdown_on_signal();
    skiff_controller_manager::run(config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_metrics_listen_on_loopback_by_default() {
        let flags = Flags::parse_from(["skiff-controller-manager", "--kubeconfig", "k"]);
        assert!(flags.bind_address.is_loopback(), "{}", flags.bind_address);
        assert_eq!(flags.secure_port, 10257);
    }
}
