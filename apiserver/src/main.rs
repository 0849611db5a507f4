//! `skiff-apiserver`: flags as kube-apiserver's; everything else lives in the library.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use skiff_apiserver::Config;
use skiff_common::parse_duration;

/// jemalloc instead of glibc's malloc: under a stream of creates, malloc and free took a fifth
/// of the apiserver's CPU (apiserver CPU per create 90 → 71 µs; idle RSS 20 → 26 MB).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    // A flag given again (SKIFF_EXTRA_ARGS after skiffadm's SKIFF_ARGS) wins, as in Kubernetes.
    args_override_self = true,
    name = "skiff-apiserver",
    version,
    about = "Skiff's apiserver: the Kubernetes API on etcd or an embedded store"
)]
struct Flags {
    /// etcd endpoints (comma-separated). Without it, state lives in an embedded store in --data-dir.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// SSL Certificate Authority file used to secure etcd communication.
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// SSL certification file used to secure etcd communication.
    #[arg(long)]
    etcd_certfile: Option<PathBuf>,
    /// SSL key file used to secure etcd communication.
    #[arg(long)]
    etcd_keyfile: Option<PathBuf>,
    /// The file with the configuration for encryption providers (an
    /// apiserver.config.k8s.io/v1 EncryptionConfiguration) for storing secrets (and any other
    /// resource it lists) encrypted in the store.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// Where the embedded store, the certificates and the admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The directory of the PKI (CA, serving certificate, service account keys); what is
    /// missing is made. Default: <data-dir>/pki.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address to advertise to the cluster (the `kubernetes` Service's endpoint).
    /// Default: --bind-address, or the first non-loopback IPv4 address when that is 0.0.0.0.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// HTTPS port (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// CIDR ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: ipnet::Ipv4Net,
    /// Range NodePorts are allocated from.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Bearer tokens, one per line: token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Authorizers to ask, in order: Node, RBAC, AlwaysAllow, AlwaysDeny.
    #[arg(long, value_delimiter = ',', default_value = "Node,RBAC")]
    authorization_mode: Vec<skiff_apiserver::auth::AuthorizationMode>,
    /// Let requests without credentials in as system:anonymous (RBAC decides what they see).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// Let bootstrap tokens (`<id>.<secret>`, held by `bootstrap-token-<id>` Secrets in
    /// kube-system) authenticate, as `kubeadm join` uses them.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    enable_bootstrap_token_auth: bool,
    /// The Pod Security level enforced in namespaces without a
    /// `pod-security.kubernetes.io/enforce` label: privileged, baseline or restricted.
    #[arg(long, default_value = "privileged")]
    pod_security_default_enforce: skiff_apiserver::admission::pod_security::Level,
    /// Admission plugins to turn on in addition to the default ones (Skiff's are all on:
    /// ServiceAccount, NodeRestriction, PodSecurity, DenyServiceExternalIPs).
    #[arg(long, value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
    /// Admission plugins to turn off. Only DenyServiceExternalIPs can be: off, Services may
    /// have spec.externalIPs (never a node's or the apiserver's address).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// Verify kubelets' serving certificates against this CA (PEM); without it any is accepted.
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Where to write the admin kubeconfig (default <data-dir>/admin.kubeconfig).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// How often to compact old revisions away: 5m, 30s, 0 to never.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    etcd_compaction_interval: std::time::Duration,
    /// How long to keep Events after their last write: 1h0m0s, 30s.
    #[arg(long, default_value = "1h0m0s", value_parser = parse_duration)]
    event_ttl: std::time::Duration,
    /// How often to scrape the kubelets for the resource metrics API (`kubectl top`, the
    /// HPA); 0 to never.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    metric_resolution: std::time::Duration,
    /// The audit policy (an audit.k8s.io/v1 Policy, YAML or JSON): which requests the audit
    /// log records, and how much of each. Without it nothing is audited.
    #[arg(long)]
    audit_policy_file: Option<PathBuf>,
    /// If set, requests the audit policy selects are logged to this file, one JSON event per
    /// line; '-' means standard out.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// The maximum size in megabytes of the audit log file before it gets rotated (0: 100).
    #[arg(long, default_value_t = 0)]
    audit_log_maxsize: u64,
    /// The maximum number of old audit log files to retain (0: all).
    #[arg(long, default_value_t = 0)]
    audit_log_maxbackup: usize,
    /// The maximum number of days to retain old audit log files, by the time in their name
    /// (0: no limit).
    #[arg(long, default_value_t = 0)]
    audit_log_maxage: u64,
    /// Events waiting to be written before new ones are dropped (counted in
    /// apiserver_audit_error_total{plugin="buffered"}).
    #[arg(long, default_value_t = skiff_apiserver::audit::DEFAULT_BUFFER_SIZE)]
    audit_log_batch_buffer_size: usize,
    /// Connections held open at once from all clients; beyond it new ones are closed at once
    /// (loopback clients may go beyond it, within their own per-address share).
    #[arg(long, default_value_t = skiff_common::ServeLimits::default().max_connections)]
    max_connections: usize,
    /// Connections held open at once from one client address (an IPv6 /64); loopback too.
    #[arg(long, default_value_t = skiff_common::ServeLimits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Write the bound address (host:port) to this file once serving.
    #[arg(long, hide = true)]
    ready_file: Option<PathBuf>,
}

