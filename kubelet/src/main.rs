//! `skiff-kubelet`: flags as the kubelet's; everything else lives in the library.

use std::net::IpAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::Parser;
use skiff_common::parse_duration;
use skiff_kubelet::eviction::{DEFAULT_EVICTION_HARD, EvictionConfig, parse_thresholds};
use skiff_kubelet::image_gc::ImageGcPolicy;
use skiff_kubelet::{Config, RuntimeKind};

#[derive(Parser, Debug)]
#[command(
    name = "skiff-kubelet",
    version,
    about = "Skiff's node agent",
    // A flag given again (SKIFF_EXTRA_ARGS after skiffadm's SKIFF_ARGS) wins, as in Kubernetes.
    args_override_self = true
)]
struct Flags {
    /// kubeconfig to reach the apiserver with. With --bootstrap-kubeconfig it is written by
    /// the kubelet (pointing at <cert-dir>/kubelet-client-current.pem) when it does not exist
    /// or its client certificate is no longer valid.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// kubeconfig for TLS bootstrapping (a bootstrap token): used to request the kubelet's
    /// client certificate with a CertificateSigningRequest when --kubeconfig has none valid.
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// Where the kubelet keeps the certificates it requested (default: <root-dir>/pki).
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Request a new client certificate before the current one expires (70-90% through its
    /// life) and use it without restarting.
    #[arg(long)]
    rotate_certificates: bool,
    /// Serve with a certificate from a kubernetes.io/kubelet-serving CertificateSigningRequest
    /// (rotated the same way) instead of a self-signed one.
    #[arg(long)]
    rotate_server_certificates: bool,
    /// Node name (default: the hostname).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's InternalIP (default: the address of the default route's interface).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Pod subnet for a standalone node (normally the controller-manager assigns spec.podCIDR).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Container runtime: docker, or fake for hollow nodes.
    #[arg(long, default_value = "docker")]
    runtime: String,
    /// The Docker engine's socket, `unix:///path` (default: $DOCKER_HOST or /var/run/docker.sock).
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// Where pod volumes live.
    #[arg(long, default_value = "/var/lib/skiff-kubelet")]
    root_dir: PathBuf,
    /// Seconds between node status reports when nothing changed.
    #[arg(long, default_value_t = 60)]
    node_status_report_frequency: u64,
    /// Folder of static pod manifests to run (published as mirror pods).
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// Port of the kubelet's HTTPS server (logs, exec, stats); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Serving certificate (PEM) for the HTTPS server; without it the kubelet makes a
    /// self-signed one, as Kubernetes' does.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The serving certificate's private key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Duration of the node's heartbeat Lease; the kubelet renews it every quarter of this.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(i32).range(1..))]
    node_lease_duration_seconds: i32,
    /// Cluster DNS server addresses (comma-separated) for `dnsPolicy: ClusterFirst` pods.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<String>,
    /// The cluster's DNS domain: pods search `<namespace>.svc.<domain>`, `svc.<domain>`, `<domain>`.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The node's resolver configuration, given to `dnsPolicy: Default` pods (and to
    /// `ClusterFirst` pods when there is no cluster DNS).
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The size at which a container's log is rotated (a quantity: 10Mi, 500Ki, ...).
    #[arg(long, default_value = "10Mi", value_parser = parse_size)]
    container_log_max_size: u64,
    /// How many log files (the live one included) are kept per container.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    container_log_max_files: u32,
    /// Percent of the image filesystem's use at or above which image GC runs (100: never).
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_high_threshold: u8,
    /// Percent of the image filesystem's use image GC frees space down to.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_low_threshold: u8,
    /// Minimum age of an unused image before image GC may remove it, counted from when the
    /// kubelet first saw it (1h2m3s, 2m).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    minimum_image_ttl_duration: Duration,
    /// Test hook: how often image GC runs (Kubernetes: every 5 minutes).
    #[arg(long, hide = true, default_value = "5m", value_parser = parse_duration)]
    image_gc_period: Duration,
    /// Test hook: image GC sees the image filesystem this percent full.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_fs_usage_override: Option<u8>,
    /// Hard eviction thresholds: pods are evicted at once when one is met
    /// (`<signal><<quantity or percent>`, comma-separated; an empty value: none). Signals:
    /// memory.available, nodefs.available, nodefs.inodesFree, imagefs.available,
    /// imagefs.inodesFree.
    #[arg(long, default_value = DEFAULT_EVICTION_HARD)]
    eviction_hard: String,
    /// Soft eviction thresholds, in the same form; each needs a grace period.
    #[arg(long, default_value = "")]
    eviction_soft: String,
    /// How long each soft threshold must hold before pods are evicted
    /// (`memory.available=1m30s`, comma-separated).
    #[arg(long, default_value = "")]
    eviction_soft_grace_period: String,
    /// How long the kubelet keeps a pressure condition after its signal clears.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    eviction_pressure_transition_period: Duration,
    /// The longest grace period (seconds) a soft eviction gives a pod.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    eviction_max_pod_grace_period: i64,
    /// How much more than a threshold must be available before it counts as resolved
    /// (`nodefs.available=500Mi`, comma-separated).
    #[arg(long, default_value = "")]
    eviction_minimum_reclaim: String,
    /// Test hook: how often the eviction manager measures (Kubernetes: every 10 seconds).
    #[arg(long, hide = true, default_value = "10s", value_parser = parse_duration)]
    eviction_monitoring_interval: Duration,
    /// Test hook: a file of `<signal>=<quantity or percent>` lines that replace the measured
    /// available amounts (read at every pass).
    #[arg(long, hide = true)]
    eviction_signal_overrides_file: Option<PathBuf>,
}

/// A byte size as a Kubernetes quantity (`10Mi`), as `--container-log-max-size` takes it.
fn parse_size(s: &str) -> Result<u64, String> {
    let q = skiff_api::Quantity::parse(s).map_err(|e| format!("{s:?} is not a quantity: {e}"))?;
    u64::try_from(q.value())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} must be a positive size like 10Mi"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logging, and kube's client on rustls with ring (DESIGN §9).
    skiff_client::init();
    let flags = Flags::parse();
    let runtime = match flags.runtime.as_str() {
        "docker" => RuntimeKind::Docker,
        "fake" => RuntimeKind::Fake,
        other => anyhow::bail!("--runtime must be docker or fake, not {other:?}"),
    };
    let node_name = match flags.hostname_override {
        Some(n) => n,
        None => hostname::get()?.to_string_lossy().to_lowercase(),
    };
    let thresholds = parse_thresholds(
        &flags.eviction_hard,
        &flags.eviction_soft,
        &flags.eviction_soft_grace_period,
        &flags.eviction_minimum_reclaim,
    )
    .map_err(|e| anyhow::anyhow!("invalid eviction flags: {e}"))?;
    let image_gc = ImageGcPolicy {
        high_threshold_percent: flags.image_gc_high_threshold,
        low_threshold_percent: flags.image_gc_low_threshold,
        minimum_image_ttl: flags.minimum_image_ttl_duration,
    };
    let config = Config {
        kubeconfig: flags.kubeconfig,
        bootstrap_kubeconfig: flags.bootstrap_kubeconfig,
        cert_dir: flags.cert_dir.unwrap_or_else(|| flags.root_dir.join("pki")),
        rotate_certificates: flags.rotate_certificates,
        rotate_server_certificates: flags.rotate_server_certificates,
        node_name,
        node_ip: flags.node_ip,
        pod_cidr: flags.pod_cidr,
        runtime,
        runtime_endpoint: flags.container_runtime_endpoint,
        root_dir: flags.root_dir,
        status_report_every: std::time::Duration::from_secs(flags.node_status_report_frequency),
        pod_manifest_path: flags.pod_manifest_path,
        port: flags.port,
        tls_cert_file: flags.tls_cert_file,
        tls_private_key_file: flags.tls_private_key_file,
        node_lease_duration_seconds: flags.node_lease_duration_seconds,
        cluster_dns: flags.cluster_dns,
        cluster_domain: flags.cluster_domain,
        resolv_conf: flags.resolv_conf,
        container_log: skiff_runtime::LogRotation {
            max_size_bytes: flags.container_log_max_size,
            max_files: flags.container_log_max_files,
        },
        image_gc,
        image_gc_period: flags.image_gc_period,
        image_fs_usage_override: flags.image_fs_usage_override,
        eviction: EvictionConfig {
            thresholds,
            pressure_transition_period: flags.eviction_pressure_transition_period,
            max_pod_grace_period_seconds: flags.eviction_max_pod_grace_period,
            monitoring_interval: flags.eviction_monitoring_interval,
            signal_overrides_file: flags.eviction_signal_overrides_file,
            image_fs_usage_override: flags.image_fs_usage_override,
            image_gc_policy: image_gc,
        },
    };
    let shutdown = skiff_client::shutdown_on_signal();
    skiff_kubelet::run(config, shutdown).await
}
