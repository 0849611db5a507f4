//! The kubelet's configuration, the [`Context`] every part shares, and [`run`]: the node, the
//! pod manager, static pods and the server started together.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{api, dns, eviction, image_gc, manager, node, server, static_pods, sysinfo};
use anyhow::Context as _;
use skiff_client::tls_bootstrap;
use skiff_runtime::ContainerRuntime;
use tokio_util::sync::CancellationToken;

/// Which container runtime drives the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Docker,
    /// In-memory containers, for hollow nodes (scale tests) and unit tests.
    Fake,
}

/// The kubelet's configuration, from flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    /// `--bootstrap-kubeconfig`: requests the client certificate when `kubeconfig` has none
    /// valid ([`skiff_client::tls_bootstrap`]).
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// `--cert-dir`: `kubelet-client-*.pem` and `kubelet-server-*.pem` (default
    /// `<root-dir>/pki`).
    pub cert_dir: PathBuf,
    /// `--rotate-certificates`: renew the client certificate before it expires.
    pub rotate_certificates: bool,
    /// `--rotate-server-certificates`: serve with a certificate from a
    /// `kubernetes.io/kubelet-serving` request, renewed before it expires.
    pub rotate_server_certificates: bool,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub pod_cidr: Option<String>,
    pub runtime: RuntimeKind,
    /// `--container-runtime-endpoint`: the Docker engine's socket (`unix:///path`); default
    /// `$DOCKER_HOST` or `/var/run/docker.sock`.
    pub runtime_endpoint: Option<String>,
    pub root_dir: PathBuf,
    pub status_report_every: Duration,
    /// Folder of static pod manifests (`--pod-manifest-path`).
    pub pod_manifest_path: Option<PathBuf>,
    /// The kubelet server's port (10250; 0 = any free port).
    pub port: u16,
    /// `--tls-cert-file` and `--tls-private-key-file`: a serving certificate (from the cluster
    /// CA, so the apiserver can verify it) instead of a self-signed one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// `--node-lease-duration-seconds`: the heartbeat Lease's duration (renewed every quarter).
    pub node_lease_duration_seconds: i32,
    /// `--cluster-dns`, `--cluster-domain`, `--resolv-conf`.
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub resolv_conf: PathBuf,
    /// `--container-log-max-size` and `--container-log-max-files`: each container's log is
    /// rotated by the engine at that size, keeping that many files.
    pub container_log: skiff_runtime::LogRotation,
    /// `--image-gc-high-threshold`, `--image-gc-low-threshold`, `--minimum-image-ttl-duration`.
    pub image_gc: image_gc::ImageGcPolicy,
    /// How often image GC runs ([`image_gc::DEFAULT_PERIOD`]; shorter only in tests).
    pub image_gc_period: Duration,
    /// Test hook: image GC sees the image filesystem this percent full, whatever it is.
    pub image_fs_usage_override: Option<u8>,
    /// The eviction manager's thresholds and periods (`--eviction-*`).
    pub eviction: eviction::EvictionConfig,
}

/// What every part of the kubelet shares.
pub struct Context {
    /// The API client of the node agent, the manager's watch, static pods and the server.
    pub client: kube::Client,
    /// What pod workers read and write through the API (ConfigMaps, Secrets, Services, their
    /// pod's status and deletion), and the Events about pods (`source.component: kubelet`,
    /// `host`: the node).
    pub api: Arc<dyn api::PodApi>,
    /// Whom the server asks who its callers are and what they may do (the apiserver).
    pub reviews: Arc<dyn api::ReviewApi>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub root_dir: PathBuf,
    /// The Docker network pods join (the node's pod subnet).
    pub pod_network: tokio::sync::watch::Receiver<Option<String>>,
    /// The port the kubelet server listens on (reported as the Node's kubeletEndpoint).
    pub port: u16,
    /// What pods' resolv.conf is made from.
    pub dns: dns::DnsSettings,
    /// Whether secret and projected volumes get a tmpfs each (as Kubernetes'); off on the
    /// fake runtime and in unit tests, whose kubelet root is removed without unmounting.
    pub memory_volumes: bool,
}

/// The label naming the node on everything its kubelet creates in the runtime.
pub const LABEL_NODE: &str = "io.skiff.node";