fn parse_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s.split_once('-').ok_or_else(|| {
        anyhow::anyhow!("--service-node-port-range must look like 30000-32767, got {s:?}")
    })?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "--service-node-port-range: {a} is above {b}");
    Ok((a, b))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    skiff_common::init_logging();
    let flags = Flags::parse();
    let mut config = Config::new(flags.data_dir);
    config.etcd_servers = flags.etcd_servers;
    config.etcd_tls = skiff_apiserver::config::EtcdTls {
        ca_file: flags.etcd_cafile,
        cert_file: flags.etcd_certfile,
        key_file: flags.etcd_keyfile,
    };
    config.encryption_provider_config = flags.encryption_provider_config;
    config.bind_address = flags.bind_address;
    config.cert_dir = flags.cert_dir;
    config.advertise_address = flags.advertise_address;
    config.secure_port = flags.secure_port;
    config.service_cluster_ip_range = flags.service_cluster_ip_range;
    config.service_node_port_range = parse_range(&flags.service_node_port_range)?;
    config.token_auth_file = flags.token_auth_file;
    config.authorization_modes = flags.authorization_mode;
    config.anonymous_auth = flags.anonymous_auth;
    config.enable_bootstrap_token_auth = flags.enable_bootstrap_token_auth;
    config.kubelet_certificate_authority = flags.kubelet_certificate_authority;
    config
        .admission_plugins(
            &flags.enable_admission_plugins,
            &flags.disable_admission_plugins,
        )
        .map_err(anyhow::Error::msg)?;
    config.pod_security.defaults.enforce = flags.pod_security_default_enforce;
    config.write_kubeconfig = flags.write_kubeconfig;
    config.ready_file = flags.ready_file;
    config.compaction_interval = flags.etcd_compaction_interval;
    config.metric_resolution = flags.metric_resolution;
    config.serve_limits.max_connections = flags.max_connections;
    config.serve_limits.max_connections_per_ip = flags.max_connections_per_ip;
    config.event_ttl = flags.event_ttl;
    config.audit = skiff_apiserver::audit::Options {
        policy_file: flags.audit_policy_file,
        log_path: flags.audit_log_path,
        max_size_mb: flags.audit_log_maxsize,
        max_backups: flags.audit_log_maxbackup,
        max_age_days: flags.audit_log_maxage,
        buffer_size: flags.audit_log_batch_buffer_size,
    };

    let shutdown = skiff_common::shutdown_on_signal();
    skiff_apiserver::run(config, shutdown).await
}
