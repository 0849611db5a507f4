//! The apiserver's configuration, built by `main.rs` from flags.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::auth::AuthorizationMode;

/// The files for TLS to etcd, as kube-apiserver's `--etcd-*file` flags name them.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// CA that etcd's serving certificate must come from.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key presented to etcd (`--client-cert-auth`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// etcd endpoints; empty means the embedded store in `data_dir`.
    pub etcd_servers: Vec<String>,
    /// TLS to etcd (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
    pub etcd_tls: EtcdTls,
    /// Encryption at rest (`--encryption-provider-config`): a Kubernetes
    /// `EncryptionConfiguration` file; none stores values as they are.
    pub encryption_provider_config: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// 0 picks a free port (tests).
    pub secure_port: u16,
    pub service_cluster_ip_range: Ipv4Net,
    pub service_node_port_range: (u16, u16),
    pub token_auth_file: Option<PathBuf>,
    /// The authorizers, asked in order (`--authorization-mode`, default `Node,RBAC`).
    pub authorization_modes: Vec<AuthorizationMode>,
    /// Requests without credentials run as `system:anonymous` (`--anonymous-auth`).
    pub anonymous_auth: bool,
    /// CA that kubelets' serving certificates must come from (`--kubelet-certificate-authority`);
    /// none: any certificate is accepted, as kube-apiserver does without the flag.
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Pod Security admission's cluster-wide defaults and exemptions.
    pub pod_security: crate::admission::pod_security::Config,
    pub write_kubeconfig: Option<PathBuf>,
    /// How often old revisions are compacted away (kube-apiserver's
    /// `--etcd-compaction-interval`); zero disables compaction.
    pub compaction_interval: Duration,
    /// How often kubelets are scraped for the resource metrics API (metrics-server's
    /// `--metric-resolution`); zero disables scraping.
    pub metric_resolution: Duration,
    /// Where to announce the listening address (`host:port`) once bound, for tests that use
    /// port 0.
    pub ready_file: Option<PathBuf>,
    /// The audit policy and log (`--audit-policy-file`, `--audit-log-*`).
    pub audit: crate::audit::Options,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            etcd_servers: Vec::new(),
            etcd_tls: EtcdTls::default(),
            encryption_provider_config: None,
            data_dir,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            secure_port: 6443,
            service_cluster_ip_range: "10.96.0.0/12".parse().expect("valid default range"),
            service_node_port_range: (30000, 32767),
            token_auth_file: None,
            authorization_modes: vec![AuthorizationMode::Node, AuthorizationMode::Rbac],
            anonymous_auth: true,
            pod_security: Default::default(),
            kubelet_certificate_authority: None,
            write_kubeconfig: None,
            ready_file: None,
            compaction_interval: Duration::from_secs(300),
            metric_resolution: Duration::from_secs(15),
            audit: Default::default(),
        }
    }

    /// The kubeconfig path: `--write-kubeconfig`, or `<data-dir>/admin.kubeconfig`.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.write_kubeconfig
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.kubeconfig"))
    }
}
