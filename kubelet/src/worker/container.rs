//! The runtime's view of a container: its [`ContainerConfig`] (command and args, env, mounts,
//! limits, securityContext), the pod's `/etc/hosts` and `/etc/resolv.conf` mounts, the pull
//! policy, and the sandbox's host port mappings.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use skiff_api::Quantity;
use skiff_client::events::EventType;
use skiff_runtime::{ContainerConfig, Mount, PortMapping, PullPolicy, Resources};

use super::Worker;

pub(super) fn pull_policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        _ => PullPolicy::IfNotPresent,
    }
}

/// Millicores in a CPU quantity (rounded up, as Kubernetes' `MilliValue`).
pub(super) fn quantity_millis(q: &str) -> Option<u64> {
    Quantity::parse(q).ok()?.milli_value_unsigned()
}

/// Bytes in a memory or storage quantity (rounded up, as Kubernetes' `Value`).
pub(super) fn quantity_bytes(q: &str) -> Option<i64> {
    Some(Quantity::parse(q).ok()?.value())
}

/// The host ports the sandbox publishes: every container port with a `hostPort`.
pub(super) fn port_mappings(spec: &PodSpec) -> Vec<PortMapping> {
    let mut port_mappings = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                port_mappings.push(PortMapping {
                    container_port: p.container_port as u16,
                    host_port: hp as u16,
                    protocol: p
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_lowercase(),
                    host_ip: p.host_ip.clone(),
                });
            }
        }
    }
    port_mappings
}

impl Worker {
    /// Maps a Kubernetes container onto the runtime's config: command, env, mounts, limits.
    pub(super) async fn container_config(
        &mut self,
        c: &Container,
        restarts: u32,
    ) -> Result<ContainerConfig, String> {
        let env = self.container_env(c).await?;
        let mut mounts = self.volume_mounts(c).await?;
        mounts.extend(self.etc_mounts(c)?);
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        let user = sc.run_as_user.map(|u| match sc.run_as_group {
            Some(g) => format!("{u}:{g}"),
            None => u.to_string(),
        });
        let labels = crate::node_labels(&self.ctx.node_name);
        Ok(ContainerConfig {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            env,
            working_dir: c.working_dir.clone(),
            mounts,
            resources: Resources {
                cpu_limit_millis: limits.get("cpu").and_then(|q| quantity_millis(&q.0)),
                cpu_request_millis: requests.get("cpu").and_then(|q| quantity_millis(&q.0)),
                memory_limit_bytes: limits.get("memory").and_then(|q| quantity_bytes(&q.0)),
            },
            user,
            privileged: sc.privileged.unwrap_or(false),
            read_only_root_fs: sc.read_only_root_filesystem.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            restart_count: restarts,
            labels,
        })
    }

