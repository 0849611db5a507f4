//! `skiff-scheduler`: flags as kube-scheduler's; everything else lives in the library.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use skiff_client::leader::LeaderElectFlags;

#[derive(Parser, Debug)]
#[command(
    // A flag given again (SKIFF_EXTRA_ARGS after skiffadm's SKIFF_ARGS) wins, as in Kubernetes.
    args_override_self = true,
    name = "skiff-scheduler",
    version,
    about = "Skiff's scheduler: binds pending pods to nodes"
)]
struct Flags {
    /// kubeconfig to reach the apiserver with.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Schedule the pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    #[command(flatten)]
    leader_election: LeaderElectFlags,
    /// Address of the HTTPS /healthz and /metrics endpoint. Loopback by default (where
    /// kube-* binds all addresses): the endpoint asks no client for credentials, so reaching
    /// it from elsewhere is a choice (`--bind-address 0.0.0.0`).
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port of the HTTPS /healthz and /metrics endpoint; 0 picks a free one.
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    /// Stop looking once this percentage of nodes is feasible (0: Kubernetes' adaptive default).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    percentage_of_nodes_to_score: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    skiff_client::init();
    let flags = Flags::parse();
    let config = skiff_scheduler::Config {
        kubeconfig: flags.kubeconfig,
        scheduler_name: flags.scheduler_name,
        leader_election: flags.leader_election.election("kube-scheduler"),
        serve_addr: SocketAddr::new(flags.bind_address, flags.secure_port),
        percentage_of_nodes_to_score: flags.percentage_of_nodes_to_score,
    };
    let shutdown = skiff_client::shutdown_on_signal();
    skiff_scheduler::run(config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_metrics_listen_on_loopback_by_default() {
        let flags = Flags::parse_from(["skiff-scheduler", "--kubeconfig", "k"]);
        assert!(flags.bind_address.is_loopback(), "{}", flags.bind_address);
        assert_eq!(flags.secure_port, 10259);
    }
}
