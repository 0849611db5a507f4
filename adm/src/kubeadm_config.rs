//! kubeadm's configuration file (`kubeadm init --config`): the `InitConfiguration` and
//! `ClusterConfiguration` documents of `kubeadm.k8s.io/v1beta2` (what seed 002 writes, the same
//! shape as v1beta3 in the fields read here), `v1beta3` and `v1beta4`, read for the fields that
//! mean something to Skiff. Other fields and kinds are reported as warnings and
//! otherwise ignored, as kubeadm tolerates unknown fields.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml::Value;

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the configuration is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("{kind}: {field} must be {want}")]
    Field {
        kind: String,
        field: String,
        want: &'static str,
    },
    #[error("unsupported apiVersion {0:?} (use kubeadm.k8s.io/v1beta2, v1beta3 or v1beta4)")]
    ApiVersion(String),
}

/// The kubelet's runtime endpoint for `nodeRegistration.criSocket`. Skiff's kubelet talks to
/// Docker's Engine API itself, so dockershim's socket (older kubeadm files, seed 002's) means
/// Docker's; a bare path gets the `unix://` scheme, as kubeadm adds it.
fn runtime_endpoint(socket: &str, warnings: &mut Vec<String>) -> String {
    if socket.contains("dockershim") {
        warnings.push(format!(
            "nodeRegistration.criSocket {socket:?} is dockershim's; Skiff's kubelet talks to \
             Docker directly: using unix:///var/run/docker.sock"
        ));
        return "unix:///var/run/docker.sock".into();
    }
    if socket.starts_with('/') {
        return format!("unix://{socket}");
    }
    socket.to_string()
}

/// A node taint as `nodeRegistration.taints` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

/// `etcd.external`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `bootstrapTokens[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapToken {
    pub token: Option<String>,
    pub ttl: Option<Duration>,
    pub description: Option<String>,
}

/// What a configuration file says that applies; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeadmConfig {
    pub advertise_address: Option<String>,
    pub bind_port: Option<u16>,
    pub node_name: Option<String>,
    pub cri_socket: Option<String>,
    /// `Some(vec![])` when the file says `taints: []` (no control-plane taint).
    pub taints: Option<Vec<Taint>>,
    pub kubelet_extra_args: BTreeMap<String, String>,
    pub bootstrap_token: Option<BootstrapToken>,
    pub control_plane_endpoint: Option<String>,
    pub pod_subnet: Option<String>,
    pub service_subnet: Option<String>,
    pub dns_domain: Option<String>,
    pub external_etcd: Option<ExternalEtcd>,
    /// Fields and documents ignored, for the user to read.
    pub warnings: Vec<String>,
}

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Warns about every key of `map` not in `known` (as `<kind>.<path>.<key>`).
fn unknown(kind: &str, path: &str, map: &Value, known: &[&str], warnings: &mut Vec<String>) {
    if let Value::Mapping(m) = map {
        for k in m.keys().filter_map(Value::as_str) {
            if !known.contains(&k) {
                let at = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                warnings.push(format!("{kind}: {at} is not used by skiffadm; ignored"));
            }
        }
    }
}