/// Labels this node's kubelet puts on every sandbox and container.
pub fn node_labels(node: &str) -> std::collections::BTreeMap<String, String> {
    std::iter::once((LABEL_NODE.to_string(), node.to_string())).collect()
}

impl Context {
    /// Whether a runtime object with these labels belongs to this node's kubelet.
    pub fn owns(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        labels.get(LABEL_NODE) == Some(&self.node_name)
    }
}

/// Runs the kubelet until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config
        .image_gc
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let bootstrapped = tls_bootstrap::ClientBootstrap {
        bootstrap_kubeconfig: config.bootstrap_kubeconfig.clone(),
        kubeconfig: config.kubeconfig.clone(),
        cert_dir: config.cert_dir.clone(),
        prefix: "kubelet-client".into(),
        request: tls_bootstrap::CertRequest::kubelet_client(&config.node_name),
        wait: tls_bootstrap::DEFAULT_WAIT,
    }
    .load()
    .await
    .context("loading the kubelet's client credentials")?;
    let client = bootstrapped.client;
    match (config.rotate_certificates, bootstrapped.manager) {
        (true, Some(manager)) => {
            tokio::spawn(manager.rotate(client.clone(), shutdown.clone()));
        }
        (true, None) => tracing::warn!(
            kubeconfig = %config.kubeconfig.display(),
            "--rotate-certificates: the kubeconfig's credentials are not the cert dir's kubelet-client-current.pem; not rotating them"
        ),
        (false, _) => {}
    }
    let runtime: Arc<dyn ContainerRuntime> = match config.runtime {
        RuntimeKind::Docker => Arc::new(
            match &config.runtime_endpoint {
                Some(endpoint) => {
                    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
                    skiff_runtime::DockerRuntime::connect_socket(path)
                        .await
                        .with_context(|| {
                            format!("connecting to Docker at {path}; is dockerd running?")
                        })?
                }
                None => skiff_runtime::DockerRuntime::connect()
                    .await
                    .context("connecting to Docker at /var/run/docker.sock; is dockerd running?")?,
            }
            .with_log_rotation(config.container_log),
        ),
        RuntimeKind::Fake => Arc::new(skiff_runtime::FakeRuntime::new()),
    };
    let node_ip = match config.node_ip {
        Some(ip) => ip,
        None => sysinfo::default_route_ip().unwrap_or(IpAddr::from([127, 0, 0, 1])),
    };
    std::fs::create_dir_all(&config.root_dir)
        .with_context(|| format!("creating {}", config.root_dir.display()))?;
    // The server is bound before the Node is registered, so the Node names the real port.
    let ca = server::cluster_ca(&config.kubeconfig)?;
    let serving = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(cert), Some(key)) => Some((
            std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?,
            std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        )),
        _ => None,
    };
    // With --rotate-server-certificates the server presents whatever the serving certificate
    // manager holds; until the first one is issued (after the Node exists, for the approver
    // checks the names against it), handshakes fail, as Kubernetes' kubelet's do.
    let serving_manager = if config.rotate_server_certificates {
        Some(tls_bootstrap::CertificateManager::new(
            tls_bootstrap::CertStore::new(&config.cert_dir, "kubelet-server"),
            serving_request(&config.node_name, node_ip),
            tls_bootstrap::DEFAULT_WAIT,
        )?)
    } else {
        None
    };
    let tls = match &serving_manager {
        Some(m) => skiff_common::tls::server_config_with_resolver(m.resolver(), Some(&ca))
            .context("building the kubelet server's TLS configuration")?,
        None => server::tls_config(&config.node_name, node_ip, &ca, serving)?,
    };
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, config.port))
        .await
        .with_context(|| {
            format!(
                "binding the kubelet server on port {}; is another kubelet running? (--port 0 picks a free port)",
                config.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let (network_tx, network_rx) = tokio::sync::watch::channel(None);
    let host_resolver = match std::fs::read_to_string(&config.resolv_conf) {
        Ok(text) => dns::ResolvConf::parse(&text),
        Err(e) => {
            tracing::warn!(path = %config.resolv_conf.display(), error = %e, "cannot read the node's resolv.conf; Default-policy pods get an empty one");
            dns::ResolvConf::default()
        }
    };
    let events = skiff_client::events::Recorder::new(
        client.clone(),
        "kubelet",
        &config.node_name,
        shutdown.clone(),
    );
    let kube_api = Arc::new(api::KubeApi::new(client.clone(), events));
    let ctx = Arc::new(Context {
        api: kube_api.clone(),
        reviews: kube_api,
        client,
        runtime,
        node_name: config.node_name.clone(),
        node_ip,
        root_dir: config.root_dir.clone(),
        pod_network: network_rx,
        port,
        dns: dns::DnsSettings {
            cluster_dns: config.cluster_dns.clone(),
            cluster_domain: config.cluster_domain.clone(),
            host: host_resolver,
        },
        // Hollow nodes (the fake runtime) have no containers to keep secrets from the disk
        // for, and are many to a machine: no mounts, as Kubernetes' hollow kubelet's fake
        // mounter.
        memory_volumes: matches!(config.runtime, RuntimeKind::Docker),
    });
    let server_task = tokio::spawn(server::serve(ctx.clone(), listener, tls, shutdown.clone()));
    tracing::info!(port, "kubelet server listening");
    let (pressure_tx, pressure, evictions_tx, evictions) = eviction::channels();
    let agent = node::NodeAgent::new(
        ctx.clone(),
        config.pod_cidr.clone(),
        config.status_report_every,
        config.node_lease_duration_seconds,
        pressure.clone(),
    );
    agent.register().await.context("registering the Node")?;
    tracing::info!(node = %ctx.node_name, ip = %node_ip, "node registered");
    let agent_task = tokio::spawn(agent.run(network_tx, shutdown.clone()));
    if let Some(manager) = serving_manager {
        tokio::spawn(manager.rotate(ctx.client.clone(), shutdown.clone()));
    }
    tokio::spawn(run_image_gc(ctx.clone(), &config, shutdown.clone()));
    tokio::spawn(crate::local_path::run_cleanup(
        ctx.client.clone(),
        crate::local_path::storage_dir(&ctx.root_dir),
        shutdown.clone(),
    ));
    if let Some(dir) = config.pod_manifest_path.clone() {
        tokio::spawn(static_pods::run(ctx.clone(), dir, shutdown.clone()));
    }
    let pods = manager::pod_informer(&ctx);
    let evictor = eviction::EvictionManager::new(
        ctx.clone(),
        config.eviction.clone(),
        pods.clone(),
        pressure_tx,
        evictions_tx,
    );
    tokio::spawn(evictor.run(shutdown.clone()));
    manager::run(ctx, pods, pressure, evictions, shutdown.clone()).await;
    let _ = agent_task.await;
    let _ = server_task.await;
    Ok(())
}

/// The serving certificate a node asks for: its name and hostname (the Node's `Hostname`
/// address) as DNS names and its IP, the names the approver finds on the Node.
pub fn serving_request(node_name: &str, node_ip: IpAddr) -> tls_bootstrap::CertRequest {
    let mut dns = vec![node_name.to_string()];
    if let Ok(host) = hostname::get() {
        let host = host.to_string_lossy().into_owned();
        if !host.is_empty() && !dns.contains(&host) {
            dns.push(host);
        }
    }
    tls_bootstrap::CertRequest::kubelet_serving(node_name, dns, vec![node_ip])
}

/// Starts image GC on the engine's image filesystem; a runtime whose images take no disk (the
/// fake) has none. Image GC is off at a high threshold of 100, as in Kubernetes.
fn run_image_gc(
    ctx: Arc<Context>,
    config: &Config,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (policy, period, usage_override) = (
        config.image_gc,
        config.image_gc_period,
        config.image_fs_usage_override,
    );
    async move {
        if policy.high_threshold_percent >= 100 {
            tracing::info!("--image-gc-high-threshold is 100: image garbage collection is off");
            return;
        }
        let path = loop {
            match ctx.runtime.image_fs_path().await {
                Ok(Some(path)) => break path,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot find the image filesystem; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
            }
        };
        let real = image_gc::Statvfs { path };
        let disk: Box<dyn image_gc::DiskUsage> = match usage_override {
            Some(percent) => Box::new(image_gc::FixedUsage { real, percent }),
            None => Box::new(real),
        };
        let gc = image_gc::ImageGc::new(
            ctx.runtime.clone(),
            ctx.api.clone(),
            disk,
            &ctx.node_name,
            policy,
        );
        gc.run(period, shutdown).await;
    }
}
