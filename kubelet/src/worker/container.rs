//! The runtime's view of a container: its [`ContainerConfig`] (command and args, env, mounts,
//! limits, securityContext), the pod's `/etc/hosts` and `/etc/resolv.conf` mounts, the pull
//! policy, and the sandbox's host port mappings.

use k8s_openapi::api::core::v1::{Container, PodSpec};
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

pub(super) fn quantity_millis(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0) as u64),
    }
}

pub(super) fn quantity_bytes(q: &str) -> Option<i64> {
    const UNITS: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, mult) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * mult) as i64);
        }
    }
    q.parse::<f64>().ok().map(|v| v as i64)
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
