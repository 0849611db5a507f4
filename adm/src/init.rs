//! `skiffadm init`: makes this machine a control plane, in kubeadm's phases: preflight,
//! certs and kubeconfigs, the components' command lines, starting the services, waiting for
//! the apiserver, kubeadm's RBAC and ConfigMaps, the bootstrap token, marking the node as
//! control plane; then prints how to use the cluster and the join command.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::Paths;
use crate::components::{self, Unit};
use crate::kubeadm_config::{ExternalEtcd, KubeadmConfig, Taint};
use crate::services::{self, Manager};

/// The phases `--skip-phases` may name (kubeadm's names).
pub const PHASES: [&str; 6] = [
    "preflight",
    "kubelet-start",
    "wait-control-plane",
    "mark-control-plane",
    "bootstrap-token",
    "show-join-command",
];

/// The ConfigMap in kube-system that records the cluster's configuration for joining nodes
/// (kubeadm's), readable by bootstrap tokens and nodes.
pub const KUBEADM_CONFIG: &str = "kubeadm-config";
/// Its data key with Skiff's pod network mode (kubeadm's ClusterConfiguration has none).
pub const POD_NETWORK_KEY: &str = "skiff.podNetwork";
/// The control-plane role label and taint key.
pub const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";

#[derive(clap::Args, Debug, Default)]
pub struct InitArgs {
    /// A kubeadm InitConfiguration/ClusterConfiguration file (kubeadm.k8s.io/v1beta3 or
    /// v1beta4); flags given as well win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The IP address the apiserver advertises (default: the address of the default route's
    /// interface).
    #[arg(long)]
    pub apiserver_advertise_address: Option<IpAddr>,
    /// The apiserver's port.
    #[arg(long)]
    pub apiserver_bind_port: Option<u16>,
    /// A stable address for the control plane (a DNS name or load balancer), HOST:PORT.
    #[arg(long)]
    pub control_plane_endpoint: Option<String>,
    /// The pod range; each node's /24 is cut from it.
    #[arg(long)]
    pub pod_network_cidr: Option<String>,
    /// The Service ClusterIP range.
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// This node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// External etcd endpoints (comma-separated); default: the apiserver's embedded store.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// How pods on different nodes reach each other: host-gw (one L2 segment) or vxlan.
    #[arg(long, value_parser = ["host-gw", "vxlan"])]
    pub pod_network: Option<String>,
    /// The container runtime endpoint for the kubelet (e.g. unix:///var/run/docker.sock).
    #[arg(long)]
    pub cri_socket: Option<String>,
    /// Phases to skip (comma-separated): preflight, kubelet-start, wait-control-plane,
    /// mark-control-plane, bootstrap-token, show-join-command.
    #[arg(long, value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// The bootstrap token to create ([a-z0-9]{6}.[a-z0-9]{16}; default: a random one).
    #[arg(long)]
    pub token: Option<String>,
    /// How long the token is valid; 0 never expires.
    #[arg(long, value_parser = skiff_common::parse_duration)]
    pub token_ttl: Option<Duration>,
    /// How long to wait for the apiserver and the node.
    #[arg(long, default_value = "4m", value_parser = skiff_common::parse_duration)]
    pub timeout: Duration,
}

/// What init does, after flags and the configuration file are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    /// `host:port` written into kubeconfigs and the join command.
    pub endpoint: String,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub dns_domain: String,
    pub node_name: String,
    pub etcd: Option<ExternalEtcd>,
    pub pod_network: String,
    pub cri_socket: Option<String>,
    /// `None`: kubeadm's default control-plane taint.
    pub taints: Option<Vec<Taint>>,
    pub kubelet_extra_args: BTreeMap<String, String>,
    pub token: String,
    pub token_ttl: Duration,
    pub token_description: String,
    pub skip_phases: Vec<String>,
}

/// The address of the interface the default route leaves through (a UDP `connect` picks
/// it; nothing is sent), else the first non-loopback IPv4 address.
fn default_address() -> Option<IpAddr> {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified());
    routed.or_else(|| {
        if_addrs::get_if_addrs()
            .ok()?
            .into_iter()
            .map(|i| i.ip())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
    })
}