impl KubeadmConfig {
    /// Reads every document of `text`.
    pub fn parse(text: &str) -> Result<KubeadmConfig, ConfigError> {
        use serde::Deserialize as _;
        let mut out = KubeadmConfig::default();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let doc = Value::deserialize(doc)?;
            if doc.is_null() {
                continue;
            }
            let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            if !api_version.starts_with("kubeadm.k8s.io/") {
                out.warnings.push(format!(
                    "{api_version} {kind} is not a kubeadm configuration; ignored"
                ));
                continue;
            }
            if !matches!(
                api_version.as_str(),
                "kubeadm.k8s.io/v1beta2" | "kubeadm.k8s.io/v1beta3" | "kubeadm.k8s.io/v1beta4"
            ) {
                return Err(ConfigError::ApiVersion(api_version));
            }
            match kind.as_str() {
                "InitConfiguration" => out.init(&doc)?,
                "ClusterConfiguration" => out.cluster(&doc)?,
                other => out.warnings.push(format!(
                    "kind {other:?} is not used by skiffadm init; ignored"
                )),
            }
        }
        Ok(out)
    }

    fn init(&mut self, doc: &Value) -> Result<(), ConfigError> {
        let kind = "InitConfiguration";
        let w = &mut self.warnings;
        unknown(
            kind,
            "",
            doc,
            &[
                "apiVersion",
                "kind",
                "localAPIEndpoint",
                "nodeRegistration",
                "bootstrapTokens",
            ],
            w,
        );
        let ep = &doc["localAPIEndpoint"];
        unknown(
            kind,
            "localAPIEndpoint",
            ep,
            &["advertiseAddress", "bindPort"],
            w,
        );
        self.advertise_address = s(&ep["advertiseAddress"]).or(self.advertise_address.take());
        if let Some(port) = ep.get("bindPort") {
            self.bind_port = Some(port.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or(
                ConfigError::Field {
                    kind: kind.into(),
                    field: "localAPIEndpoint.bindPort".into(),
                    want: "a port number",
                },
            )?);
        }
        let reg = &doc["nodeRegistration"];
        unknown(
            kind,
            "nodeRegistration",
            reg,
            &["name", "criSocket", "taints", "kubeletExtraArgs"],
            w,
        );
        self.node_name = s(&reg["name"]).or(self.node_name.take());
        if let Some(socket) = s(&reg["criSocket"]) {
            self.cri_socket = Some(runtime_endpoint(&socket, w));
        }
        if let Some(taints) = reg.get("taints") {
            let list = match taints {
                Value::Null => Vec::new(),
                Value::Sequence(list) => list.clone(),
                _ => {
                    return Err(ConfigError::Field {
                        kind: kind.into(),
                        field: "nodeRegistration.taints".into(),
                        want: "a list",
                    });
                }
            };
            let mut out = Vec::new();
            for t in list {
                let (Some(key), Some(effect)) = (s(&t["key"]), s(&t["effect"])) else {
                    return Err(ConfigError::Field {
                        kind: kind.into(),
                        field: "nodeRegistration.taints[]".into(),
                        want: "a taint with a key and an effect",
                    });
                };
                out.push(Taint {
                    key,
                    value: s(&t["value"]),
                    effect,
                });
            }
            self.taints = Some(out);
        }
        // v1beta3: a map; v1beta4: a list of {name, value}.
        match &reg["kubeletExtraArgs"] {
            Value::Mapping(m) => {
                for (k, v) in m {
                    if let (Some(k), Some(v)) = (k.as_str(), s(v)) {
                        self.kubelet_extra_args.insert(k.to_string(), v);
                    }
                }
            }
            Value::Sequence(list) => {
                for a in list {
                    if let (Some(k), Some(v)) = (s(&a["name"]), s(&a["value"])) {
                        self.kubelet_extra_args.insert(k, v);
                    }
                }
            }
            _ => {}
        }
        if let Some(first) = doc["bootstrapTokens"].as_sequence().and_then(|l| l.first()) {
            unknown(
                kind,
                "bootstrapTokens[0]",
                first,
                &["token", "ttl", "description", "groups", "usages"],
                w,
            );
            let ttl = match s(&first["ttl"]) {
                Some(t) => {
                    Some(
                        skiff_common::parse_duration(&t).map_err(|_| ConfigError::Field {
                            kind: kind.into(),
                            field: "bootstrapTokens[0].ttl".into(),
                            want: "a duration such as 24h0m0s",
                        })?,
                    )
                }
                None => None,
            };
            self.bootstrap_token = Some(BootstrapToken {
                token: s(&first["token"]),
                ttl,
                description: s(&first["description"]),
            });
        }
        Ok(())
    }

    fn cluster(&mut self, doc: &Value) -> Result<(), ConfigError> {
        let kind = "ClusterConfiguration";
        let w = &mut self.warnings;
        unknown(
            kind,
            "",
            doc,
            &[
                "apiVersion",
                "kind",
                "controlPlaneEndpoint",
                "networking",
                "etcd",
                "kubernetesVersion",
                "clusterName",
            ],
            w,
        );
        self.control_plane_endpoint =
            s(&doc["controlPlaneEndpoint"]).or(self.control_plane_endpoint.take());
        let net = &doc["networking"];
        unknown(
            kind,
            "networking",
            net,
            &["podSubnet", "serviceSubnet", "dnsDomain"],
            w,
        );
        self.pod_subnet = s(&net["podSubnet"]).or(self.pod_subnet.take());
        self.service_subnet = s(&net["serviceSubnet"]).or(self.service_subnet.take());
        self.dns_domain = s(&net["dnsDomain"]).or(self.dns_domain.take());
        let etcd = &doc["etcd"];
        unknown(kind, "etcd", etcd, &["external"], w);
        if let Some(ext) = etcd.get("external") {
            unknown(
                kind,
                "etcd.external",
                ext,
                &["endpoints", "caFile", "certFile", "keyFile"],
                w,
            );
            self.external_etcd = Some(ExternalEtcd {
                endpoints: ext["endpoints"]
                    .as_sequence()
                    .map(|l| l.iter().filter_map(s).collect())
                    .unwrap_or_default(),
                ca_file: s(&ext["caFile"]),
                cert_file: s(&ext["certFile"]),
                key_file: s(&ext["keyFile"]),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1BETA4: &str = r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  ttl: 2h0m0s
  description: first
localAPIEndpoint:
  advertiseAddress: 192.168.56.10
  bindPort: 6443
nodeRegistration:
  name: cp1
  criSocket: unix:///var/run/docker.sock
  taints: []
  kubeletExtraArgs:
  - name: node-labels
    value: tier=cp
  imagePullPolicy: IfNotPresent
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.0
controlPlaneEndpoint: cp.example:6443
networking:
  podSubnet: 10.200.0.0/16
  serviceSubnet: 10.100.0.0/16
  dnsDomain: cluster.example
etcd:
  external:
    endpoints: [https://10.0.0.5:2379]
    caFile: /etc/etcd/ca.crt
    certFile: /etc/etcd/c.crt
    keyFile: /etc/etcd/c.key
apiServer:
  certSANs: [x]
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
"#;

    #[test]
    fn a_v1beta4_init_and_cluster_configuration_apply() {
        let c = KubeadmConfig::parse(V1BETA4).unwrap();
        assert_eq!(c.advertise_address.as_deref(), Some("192.168.56.10"));
        assert_eq!(c.bind_port, Some(6443));
        assert_eq!(c.node_name.as_deref(), Some("cp1"));
        assert_eq!(c.taints, Some(vec![]));
        assert_eq!(c.kubelet_extra_args["node-labels"], "tier=cp");
        let t = c.bootstrap_token.clone().unwrap();
        assert_eq!(t.token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert_eq!(t.ttl, Some(Duration::from_secs(7200)));
        assert_eq!(c.control_plane_endpoint.as_deref(), Some("cp.example:6443"));
        assert_eq!(c.pod_subnet.as_deref(), Some("10.200.0.0/16"));
        assert_eq!(c.dns_domain.as_deref(), Some("cluster.example"));
        let etcd = c.external_etcd.clone().unwrap();
        assert_eq!(etcd.endpoints, vec!["https://10.0.0.5:2379"]);
        assert_eq!(etcd.key_file.as_deref(), Some("/etc/etcd/c.key"));
        for w in [
            "InitConfiguration: nodeRegistration.imagePullPolicy is not used by skiffadm; ignored",
            "ClusterConfiguration: apiServer is not used by skiffadm; ignored",
            "kubelet.config.k8s.io/v1beta1 KubeletConfiguration is not a kubeadm configuration; ignored",
        ] {
            assert!(c.warnings.iter().any(|x| x == w), "{w} in {:?}", c.warnings);
        }
    }

    #[test]
    fn v1beta3_extra_args_are_a_map_and_taints_default_when_absent() {
        let c = KubeadmConfig::parse(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: 50\n  taints:\n  - key: a\n    effect: NoExecute\n",
        )
        .unwrap();
        assert_eq!(c.kubelet_extra_args["max-pods"], "50");
        assert_eq!(
            c.taints,
            Some(vec![Taint {
                key: "a".into(),
                value: None,
                effect: "NoExecute".into()
            }])
        );
        let none =
            KubeadmConfig::parse("apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n")
                .unwrap();
        assert_eq!(none.taints, None);
        assert!(
            KubeadmConfig::parse("apiVersion: kubeadm.k8s.io/v1beta1\nkind: InitConfiguration\n")
                .is_err()
        );
    }

    /// The file seed 002 writes (kubeadm 1.18's `kubeadm config print init-defaults`, edited).
    #[test]
    fn seed_002s_v1beta2_file_applies() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta2
bootstrapTokens:
- groups:
  - system:bootstrappers:kubeadm:default-node-token
  token: abcdef.0123456789abcdef
  ttl: 24h0m0s
  usages:
  - signing
  - authentication
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 192.168.1.60
  bindPort: 6443
nodeRegistration:
  criSocket: /var/run/dockershim.sock
  name: kubernetes-master
  taints:
  - effect: NoSchedule
    key: node-role.kubernetes.io/master
---
apiServer:
  timeoutForControlPlane: 4m0s
apiVersion: kubeadm.k8s.io/v1beta2
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controllerManager: {}
dns:
  type: CoreDNS
etcd:
  local:
    dataDir: /var/lib/etcd
imageRepository: registry.aliyuncs.com/google_containers
kind: ClusterConfiguration
kubernetesVersion: v1.18.0
networking:
  dnsDomain: cluster.local
  podSubnet: \"10.244.0.0/16\"
  serviceSubnet: 10.96.0.0/12
scheduler: {}
";
        let c = KubeadmConfig::parse(text).unwrap();
        assert_eq!(c.advertise_address.as_deref(), Some("192.168.1.60"));
        assert_eq!(c.bind_port, Some(6443));
        assert_eq!(c.node_name.as_deref(), Some("kubernetes-master"));
        assert_eq!(c.cri_socket.as_deref(), Some("unix:///var/run/docker.sock"));
        assert_eq!(
            c.taints,
            Some(vec![Taint {
                key: "node-role.kubernetes.io/master".into(),
                value: None,
                effect: "NoSchedule".into()
            }])
        );
        assert_eq!(c.pod_subnet.as_deref(), Some("10.244.0.0/16"));
        assert_eq!(c.service_subnet.as_deref(), Some("10.96.0.0/12"));
        assert_eq!(
            c.bootstrap_token.as_ref().and_then(|t| t.token.as_deref()),
            Some("abcdef.0123456789abcdef")
        );
        assert!(
            c.warnings.iter().any(|w| w.contains("dockershim")),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings.iter().any(|w| w.contains("imageRepository")),
            "{:?}",
            c.warnings
        );
    }
}
