//! `skiff-proxy`: flags as kube-proxy's; everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use skiff_common::parse_duration;

#[derive(Parser, Debug)]
#[command(
    // A flag given again (SKIFF_EXTRA_ARGS after skiffadm's SKIFF_ARGS) wins, as in Kubernetes.
    args_override_self = true,
    name = "skiff-proxy",
    version,
    about = "Skiff's proxy: Services as iptables rules"
)]
struct Flags {
    /// kubeconfig to reach the apiserver with (not needed with --cleanup). With
    /// --bootstrap-kubeconfig it is written by the proxy (pointing at
    /// <cert-dir>/kube-proxy-client-current.pem) when it does not exist or its client
    /// certificate is no longer valid.
    #[arg(long, required_unless_present = "cleanup")]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig for TLS bootstrapping (a bootstrap token): used to request the proxy's
    /// client certificate (system:kube-proxy) when --kubeconfig has none valid. A certificate
    /// from --cert-dir is renewed 70-90% through its life.
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// Where the proxy keeps the certificate it requested.
    #[arg(long, default_value = "/var/lib/skiff/proxy/pki")]
    cert_dir: PathBuf,
    /// This node's name (default: the hostname); its own pod CIDR gets no route.
    #[arg(long)]
    hostname_override: Option<String>,
    /// Traffic to a ClusterIP from outside this range is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<ipnet::Ipv4Net>,
    /// The range ClusterIPs come from (as the apiserver's flag). Optional: with it (and
    /// --cluster-cidr) one rule marks outside traffic to all ClusterIPs instead of one per port.
    #[arg(long)]
    service_cluster_ip_range: Option<ipnet::Ipv4Net>,
    /// Changes are applied at most this often (bursts coalesce).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    min_sync_period: Duration,
    /// Full resync even without changes.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sync_period: Duration,
    /// Address of the HTTP /healthz and /metrics endpoint.
    #[arg(long, default_value = "0.0.0.0:10256")]
    healthz_bind_address: SocketAddr,
    /// How pods reach other nodes' pods: host-gw (a route to each node's pod CIDR via its
    /// InternalIP; the nodes share an L2 segment) or vxlan (an overlay on UDP port 8472
    /// through the `skiff.1` device; the nodes need only reach each other over IPv4).
    #[arg(long, value_enum, default_value_t)]
    pod_network: skiff_proxy::PodNetwork,
    /// Remove every rule and chain Skiff installed, and the VXLAN device, then exit.
    #[arg(long)]
    cleanup: bool,
}

/// One worker thread: the proxy's work is one sync loop and three watches, and with a worker
/// per core glibc gave each thread its own arena for a full sync's transient buffers (8 MB
/// more resident at 10,000 Services).
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    skiff_client::init();
    let flags = Flags::parse();
    if flags.cleanup {
        skiff_proxy::iptables::Iptables::new().cleanup()?;
        println!("skiff-proxy: removed Skiff's iptables rules and chains");
        if skiff_proxy::vxlan::delete_device()? {
            println!(
                "skiff-proxy: removed the VXLAN device {}",
                skiff_proxy::vxlan::DEVICE
            );
        }
        return Ok(());
    }
    let node_name = match flags.hostname_override {
        Some(n) => n,
        None => hostname::get()?.to_string_lossy().to_lowercase(),
    };
    let config = skiff_proxy::Config {
        kubeconfig: flags.kubeconfig.unwrap_or_default(),
        bootstrap_kubeconfig: flags.bootstrap_kubeconfig,
        cert_dir: flags.cert_dir,
        node_name,
        cluster_cidr: flags.cluster_cidr,
        service_cidr: flags.service_cluster_ip_range,
        min_sync_period: flags.min_sync_period,
        sync_period: flags.sync_period,
        healthz_addr: flags.healthz_bind_address,
        pod_network: flags.pod_network,
    };
    let shutdown = skiff_client::shutdown_on_signal();
    skiff_proxy::run(config, shutdown).await
}
