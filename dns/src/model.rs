//! What the DNS server keeps of Services and EndpointSlices: only what records are built from,
//! so that the informers' caches stay small.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service, as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svc {
    pub namespace: String,
    pub name: String,
    pub kind: SvcKind,
    pub ports: Vec<Port>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoints are answered too.
    pub publish_not_ready: bool,
}

/// How a Service's name resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SvcKind {
    /// A ClusterIP (one per family): the name resolves to it.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the name resolves to the ready endpoints.
    Headless,
    /// `type: ExternalName`: the name is a CNAME for `spec.externalName`.
    ExternalName(String),
}

/// A port with its name and protocol, lowercased as SRV names spell them (`_http._tcp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub protocol: String,
    pub port: u16,
}

/// An EndpointSlice, as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub namespace: String,
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub service: String,
    pub ports: Vec<Port>,
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    pub hostname: Option<String>,
    /// `conditions.ready`; an unknown condition counts as ready, as the API documents.
    pub ready: bool,
}

impl Svc {
    /// What DNS keeps of `s` (`None` for a Service without a name).
    pub fn from_service(s: Service) -> Option<Svc> {
        let name = s.metadata.name?;
        let namespace = s.metadata.namespace.unwrap_or_else(|| "default".into());
        let spec = s.spec.unwrap_or_default();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            SvcKind::ExternalName(
                spec.external_name
                    .unwrap_or_default()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )
        } else {
            let mut ips: Vec<String> = spec.cluster_ips.unwrap_or_default();
            if ips.is_empty() {
                ips.extend(spec.cluster_ip);
            }
            if ips.iter().any(|ip| ip == "None") {
                SvcKind::Headless
            } else {
                SvcKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
            }
        };
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(Port {
                    name: p.name.filter(|n| !n.is_empty())?,
                    protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_lowercase(),
                    port: u16::try_from(p.port).ok()?,
                })
            })
            .collect();
        Some(Svc {
            namespace,
            name,
            kind,
            ports,
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        })
    }
}

impl Slice {
    /// What DNS keeps of `s` (`None` for a slice that names no Service).
    pub fn from_slice(s: EndpointSlice) -> Option<Slice> {
        let service = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone();
        let namespace = s.metadata.namespace.unwrap_or_else(|| "default".into());
        let ports = s
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(Port {
                    name: p.name.filter(|n| !n.is_empty())?,
                    protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_lowercase(),
                    port: u16::try_from(p.port?).ok()?,
                })
            })
            .collect();
        let endpoints = s
            .endpoints
            .into_iter()
            .map(|e| Endpoint {
                addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                hostname: e
                    .hostname
                    .filter(|h| !h.is_empty())
                    .map(|h| h.to_lowercase()),
                ready: e.conditions.and_then(|c| c.ready).unwrap_or(true),
            })
            .collect();
        Some(Slice {
            namespace,
            service,
            ports,
            endpoints,
        })
    }
}

/// An address as a DNS label, as CoreDNS spells endpoints without a hostname and pod names:
/// `10-244-1-5`, `fd00--5`.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The address a dashed label spells (see [`dashed`]).
pub fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<std::net::Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}
