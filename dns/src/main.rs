//! `skiff-dns`: flags (CoreDNS's `kubernetes` and `forward` settings as flags); everything else
//! lives in the library.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    args_override_self = true,
    name = "skiff-dns",
    version,
    about = "Skiff's cluster DNS: Services and their endpoints as DNS records"
)]
struct Flags {
    /// kubeconfig to reach the apiserver with (list and watch of Services and EndpointSlices).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The cluster's domain, as the kubelet's --cluster-domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Address to serve DNS on (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Port to serve DNS on (UDP and TCP).
    #[arg(long, default_value_t = 53)]
    port: u16,
    /// Upstream resolver for names outside the cluster domain: IP or IP:port, repeatable,
    /// tried in order. Default: the nameservers of --resolv-conf.
    #[arg(long = "upstream", value_parser = skiff_dns::forward::parse_upstream)]
    upstreams: Vec<SocketAddr>,
    /// Where the default upstream resolvers are read from.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Forwarded answers kept in the cache (0: no cache).
    #[arg(long, default_value_t = 10_000)]
    cache_size: usize,
    /// Address of the HTTP /healthz, /readyz and /metrics endpoint (CoreDNS's metrics port).
    #[arg(long, default_value = "0.0.0.0:9153")]
    healthz_bind_address: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    skiff_client::init();
    let flags = Flags::parse();
    let upstreams = if flags.upstreams.is_empty() {
        let text = std::fs::read_to_string(&flags.resolv_conf).with_context(|| {
            format!(
                "reading {} for the upstream resolvers (or give --upstream)",
                flags.resolv_conf.display()
            )
        })?;
        skiff_dns::forward::resolv_conf_nameservers(&text)
    } else {
        flags.upstreams
    };
    let config = skiff_dns::Config {
        kubeconfig: flags.kubeconfig,
        cluster_domain: flags.cluster_domain,
        bind_address: flags.bind_address,
        port: flags.port,
        upstreams,
        cache_size: flags.cache_size,
        healthz_addr: flags.healthz_bind_address,
    };
    let shutdown = skiff_client::shutdown_on_signal();
    skiff_dns::run(config, shutdown).await
}