fn host_of(endpoint: &str) -> &str {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Settings {
    /// Flags over the configuration file over kubeadm's defaults.
    pub fn resolve(args: &InitArgs, config: &KubeadmConfig) -> anyhow::Result<Settings> {
        let advertise_address = match args.apiserver_advertise_address {
            Some(ip) => ip,
            None => match &config.advertise_address {
                Some(a) => a
                    .parse()
                    .with_context(|| format!("localAPIEndpoint.advertiseAddress {a:?}"))?,
                None => default_address().ok_or_else(|| {
                    anyhow!("no address to advertise found; pass --apiserver-advertise-address")
                })?,
            },
        };
        let bind_port = args
            .apiserver_bind_port
            .or(config.bind_port)
            .unwrap_or(6443);
        let endpoint = args
            .control_plane_endpoint
            .clone()
            .or_else(|| config.control_plane_endpoint.clone())
            .map(|e| {
                if e.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    && !e.ends_with(']')
                {
                    e
                } else {
                    format!("{e}:{bind_port}")
                }
            })
            .unwrap_or_else(|| match advertise_address {
                IpAddr::V6(ip) => format!("[{ip}]:{bind_port}"),
                ip => format!("{ip}:{bind_port}"),
            });
        let cidr = |flag: &Option<String>, file: &Option<String>, default: &str, what: &str| {
            let value = flag
                .clone()
                .or_else(|| file.clone())
                .unwrap_or(default.into());
            value
                .parse::<ipnet::Ipv4Net>()
                .map(|n| n.trunc().to_string())
                .map_err(|_| anyhow!("{what} {value:?} is not an IPv4 CIDR"))
        };
        let (token, ttl, description) = {
            let t = config.bootstrap_token.clone().unwrap_or_default();
            (
                args.token
                    .clone()
                    .or(t.token)
                    .unwrap_or_else(crate::token::generate),
                args.token_ttl
                    .or(t.ttl)
                    .unwrap_or(Duration::from_secs(24 * 3600)),
                t.description
                    .unwrap_or_else(|| crate::token::INIT_DESCRIPTION.to_string()),
            )
        };
        crate::token::parse(&token)?;
        let etcd = if args.etcd_servers.is_empty() {
            config.external_etcd.clone()
        } else {
            let mut e = config.external_etcd.clone().unwrap_or_default();
            e.endpoints = args.etcd_servers.clone();
            Some(e)
        };
        let node_name = match args.node_name.clone().or_else(|| config.node_name.clone()) {
            Some(n) => n,
            None => hostname::get()
                .context("reading the hostname; pass --node-name")?
                .to_string_lossy()
                .to_lowercase(),
        };
        for phase in &args.skip_phases {
            if !PHASES.contains(&phase.as_str()) {
                bail!(
                    "unknown phase {phase:?} in --skip-phases; the phases are {}",
                    PHASES.join(", ")
                );
            }
        }
        Ok(Settings {
            advertise_address,
            bind_port,
            endpoint,
            pod_cidr: cidr(
                &args.pod_network_cidr,
                &config.pod_subnet,
                "10.244.0.0/16",
                "--pod-network-cidr",
            )?,
            service_cidr: cidr(
                &args.service_cidr,
                &config.service_subnet,
                "10.96.0.0/12",
                "--service-cidr",
            )?,
            dns_domain: config
                .dns_domain
                .clone()
                .unwrap_or_else(|| "cluster.local".into()),
            node_name,
            etcd,
            pod_network: args.pod_network.clone().unwrap_or_else(|| "host-gw".into()),
            cri_socket: args
                .cri_socket
                .clone()
                .or_else(|| config.cri_socket.clone()),
            taints: config.taints.clone(),
            kubelet_extra_args: config.kubelet_extra_args.clone(),
            token,
            token_ttl: ttl,
            token_description: description,
            skip_phases: args.skip_phases.clone(),
        })
    }

    fn skipped(&self, phase: &str) -> bool {
        self.skip_phases.iter().any(|p| p == phase)
    }

    pub fn server(&self) -> String {
        format!("https://{}", self.endpoint)
    }

    fn first_service_ip(&self) -> String {
        let net: ipnet::Ipv4Net = self.service_cidr.parse().expect("checked in resolve");
        std::net::Ipv4Addr::from(u32::from(net.network()) + 1).to_string()
    }

    fn units(&self) -> Vec<Unit> {
        if self.skipped("kubelet-start") {
            vec![Unit::Apiserver, Unit::Scheduler, Unit::ControllerManager]
        } else {
            Unit::ALL.to_vec()
        }
    }

    pub fn node(&self, bootstrap: bool) -> components::Node {
        components::Node {
            name: self.node_name.clone(),
            node_ip: Some(self.advertise_address),
            cri_socket: self.cri_socket.clone(),
            pod_cidr: self.pod_cidr.clone(),
            service_cidr: self.service_cidr.clone(),
            dns_domain: self.dns_domain.clone(),
            pod_network: self.pod_network.clone(),
            bootstrap,
            kubelet_extra_args: self.kubelet_extra_args.clone(),
        }
    }
}

/// Whether the root user runs this.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// kubeadm's preflight: everything wrong at once, then one error.
fn preflight(p: &Paths, s: &Settings) -> anyhow::Result<()> {
    println!("[preflight] Running pre-flight checks");
    let mut errors = Vec::new();
    if !is_root() {
        errors.push("[ERROR IsPrivilegedUser]: user is not running as root".to_string());
    }
    for conf in ["admin", "super-admin", "kubelet"] {
        let path = p.conf(conf);
        if path.exists() {
            errors.push(format!(
                "[ERROR FileAvailable-{}]: {} already exists",
                path.display().to_string().replace('/', "-"),
                path.display()
            ));
        }
    }
    let mut ports = vec![
        (s.bind_port, "the apiserver"),
        (10257, "the controller-manager"),
        (10259, "the scheduler"),
    ];
    if !s.skipped("kubelet-start") {
        ports.push((10250, "the kubelet"));
    }
    for (port, who) in ports {
        if !port_free(port) {
            errors.push(format!(
                "[ERROR Port-{port}]: Port {port} is in use (needed by {who})"
            ));
        }
    }
    if let Err(e) = services::check(p, &s.units()) {
        errors.push(format!("[ERROR Services]: {e:#}"));
    }
    if !errors.is_empty() {
        bail!(
            "[preflight] Some fatal errors occurred:\n\t{}\n[preflight] If you know what you are doing, you can make a check non-fatal with `--skip-phases=preflight`; `skiffadm reset` removes what a previous init or join left",
            errors.join("\n\t")
        );
    }
    Ok(())
}

/// Runs `skiffadm init`.
pub async fn run(p: &Paths, args: &InitArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            KubeadmConfig::parse(&text)?
        }
        None => KubeadmConfig::default(),
    };
    for w in &config.warnings {
        eprintln!("W: {w}");
    }
    let s = Settings::resolve(args, &config)?;
    if !s.skipped("preflight") {
        preflight(p, &s)?;
    }

    println!(
        "[certs] Using certificateDir folder {:?}",
        p.pki().display().to_string()
    );
    let sans = crate::certs::apiserver_sans(
        &s.advertise_address.to_string(),
        Some(host_of(&s.endpoint)),
        &s.node_name,
        &s.first_service_ip(),
        &s.dns_domain,
    );
    println!("[certs] apiserver serving cert is signed for DNS names and IPs {sans:?}");
    let ca = crate::certs::create(p, &sans, &s.server(), &s.node_name)?;
    println!(
        "[kubeconfig] Wrote admin.conf, super-admin.conf, scheduler.conf, controller-manager.conf, kubelet.conf and proxy.conf in {:?}",
        p.etc().display().to_string()
    );

    let cp = components::ControlPlane {
        advertise_address: s.advertise_address,
        bind_port: s.bind_port,
        service_cidr: s.service_cidr.clone(),
        pod_cidr: s.pod_cidr.clone(),
        etcd: s.etcd.clone(),
    };
    let node = s.node(false);
    for unit in s.units() {
        let line = match unit {
            Unit::Apiserver => components::apiserver(p, &cp),
            Unit::Scheduler => components::scheduler(p),
            Unit::ControllerManager => components::controller_manager(p, &cp),
            Unit::Kubelet => components::kubelet(p, &node),
            Unit::Proxy => components::proxy(p, &node),
        };
        services::write_env(p, unit, &line)?;
    }
    println!(
        "[control-plane] Wrote the command lines to {}/skiff-*.env",
        p.etc().display()
    );
    let manager = services::start(p, &s.units())?;
    println!(
        "[control-plane] Started {}",
        s.units()
            .iter()
            .map(|u| u.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let super_admin = p.conf("super-admin");
    if !s.skipped("wait-control-plane") {
        println!(
            "[wait-control-plane] Waiting for the apiserver to be ready at {} (up to {:?})",
            s.server(),
            args.timeout
        );
        wait_apiserver(p, &s, manager, args.timeout).await?;
    }
    let client = skiff_client::client(&super_admin).await?;
    upload_config(&client, &s, &ca.cert_pem).await?;
    if !s.skipped("bootstrap-token") {
        println!("[bootstrap-token] Using token: {}", s.token);
        create_token(&client, &s.token, s.token_ttl, Some(&s.token_description)).await?;
        bootstrap_rbac(&client).await?;
        wait_signed(&client, &s.token, args.timeout, || {
            manager.log_hint(p, Unit::ControllerManager)
        })
        .await?;
        println!(
            "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs, auto-approve them, and rotate node client certificates"
        );
    }
    if !s.skipped("kubelet-start") {
        let nodes: Api<Node> = Api::all(client.clone());
        if !s.skipped("mark-control-plane") {
            println!(
                "[mark-control-plane] Marking the node {} as control-plane by adding the label \"{CONTROL_PLANE_ROLE}=\" and the taints {:?}",
                s.node_name,
                taints(&s)
                    .iter()
                    .map(|t| format!("{}:{}", t.key, t.effect))
                    .collect::<Vec<_>>()
            );
            mark_control_plane(&nodes, &s, manager, p, args.timeout).await?;
        }
        wait_node_ready(&nodes, &s.node_name, args.timeout, || {
            format!(
                "see the kubelet's log: {}",
                manager.log_hint(p, Unit::Kubelet)
            )
        })
        .await?;
    }

    let hash = crate::discovery::ca_hash(&ca.cert_pem)?;
    println!("\nYour Kubernetes control-plane has initialized successfully!\n");
    println!("To start using your cluster, you need to run the following as a regular user:\n");
    println!("  mkdir -p $HOME/.kube");
    println!(
        "  sudo cp -i {} $HOME/.kube/config",
        p.conf("admin").display()
    );
    println!("  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n");
    println!("Alternatively, if you are the root user, you can run:\n");
    println!("  export KUBECONFIG={}\n", p.conf("admin").display());
    println!(
        "The pod network ({}) is run by skiff-proxy on every node: no network add-on is needed.\n",
        s.pod_network
    );
    if !s.skipped("show-join-command") && !s.skipped("bootstrap-token") {
        println!(
            "Then you can join any number of worker nodes by running the following on each as root:\n"
        );
        println!("{}", join_command(&s.endpoint, &s.token, &hash));
    }
    Ok(())
}

/// The join command line (one line, for scripts to take as it is).
pub fn join_command(endpoint: &str, token: &str, hash: &str) -> String {
    format!("skiffadm join {endpoint} --token {token} --discovery-token-ca-cert-hash {hash}")
}

/// Waits for the apiserver's `/readyz` (with super-admin.conf's client certificate).
async fn wait_apiserver(
    p: &Paths,
    s: &Settings,
    manager: Manager,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = skiff_client::client(&p.conf("super-admin")).await?;
    let deadline = Instant::now() + timeout;
    let started = Instant::now();
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        let last = match client.request_text(req).await {
            Ok(body) if body.trim() == "ok" => break,
            Ok(body) => body,
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "[wait-control-plane] the apiserver at {} was not ready after {:?} (last: {last}); see its log: {}",
                s.server(),
                timeout,
                manager.log_hint(p, Unit::Apiserver)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "[wait-control-plane] The apiserver is ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(String::from),
        ..Default::default()
    }
}

/// Creates `obj`, or replaces what is there (a re-run after a failed init).
async fn put<K>(api: &Api<K>, obj: &K) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply("skiffadm").force();
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.patch(&name, &params, &Patch::Apply(obj))
                .await
                .with_context(|| format!("updating {name}"))?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating {name}")),
    }
}