    /// The pod's `/etc/hosts` and `/etc/resolv.conf`, written into its folder (again each time
    /// a container starts: the pod's address or aliases may be new), as mounts for a container
    /// that does not mount those paths itself.
    fn etc_mounts(&mut self, c: &Container) -> Result<Vec<Mount>, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let dir = self.pod_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let (conf, warning) = crate::dns::pod_dns(&self.ctx.dns, &spec, self.namespace());
        if let Some(w) = warning
            && !std::mem::replace(&mut self.dns_warned, true)
        {
            let pod = format!("{}_{}({})", self.name(), self.namespace(), self.uid());
            self.event(
                None,
                EventType::Warning,
                "MissingClusterDNS",
                format!("pod: {pod:?}. {w}"),
            );
        }
        let mut resolv = String::new();
        if !conf.searches.is_empty() {
            resolv.push_str(&format!("search {}\n", conf.searches.join(" ")));
        }
        for ns in &conf.nameservers {
            resolv.push_str(&format!("nameserver {ns}\n"));
        }
        if !conf.options.is_empty() {
            resolv.push_str(&format!("options {}\n", conf.options.join(" ")));
        }
        let hosts = if spec.host_network.unwrap_or(false) {
            let node = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            Some(crate::dns::host_network_hosts_file(&spec, &node))
        } else {
            self.sandbox.ip().map(|ip| {
                crate::dns::hosts_file(
                    &spec,
                    &ip,
                    self.name(),
                    self.namespace(),
                    &self.ctx.dns.cluster_domain,
                )
            })
        };
        let mounted = |path: &str| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path.trim_end_matches('/') == path)
        };
        let mut mounts = Vec::new();
        let files = [
            ("etc-hosts", "/etc/hosts", hosts),
            ("resolv.conf", "/etc/resolv.conf", Some(resolv)),
        ];
        for (file, path, content) in files {
            let Some(content) = content else { continue };
            if mounted(path) {
                continue;
            }
            let host = dir.join(file);
            std::fs::write(&host, content)
                .map_err(|e| format!("writing {}: {e}", host.display()))?;
            mounts.push(Mount {
                host_path: host.display().to_string(),
                container_path: path.to_string(),
                read_only: false,
            });
        }
        Ok(mounts)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        ContainerPort, PodSpec, ResourceRequirements, SecurityContext, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::worker::testing::{Node, container, pod};

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(quantity_millis("250m"), Some(250));
        assert_eq!(quantity_millis("1.5"), Some(1500));
        assert_eq!(quantity_millis("2"), Some(2000));
        assert_eq!(quantity_millis("lots"), None);
        assert_eq!(quantity_bytes("64Mi"), Some(64 << 20));
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("500k"), Some(500_000));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("128974848"), Some(128_974_848));
        assert_eq!(quantity_bytes("1e3"), Some(1000));
    }

    #[test]
    fn pull_policy_defaults_to_if_not_present() {
        let mut c = Container::default();
        assert_eq!(pull_policy(&c), PullPolicy::IfNotPresent);
        c.image_pull_policy = Some("Always".into());
        assert_eq!(pull_policy(&c), PullPolicy::Always);
        c.image_pull_policy = Some("Never".into());
        assert_eq!(pull_policy(&c), PullPolicy::Never);
    }

    #[test]
    fn only_host_ports_are_published() {
        let mut app = container("app", &["true"]);
        app.ports = Some(vec![
            ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..Default::default()
            },
            ContainerPort {
                container_port: 53,
                host_port: Some(5353),
                protocol: Some("UDP".into()),
                host_ip: Some("127.0.0.1".into()),
                ..Default::default()
            },
            ContainerPort {
                container_port: 9090,
                ..Default::default()
            },
        ]);
        let spec = PodSpec {
            containers: vec![app],
            ..Default::default()
        };
        let got: Vec<(u16, u16, String, Option<String>)> = port_mappings(&spec)
            .into_iter()
            .map(|p| (p.container_port, p.host_port, p.protocol, p.host_ip))
            .collect();
        assert_eq!(
            got,
            vec![
                (80, 8080, "tcp".into(), None),
                (53, 5353, "udp".into(), Some("127.0.0.1".into())),
            ]
        );
    }

    #[tokio::test]
    async fn container_config_maps_command_limits_security_context_and_etc_files() {
        let node = Node::new();
        let mut app = container("app", &["/bin/server"]);
        app.args = Some(vec!["--port".into(), "80".into()]);
        app.working_dir = Some("/srv".into());
        app.tty = Some(true);
        app.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("500m".into())),
                ("memory".to_string(), Quantity("64Mi".into())),
            ])),
            requests: Some(BTreeMap::from([(
                "cpu".to_string(),
                Quantity("100m".into()),
            )])),
            ..Default::default()
        });
        app.security_context = Some(SecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            privileged: Some(true),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        });
        let p = pod(PodSpec {
            containers: vec![app.clone()],
            enable_service_links: Some(false),
            ..Default::default()
        });
        let (mut w, _tx) = node.worker(p);
        w.sync().await; // a sandbox, so the pod has an IP for /etc/hosts
        let cfg = w.container_config(&app, 2).await.unwrap();
        assert_eq!(cfg.name, "app");
        assert_eq!(cfg.image, "busybox");
        assert_eq!(cfg.command, vec!["/bin/server"]);
        assert_eq!(cfg.args, vec!["--port", "80"]);
        assert_eq!(cfg.working_dir.as_deref(), Some("/srv"));
        assert_eq!(cfg.resources.cpu_limit_millis, Some(500));
        assert_eq!(cfg.resources.cpu_request_millis, Some(100));
        assert_eq!(cfg.resources.memory_limit_bytes, Some(64 << 20));
        assert_eq!(cfg.user.as_deref(), Some("1000:3000"));
        assert!(cfg.privileged && cfg.read_only_root_fs && cfg.tty && !cfg.stdin);
        assert_eq!(cfg.restart_count, 2);
        assert_eq!(cfg.labels, crate::node_labels("node-1"));
        assert!(cfg.env.is_empty());
        let dir = node.root.path().join("pods/uid-web");
        let etc: Vec<(String, String)> = cfg
            .mounts
            .iter()
            .map(|m| (m.host_path.clone(), m.container_path.clone()))
            .collect();
        assert_eq!(
            etc,
            vec![
                (
                    dir.join("etc-hosts").display().to_string(),
                    "/etc/hosts".into()
                ),
                (
                    dir.join("resolv.conf").display().to_string(),
                    "/etc/resolv.conf".into()
                ),
            ]
        );
        let resolv = std::fs::read_to_string(dir.join("resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 10.96.0.10\n"), "{resolv}");
        let hosts = std::fs::read_to_string(dir.join("etc-hosts")).unwrap();
        let ip = w.sandbox.ip().unwrap();
        assert!(hosts.contains(&format!("{ip}\tweb")), "{hosts}");
    }

    #[tokio::test]
    async fn a_container_that_mounts_its_own_resolv_conf_keeps_it() {
        let node = Node::new();
        let mut app = container("app", &["true"]);
        app.volume_mounts = Some(vec![VolumeMount {
            name: "dns".into(),
            mount_path: "/etc/resolv.conf".into(),
            ..Default::default()
        }]);
        let p = pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![k8s_openapi::api::core::v1::Volume {
                name: "dns".into(),
                empty_dir: Some(Default::default()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let (mut w, _tx) = node.worker(p);
        let cfg = w.container_config(&app, 0).await.unwrap();
        let paths: Vec<&str> = cfg
            .mounts
            .iter()
            .map(|m| m.container_path.as_str())
            .collect();
        // No sandbox yet: no IP, so no /etc/hosts either.
        assert_eq!(paths, vec!["/etc/resolv.conf"]);
        assert!(cfg.mounts[0].host_path.ends_with("volumes/dns"));
    }
}
