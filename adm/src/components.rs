//! The components' command lines, as skiffadm writes them to `/etc/skiff/<unit>.env`
//! (`SKIFF_ARGS=--flag=value ...`, read by the systemd units and by `skiffadm supervise`),
//! and the reading of those files back.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::Paths;
use crate::kubeadm_config::ExternalEtcd;

/// A Skiff service: its systemd unit (and `.env` file) and its binary share the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Apiserver,
    Scheduler,
    ControllerManager,
    Kubelet,
    Proxy,
}

impl Unit {
    /// Every unit, in start order.
    pub const ALL: [Unit; 5] = [
        Unit::Apiserver,
        Unit::Scheduler,
        Unit::ControllerManager,
        Unit::Kubelet,
        Unit::Proxy,
    ];
    /// What a joined node runs.
    pub const NODE: [Unit; 2] = [Unit::Kubelet, Unit::Proxy];

    /// `skiff-apiserver`, ...: the unit's name without `.service`, and the binary.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Apiserver => "skiff-apiserver",
            Unit::Scheduler => "skiff-scheduler",
            Unit::ControllerManager => "skiff-controller-manager",
            Unit::Kubelet => "skiff-kubelet",
            Unit::Proxy => "skiff-proxy",
        }
    }
}

/// Why a command line cannot be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("the value of {0:?} contains a space, which a SKIFF_ARGS line cannot hold")]
    Space(String),
}

/// The control plane's settings that go into its command lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    pub service_cidr: String,
    pub pod_cidr: String,
    pub etcd: Option<ExternalEtcd>,
}

/// `skiff-apiserver`'s flags: PKI in `/etc/skiff/pki`, state in `/var/lib/skiff/apiserver`,
/// Node and RBAC authorization, bootstrap tokens, Secrets encrypted at rest, kubelets'
/// serving certificates checked against the cluster CA.
pub fn apiserver(p: &Paths, c: &ControlPlane) -> Vec<String> {
    let ca = p.pki().join("ca.crt");
    let mut args = vec![
        format!("--data-dir={}", p.apiserver_dir().display()),
        format!("--cert-dir={}", p.pki().display()),
        format!("--advertise-address={}", c.advertise_address),
        "--bind-address=0.0.0.0".to_string(),
        format!("--secure-port={}", c.bind_port),
        format!("--service-cluster-ip-range={}", c.service_cidr),
        "--authorization-mode=Node,RBAC".to_string(),
        "--enable-bootstrap-token-auth=true".to_string(),
        format!("--kubelet-certificate-authority={}", ca.display()),
        format!(
            "--encryption-provider-config={}",
            p.encryption_config().display()
        ),
    ];
    if let Some(etcd) = &c.etcd {
        args.push(format!("--etcd-servers={}", etcd.endpoints.join(",")));
        for (flag, file) in [
            ("--etcd-cafile", &etcd.ca_file),
            ("--etcd-certfile", &etcd.cert_file),
            ("--etcd-keyfile", &etcd.key_file),
        ] {
            if let Some(f) = file {
                args.push(format!("{flag}={f}"));
            }
        }
    }
    args
}

pub fn scheduler(p: &Paths) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", p.conf("scheduler").display()),
        "--bind-address=127.0.0.1".to_string(),
    ]
}

/// `skiff-controller-manager`'s flags: every controller plus kubeadm's two off-by-default
/// ones, node CIDRs from the pod range, CSRs signed with the cluster CA.
pub fn controller_manager(p: &Paths, c: &ControlPlane) -> Vec<String> {
    let ca = p.pki().join("ca.crt");
    vec![
        format!("--kubeconfig={}", p.conf("controller-manager").display()),
        "--bind-address=127.0.0.1".to_string(),
        "--controllers=*,bootstrapsigner,tokencleaner".to_string(),
        format!("--cluster-cidr={}", c.pod_cidr),
        "--allocate-node-cidrs=true".to_string(),
        format!("--cluster-signing-cert-file={}", ca.display()),
        format!(
            "--cluster-signing-key-file={}",
            p.pki().join("ca.key").display()
        ),
        format!("--root-ca-file={}", ca.display()),
        "--use-service-account-credentials=true".to_string(),
    ]
}

/// A node's settings that go into the kubelet's and the proxy's command lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub node_ip: Option<IpAddr>,
    pub cri_socket: Option<String>,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub dns_domain: String,
    /// `host-gw` or `vxlan`.
    pub pod_network: String,
    /// Joined with a bootstrap token (else init wrote the node's credentials).
    pub bootstrap: bool,
    /// `nodeRegistration.kubeletExtraArgs`.
    pub kubelet_extra_args: BTreeMap<String, String>,
}

/// `skiff-kubelet`'s flags: TLS bootstrapping on joined nodes, client and serving
/// certificates rotated in `/var/lib/skiff/kubelet/pki`.
pub fn kubelet(p: &Paths, n: &Node) -> Vec<String> {
    let mut args = vec![format!("--kubeconfig={}", p.conf("kubelet").display())];
    if n.bootstrap {
        args.push(format!(
            "--bootstrap-kubeconfig={}",
            p.conf("bootstrap-kubelet").display()
        ));
    }
    args.extend([
        format!("--cert-dir={}", p.kubelet_cert_dir().display()),
        "--rotate-certificates".to_string(),
        "--rotate-server-certificates".to_string(),
        format!("--root-dir={}", p.kubelet_dir().display()),
        format!("--hostname-override={}", n.name),
        format!("--cluster-domain={}", n.dns_domain),
    ]);
    if let Some(ip) = n.node_ip {
        args.push(format!("--node-ip={ip}"));
    }
    if let Some(socket) = &n.cri_socket {
        args.push(format!("--container-runtime-endpoint={socket}"));
    }
    args.extend(
        n.kubelet_extra_args
            .iter()
            .map(|(k, v)| format!("--{}={v}", k.trim_start_matches('-'))),
    );
    args
}

