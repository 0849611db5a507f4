//! The built-in service load balancer (as k3s's ServiceLB): a Service of type LoadBalancer gets
//! the InternalIPs of the Ready nodes in `status.loadBalancer.ingress`, and every node's
//! skiff-proxy accepts traffic for it on those addresses at the Service's port. So
//! `kubectl expose --type=LoadBalancer` shows an EXTERNAL-IP instead of `<pending>`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, key_of, split_key};

/// The ingress addresses: InternalIPs of the Ready nodes, sorted.
pub fn ingress_ips(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut ips: Vec<String> = nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .map(|a| a.address.clone())
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

pub struct ServiceLb {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
}

impl ServiceLb {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.services.clone();
        ctx.services.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(_) => {}
            Change::Resynced => all.list().iter().for_each(|s| q.add(key_of(s.as_ref()))),
        });
        // Node changes can change every LoadBalancer's addresses.
        let q = queue.clone();
        let services = ctx.services.clone();
        ctx.nodes.on_change(move |c| {
            if matches!(c, Change::Resynced) {
                return;
            }
            for s in services.list() {
                if s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") {
                    q.add(key_of(s.as_ref()));
                }
            }
        });
        Arc::new(ServiceLb {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx,
        })
    }
}

impl Controller for ServiceLb {
    const SERVICE_ACCOUNT: &'static str = "service-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for ServiceLb {
    const NAME: &'static str = "service-lb";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(svc) = self.ctx.services.get(Some(ns), name) else {
            return Ok(None);
        };
        let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let want: Vec<serde_json::Value> = if is_lb {
            ingress_ips(&self.ctx.nodes.list())
                .into_iter()
                .map(|ip| json!({ "ip": ip, "ipMode": "VIP" }))
                .collect()
        } else {
            Vec::new()
        };
        let have: Vec<serde_json::Value> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|i| {
                i.iter()
                    .filter_map(|x| serde_json::to_value(x).ok())
                    .collect()
            })
            .unwrap_or_default();
        if have == want || (!is_lb && have.is_empty()) {
            return Ok(None);
        }
        let patch = json!({ "status": { "loadBalancer": { "ingress": want } } });
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_nodes_internal_ips() {
        let node = |name: &str, ip: &str, ready: &str| -> Arc<Node> {
            Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "status": {
                "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}],
                "conditions": [{"type": "Ready", "status": ready}]}})).unwrap())
        };
        let nodes = vec![
            node("b", "10.0.0.2", "True"),
            node("a", "10.0.0.1", "True"),
            node("c", "10.0.0.3", "Unknown"),
        ];
        assert_eq!(ingress_ips(&nodes), ["10.0.0.1", "10.0.0.2"]);
    }
}
