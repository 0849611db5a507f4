//! `skiffctl cluster`: local multi-node clusters on one Linux machine, as kind makes them. Each
//! node is a network namespace with a veth on a host bridge, its own `dockerd` (own data root,
//! exec root and socket), its own `skiff-kubelet` and `skiff-proxy`; the control plane
//! (apiserver, scheduler, controller-manager, and etcd with `--etcd`) runs beside them on the
//! host. Names, paths and addresses come from [`layout`]; everything `create` starts logs to a
//! file under the cluster's data dir.

mod host;
mod identity;
mod kubeconfig;
pub mod layout;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;

use host::Spawn;
use layout::{Layout, NodeLayout, State};
use skiff_common::pki;

/// The pod range; each node's /24 is cut from it by the controller-manager.
const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The apiserver's default ClusterIP range, told to the proxies.
const SERVICE_CIDR: &str = "10.96.0.0/12";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a local cluster and make its context current.
    Create {
        /// Cluster name.
        #[arg(long, default_value = "skiff")]
        name: String,
        /// Number of nodes.
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        /// Run a real etcd for the control plane instead of the embedded store.
        #[arg(long)]
        etcd: bool,
        /// Write the kubeconfig here (default: merged into $KUBECONFIG or ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// How long a node may miss heartbeats before it is NotReady (the kubelets renew
        /// their Lease every quarter of it).
        #[arg(long, default_value = "40s", value_parser = skiff_common::parse_duration)]
        node_monitor_grace_period: Duration,
        /// Keep what was made if creation fails (to read its logs).
        #[arg(long)]
        retain: bool,
        /// An extra flag for skiff-apiserver, e.g. `--kube-apiserver-arg=--metric-resolution=5s`
        /// (repeatable).
        #[arg(long = "kube-apiserver-arg", allow_hyphen_values = true)]
        apiserver_args: Vec<String>,
        /// An extra flag for skiff-controller-manager, e.g.
        /// `--kube-controller-manager-arg=--horizontal-pod-autoscaler-sync-period=5s`
        /// (repeatable).
        #[arg(long = "kube-controller-manager-arg", allow_hyphen_values = true)]
        controller_manager_args: Vec<String>,
    },
    /// Delete a cluster: processes, namespaces, bridge, iptables rules, data, kubeconfig entry.
    Delete {
        #[arg(long, default_value = "skiff")]
        name: String,
        /// The kubeconfig to remove the context from (default: where create wrote it).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// List the clusters on this machine.
    List,
    /// Copy images from the host's Docker engine into every node's engine.
    LoadImage {
        #[arg(long, default_value = "skiff")]
        name: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Stop a node's kubelet and proxy (its containers keep running), for failure drills.
    StopNode {
        #[arg(long, default_value = "skiff")]
        name: String,
        node: String,
    },
    /// Start a stopped node's kubelet and proxy again.
    StartNode {
        #[arg(long, default_value = "skiff")]
        name: String,
        node: String,
    },
    /// Show component logs: the control plane's, or one node's (dockerd, kubelet, proxy).
    Logs {
        #[arg(long, default_value = "skiff")]
        name: String,
        node: Option<String>,
    },
}

/// The kubeconfig file commands write to (see [`kubeconfig::target`]).
pub fn kubeconfig_target(explicit: Option<&Path>) -> PathBuf {
    kubeconfig::target(explicit)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = layout::root();
    match args.command {
        Cmd::Create {
            name,
            nodes,
            etcd,
            kubeconfig,
            node_monitor_grace_period,
            retain,
            apiserver_args,
            controller_manager_args,
        } => create(
            &root,
            &CreateOptions {
                name,
                nodes,
                etcd,
                kubeconfig,
                grace: node_monitor_grace_period,
                retain,
                apiserver_args,
                controller_manager_args,
            },
        ),
        Cmd::Delete { name, kubeconfig } => delete(&root, &name, kubeconfig.as_deref()),
        Cmd::List => list(&root),
        Cmd::LoadImage { name, images } => load_image(&root, &name, &images),
        Cmd::StopNode { name, node } => stop_node(&root, &name, &node),
        Cmd::StartNode { name, node } => start_node(&root, &name, &node),
        Cmd::Logs { name, node } => logs(&root, &name, node.as_deref()),
    }
}

struct CreateOptions {
    name: String,
    nodes: u32,
    etcd: bool,
    kubeconfig: Option<PathBuf>,
    grace: Duration,
    retain: bool,
    apiserver_args: Vec<String>,
    controller_manager_args: Vec<String>,
}

/// The programs a cluster runs: Skiff's beside `skiffctl` (else on `PATH`), Docker's and
/// etcd's on `PATH`.
struct Binaries {
    apiserver: PathBuf,
    scheduler: PathBuf,
    controller_manager: PathBuf,
    kubelet: PathBuf,
    proxy: PathBuf,
    dockerd: PathBuf,
    etcd: Option<PathBuf>,
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

impl Binaries {
    fn find(etcd: bool) -> anyhow::Result<Binaries> {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let skiff = |name: &str| -> anyhow::Result<PathBuf> {
            here.as_ref()
                .map(|d| d.join(name))
                .filter(|p| p.is_file())
                .or_else(|| on_path(name))
                .ok_or_else(|| {
                    anyhow!("{name} not found beside skiffctl or on PATH; build it with `cargo build --release`")
                })
        };
        let system = |name: &str, package: &str| -> anyhow::Result<PathBuf> {
            on_path(name).ok_or_else(|| anyhow!("{name} not found; install {package}"))
        };
        for (tool, package) in [
            ("ip", "iproute2"),
            ("iptables", "iptables"),
            ("nsenter", "util-linux"),
            ("docker", "docker.io"),
        ] {
            system(tool, package)?;
        }
        Ok(Binaries {
            apiserver: skiff("skiff-apiserver")?,
            scheduler: skiff("skiff-scheduler")?,
            controller_manager: skiff("skiff-controller-manager")?,
            kubelet: skiff("skiff-kubelet")?,
            proxy: skiff("skiff-proxy")?,
            dockerd: system("dockerd", "docker.io")?,
            etcd: if etcd {
                Some(system("etcd", "etcd-server")?)
            } else {
                None
            },
        })
    }
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !host::is_root() {
        bail!("{what} needs root (network namespaces, a bridge and iptables rules)");
    }
    Ok(())
}

fn load_state(root: &Path, name: &str) -> anyhow::Result<State> {
    layout::validate_name(name).map_err(|e| anyhow!(e))?;
    State::load(root, name)?.ok_or_else(|| {
        anyhow!("no cluster named {name:?}; `skiffctl cluster list` shows the clusters")
    })
}

fn create(root: &Path, opts: &CreateOptions) -> anyhow::Result<()> {
    layout::validate_name(&opts.name).map_err(|e| anyhow!(e))?;
    if opts.nodes == 0 || opts.nodes > layout::MAX_NODES {
        bail!("--nodes must be between 1 and {}", layout::MAX_NODES);
    }
    require_root("creating a cluster")?;
    if State::load(root, &opts.name)?.is_some() {
        bail!(
            "a cluster named {:?} exists; delete it first with `skiffctl cluster delete --name {}`",
            opts.name,
            opts.name
        );
    }
    let bins = Binaries::find(opts.etcd)?;
    // Two creates at once must not pick the same index: choosing it and recording the state
    // happen under a lock on the clusters' root.
    pki::create_private_dir(root).with_context(|| format!("creating {}", root.display()))?;
    let lock = std::fs::File::create(root.join(".lock"))?;
    lock.lock()?;
    if State::load(root, &opts.name)?.is_some() {
        bail!("a cluster named {:?} is being created", opts.name);
    }
    let used: Vec<u8> = State::all(root).iter().map(|s| s.index).collect();
    let index = layout::free_index(&used, &host::routed_subnets())
        .ok_or_else(|| anyhow!("no free 172.28.K.0/24 subnet left for another cluster"))?;
    let mut state = State {
        name: opts.name.clone(),
        index,
        nodes: opts.nodes,
        etcd: opts.etcd,
        server: None,
        kubeconfig: None,
        context: None,
        grace_seconds: opts.grace.as_secs().max(4),
    };
    // Recorded before anything is made, so that `delete` can undo a crashed create.
    state.save(root)?;
    drop(lock);
    let l = state.layout(root);
    let started = Instant::now();
    println!(
        "Creating cluster {:?} ({} node{}, {} store) ...",
        opts.name,
        opts.nodes,
        if opts.nodes == 1 { "" } else { "s" },
        if opts.etcd { "etcd" } else { "embedded" }
    );
    if let Err(e) = build(&l, &mut state, opts, &bins) {
        if opts.retain {
            eprintln!(
                "creating the cluster failed; kept as asked (logs in {}); remove it with `skiffctl cluster delete --name {}`",
                l.log_dir().display(),
                opts.name
            );
        } else {
            eprintln!("creating the cluster failed; removing what was made");
            let _ = teardown(root, &opts.name, Some(&state), None);
        }
        return Err(e);
    }
    let context = format!("skiff-{}", opts.name);
    let target = kubeconfig::target(opts.kubeconfig.as_deref());
    kubeconfig::merge(&l.admin_kubeconfig(), &target, &context)?;
    state.kubeconfig = Some(target.clone());
    state.context = Some(context.clone());
    state.save(root)?;
    println!(
        " ✓ {} node{} Ready in {:.1}s",
        opts.nodes,
        if opts.nodes == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    );
    println!(
        "Set kubectl context to \"{context}\" in {}\n\nYou can now use your cluster with:\n\n  kubectl cluster-info --context {context}{}\n  kubectl get nodes -o wide\n\nImages come from the host's Docker engine: `skiffctl cluster load-image --name {} IMAGE`.\nLogs: `skiffctl cluster logs --name {} [NODE]`. Delete it with `skiffctl cluster delete --name {}`.",
        target.display(),
        if opts.kubeconfig.is_some() {
            format!(" --kubeconfig {}", target.display())
        } else {
            String::new()
        },
        opts.name,
        opts.name,
        opts.name
    );
    Ok(())
}

fn build(
    l: &Layout,
    state: &mut State,
    opts: &CreateOptions,
    bins: &Binaries,
) -> anyhow::Result<()> {
    // Private from the start: the cluster's folder holds keys, kubeconfigs and the store.
    for dir in [l.log_dir(), l.pid_dir(), l.apiserver_dir(), l.run_dir()] {
        pki::create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    host_network(l)?;
    let nodes: Vec<NodeLayout> = (1..=opts.nodes).map(|i| l.node(i)).collect();
    for node in &nodes {
        node_network(l, node)?;
    }

    let mut apiserver_args = Vec::new();
    if let Some(etcd) = &bins.etcd {
        apiserver_args.extend(start_etcd(l, etcd)?);
    }
    if !opts
        .apiserver_args
        .iter()
        .any(|a| a.starts_with("--encryption-provider-config"))
    {
        apiserver_args.push("--encryption-provider-config".into());
        apiserver_args.push(encryption_config(l)?.display().to_string());
    }
    apiserver_args.extend(opts.apiserver_args.iter().cloned());
    state.server = Some(start_apiserver(l, bins, &apiserver_args)?);
    state.save(&l.root)?;
    let server = state.server.clone().unwrap_or_default();
    host_input(l, &server)?;
    // Each talks to the apiserver as itself and serves health on loopback.
    let scheduler_kc = identity::kubeconfig(l, &server, &identity::SCHEDULER)?
        .display()
        .to_string();
    let cm_kc = identity::kubeconfig(l, &server, &identity::CONTROLLER_MANAGER)?
        .display()
        .to_string();
    let local = ["--bind-address", "127.0.0.1", "--secure-port", "0"];
    let mut scheduler_args = vec!["--kubeconfig", scheduler_kc.as_str()];
    scheduler_args.extend(local);
    spawn(l, "scheduler", None, &bins.scheduler, &scheduler_args)?;
    let grace = format!("{}s", state.grace_seconds);
    let mut cm_args = vec![
        "--kubeconfig",
        cm_kc.as_str(),
        "--use-service-account-credentials=true",
    ];
    cm_args.extend(local);
    cm_args.extend([
        "--cluster-cidr",
        CLUSTER_CIDR,
        "--node-monitor-grace-period",
        &grace,
    ]);
    cm_args.extend(opts.controller_manager_args.iter().map(String::as_str));
    spawn(
        l,
        "controller-manager",
        None,
        &bins.controller_manager,
        &cm_args,
    )?;

    // All engines start at once; each node's agents start once its engine answers.
    for node in &nodes {
        start_dockerd(l, node, &bins.dockerd)?;
    }
    for node in &nodes {
        host::wait_for(
            Duration::from_secs(60),
            &format!("{}'s dockerd answering", node.name),
            || docker_ping(&node.docker_socket()),
        )
        .map_err(|e| {
            anyhow!(
                "{e}; its log ends with:\n{}",
                host::tail(&l.log_dir().join(format!("{}-dockerd.log", node.name)), 15)
            )
        })?;
        start_agents(l, state, node, &bins.kubelet, &bins.proxy)?;
    }
    wait_nodes_ready(l, &nodes, Duration::from_secs(120))
}

fn spawn(
    l: &Layout,
    id: &str,
    netns: Option<&Path>,
    program: &Path,
    args: &[&str],
) -> anyhow::Result<u32> {
    Spawn {
        program: program.to_path_buf(),
        args: args.iter().map(|a| a.to_string()).collect(),
        netns: netns.map(Path::to_path_buf),
        log: l.log_dir().join(format!("{id}.log")),
        pid_file: l.pid_dir().join(format!("{id}.pid")),
        env: Vec::new(),
    }
    .start()
}

/// The host bridge, and the host's forwarding rules for it: nodes reach each other (bridged
/// traffic passes the host's FORWARD chain when br_netfilter is on, and Docker's policy there
/// is DROP), and nothing from the nodes is forwarded anywhere else.
fn host_network(l: &Layout) -> anyhow::Result<()> {
    let br = l.bridge();
    host::run("ip", ["link", "add", &br, "type", "bridge"])?;
    let addr = format!("{}/{}", l.host_ip(), l.subnet().prefix_len());
    host::run("ip", ["addr", "add", &addr, "dev", &br])?;
    host::run("ip", ["link", "set", &br, "up"])?;
    let chain = l.host_chain();
    let _ = host::run("iptables", ["-w", "-N", &chain]);
    host::run("iptables", ["-w", "-F", &chain])?;
    for rule in [
        vec!["-i", &br, "-o", &br, "-j", "ACCEPT"],
        vec!["-i", &br, "-j", "REJECT"],
        vec!["-o", &br, "-j", "REJECT"],
    ] {
        let mut args = vec!["-w", "-A", &chain];
        args.extend(rule);
        host::run("iptables", &args)?;
    }
    host::run("iptables", ["-w", "-I", "FORWARD", "1", "-j", &chain])?;
    Ok(())
}

/// What the nodes (and their pods, masqueraded to the node's address) reach on the host: the
/// apiserver's port on the bridge address, and DNS (port 53), nothing else. Without this a pod
/// could reach every service of the host that listens on all addresses, other local
/// clusters' apiservers among them. Replies to connections the host opened (the apiserver to
/// the kubelets) pass.
fn host_input(l: &Layout, server: &str) -> anyhow::Result<()> {
    let port = server
        .rsplit_once(':')
        .map(|(_, p)| p.trim_end_matches('/'))
        .filter(|p| p.parse::<u16>().is_ok())
        .ok_or_else(|| anyhow!("the apiserver's URL {server:?} has no port"))?;
    let br = l.bridge();
    let host_ip = l.host_ip().to_string();
    let chain = l.host_input_chain();
    let _ = host::run("iptables", ["-w", "-N", &chain]);
    host::run("iptables", ["-w", "-F", &chain])?;
    for rule in [
        vec![
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
        vec![
            "-d",
            &host_ip,
            "-p",
            "tcp",
            "--dport",
            port,
            "-m",
            "comment",
            "--comment",
            "skiff: the apiserver",
            "-j",
            "ACCEPT",
        ],
        vec![
            "-p",
            "udp",
            "--dport",
            "53",
            "-m",
            "comment",
            "--comment",
            "skiff: DNS",
            "-j",
            "ACCEPT",
        ],
        vec![
            "-p",
            "tcp",
            "--dport",
            "53",
            "-m",
            "comment",
            "--comment",
            "skiff: DNS",
            "-j",
            "ACCEPT",
        ],
        vec!["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        vec!["-j", "REJECT"],
    ] {
        let mut args = vec!["-w", "-A", &chain];
        args.extend(rule);
        host::run("iptables", &args)?;
    }
    host::run(
        "iptables",
        ["-w", "-I", "INPUT", "1", "-i", &br, "-j", &chain],
    )?;
    Ok(())
}

fn node_network(l: &Layout, node: &NodeLayout) -> anyhow::Result<()> {
    host::run("ip", ["netns", "add", &node.netns])?;
    host::run(
        "ip",
        [
            "link",
            "add",
            &node.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &node.netns,
        ],
    )?;
    host::run(
        "ip",
        ["link", "set", &node.veth, "master", &l.bridge(), "up"],
    )?;
    let ns = node.netns_path();
    host::run_in(&ns, "ip", &["link", "set", "lo", "up"])?;
    host::run_in(
        &ns,
        "ip",
        &["addr", "add", &format!("{}/24", node.ip), "dev", "eth0"],
    )?;
    host::run_in(&ns, "ip", &["link", "set", "eth0", "up"])?;
    // Locally generated packets to a Service IP need a route before the proxy's DNAT applies.
    host::run_in(
        &ns,
        "ip",
        &["route", "add", "default", "via", &l.host_ip().to_string()],
    )?;
    // Pods reach addresses outside the pod range (the control plane on the host: the
    // apiserver behind the `kubernetes` Service) from the node's address, as a CNI's ip-masq
    // does: the host has no routes back to pod IPs.
    host::run_in(
        &ns,
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            CLUSTER_CIDR,
            "!",
            "-d",
            CLUSTER_CIDR,
            "-m",
            "comment",
            "--comment",
            "skiff: pods to outside the pod range",
            "-j",
            "MASQUERADE",
        ],
    )?;
    Ok(())
}

/// Writes the cluster's encryption-at-rest configuration once, with a new random key (see
/// [`pki::encryption_config`]). The file holds the key: 0600.
fn encryption_config(l: &Layout) -> anyhow::Result<PathBuf> {
    let path = l.apiserver_dir().join("encryption-config.yaml");
    if path.exists() {
        return Ok(path);
    }
    pki::write(&path, &pki::encryption_config(), true)?;
    Ok(path)
}

/// Starts etcd on loopback with TLS and client-certificate authentication (kubeadm's etcd):
/// its own CA, so that only the apiserver's etcd client certificate, not every certificate of
/// the cluster CA, opens it. Returns the apiserver's flags to reach it.
fn start_etcd(l: &Layout, etcd: &Path) -> anyhow::Result<Vec<String>> {
    let client = host::free_port()?;
    let peer = host::free_port()?;
    let client_url = format!("https://127.0.0.1:{client}");
    // One member: peers never talk, and the peer port listens on loopback only.
    let peer_url = format!("http://127.0.0.1:{peer}");
    let data = l.dir().join("etcd");
    let pki_dir = l.dir().join("etcd-pki");
    let ca = pki::load_or(&pki_dir, "ca", || pki::new_ca_named("skiff-etcd-ca"))?;
    let sans = ["127.0.0.1".to_string(), "localhost".to_string()];
    pki::load_or_issue(&pki_dir, "server", &ca, || {
        pki::issue(&ca, "skiff-etcd", &[], &sans)
    })?;
    pki::load_or_issue(&pki_dir, "apiserver-etcd-client", &ca, || {
        pki::issue(&ca, "kube-apiserver-etcd-client", &[], &[])
    })?;
    let file = |name: &str| pki_dir.join(name).display().to_string();
    let member = format!("skiff-{}", l.name);
    spawn(
        l,
        "etcd",
        None,
        etcd,
        &[
            "--name",
            &member,
            "--data-dir",
            &data.display().to_string(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--client-cert-auth",
            "--trusted-ca-file",
            &file("ca.crt"),
            "--cert-file",
            &file("server.crt"),
            "--key-file",
            &file("server.key"),
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("{member}={peer_url}"),
        ],
    )?;
    host::wait_for(Duration::from_secs(30), "etcd accepting clients", || {
        std::net::TcpStream::connect(("127.0.0.1", client)).is_ok()
    })
    .map_err(|e| {
        anyhow!(
            "{e}; its log ends with:\n{}",
            host::tail(&l.log_dir().join("etcd.log"), 15)
        )
    })?;
    Ok(vec![
        "--etcd-servers".into(),
        client_url,
        "--etcd-cafile".into(),
        file("ca.crt"),
        "--etcd-certfile".into(),
        file("apiserver-etcd-client.crt"),
        "--etcd-keyfile".into(),
        file("apiserver-etcd-client.key"),
    ])
}

/// Starts the apiserver on the bridge address (so the nodes reach it) and returns its URL.
fn start_apiserver(l: &Layout, bins: &Binaries, extra: &[String]) -> anyhow::Result<String> {
    let ready = l.apiserver_dir().join("ready");
    let _ = std::fs::remove_file(&ready);
    let data = l.apiserver_dir().display().to_string();
    let ready_arg = ready.display().to_string();
    let host_ip = l.host_ip().to_string();
    // Kubelets serve certificates from the cluster CA, which the apiserver then checks.
    let kubelet_ca = l
        .apiserver_dir()
        .join("pki")
        .join("ca.crt")
        .display()
        .to_string();
    let mut args = vec![
        "--kubelet-certificate-authority",
        &kubelet_ca,
        "--data-dir",
        &data,
        "--bind-address",
        &host_ip,
        "--secure-port",
        "0",
        "--ready-file",
        &ready_arg,
    ];
    args.extend(extra.iter().map(String::as_str));
    let pid = spawn(l, "apiserver", None, &bins.apiserver, &args)?;
    let log = l.log_dir().join("apiserver.log");
    host::wait_for(Duration::from_secs(60), "the apiserver serving", || {
        std::fs::read_to_string(&ready).is_ok_and(|s| !s.trim().is_empty()) || !host::alive(pid)
    })?;
    let addr = std::fs::read_to_string(&ready).unwrap_or_default();
    if addr.trim().is_empty() {
        bail!(
            "the apiserver exited; its log ends with:\n{}",
            host::tail(&log, 15)
        );
    }
    Ok(format!("https://{}", addr.trim()))
}

fn start_dockerd(l: &Layout, node: &NodeLayout, dockerd: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(&node.run_dir)?;
    std::fs::create_dir_all(&node.dir)?;
    let sock = format!("unix://{}", node.docker_socket().display());
    spawn(
        l,
        &format!("{}-dockerd", node.name),
        Some(&node.netns_path()),
        dockerd,
        &[
            "--data-root",
            &node.dir.join("docker").display().to_string(),
            "--exec-root",
            &node.run_dir.join("exec").display().to_string(),
            "--pidfile",
            &node.run_dir.join("docker.pid").display().to_string(),
            "-H",
            &sock,
            // Pods use the network the kubelet makes for the node's pod CIDR.
            "--bridge",
            "none",
            "--cgroup-parent",
            &node.cgroup_parent,
        ],
    )?;
    Ok(())
}

/// Whether the Docker engine at `socket` answers `/_ping`.
fn docker_ping(socket: &Path) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

fn start_agents(
    l: &Layout,
    state: &State,
    node: &NodeLayout,
    kubelet: &Path,
    proxy: &Path,
) -> anyhow::Result<()> {
    let server = state.server.clone().unwrap_or_default();
    let kubelet_kc = identity::kubelet(l, &server, &node.name)?
        .display()
        .to_string();
    let proxy_kc = identity::kubeconfig(l, &server, &identity::PROXY)?
        .display()
        .to_string();
    let ns = node.netns_path();
    let ip = node.ip.to_string();
    let (serving_cert, serving_key) = identity::kubelet_serving(l, &node.name, &ip)?;
    let serving_cert = serving_cert.display().to_string();
    let serving_key = serving_key.display().to_string();
    spawn(
        l,
        &format!("{}-kubelet", node.name),
        Some(&ns),
        kubelet,
        &[
            "--kubeconfig",
            &kubelet_kc,
            "--hostname-override",
            &node.name,
            "--node-ip",
            &ip,
            "--root-dir",
            &node.dir.join("kubelet").display().to_string(),
            "--container-runtime-endpoint",
            &format!("unix://{}", node.docker_socket().display()),
            "--node-lease-duration-seconds",
            &state.grace_seconds.to_string(),
            "--tls-cert-file",
            &serving_cert,
            "--tls-private-key-file",
            &serving_key,
            // No image garbage collection, as kind's nodes: images come in with `load-image`
            // and no registry could bring back one the collector removed; every node shares
            // the host's disk, so its usage says nothing about one node anyway.
            "--image-gc-high-threshold",
            "100",
            // Nor disk eviction thresholds (kind turns off nodefs/imagefs eviction too): the
            // shared disk's usage says nothing of one node. Memory eviction stays as upstream.
            "--eviction-hard",
            "memory.available<100Mi",
        ],
    )?;
    spawn(
        l,
        &format!("{}-proxy", node.name),
        Some(&ns),
        proxy,
        &[
            "--kubeconfig",
            &proxy_kc,
            "--hostname-override",
            &node.name,
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--service-cluster-ip-range",
            SERVICE_CIDR,
        ],
    )?;
    Ok(())
}

fn wait_nodes_ready(l: &Layout, nodes: &[NodeLayout], timeout: Duration) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let kc = l.admin_kubeconfig();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    runtime.block_on(async move {
        let client = skiff_client::client(&kc).await?;
        let api: kube::Api<Node> = kube::Api::all(client);
        let deadline = Instant::now() + timeout;
        loop {
            let ready: Vec<String> = api
                .list(&Default::default())
                .await
                .map(|list| {
                    list.items
                        .into_iter()
                        .filter(|n| {
                            n.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                        })
                        .filter_map(|n| n.metadata.name)
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&String> = names.iter().filter(|n| !ready.contains(n)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let first = &missing[0];
                bail!(
                    "node{} {} not Ready after {}s; {first}'s kubelet log ends with:\n{}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    timeout.as_secs(),
                    host::tail(&l.log_dir().join(format!("{first}-kubelet.log")), 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn delete(root: &Path, name: &str, explicit_kubeconfig: Option<&Path>) -> anyhow::Result<()> {
    layout::validate_name(name).map_err(|e| anyhow!(e))?;
    require_root("deleting a cluster")?;
    let state = State::load(root, name)?;
    let leftovers = !netns_of(name).is_empty() || root.join(name).exists();
    if state.is_none() && !leftovers {
        println!("No cluster named {name:?}; nothing to delete.");
        return Ok(());
    }
    println!("Deleting cluster {name:?} ...");
    teardown(root, name, state.as_ref(), explicit_kubeconfig)?;
    println!("Deleted cluster {name:?}.");
    Ok(())
}

/// The network namespaces of cluster `name`'s nodes that exist.
fn netns_of(name: &str) -> Vec<String> {
    let prefix = format!("skiff-{name}-node-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| {
                    n.strip_prefix(&prefix)
                        .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Removes everything cluster `name` may have: from its state when there is one, else what can
/// be derived from the name alone.
fn teardown(
    root: &Path,
    name: &str,
    state: Option<&State>,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<()> {
    let index = state.map(|s| s.index).unwrap_or(u8::MAX);
    let l = Layout::new(root, name, index);
    let needles = vec![
        format!("{}/", l.dir().display()),
        format!("{}/", l.run_dir().display()),
    ];
    let node_count = netns_of(name)
        .iter()
        .filter_map(|n| n.rsplit('-').next()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        .max(state.map(|s| s.nodes).unwrap_or(0));
    let nodes: Vec<NodeLayout> = (1..=node_count).map(|i| l.node(i)).collect();

    // The node agents first, so nothing restarts the containers; then the containers, while
    // each engine still runs; then every other process of the cluster.
    let agents: Vec<u32> = host::processes_mentioning(&needles)
        .into_iter()
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let exe = exe.to_string_lossy();
            exe.ends_with("skiff-kubelet") || exe.ends_with("skiff-proxy")
        })
        .collect();
    host::terminate(&agents, Duration::from_secs(5));
    for node in &nodes {
        if docker_ping(&node.docker_socket()) {
            let host_arg = format!("unix://{}", node.docker_socket().display());
            let ids = host::run("docker", ["-H", &host_arg, "ps", "-aq"]).unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["-H", &host_arg, "rm", "-f"];
                args.extend(ids);
                let _ = host::run("docker", &args);
            }
        }
    }
    let rest = host::processes_mentioning(&needles);
    host::terminate(&rest, Duration::from_secs(15));
    // Containers whose engine died before it could stop them still sit in the node's cgroup.
    for node in &nodes {
        let orphans = host::cgroup_pids(&node.cgroup_parent);
        host::terminate(&orphans, Duration::from_secs(2));
    }
    host::unmount_under(&[l.dir(), l.run_dir()]);
    for ns in netns_of(name) {
        let _ = host::run("ip", ["netns", "del", &ns]);
    }
    for node in &nodes {
        host::remove_cgroups(&node.cgroup_parent);
    }
    if state.is_some() {
        let br = l.bridge();
        let _ = host::run("ip", ["link", "del", &br]);
        let chain = l.host_chain();
        while host::run("iptables", ["-w", "-D", "FORWARD", "-j", &chain]).is_ok() {}
        let _ = host::run("iptables", ["-w", "-F", &chain]);
        let _ = host::run("iptables", ["-w", "-X", &chain]);
        let input = l.host_input_chain();
        while host::run("iptables", ["-w", "-D", "INPUT", "-i", &br, "-j", &input]).is_ok() {}
        let _ = host::run("iptables", ["-w", "-F", &input]);
        let _ = host::run("iptables", ["-w", "-X", &input]);
    }
    let written = kubeconfig
        .map(Path::to_path_buf)
        .or_else(|| state.and_then(|s| s.kubeconfig.clone()));
    if let Some(path) = written {
        let context = state
            .and_then(|s| s.context.clone())
            .unwrap_or_else(|| format!("skiff-{name}"));
        if let Err(e) = kubeconfig::remove(&path, &context) {
            eprintln!(
                "warning: could not remove context {context} from {}: {e:#}",
                path.display()
            );
        }
    }
    for dir in [l.dir(), l.run_dir()] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}

fn list(root: &Path) -> anyhow::Result<()> {
    let all = State::all(root);
    if all.is_empty() {
        println!("No clusters.");
        return Ok(());
    }
    println!(
        "{:<20} {:<6} {:<9} {:<28} STATUS",
        "NAME", "NODES", "STORE", "SERVER"
    );
    for s in all {
        let l = s.layout(root);
        let running = host::pid_from_file(
            &l.pid_dir().join("apiserver.pid"),
            &l.dir().display().to_string(),
        )
        .is_some();
        println!(
            "{:<20} {:<6} {:<9} {:<28} {}",
            s.name,
            s.nodes,
            if s.etcd { "etcd" } else { "embedded" },
            s.server.as_deref().unwrap_or("-"),
            if running { "Running" } else { "Stopped" }
        );
    }
    Ok(())
}

fn load_image(root: &Path, name: &str, images: &[String]) -> anyhow::Result<()> {
    let state = load_state(root, name)?;
    let l = state.layout(root);
    let tar = l.dir().join("load-image.tar");
    let mut args = vec!["save".to_string(), "-o".into(), tar.display().to_string()];
    args.extend(images.iter().cloned());
    host::run("docker", &args).context(
        "saving the images from the host's Docker engine (build or pull them there first)",
    )?;
    let outcome = (|| {
        for i in 1..=state.nodes {
            let node = l.node(i);
            let sock = format!("unix://{}", node.docker_socket().display());
            host::run(
                "docker",
                ["-H", &sock, "load", "-q", "-i", &tar.display().to_string()],
            )
            .with_context(|| format!("loading into {}", node.name))?;
            println!(
                "Image{} {} loaded into node {}",
                if images.len() == 1 { "" } else { "s" },
                images.join(", "),
                node.name
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tar);
    outcome
}

fn node_of(l: &Layout, state: &State, node: &str) -> anyhow::Result<NodeLayout> {
    l.node_named(node, state.nodes).ok_or_else(|| {
        let names: Vec<String> = (1..=state.nodes).map(|i| l.node(i).name).collect();
        anyhow!(
            "cluster {:?} has no node {node:?}; its nodes are {}",
            state.name,
            names.join(", ")
        )
    })
}

fn stop_node(root: &Path, name: &str, node: &str) -> anyhow::Result<()> {
    require_root("stopping a node")?;
    let state = load_state(root, name)?;
    let l = state.layout(root);
    let n = node_of(&l, &state, node)?;
    let needle = l.dir().display().to_string();
    let pids: Vec<u32> = ["kubelet", "proxy"]
        .iter()
        .filter_map(|c| {
            host::pid_from_file(&l.pid_dir().join(format!("{}-{c}.pid", n.name)), &needle)
        })
        .collect();
    if pids.is_empty() {
        println!("Node {node}'s kubelet and proxy are not running.");
        return Ok(());
    }
    host::terminate(&pids, Duration::from_secs(10));
    println!("Stopped the kubelet and proxy of node {node} (its containers keep running).");
    Ok(())
}

fn start_node(root: &Path, name: &str, node: &str) -> anyhow::Result<()> {
    require_root("starting a node")?;
    let state = load_state(root, name)?;
    let l = state.layout(root);
    let n = node_of(&l, &state, node)?;
    let needle = l.dir().display().to_string();
    let running = ["kubelet", "proxy"].iter().any(|c| {
        host::pid_from_file(&l.pid_dir().join(format!("{}-{c}.pid", n.name)), &needle).is_some()
    });
    if running {
        bail!(
            "node {node} is running; stop it first with `skiffctl cluster stop-node --name {name} {node}`"
        );
    }
    let bins = Binaries::find(false)?;
    start_agents(&l, &state, &n, &bins.kubelet, &bins.proxy)?;
    println!("Started the kubelet and proxy of node {node}.");
    Ok(())
}

fn logs(root: &Path, name: &str, node: Option<&str>) -> anyhow::Result<()> {
    let state = load_state(root, name)?;
    let l = state.layout(root);
    let ids: Vec<String> = match node {
        Some(node) => {
            let n = node_of(&l, &state, node)?;
            ["dockerd", "kubelet", "proxy"]
                .iter()
                .map(|c| format!("{}-{c}", n.name))
                .collect()
        }
        None => ["etcd", "apiserver", "scheduler", "controller-manager"]
            .iter()
            .map(|c| c.to_string())
            .collect(),
    };
    let mut shown = 0;
    for id in ids {
        let path = l.log_dir().join(format!("{id}.log"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        println!("==> {} <==", path.display());
        print!("{text}");
        if !text.ends_with('\n') && !text.is_empty() {
            println!();
        }
        shown += 1;
    }
    if shown == 0 {
        bail!("no logs in {}", l.log_dir().display());
    }
    Ok(())
}
