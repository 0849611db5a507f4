//! The built-in service load balancer (as k3s's ServiceLB): a Service of type LoadBalancer gets
//! the InternalIPs of the Ready nodes in `status.loadBalancer.ingress`, and every node's
//! skiff-proxy accepts traffic for it on those addresses at the Service's port. So
//! `kubectl expose --type=LoadBalancer` shows an EXTERNAL-IP instead of `<pending>`.
//!
//! Those addresses are the nodes' own, so a Service port that a node's components listen on
//! (the kubelet's 10250, the proxy's 10256, the apiserver's port) would take their traffic:
//! such a Service gets no address, and a `SyncLoadBalancerFailed` Warning event says why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde_json::json;
use skiff_client::events::{EventType, Recorder};

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

/// The kubelet's port when a Node does not say (`status.daemonEndpoints`).
const KUBELET_PORT: i32 = 10250;
/// skiff-proxy's (and kube-proxy's) health port.
const PROXY_HEALTH_PORT: i32 = 10256;

/// The ports the nodes' own components listen on, each with who uses it: the kubelets'
/// (10250 and any a Node reports), the proxy's health port, and the apiserver's (the
/// `default/kubernetes` Endpoints).
pub fn reserved_ports(
    nodes: &[Arc<Node>],
    kubernetes: Option<&Endpoints>,
) -> BTreeMap<i32, &'static str> {
    let mut ports = BTreeMap::from([
        (KUBELET_PORT, "the kubelet"),
        (PROXY_HEALTH_PORT, "skiff-proxy's health check"),
    ]);
    for n in nodes {
        if let Some(p) = n
            .status
            .as_ref()
            .and_then(|s| s.daemon_endpoints.as_ref())
            .and_then(|d| d.kubelet_endpoint.as_ref())
            .map(|e| e.port)
            .filter(|p| *p > 0)
        {
            ports.insert(p, "the kubelet");
        }
    }
    for subset in kubernetes
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
    {
        for p in subset.ports.iter().flatten() {
            ports.insert(p.port, "the apiserver");
        }
    }
    ports
}

/// Why the Service's ports may not be published on the nodes' addresses, if they may not.
pub fn refused_ports(svc: &Service, reserved: &BTreeMap<i32, &'static str>) -> Option<String> {
    let clashes: Vec<String> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let user = reserved.get(&p.port)?;
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            Some(format!("{}/{protocol} (used by {user})", p.port))
        })
        .collect();
    (!clashes.is_empty()).then(|| {
        format!(
            "Error syncing load balancer: port {} of the nodes is taken by their own components; the built-in load balancer publishes no address for this Service (use another port)",
            clashes.join(", ")
        )
    })
}

pub struct ServiceLb {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    recorder: Recorder,
}

impl ServiceLb {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        crate::controller::queue_every_change(&ctx.services, queue.clone());
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
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                "service-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
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
        let nodes = self.ctx.nodes.list();
        let refused = if is_lb {
            let kubernetes = self.ctx.endpoints.get(Some("default"), "kubernetes");
            refused_ports(&svc, &reserved_ports(&nodes, kubernetes.as_deref()))
        } else {
            None
        };
        if let Some(why) = &refused {
            self.recorder.publish(
                svc.object_ref(&()),
                EventType::Warning,
                "SyncLoadBalancerFailed",
                why.clone(),
            );
        }
        let want: Vec<serde_json::Value> = if is_lb && refused.is_none() {
            ingress_ips(&nodes)
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

    #[test]
    fn ports_of_the_nodes_own_components_get_no_address() {
        let node: Arc<Node> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}}}}))
            .unwrap(),
        );
        let kubernetes: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "https", "port": 6443}]}]}))
        .unwrap();
        let reserved = reserved_ports(&[node], Some(&kubernetes));
        let svc = |port: i32| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {
                "type": "LoadBalancer", "ports": [{"port": 80}, {"port": port, "protocol": "TCP"}]}}))
            .unwrap()
        };
        for (port, user) in [
            (10250, "the kubelet"),
            (11250, "the kubelet"),
            (10256, "skiff-proxy's health check"),
            (6443, "the apiserver"),
        ] {
            let why = refused_ports(&svc(port), &reserved).expect("refused");
            assert!(
                why.contains(&format!("port {port}/TCP (used by {user})")),
                "{why}"
            );
        }
        assert_eq!(refused_ports(&svc(8080), &reserved), None);
    }
}
