//! `skiffadm join`: adds this machine to a cluster as a worker, as `kubeadm join` does:
//! bootstrap-token discovery of the cluster CA, bootstrap kubeconfigs for the kubelet and the
//! proxy (the token is their only credential; each then asks for a certificate of its own
//! through a CSR), the services started, and the node's own kubeconfig used to wait for it to
//! be Ready. No `system:masters` credential ever comes here.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use skiff_common::pki;

use crate::Paths;
use crate::components::{self, Unit};
use crate::services;

#[derive(clap::Args, Debug)]
pub struct JoinArgs {
    /// The control plane's HOST:PORT (as the init's join command prints it).
    pub endpoint: String,
    /// The bootstrap token.
    #[arg(long)]
    pub token: String,
    /// The pin of the cluster CA (sha256:<hex of its SubjectPublicKeyInfo's SHA-256>),
    /// repeatable.
    #[arg(long)]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// Trust the CA found in cluster-info without a pin.
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// This node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address the kubelet reports (default: the kubelet picks one).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The container runtime endpoint for the kubelet.
    #[arg(long)]
    pub cri_socket: Option<String>,
    /// host-gw or vxlan (default: what init recorded in the kubeadm-config ConfigMap).
    #[arg(long, value_parser = ["host-gw", "vxlan"])]
    pub pod_network: Option<String>,
    /// How long to keep trying discovery while cluster-info has no signature for the token
    /// (a new token is signed within moments) or the apiserver does not answer.
    #[arg(long, default_value = "5m", value_parser = skiff_common::parse_duration)]
    pub discovery_timeout: Duration,
    /// Skip the pre-flight checks.
    #[arg(long)]
    pub skip_preflight: bool,
    /// How long to wait for the node.
    #[arg(long, default_value = "4m", value_parser = skiff_common::parse_duration)]
    pub timeout: Duration,
}

/// What the `kubeadm-config` ConfigMap tells a joining node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub pod_cidr: String,
    pub service_cidr: String,
    pub dns_domain: String,
    pub pod_network: String,
}

/// Reads `kubeadm-config`'s data (JSON as served).
pub fn cluster_settings(configmap: &serde_json::Value) -> ClusterSettings {
    let data = &configmap["data"];
    let cc: serde_yaml::Value = data["ClusterConfiguration"]
        .as_str()
        .and_then(|t| serde_yaml::from_str(t).ok())
        .unwrap_or_default();
    let net = &cc["networking"];
    let get = |v: &serde_yaml::Value, default: &str| v.as_str().unwrap_or(default).to_string();
    ClusterSettings {
        pod_cidr: get(&net["podSubnet"], "10.244.0.0/16"),
        service_cidr: get(&net["serviceSubnet"], "10.96.0.0/12"),
        dns_domain: get(&net["dnsDomain"], "cluster.local"),
        pod_network: data[crate::init::POD_NETWORK_KEY]
            .as_str()
            .unwrap_or("host-gw")
            .to_string(),
    }
}

async fn read_cluster_settings(
    server: &str,
    ca_pem: &str,
    token: &str,
) -> anyhow::Result<ClusterSettings> {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!(
        "{}/api/v1/namespaces/kube-system/configmaps/{}",
        server.trim_end_matches('/'),
        crate::init::KUBEADM_CONFIG
    );
    let resp = client.get(&url).bearer_auth(token).send().await?;
    if !resp.status().is_success() {
        bail!(
            "reading the kubeadm-config ConfigMap with the token: {} (is the token valid and unexpired?)",
            resp.status()
        );
    }
    Ok(cluster_settings(&resp.json().await?))
}

