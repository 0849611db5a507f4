//! From API objects to the ruleset's input: each port of each Service (ClusterIP, NodePort or
//! LoadBalancer; headless and ExternalName Services get no rules) with the ready endpoints its
//! EndpointSlices list for that port.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::rules::{Protocol, ServicePort};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service ports to program, from all Services and EndpointSlices.
pub fn service_ports(
    services: &[std::sync::Arc<Service>],
    slices: &[std::sync::Arc<EndpointSlice>],
) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mine: Vec<&EndpointSlice> = slices
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns.as_str())
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        == Some(&name)
                    && s.address_type == "IPv4"
            })
            .map(|s| s.as_ref())
            .collect();
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800)
                .max(1) as u32
        });
        // External IPs, and for a LoadBalancer the ingress IPs in its status (ServiceLB).
        let lb_ips = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone());
        let mut external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .cloned()
            .chain(lb_ips)
            .filter_map(|ip| ip.parse().ok())
            .collect();
        external_ips.sort();
        external_ips.dedup();
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP")) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let mut endpoints: BTreeSet<(Ipv4Addr, u16)> = BTreeSet::new();
            for slice in &mine {
                let Some(target) = slice.ports.iter().flatten().find(|sp| {
                    sp.name.clone().unwrap_or_default() == port_name
                        && sp.protocol.as_deref().unwrap_or("TCP")
                            == p.protocol.as_deref().unwrap_or("TCP")
                }) else {
                    continue;
                };
                let Some(port) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for ep in &slice.endpoints {
                    if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                        continue;
                    }
                    for addr in &ep.addresses {
                        if let Ok(ip) = addr.parse::<Ipv4Addr>() {
                            endpoints.insert((ip, port));
                        }
                    }
                }
            }
            out.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name,
                protocol,
                cluster_ip: Some(cluster_ip),
                port: u16::try_from(p.port).unwrap_or(0),
                node_port: if kind == "NodePort" || kind == "LoadBalancer" {
                    p.node_port.and_then(|n| u16::try_from(n).ok())
                } else {
                    None
                },
                external_ips: external_ips.clone(),
                affinity_seconds,
                endpoints: endpoints.into_iter().collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn services_and_slices_become_ports_with_ready_endpoints() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "h", "namespace": "default"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}
        })).unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.244.1.2"], "conditions": {"ready": true}},
                {"addresses": ["10.244.1.3"], "conditions": {"ready": false}},
                {"addresses": ["10.244.1.4"]}
            ]
        })).unwrap();
        let other_ns: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-y", "namespace": "prod", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1}], "endpoints": [{"addresses": ["10.9.9.9"]}]
        })).unwrap();
        let ports = service_ports(
            &[Arc::new(svc), Arc::new(headless)],
            &[Arc::new(slice), Arc::new(other_ns)],
        );
        assert_eq!(ports.len(), 2);
        let http = &ports[0];
        assert_eq!(
            (http.port, http.node_port, http.protocol),
            (80, Some(30080), Protocol::Tcp)
        );
        assert_eq!(http.affinity_seconds, Some(10800));
        let eps: Vec<String> = http
            .endpoints
            .iter()
            .map(|(ip, p)| format!("{ip}:{p}"))
            .collect();
        assert_eq!(eps, ["10.244.1.2:8080", "10.244.1.4:8080"]);
        assert_eq!(ports[1].protocol, Protocol::Udp);
        let lb: Service = serde_json::from_value(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20", "externalIPs": ["192.0.2.9"],
                     "ports": [{"port": 80, "nodePort": 30001}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"ip": "192.0.2.9"}]}}
        })).unwrap();
        let lb_ports = service_ports(&[Arc::new(lb)], &[]);
        let ext: Vec<String> = lb_ports[0]
            .external_ips
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            ext,
            ["192.0.2.1", "192.0.2.9"],
            "ingress IPs join the external IPs"
        );
        assert_eq!(lb_ports[0].node_port, Some(30001));
        assert_eq!(ports[1].endpoints[0].1, 5353);
    }
}
