//! From API objects to the ruleset's input: each port of each Service (ClusterIP, NodePort or
//! LoadBalancer; headless and ExternalName Services get no rules) with the ready endpoints its
//! EndpointSlices list for that port. The proxy keeps only compact copies of Services and
//! EndpointSlices ([`Svc`], [`Slice`]): what the rules need, a fraction of the objects' size.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::rules::{Protocol, ServiceKey, ServicePort};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the rules need of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svc {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<SvcPort>,
    /// External IPs and, for a LoadBalancer, its ingress IPs (ServiceLB); sorted.
    pub external_ips: Vec<Ipv4Addr>,
    pub affinity_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    /// Only for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
}

impl Svc {
    /// `None` for Services that get no rules: ExternalName, headless, no IPv4 cluster IP.
    pub fn from_service(svc: &Service) -> Option<Svc> {
        let spec = svc.spec.as_ref()?;
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            return None;
        }
        let cluster_ip = spec.cluster_ip.as_deref()?.parse::<Ipv4Addr>().ok()?;
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800)
                .max(1) as u32
        });
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
        let node_ports = kind == "NodePort" || kind == "LoadBalancer";
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(SvcPort {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                    port: u16::try_from(p.port).ok()?,
                    node_port: if node_ports {
                        p.node_port.and_then(|n| u16::try_from(n).ok())
                    } else {
                        None
                    },
                })
            })
            .collect();
        Some(Svc {
            namespace: svc.metadata.namespace.clone().unwrap_or_default(),
            name: svc.metadata.name.clone().unwrap_or_default(),
            cluster_ip,
            ports,
            external_ips,
            affinity_seconds,
        })
    }
}

/// What the rules need of an EndpointSlice: its Service, ports and ready addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub namespace: String,
    pub service: String,
    pub ports: Vec<(String, Protocol, u16)>,
    pub ready: Vec<Ipv4Addr>,
}

impl Slice {
    /// `None` for slices that are not IPv4 or name no Service.
    pub fn from_slice(slice: &EndpointSlice) -> Option<Slice> {
        if slice.address_type != "IPv4" {
            return None;
        }
        let service = slice
            .metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)?
            .clone();
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                    p.port.and_then(|n| u16::try_from(n).ok())?,
                ))
            })
            .collect();
        let ready = slice
            .endpoints
            .iter()
            .filter(|ep| ep.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|ep| ep.addresses.iter())
            .filter_map(|a| a.parse().ok())
            .collect();
        Some(Slice {
            namespace: slice.metadata.namespace.clone().unwrap_or_default(),
            service,
            ports,
            ready,
        })
    }
}

/// The Service ports to program, from all Services and EndpointSlices.
pub fn service_ports(services: &[Arc<Svc>], slices: &[Arc<Slice>]) -> Vec<ServicePort> {
    let mut by_service: HashMap<(&str, &str), Vec<&Slice>> = HashMap::new();
    for s in slices {
        by_service
            .entry((s.namespace.as_str(), s.service.as_str()))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for svc in services {
        let mine = by_service
            .get(&(svc.namespace.as_str(), svc.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        out.extend(ports_of(svc, mine));
    }
    out
}

/// The ports of one Service, with the ready endpoints that `slices` (its own) list for each.
pub fn ports_of(svc: &Svc, slices: &[&Slice]) -> Vec<ServicePort> {
    svc.ports
        .iter()
        .map(|p| {
            let mut endpoints: BTreeSet<(Ipv4Addr, u16)> = BTreeSet::new();
            for slice in slices {
                let Some((_, _, port)) = slice
                    .ports
                    .iter()
                    .find(|(name, proto, _)| *name == p.name && *proto == p.protocol)
                else {
                    continue;
                };
                endpoints.extend(slice.ready.iter().map(|ip| (*ip, *port)));
            }
            ServicePort {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                port_name: p.name.clone(),
                protocol: p.protocol,
                cluster_ip: Some(svc.cluster_ip),
                port: p.port,
                node_port: p.node_port,
                external_ips: svc.external_ips.clone(),
                affinity_seconds: svc.affinity_seconds,
                endpoints: endpoints.into_iter().collect(),
            }
        })
        .collect()
}

/// Which EndpointSlices (by cache key) belong to which Service, kept up to date as slices
/// change, so that a changed slice re-renders only its Service.
#[derive(Debug, Default)]
pub struct SliceIndex {
    owner: HashMap<String, ServiceKey>,
    /// Usually one slice per Service: a `Vec` is a tenth of a `BTreeSet`'s size.
    members: HashMap<ServiceKey, Vec<String>>,
}

impl SliceIndex {
    /// Records that slice `key` now belongs to `owner` (`None`: it is gone) and returns the
    /// Services whose endpoints that may change (its old and new owner).
    pub fn set(&mut self, key: &str, owner: Option<ServiceKey>) -> Vec<ServiceKey> {
        let mut affected = Vec::new();
        if let Some(old) = self.owner.remove(key) {
            if let Some(m) = self.members.get_mut(&old) {
                m.retain(|k| k != key);
                if m.is_empty() {
                    self.members.remove(&old);
                }
            }
            affected.push(old);
        }
        if let Some(new) = owner {
            self.owner.insert(key.to_string(), new.clone());
            self.members
                .entry(new.clone())
                .or_default()
                .push(key.to_string());
            if !affected.contains(&new) {
                affected.push(new);
            }
        }
        affected
    }

    /// The cache keys of the slices of `service`.
    pub fn slices(&self, service: &ServiceKey) -> impl Iterator<Item = &String> {
        self.members.get(service).into_iter().flatten()
    }
}

/// The Service a slice belongs to.
pub fn owner(slice: &Slice) -> ServiceKey {
    (slice.namespace.clone(), slice.service.clone())
}

/// A Service cache key (`namespace/name`) as a [`ServiceKey`].
pub fn service_key(key: &str) -> ServiceKey {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    (ns.to_string(), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compute(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServicePort> {
        let svcs: Vec<Arc<Svc>> = services
            .iter()
            .filter_map(Svc::from_service)
            .map(Arc::new)
            .collect();
        let slices: Vec<Arc<Slice>> = slices
            .iter()
            .filter_map(Slice::from_slice)
            .map(Arc::new)
            .collect();
        service_ports(&svcs, &slices)
    }

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
        let ports = compute(&[svc, headless], &[slice, other_ns]);
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
        let lb_ports = compute(&[lb], &[]);
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

    #[test]
    fn the_slice_index_names_the_services_a_slice_change_touches() {
        let web = ("default".to_string(), "web".to_string());
        let api = ("default".to_string(), "api".to_string());
        let mut index = SliceIndex::default();
        assert_eq!(
            index.set("default/web-1", Some(web.clone())),
            vec![web.clone()]
        );
        assert_eq!(
            index.set("default/web-2", Some(web.clone())),
            vec![web.clone()]
        );
        assert_eq!(index.slices(&web).count(), 2);
        // Relabelled to another Service: both are touched.
        assert_eq!(
            index.set("default/web-2", Some(api.clone())),
            vec![web.clone(), api.clone()]
        );
        assert_eq!(
            index.slices(&web).collect::<Vec<_>>(),
            vec!["default/web-1"]
        );
        // Deleted.
        assert_eq!(index.set("default/web-1", None), vec![web.clone()]);
        assert_eq!(index.slices(&web).count(), 0);
        assert_eq!(index.set("default/unknown", None), Vec::<ServiceKey>::new());
    }
}