/// Runs `skiffadm join`.
pub async fn run(p: &Paths, args: &JoinArgs) -> anyhow::Result<()> {
    let pins = args
        .discovery_token_ca_cert_hash
        .iter()
        .map(|h| crate::discovery::parse_pin(h))
        .collect::<Result<Vec<_>, _>>()?;
    crate::token::parse(&args.token)?;
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => hostname::get()
            .context("reading the hostname; pass --node-name")?
            .to_string_lossy()
            .to_lowercase(),
    };
    if !args.skip_preflight {
        println!("[preflight] Running pre-flight checks");
        let mut errors = Vec::new();
        if !crate::init::is_root() {
            errors.push("[ERROR IsPrivilegedUser]: user is not running as root".to_string());
        }
        for conf in ["kubelet", "bootstrap-kubelet", "admin"] {
            if p.conf(conf).exists() {
                errors.push(format!(
                    "[ERROR FileAvailable]: {} already exists",
                    p.conf(conf).display()
                ));
            }
        }
        if std::net::TcpListener::bind(("0.0.0.0", 10250)).is_err() {
            errors.push("[ERROR Port-10250]: Port 10250 is in use".to_string());
        }
        if let Err(e) = services::check(p, &Unit::NODE) {
            errors.push(format!("[ERROR Services]: {e:#}"));
        }
        if !errors.is_empty() {
            bail!(
                "[preflight] Some fatal errors occurred:\n\t{}\n[preflight] `skiffadm reset` removes what a previous init or join left",
                errors.join("\n\t")
            );
        }
    }

    println!(
        "[discovery] Fetching cluster-info from https://{}",
        args.endpoint
    );
    let info = crate::discovery::discover(
        &args.endpoint,
        &args.token,
        &pins,
        args.discovery_token_unsafe_skip_ca_verification,
        args.discovery_timeout,
    )
    .await
    .map_err(|e| {
        anyhow!(
            "error execution phase preflight: couldn't validate the identity of the API Server: {e}"
        )
    })?;
    println!(
        "[discovery] Cluster info signature and contents are valid and the CA is pinned; will use API Server {:?}",
        info.server
    );
    let cluster = read_cluster_settings(&info.server, &info.ca_pem, &args.token).await?;

    // The token is the only credential written here; the kubelet and the proxy trade it
    // for certificates of their own.
    for conf in ["bootstrap-kubelet", "bootstrap-proxy"] {
        pki::write_kubeconfig(
            &p.conf(conf),
            &pki::token_kubeconfig(
                &info.server,
                &info.ca_pem,
                "tls-bootstrap-token-user",
                &args.token,
            ),
        )?;
    }
    pki::write(&p.pki().join("ca.crt"), &info.ca_pem, false)?;
    let node = components::Node {
        name: node_name.clone(),
        node_ip: args.node_ip,
        cri_socket: args.cri_socket.clone(),
        pod_cidr: cluster.pod_cidr.clone(),
        service_cidr: cluster.service_cidr.clone(),
        dns_domain: cluster.dns_domain.clone(),
        pod_network: args
            .pod_network
            .clone()
            .unwrap_or(cluster.pod_network.clone()),
        bootstrap: true,
        kubelet_extra_args: Default::default(),
    };
    services::write_env(p, Unit::Kubelet, &components::kubelet(p, &node))?;
    services::write_env(p, Unit::Proxy, &components::proxy(p, &node))?;
    let manager = services::start(p, &Unit::NODE)?;
    println!("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap");

    let deadline = Instant::now() + args.timeout;
    let kubelet_conf = p.conf("kubelet");
    while !kubelet_conf.exists() {
        if Instant::now() > deadline {
            bail!(
                "the kubelet did not complete the TLS bootstrap within {:?} ({} was not written); see its log: {}",
                args.timeout,
                kubelet_conf.display(),
                manager.log_hint(p, Unit::Kubelet)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let client = skiff_client::client(&kubelet_conf).await?;
    let nodes: Api<Node> = Api::all(client);
    let left = deadline.saturating_duration_since(Instant::now());
    crate::init::wait_node_ready(
        &nodes,
        &node_name,
        left.max(Duration::from_secs(30)),
        || {
            format!(
                "see the kubelet's log: {}",
                manager.log_hint(p, Unit::Kubelet)
            )
        },
    )
    .await?;

    println!("\nThis node has joined the cluster:");
    println!("* Certificate signing request was sent to apiserver and a response was received.");
    println!("* The Kubelet was informed of the new secure connection details.\n");
    println!("Run 'kubectl get nodes' on the control-plane to see this node join the cluster.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_node_takes_the_ranges_and_network_init_recorded() {
        let cm = serde_json::json!({"data": {
            "ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.200.0.0/16\n  serviceSubnet: 10.100.0.0/16\n  dnsDomain: c.example\n",
            "skiff.podNetwork": "vxlan",
        }});
        let s = cluster_settings(&cm);
        assert_eq!(s.pod_cidr, "10.200.0.0/16");
        assert_eq!(s.service_cidr, "10.100.0.0/16");
        assert_eq!(s.dns_domain, "c.example");
        assert_eq!(s.pod_network, "vxlan");
        let defaults = cluster_settings(&serde_json::json!({}));
        assert_eq!(defaults.pod_network, "host-gw");
    }
}
