//! UDP conntrack clean-up. UDP has no connection to end, so a conntrack entry that still
//! points at a removed endpoint would keep sending a client's packets to it; after each sync
//! the entries that the change made stale are deleted (`conntrack -D`), as kube-proxy does.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::rules::{Protocol, ServicePort};

/// One `conntrack -D` filter (arguments after `-D -p udp`).
pub type Filter = Vec<String>;

type Key<'a> = (&'a str, &'a str, &'a str);

fn udp_ports(ports: &[ServicePort]) -> HashMap<Key<'_>, &ServicePort> {
    ports
        .iter()
        .filter(|p| p.protocol == Protocol::Udp)
        .map(|p| ((&*p.namespace, &*p.name, &*p.port_name), p))
        .collect()
}

fn destinations(sp: &ServicePort) -> impl Iterator<Item = Ipv4Addr> + '_ {
    sp.cluster_ip
        .into_iter()
        .chain(sp.external_ips.iter().copied())
}

/// The entries to delete after going from `prev` to `next`: flows to an endpoint that is no
/// longer ready (through any address of its Service or its NodePort), and flows to a Service
/// port that had no endpoints and now has (they were rejected, or went elsewhere).
pub fn stale(prev: &[ServicePort], next: &[ServicePort]) -> Vec<Filter> {
    let before = udp_ports(prev);
    let after = udp_ports(next);
    let mut out = Vec::new();
    for (key, old) in &before {
        let new = after.get(key);
        for ep in &old.endpoints {
            if new.is_some_and(|n| n.endpoints.iter().any(|e| e.0 == ep.0)) {
                continue;
            }
            for ip in destinations(old) {
                out.push(vec![
                    "--orig-dst".into(),
                    ip.to_string(),
                    "--dst-nat".into(),
                    ep.0.to_string(),
                ]);
            }
            if let Some(np) = old.node_port {
                out.push(vec![
                    "--orig-port-dst".into(),
                    np.to_string(),
                    "--dst-nat".into(),
                    ep.0.to_string(),
                ]);
            }
        }
    }
    for (key, new) in &after {
        let had_none = before.get(key).is_none_or(|o| o.endpoints.is_empty());
        if new.endpoints.is_empty() || !had_none {
            continue;
        }
        for ip in destinations(new) {
            out.push(vec![
                "--orig-dst".into(),
                ip.to_string(),
                "--orig-port-dst".into(),
                new.port.to_string(),
            ]);
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(name: &str, endpoints: &[[u8; 4]]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: "dns".into(),
            protocol: Protocol::Udp,
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 10)),
            port: 53,
            node_port: None,
            external_ips: vec![],
            affinity_seconds: None,
            endpoints: endpoints
                .iter()
                .map(|a| (Ipv4Addr::from(*a), 5353))
                .collect(),
        }
    }

    fn args(a: &[&str]) -> Filter {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_removed_udp_endpoint_has_its_flows_deleted() {
        let prev = [udp("dns", &[[10, 244, 0, 5], [10, 244, 0, 6]])];
        let next = [udp("dns", &[[10, 244, 0, 6]])];
        assert_eq!(
            stale(&prev, &next),
            vec![args(&[
                "--orig-dst",
                "10.96.0.10",
                "--dst-nat",
                "10.244.0.5"
            ])]
        );
    }

    #[test]
    fn a_deleted_service_with_a_node_port_has_all_its_flows_deleted() {
        let mut old = udp("dns", &[[10, 244, 0, 5]]);
        old.node_port = Some(30053);
        assert_eq!(
            stale(&[old], &[]),
            vec![
                args(&["--orig-dst", "10.96.0.10", "--dst-nat", "10.244.0.5"]),
                args(&["--orig-port-dst", "30053", "--dst-nat", "10.244.0.5"]),
            ]
        );
    }

    #[test]
    fn a_service_getting_its_first_endpoint_has_its_flows_deleted() {
        let prev = [udp("dns", &[])];
        let next = [udp("dns", &[[10, 244, 0, 5]])];
        assert_eq!(
            stale(&prev, &next),
            vec![args(&["--orig-dst", "10.96.0.10", "--orig-port-dst", "53"])]
        );
    }

    #[test]
    fn tcp_and_unchanged_udp_services_are_left_alone() {
        let mut tcp = udp("web", &[[10, 244, 0, 7]]);
        tcp.protocol = Protocol::Tcp;
        let same = udp("dns", &[[10, 244, 0, 5]]);
        assert!(stale(&[tcp, same.clone()], std::slice::from_ref(&same)).is_empty());
    }
}