/// `skiff-proxy`'s flags: its own identity (`system:kube-proxy`, bootstrapped on joined
/// nodes), the cluster's ranges and the pod network mode.
pub fn proxy(p: &Paths, n: &Node) -> Vec<String> {
    let mut args = vec![format!("--kubeconfig={}", p.conf("proxy").display())];
    if n.bootstrap {
        args.push(format!(
            "--bootstrap-kubeconfig={}",
            p.conf("bootstrap-proxy").display()
        ));
        args.push(format!("--cert-dir={}", p.proxy_cert_dir().display()));
    }
    args.extend([
        format!("--hostname-override={}", n.name),
        format!("--cluster-cidr={}", n.pod_cidr),
        format!("--service-cluster-ip-range={}", n.service_cidr),
        format!("--pod-network={}", n.pod_network),
    ]);
    args
}

/// The `.env` file's text: `SKIFF_ARGS=` and the flags, one space apart.
pub fn env_file(args: &[String]) -> Result<String, ArgsError> {
    if let Some(bad) = args.iter().find(|a| a.contains(char::is_whitespace)) {
        return Err(ArgsError::Space(bad.clone()));
    }
    Ok(format!("SKIFF_ARGS={}\n", args.join(" ")))
}

/// The words of variable `var` in an environment file as systemd reads the simple ones
/// (`VAR=value`, optionally quoted; `#` comments).
pub fn env_var(text: &str, var: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(value) = line
            .strip_prefix(var)
            .and_then(|rest| rest.trim_start().strip_prefix('='))
        {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            out = value.split_whitespace().map(String::from).collect();
        }
    }
    out
}

/// The value of `--flag=value` (or `--flag value`) in `args`.
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            Some(v)
        } else if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(bootstrap: bool) -> Node {
        Node {
            name: "w1".into(),
            node_ip: None,
            cri_socket: Some("unix:///run/docker.sock".into()),
            pod_cidr: "10.244.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
            dns_domain: "cluster.local".into(),
            pod_network: "vxlan".into(),
            bootstrap,
            kubelet_extra_args: BTreeMap::from([("max-pods".into(), "50".into())]),
        }
    }

    #[test]
    fn a_joined_node_bootstraps_and_rotates() {
        let p = Paths::system();
        let k = kubelet(&p, &node(true));
        for want in [
            "--kubeconfig=/etc/skiff/kubelet.conf",
            "--bootstrap-kubeconfig=/etc/skiff/bootstrap-kubelet.conf",
            "--cert-dir=/var/lib/skiff/kubelet/pki",
            "--rotate-certificates",
            "--rotate-server-certificates",
            "--container-runtime-endpoint=unix:///run/docker.sock",
            "--max-pods=50",
        ] {
            assert!(k.contains(&want.to_string()), "{want} in {k:?}");
        }
        let pr = proxy(&p, &node(true));
        assert!(pr.contains(&"--bootstrap-kubeconfig=/etc/skiff/bootstrap-proxy.conf".into()));
        assert!(pr.contains(&"--pod-network=vxlan".into()));
        assert!(
            !kubelet(&p, &node(false))
                .iter()
                .any(|a| a.starts_with("--bootstrap"))
        );
    }

    #[test]
    fn env_files_round_trip_and_refuse_spaces() {
        let args = vec!["--a=1".to_string(), "--b".into()];
        let text = env_file(&args).unwrap();
        assert_eq!(text, "SKIFF_ARGS=--a=1 --b\n");
        assert_eq!(env_var(&text, "SKIFF_ARGS"), args);
        assert_eq!(
            env_var(
                "# x\nSKIFF_EXTRA_ARGS=\"--v=2 --c=3\"\n",
                "SKIFF_EXTRA_ARGS"
            ),
            vec!["--v=2", "--c=3"]
        );
        assert!(env_var("SKIFF_ARGS=--a\n", "SKIFF_EXTRA_ARGS").is_empty());
        assert!(env_file(&["--a=b c".into()]).is_err());
        assert_eq!(flag_value(&args, "--a"), Some("1"));
    }

    #[test]
    fn the_control_plane_signs_with_the_cluster_ca_and_runs_kubeadms_controllers() {
        let p = Paths::system();
        let c = ControlPlane {
            advertise_address: "192.168.56.10".parse().unwrap(),
            bind_port: 6443,
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            etcd: None,
        };
        let a = apiserver(&p, &c);
        assert!(a.contains(&"--enable-bootstrap-token-auth=true".into()));
        assert!(a.contains(&"--cert-dir=/etc/skiff/pki".into()));
        assert!(a.contains(&"--advertise-address=192.168.56.10".into()));
        let cm = controller_manager(&p, &c);
        assert!(cm.contains(&"--controllers=*,bootstrapsigner,tokencleaner".into()));
        assert!(cm.contains(&"--cluster-signing-key-file=/etc/skiff/pki/ca.key".into()));
    }
}
