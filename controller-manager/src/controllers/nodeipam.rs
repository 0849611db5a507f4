//! Node IPAM: gives every Node a `spec.podCIDR` (a `/--node-cidr-mask-size` block of
//! `--cluster-cidr`), which its kubelet turns into the node's pod network. A node's block is
//! free again once the node is gone (the used set is always read from the node cache).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::Mutex;

use crate::context::Context;
use crate::controller::{Controller, Error, Reconciler, Result};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, key_of};

pub struct NodeIpam {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    /// Blocks handed out whose nodes the cache may not show yet. Allocation is serialized.
    /// Entries older than a minute are forgotten (their write was lost or the node is gone).
    recent: Mutex<HashMap<Ipv4Net, (String, std::time::Instant)>>,
}

/// The first block of `range` (split into `/size`) not in `used`.
pub fn next_free(range: Ipv4Net, size: u8, used: &HashSet<Ipv4Net>) -> Option<Ipv4Net> {
    range.subnets(size).ok()?.find(|n| !used.contains(n))
}

impl NodeIpam {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.nodes.clone();
        ctx.nodes.on_change(move |c| match c {
            Change::Applied { new, .. } => {
                if new
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_ref())
                    .is_none()
                {
                    q.add(key_of(*new));
                }
            }
            Change::Deleted(_) => {}
            Change::Resynced => all.list().iter().for_each(|n| q.add(key_of(n.as_ref()))),
        });
        Arc::new(NodeIpam {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx,
            recent: Mutex::new(HashMap::new()),
        })
    }
}

impl Controller for NodeIpam {
    const SERVICE_ACCOUNT: &'static str = "node-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for NodeIpam {
    const NAME: &'static str = "nodeipam";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let settings = &self.ctx.settings;
        if !settings.allocate_node_cidrs {
            return Ok(None);
        }
        let Some(node) = self.ctx.nodes.get(None, key) else {
            return Ok(None);
        };
        if node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .is_some()
        {
            return Ok(None);
        }
        let mut recent = self.recent.lock().await;
        let mut used: HashSet<Ipv4Net> = HashSet::new();
        for n in self.ctx.nodes.list() {
            for cidr in n
                .spec
                .iter()
                .flat_map(|s| s.pod_cidrs.iter().flatten().chain(s.pod_cidr.iter()))
            {
                if let Ok(net) = cidr.parse::<Ipv4Net>() {
                    used.insert(net);
                    recent.remove(&net);
                }
            }
        }
        recent.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(60));
        if recent.values().any(|(n, _)| n == key) {
            // Assigned a moment ago; the cache has not caught up with the write yet.
            return Ok(Some(Duration::from_secs(1)));
        }
        used.extend(recent.keys().copied());
        let Some(block) = next_free(settings.cluster_cidr, settings.node_cidr_mask_size, &used)
        else {
            return Err(Error::Invalid(format!(
                "no free /{} left in --cluster-cidr {} for node {key}",
                settings.node_cidr_mask_size, settings.cluster_cidr
            )));
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({ "spec": { "podCIDR": block.to_string(), "podCIDRs": [block.to_string()] } });
        api.patch(key, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        recent.insert(block, (key.to_string(), std::time::Instant::now()));
        tracing::info!(node = %key, cidr = %block, "allocated the node's pod CIDR");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_in_order_and_reused() {
        let range: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let mut used = HashSet::new();
        let a = next_free(range, 24, &used).unwrap();
        assert_eq!(a.to_string(), "10.244.0.0/24");
        used.insert(a);
        assert_eq!(
            next_free(range, 24, &used).unwrap().to_string(),
            "10.244.1.0/24"
        );
        let small: Ipv4Net = "10.0.0.0/23".parse().unwrap();
        let full: HashSet<Ipv4Net> = small.subnets(24).unwrap().collect();
        assert_eq!(next_free(small, 24, &full), None);
    }
}
