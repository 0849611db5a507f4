//! The apiserver's configuration, built by `main.rs` from flags.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::auth::AuthorizationMode;

/// The admission plugins Skiff runs, by Kubernetes' names.
pub const ADMISSION_PLUGINS: [&str; 4] = [
    "ServiceAccount",
    "NodeRestriction",
    "PodSecurity",
    crate::admission::external_ips::PLUGIN_NAME,
];

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
    /// Where the PKI lives (kube-apiserver's `--cert-dir`); none: `<data-dir>/pki`. skiffadm
    /// points it at `/etc/skiff/pki`, which it fills before the apiserver starts.
    pub cert_dir: Option<PathBuf>,
    pub bind_address: IpAddr,
    /// The address announced to the cluster (`--advertise-address`, the `kubernetes`
    /// Service's endpoint); none: the bind address, or the first non-loopback IPv4 address
    /// when bound to all.
    pub advertise_address: Option<IpAddr>,
    /// 0 picks a free port (tests).
    pub secure_port: u16,
    pub service_cluster_ip_range: Ipv4Net,
    pub service_node_port_range: (u16, u16),
    pub token_auth_file: Option<PathBuf>,
    /// The authorizers, asked in order (`--authorization-mode`, default `Node,RBAC`).
    pub authorization_modes: Vec<AuthorizationMode>,
    /// Requests without credentials run as `system:anonymous` (`--anonymous-auth`).
    pub anonymous_auth: bool,
    /// Bootstrap tokens authenticate (`--enable-bootstrap-token-auth`; off by default as in
    /// kube-apiserver, kubeadm turns it on).
    pub enable_bootstrap_token_auth: bool,
    /// CA that kubelets' serving certificates must come from (`--kubelet-certificate-authority`);
    /// none: any certificate is accepted, as kube-apiserver does without the flag.
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// `DenyServiceExternalIPs`: on unless `--disable-admission-plugins` names it.
    pub deny_service_external_ips: bool,
    /// Pod Security admission's cluster-wide defaults and exemptions.
    pub pod_security: crate::admission::pod_security::Config,
    pub write_kubeconfig: Option<PathBuf>,
    /// How often old revisions are compacted away (kube-apiserver's
    /// `--etcd-compaction-interval`); zero disables compaction.
    pub compaction_interval: Duration,
    /// How long Events are kept after their last write (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    /// How often kubelets are scraped for the resource metrics API (metrics-server's
    /// `--metric-resolution`); zero disables scraping.
    pub metric_resolution: Duration,
    /// Where to announce the listening address (`host:port`) once bound, for tests that use
    /// port 0.
    pub ready_file: Option<PathBuf>,
    /// The audit policy and log (`--audit-policy-file`, `--audit-log-*`).
    pub audit: crate::audit::Options,
    /// Connection limits and timeouts (`--max-connections`, `--max-connections-per-ip`).
    pub serve_limits: skiff_common::ServeLimits,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            etcd_servers: Vec::new(),
            etcd_tls: EtcdTls::default(),
            encryption_provider_config: None,
            data_dir,
            cert_dir: None,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            advertise_address: None,
            secure_port: 6443,
            service_cluster_ip_range: "10.96.0.0/12".parse().expect("valid default range"),
            service_node_port_range: (30000, 32767),
            token_auth_file: None,
            authorization_modes: vec![AuthorizationMode::Node, AuthorizationMode::Rbac],
            anonymous_auth: true,
            enable_bootstrap_token_auth: false,
            deny_service_external_ips: true,
            pod_security: Default::default(),
            kubelet_certificate_authority: None,
            write_kubeconfig: None,
            ready_file: None,
            compaction_interval: Duration::from_secs(300),
            metric_resolution: Duration::from_secs(15),
            event_ttl: crate::registry::DEFAULT_EVENT_TTL,
            audit: Default::default(),
            serve_limits: Default::default(),
        }
    }

    /// Applies `--enable-admission-plugins` and `--disable-admission-plugins`. Skiff's
    /// plugins are all on by default (`DenyServiceExternalIPs` too, unlike kube-apiserver);
    /// only `DenyServiceExternalIPs` can be turned off. A name Skiff does not know is an error,
    /// as kube-apiserver refuses one.
    pub fn admission_plugins(
        &mut self,
        enable: &[String],
        disable: &[String],
    ) -> Result<(), String> {
        for name in enable.iter().chain(disable) {
            if !ADMISSION_PLUGINS.contains(&name.as_str()) {
                return Err(format!(
                    "admission plugin {name:?} is unknown; Skiff's are {}",
                    ADMISSION_PLUGINS.join(", ")
                ));
            }
        }
        if let Some(both) = enable.iter().find(|n| disable.contains(n)) {
            return Err(format!(
                "{both} is in both --enable-admission-plugins and --disable-admission-plugins"
            ));
        }
        for name in disable {
            if name != crate::admission::external_ips::PLUGIN_NAME {
                return Err(format!(
                    "admission plugin {name:?} cannot be disabled in Skiff; only {} can",
                    crate::admission::external_ips::PLUGIN_NAME
                ));
            }
            self.deny_service_external_ips = false;
        }
        Ok(())
    }

    /// The PKI folder: `--cert-dir`, or `<data-dir>/pki`.
    pub fn cert_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }

    /// The kubeconfig path: `--write-kubeconfig`, or `<data-dir>/admin.kubeconfig`.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.write_kubeconfig
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.kubeconfig"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deny_service_external_ips_is_on_unless_disabled() {
        let mut c = Config::new(PathBuf::from("/tmp"));
        assert!(c.deny_service_external_ips);
        c.admission_plugins(&names(&["PodSecurity"]), &[]).unwrap();
        assert!(c.deny_service_external_ips);
        c.admission_plugins(&[], &names(&["DenyServiceExternalIPs"]))
            .unwrap();
        assert!(!c.deny_service_external_ips);
    }

    #[test]
    fn unknown_or_fixed_plugins_are_refused() {
        let mut c = Config::new(PathBuf::from("/tmp"));
        let e = c.admission_plugins(&names(&["Nope"]), &[]).unwrap_err();
        assert!(e.contains("\"Nope\" is unknown"), "{e}");
        let e = c
            .admission_plugins(&[], &names(&["NodeRestriction"]))
            .unwrap_err();
        assert!(e.contains("cannot be disabled"), "{e}");
        let both = names(&["DenyServiceExternalIPs"]);
        let e = c.admission_plugins(&both, &both).unwrap_err();
        assert!(e.contains("in both"), "{e}");
    }
}
