//! Pod routes between nodes (flannel's host-gw model): for every other node with a podCIDR and
//! an InternalIP, `ip route replace <podCIDR> via <nodeIP>`; routes to nodes that are gone or
//! changed are removed.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

/// The routes this node needs: pod CIDR → node IP of every other node.
pub fn wanted(me: &str, nodes: &[Arc<Node>]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in nodes {
        if n.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let Some(cidr) = n.spec.as_ref().and_then(|s| s.pod_cidr.clone()) else {
            continue;
        };
        let Some(ip) = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone())
        else {
            continue;
        };
        out.insert(cidr, ip);
    }
    out
}

/// Sets and removes this node's routes (`ip route`; a fake in tests).
pub trait RouteWriter {
    /// `ip route replace <cidr> via <via>`.
    fn replace(&self, cidr: &str, via: &str) -> Result<(), Error>;
    /// `ip route del <cidr>`; a route already gone is fine.
    fn delete(&self, cidr: &str);
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run ip: {0}; is iproute2 installed?")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Failed(String),
}

/// The real routes, through the `ip` command.
#[derive(Debug, Clone, Copy, Default)]
pub struct IpRoute;

impl RouteWriter for IpRoute {
    fn replace(&self, cidr: &str, via: &str) -> Result<(), Error> {
        let out = Command::new("ip")
            .args(["route", "replace", cidr, "via", via])
            .output()
            .map_err(Error::Spawn)?;
        if !out.status.success() {
            return Err(Error::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }

    fn delete(&self, cidr: &str) {
        let _ = Command::new("ip").args(["route", "del", cidr]).output();
    }
}

/// The routes this node installed, kept in line with the nodes' pod CIDRs.
#[derive(Debug)]
pub struct Router<W> {
    me: String,
    writer: W,
    installed: BTreeMap<String, String>,
}

impl<W: RouteWriter> Router<W> {
    pub fn new(me: &str, writer: W) -> Router<W> {
        Router {
            me: me.to_string(),
            writer,
            installed: BTreeMap::new(),
        }
    }

    /// Installs the routes `nodes` call for and removes the ones they no longer do. A route
    /// that cannot be installed is tried again on the next sync.
    pub fn sync(&mut self, nodes: &[Arc<Node>]) {
        let writer = &self.writer;
        let want = wanted(&self.me, nodes);
        for (cidr, via) in &want {
            if self.installed.get(cidr) == Some(via) {
                continue;
            }
            match writer.replace(cidr, via) {
                Ok(()) => {
                    tracing::info!(%cidr, %via, "pod route installed");
                    self.installed.insert(cidr.clone(), via.clone());
                }
                Err(Error::Failed(e)) => {
                    tracing::warn!(%cidr, %via, error = %e, "cannot install pod route")
                }
                Err(Error::Spawn(e)) => tracing::warn!(error = %e, "cannot run ip"),
            }
        }
        let stale: Vec<String> = self
            .installed
            .keys()
            .filter(|c| !want.contains_key(*c))
            .cloned()
            .collect();
        for cidr in stale {
            writer.delete(&cidr);
            self.installed.remove(&cidr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_to_every_other_node_with_a_cidr() {
        let node = |name: &str, cidr: Option<&str>, ip: &str| -> Arc<Node> {
            let mut v = json!({"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
            if let Some(c) = cidr {
                v["spec"] = json!({"podCIDR": c});
            }
            Arc::new(serde_json::from_value(v).unwrap())
        };
        let nodes = vec![
            node("me", Some("10.244.0.0/24"), "10.0.0.1"),
            node("two", Some("10.244.1.0/24"), "10.0.0.2"),
            node("new", None, "10.0.0.3"),
        ];
        let w = wanted("me", &nodes);
        assert_eq!(
            w.into_iter().collect::<Vec<_>>(),
            vec![("10.244.1.0/24".to_string(), "10.0.0.2".to_string())]
        );
    }
}