fn group(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "Group".into(),
        name: name.into(),
        ..Default::default()
    }
}

fn cluster_binding(name: &str, role: &str, subject: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![group(subject)]),
    }
}

/// The cluster-admins binding, `cluster-info` (and who may read it), and `kubeadm-config`
/// (and who may read it: bootstrap tokens and nodes, as kubeadm's
/// `kubeadm:nodes-kubeadm-config`).
async fn upload_config(client: &kube::Client, s: &Settings, ca_pem: &str) -> anyhow::Result<()> {
    use skiff_api::bootstrap_token as bt;
    put(
        &Api::all(client.clone()),
        &cluster_binding(
            crate::certs::CLUSTER_ADMINS_GROUP,
            "cluster-admin",
            crate::certs::CLUSTER_ADMINS_GROUP,
        ),
    )
    .await?;
    let public: Api<ConfigMap> = Api::namespaced(client.clone(), bt::CLUSTER_INFO_NAMESPACE);
    let kubeconfig = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(ca_pem)
        },
        s.server()
    );
    put(
        &public,
        &ConfigMap {
            metadata: meta(bt::CLUSTER_INFO, Some(bt::CLUSTER_INFO_NAMESPACE)),
            data: Some(BTreeMap::from([(
                bt::KUBECONFIG_KEY.to_string(),
                kubeconfig,
            )])),
            ..Default::default()
        },
    )
    .await?;
    let (role, binding) = bt::cluster_info_rbac();
    put(
        &Api::namespaced(client.clone(), bt::CLUSTER_INFO_NAMESPACE),
        &role,
    )
    .await?;
    put(
        &Api::namespaced(client.clone(), bt::CLUSTER_INFO_NAMESPACE),
        &binding,
    )
    .await?;
    println!(
        "[upload-config] Created the \"cluster-info\" ConfigMap in the \"kube-public\" namespace, readable anonymously"
    );

    let cluster_configuration = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: {}\nnetworking:\n  dnsDomain: {}\n  podSubnet: {}\n  serviceSubnet: {}\n",
        s.endpoint, s.dns_domain, s.pod_cidr, s.service_cidr
    );
    put(
        &Api::namespaced(client.clone(), "kube-system"),
        &ConfigMap {
            metadata: meta(KUBEADM_CONFIG, Some("kube-system")),
            data: Some(BTreeMap::from([
                ("ClusterConfiguration".to_string(), cluster_configuration),
                (POD_NETWORK_KEY.to_string(), s.pod_network.clone()),
            ])),
            ..Default::default()
        },
    )
    .await?;
    let name = "kubeadm:nodes-kubeadm-config";
    put(
        &Api::namespaced(client.clone(), "kube-system"),
        &Role {
            metadata: meta(name, Some("kube-system")),
            rules: Some(vec![k8s_openapi::api::rbac::v1::PolicyRule {
                verbs: vec!["get".into()],
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![KUBEADM_CONFIG.into()]),
                ..Default::default()
            }]),
        },
    )
    .await?;
    put(
        &Api::namespaced(client.clone(), "kube-system"),
        &RoleBinding {
            metadata: meta(name, Some("kube-system")),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: name.into(),
            },
            subjects: Some(vec![group(crate::token::NODE_GROUP), group("system:nodes")]),
        },
    )
    .await?;
    println!(
        "[upload-config] Stored the configuration used in ConfigMap \"{KUBEADM_CONFIG}\" in the \"kube-system\" Namespace"
    );
    Ok(())
}

/// kubeadm's three bindings for TLS bootstrapping: token users may post CSRs, their node
/// client CSRs are approved, and nodes' renewals of their own certificates are approved.
async fn bootstrap_rbac(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    for (name, role, subject) in [
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            crate::token::NODE_GROUP,
        ),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            crate::token::NODE_GROUP,
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        put(&api, &cluster_binding(name, role, subject)).await?;
    }
    Ok(())
}

/// Creates the token's Secret in kube-system.
pub async fn create_token(
    client: &kube::Client,
    token: &str,
    ttl: Duration,
    description: Option<&str>,
) -> anyhow::Result<()> {
    let secret = crate::token::secret(token, ttl, description, jiff::Timestamp::now())?;
    let api: Api<Secret> = Api::namespaced(client.clone(), skiff_api::bootstrap_token::NAMESPACE);
    api.create(&PostParams::default(), &secret)
        .await
        .context("creating the bootstrap token")?;
    Ok(())
}

/// Waits until the controller-manager's bootstrapsigner has signed `cluster-info` for
/// `token`, so that the join command printed next works at once.
async fn wait_signed(
    client: &kube::Client,
    token: &str,
    timeout: Duration,
    log: impl Fn() -> String,
) -> anyhow::Result<()> {
    use skiff_api::bootstrap_token as bt;
    let (id, _) = crate::token::parse(token)?;
    let key = format!("{}{id}", bt::JWS_KEY_PREFIX);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), bt::CLUSTER_INFO_NAMESPACE);
    let deadline = Instant::now() + timeout;
    loop {
        let cm = api.get_opt(bt::CLUSTER_INFO).await.ok().flatten();
        if cm
            .and_then(|c| c.data)
            .is_some_and(|d| d.contains_key(&key))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "[bootstrap-token] cluster-info was not signed for the token within {timeout:?}: is the controller-manager's bootstrapsigner running? See its log: {}",
                log()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn taints(s: &Settings) -> Vec<Taint> {
    s.taints.clone().unwrap_or_else(|| {
        vec![Taint {
            key: CONTROL_PLANE_ROLE.into(),
            value: None,
            effect: "NoSchedule".into(),
        }]
    })
}

/// Waits for the node to register, then adds the control-plane label and the taints.
async fn mark_control_plane(
    nodes: &Api<Node>,
    s: &Settings,
    manager: Manager,
    p: &Paths,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let node = loop {
        if let Some(n) = nodes.get_opt(&s.node_name).await? {
            break n;
        }
        if Instant::now() > deadline {
            bail!(
                "[mark-control-plane] the node {} did not register within {timeout:?}; see the kubelet's log: {}",
                s.node_name,
                manager.log_hint(p, Unit::Kubelet)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut list: Vec<serde_json::Value> = node
        .spec
        .and_then(|sp| sp.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| serde_json::to_value(t).unwrap_or_default())
        .collect();
    for t in taints(s) {
        if !list
            .iter()
            .any(|x| x["key"] == t.key.as_str() && x["effect"] == t.effect.as_str())
        {
            let mut v = serde_json::json!({"key": t.key, "effect": t.effect});
            if let Some(value) = t.value {
                v["value"] = value.into();
            }
            list.push(v);
        }
    }
    let patch = serde_json::json!({
        "metadata": {"labels": {CONTROL_PLANE_ROLE: ""}},
        "spec": {"taints": list},
    });
    nodes
        .patch(&s.node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("labelling and tainting the control-plane node")?;
    Ok(())
}

/// Waits until the Node's Ready condition is True.
pub async fn wait_node_ready(
    nodes: &Api<Node>,
    name: &str,
    timeout: Duration,
    hint: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = nodes.get_opt(name).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the node {name} was not Ready after {timeout:?}; {}",
                hint()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_kubeadms_defaults_fill_the_rest() {
        let config = KubeadmConfig::parse(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: cp.example\nnetworking:\n  podSubnet: 10.200.0.0/16\n",
        )
        .unwrap();
        let args = InitArgs {
            apiserver_advertise_address: Some("10.0.0.1".parse().unwrap()),
            node_name: Some("cp1".into()),
            pod_network_cidr: Some("10.201.0.0/16".into()),
            token: Some("abcdef.0123456789abcdef".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&args, &config).unwrap();
        assert_eq!(s.endpoint, "cp.example:6443");
        assert_eq!(s.pod_cidr, "10.201.0.0/16");
        assert_eq!(s.service_cidr, "10.96.0.0/12");
        assert_eq!(s.first_service_ip(), "10.96.0.1");
        assert_eq!(s.token_ttl, Duration::from_secs(86400));
        assert_eq!(s.pod_network, "host-gw");
        let plain = Settings::resolve(&args, &KubeadmConfig::default()).unwrap();
        assert_eq!(plain.endpoint, "10.0.0.1:6443");
        let bad = InitArgs {
            skip_phases: vec!["nope".into()],
            ..args
        };
        assert!(Settings::resolve(&bad, &KubeadmConfig::default()).is_err());
        assert_eq!(
            join_command("10.0.0.1:6443", "a.b", "sha256:x"),
            "skiffadm join 10.0.0.1:6443 --token a.b --discovery-token-ca-cert-hash sha256:x"
        );
    }
}
