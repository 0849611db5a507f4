//! The cluster zone: the answers CoreDNS's `kubernetes` plugin gives (the Kubernetes DNS
//! specification, schema 1.1.0) for names under the cluster domain and for the reverse names of
//! ClusterIPs and endpoint addresses, computed per query from what the informers hold.
//!
//! A name that exists with no record of the asked type is NODATA (NOERROR, no answer); a name
//! that does not exist is NXDOMAIN; both carry the zone's SOA in the authority section, so that
//! resolvers cache the negative answer for its minimum TTL.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::model::{Endpoint, Slice, Svc, SvcKind, dashed, undashed};

/// The TTL of every record, CoreDNS's default.
pub const TTL: u32 = 5;

/// The schema version `dns-version.<zone>` answers (the specification's 1.1.0).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What the zone reads: the watched Services and EndpointSlices.
pub trait Cluster {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Svc>>;
    /// Every Service (for reverse lookups and namespace existence).
    fn services(&self) -> Vec<Arc<Svc>>;
    /// The slices of one Service.
    fn slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<Slice>>;
    /// Every slice (for reverse lookups).
    fn slices(&self) -> Vec<Arc<Slice>>;
    /// The SOA serial: when the cluster's records last changed (Unix seconds), as CoreDNS's.
    fn serial(&self) -> u32;
}

/// An authoritative answer from the zone.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The CNAME target to resolve further (an ExternalName Service), for the same type.
    pub chase: Option<Name>,
}

/// What the zone makes of a query.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Answer(Answer),
    /// Not a cluster name (or a reverse name of no cluster address): forward it upstream.
    NotOurs,
}

/// The cluster zone of one cluster domain.
#[derive(Debug, Clone)]
pub struct Zone {
    apex: Name,
    /// The apex's labels, lowercased, root first (`local`, `cluster`).
    labels: Vec<String>,
}

impl Zone {
    /// The zone of `cluster_domain` (`cluster.local`).
    pub fn new(cluster_domain: &str) -> Result<Zone, hickory_proto::ProtoError> {
        let domain = cluster_domain.trim_end_matches('.').to_ascii_lowercase();
        let apex = Name::from_ascii(format!("{domain}."))?;
        Ok(Zone {
            apex,
            labels: domain.rsplit('.').map(str::to_string).collect(),
        })
    }

    /// The cluster domain as a fully qualified name.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// Answers `qtype` for `qname` from `cluster`.
    pub fn resolve(&self, cluster: &impl Cluster, qname: &Name, qtype: RecordType) -> Outcome {
        // Labels root first, lowercased: DNS names compare without case.
        let labels: Vec<String> = qname
            .iter()
            .rev()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        if labels.len() >= self.labels.len() && labels[..self.labels.len()] == self.labels[..] {
            let rest: Vec<&str> = labels[self.labels.len()..]
                .iter()
                .map(String::as_str)
                .collect();
            return Outcome::Answer(self.cluster_name(cluster, qname, qtype, &rest));
        }
        if labels.first().map(String::as_str) == Some("arpa") {
            return self.reverse(cluster, qname, qtype);
        }
        Outcome::NotOurs
    }

    /// A name in the zone; `rest` is its labels below the apex, nearest the apex first.
    fn cluster_name(
        &self,
        cluster: &impl Cluster,
        qname: &Name,
        qtype: RecordType,
        rest: &[&str],
    ) -> Answer {
        let mut b = Builder::new(self, cluster, qname);
        match rest {
            [] => match qtype {
                RecordType::SOA => {
                    let soa = self.soa(cluster);
                    b.answers.push(soa);
                    b.done()
                }
                RecordType::NS => {
                    let ns = self.ns_name();
                    b.answer(RData::NS(NS(ns)));
                    b.done()
                }
                _ => b.nodata(),
            },
            ["dns-version"] => match qtype {
                RecordType::TXT => {
                    b.answer(RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])));
                    b.done()
                }
                _ => b.nodata(),
            },
            ["svc"] => b.nodata(),
            ["svc", ns] => {
                if cluster.services().iter().any(|s| s.namespace == *ns) {
                    b.nodata()
                } else {
                    b.nxdomain()
                }
            }
            ["svc", ns, svc] => match cluster.service(ns, svc) {
                Some(s) => b.service(&s, qtype),
                None => b.nxdomain(),
            },
            ["svc", ns, svc, proto] if proto.starts_with('_') => match cluster.service(ns, svc) {
                Some(s) if s.ports.iter().any(|p| proto[1..] == p.protocol) => b.nodata(),
                _ => b.nxdomain(),
            },
            ["svc", ns, svc, host] => match cluster.service(ns, svc) {
                Some(s) if s.kind == SvcKind::Headless => b.endpoint(&s, host, qtype),
                _ => b.nxdomain(),
            },
            ["svc", ns, svc, proto, port] if proto.starts_with('_') && port.starts_with('_') => {
                match cluster.service(ns, svc) {
                    Some(s) => b.srv(&s, &proto[1..], &port[1..], qtype),
                    None => b.nxdomain(),
                }
            }
            // Pods by address (CoreDNS's `pods insecure`, kubeadm's default):
            // `10-244-1-5.<ns>.pod.<zone>`.
            ["pod"] | ["pod", _] => b.nodata(),
            ["pod", _, ip] => match undashed(ip) {
                Some(ip) => {
                    if let Some(rdata) = address_rdata(ip, qtype) {
                        b.answer(rdata);
                        b.done()
                    } else {
                        b.nodata()
                    }
                }
                None => b.nxdomain(),
            },
            _ => b.nxdomain(),
        }
    }

    /// A `*.in-addr.arpa` / `*.ip6.arpa` name: the Service or endpoint with that address, else
    /// not ours (the upstream resolvers may know it), as CoreDNS falls through.
    fn reverse(&self, cluster: &impl Cluster, qname: &Name, qtype: RecordType) -> Outcome {
        let Ok(net) = qname.parse_arpa_name() else {
            return Outcome::NotOurs;
        };
        if net.prefix_len() != net.max_prefix_len() {
            return Outcome::NotOurs;
        }
        let ip = net.addr();
        let names = self.names_of(cluster, ip);
        if names.is_empty() {
            return Outcome::NotOurs;
        }
        let mut b = Builder::new(self, cluster, qname);
        if qtype != RecordType::PTR {
            return Outcome::Answer(b.nodata());
        }
        for n in names {
            b.answer(RData::PTR(PTR(n)));
        }
        Outcome::Answer(b.done())
    }

    /// The names an address has: `svc.ns.svc.<zone>` for a ClusterIP,
    /// `host.svc.ns.svc.<zone>` for an endpoint.
    fn names_of(&self, cluster: &impl Cluster, ip: IpAddr) -> Vec<Name> {
        let mut names = Vec::new();
        for s in cluster.services() {
            if let SvcKind::ClusterIp(ips) = &s.kind
                && ips.contains(&ip)
            {
                names.extend(self.service_name(&s.namespace, &s.name));
            }
        }
        for slice in cluster.slices() {
            for e in &slice.endpoints {
                if e.addresses.contains(&ip) {
                    names.extend(self.endpoint_name(&slice.namespace, &slice.service, e, ip));
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn service_name(&self, ns: &str, svc: &str) -> Option<Name> {
        Name::from_ascii(format!("{svc}.{ns}.svc.{}", self.apex)).ok()
    }

    /// `host.svc.ns.svc.<zone>`: the endpoint's hostname, or its dashed address.
    fn endpoint_name(&self, ns: &str, svc: &str, e: &Endpoint, ip: IpAddr) -> Option<Name> {
        let host = e.hostname.clone().unwrap_or_else(|| dashed(ip));
        Name::from_ascii(format!("{host}.{svc}.{ns}.svc.{}", self.apex)).ok()
    }

    fn ns_name(&self) -> Name {
        Name::from_ascii(format!("ns.dns.{}", self.apex)).unwrap_or_else(|_| self.apex.clone())
    }

    /// The zone's SOA, as CoreDNS writes it (`ns.dns.<zone> hostmaster.<zone>`, the TTL as
    /// the minimum, so negative answers are cached as long as positive ones).
    pub fn soa(&self, cluster: &impl Cluster) -> Record {
        let rname = Name::from_ascii(format!("hostmaster.{}", self.apex))
            .unwrap_or_else(|_| self.apex.clone());
        let soa = SOA::new(
            self.ns_name(),
            rname,
            cluster.serial(),
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(self.apex.clone(), TTL, RData::SOA(soa))
    }
}

/// The A or AAAA record data of `ip` if `qtype` asks for its family.
fn address_rdata(ip: IpAddr, qtype: RecordType) -> Option<RData> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
        _ => None,
    }
}

/// The endpoints a name resolves to: ready ones (all with `publishNotReadyAddresses`).
fn endpoints<'a>(svc: &Svc, slices: &'a [Arc<Slice>]) -> Vec<(&'a Slice, &'a Endpoint)> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().map(move |e| (&**s, e)))
        .filter(|(_, e)| e.ready || svc.publish_not_ready)
        .collect()
}

/// Builds one answer for one query name.
struct Builder<'z, C> {
    zone: &'z Zone,
    cluster: &'z C,
    qname: &'z Name,
    answers: Vec<Record>,
    additionals: Vec<Record>,
}

impl<'z, C: Cluster> Builder<'z, C> {
    fn new(zone: &'z Zone, cluster: &'z C, qname: &'z Name) -> Self {
        Builder {
            zone,
            cluster,
            qname,
            answers: Vec::new(),
            additionals: Vec::new(),
        }
    }

    fn answer(&mut self, rdata: RData) {
        self.answers
            .push(Record::from_rdata(self.qname.clone(), TTL, rdata));
    }

    fn done(self) -> Answer {
        if self.answers.is_empty() {
            return self.nodata();
        }
        Answer {
            rcode: ResponseCode::NoError,
            answers: self.answers,
            additionals: self.additionals,
            ..Answer::default()
        }
    }

    fn nodata(self) -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            authorities: vec![self.zone.soa(self.cluster)],
            ..Answer::default()
        }
    }

    fn nxdomain(self) -> Answer {
        Answer {
            rcode: ResponseCode::NXDomain,
            authorities: vec![self.zone.soa(self.cluster)],
            ..Answer::default()
        }
    }

    /// `svc.ns.svc.<zone>`.
    fn service(mut self, svc: &Svc, qtype: RecordType) -> Answer {
        match &svc.kind {
            SvcKind::ExternalName(target) => {
                let Ok(target) = Name::from_ascii(format!("{target}.")) else {
                    return self.nodata();
                };
                self.answer(RData::CNAME(CNAME(target.clone())));
                let mut answer = self.done();
                if qtype != RecordType::CNAME {
                    answer.chase = Some(target);
                }
                answer
            }
            SvcKind::ClusterIp(ips) => {
                if qtype == RecordType::SRV {
                    return self.srv_records(svc, svc.ports.iter().collect());
                }
                for ip in ips {
                    if let Some(rdata) = address_rdata(*ip, qtype) {
                        self.answer(rdata);
                    }
                }
                self.done()
            }
            SvcKind::Headless => {
                if qtype == RecordType::SRV {
                    return self.srv_records(svc, svc.ports.iter().collect());
                }
                let slices = self.cluster.slices_of(&svc.namespace, &svc.name);
                let mut ips: Vec<IpAddr> = endpoints(svc, &slices)
                    .into_iter()
                    .flat_map(|(_, e)| e.addresses.iter().copied())
                    .collect();
                ips.sort();
                ips.dedup();
                for ip in ips {
                    if let Some(rdata) = address_rdata(ip, qtype) {
                        self.answer(rdata);
                    }
                }
                self.done()
            }
        }
    }

    /// `host.svc.ns.svc.<zone>` of a headless Service: the endpoint with that hostname (or
    /// dashed address).
    fn endpoint(mut self, svc: &Svc, host: &str, qtype: RecordType) -> Answer {
        let slices = self.cluster.slices_of(&svc.namespace, &svc.name);
        let mut found = false;
        let mut ips = Vec::new();
        for (_, e) in endpoints(svc, &slices) {
            for ip in &e.addresses {
                let matches = match &e.hostname {
                    Some(h) => h == host,
                    None => dashed(*ip) == host,
                };
                if matches {
                    found = true;
                    ips.push(*ip);
                }
            }
        }
        if !found {
            return self.nxdomain();
        }
        ips.sort();
        ips.dedup();
        for ip in ips {
            if let Some(rdata) = address_rdata(ip, qtype) {
                self.answer(rdata);
            }
        }
        self.done()
    }

    /// `_port._proto.svc.ns.svc.<zone>`: exists for a named port of that protocol.
    fn srv(self, svc: &Svc, proto: &str, port: &str, qtype: RecordType) -> Answer {
        let ports: Vec<_> = svc
            .ports
            .iter()
            .filter(|p| p.name == port && p.protocol == proto)
            .collect();
        if ports.is_empty() {
            return self.nxdomain();
        }
        if qtype != RecordType::SRV {
            return self.nodata();
        }
        self.srv_records(svc, ports)
    }

    /// SRV records for `ports` of `svc`: one to the Service's name for a ClusterIP Service,
    /// one per ready endpoint (its port number from the slice) for a headless one; the targets'
    /// addresses go in the additional section.
    fn srv_records(mut self, svc: &Svc, ports: Vec<&crate::model::Port>) -> Answer {
        let mut records: Vec<(u16, Name)> = Vec::new();
        let mut extra: Vec<(Name, IpAddr)> = Vec::new();
        match &svc.kind {
            SvcKind::ClusterIp(ips) => {
                let Some(target) = self.zone.service_name(&svc.namespace, &svc.name) else {
                    return self.nodata();
                };
                for p in &ports {
                    records.push((p.port, target.clone()));
                }
                extra.extend(ips.iter().map(|ip| (target.clone(), *ip)));
            }
            SvcKind::Headless => {
                let slices = self.cluster.slices_of(&svc.namespace, &svc.name);
                for (slice, e) in endpoints(svc, &slices) {
                    for p in &ports {
                        let Some(sp) = slice
                            .ports
                            .iter()
                            .find(|sp| sp.name == p.name && sp.protocol == p.protocol)
                        else {
                            continue;
                        };
                        for ip in &e.addresses {
                            if let Some(target) =
                                self.zone.endpoint_name(&svc.namespace, &svc.name, e, *ip)
                            {
                                records.push((sp.port, target.clone()));
                                extra.push((target, *ip));
                            }
                        }
                    }
                }
            }
            SvcKind::ExternalName(_) => return self.nodata(),
        }
        records.sort();
        records.dedup();
        // Equal shares of weight 100, as CoreDNS divides it.
        let weight = u16::try_from(100 / records.len().max(1))
            .unwrap_or(1)
            .max(1);
        for (port, target) in records {
            self.answer(RData::SRV(SRV::new(0, weight, port, target)));
        }
        extra.sort();
        extra.dedup();
        for (name, ip) in extra {
            let rdata = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            self.additionals.push(Record::from_rdata(name, TTL, rdata));
        }
        self.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Port;

    /// A fixed cluster: Services and slices built by the tests.
    #[derive(Default)]
    struct Fixture {
        services: Vec<Arc<Svc>>,
        slices: Vec<Arc<Slice>>,
    }

    impl Cluster for Fixture {
        fn service(&self, namespace: &str, name: &str) -> Option<Arc<Svc>> {
            self.services
                .iter()
                .find(|s| s.namespace == namespace && s.name == name)
                .cloned()
        }
        fn services(&self) -> Vec<Arc<Svc>> {
            self.services.clone()
        }
        fn slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<Slice>> {
            self.slices
                .iter()
                .filter(|s| s.namespace == namespace && s.service == service)
                .cloned()
                .collect()
        }
        fn slices(&self) -> Vec<Arc<Slice>> {
            self.slices.clone()
        }
        fn serial(&self) -> u32 {
            1_700_000_000
        }
    }

    fn port(name: &str, protocol: &str, port: u16) -> Port {
        Port {
            name: name.into(),
            protocol: protocol.into(),
            port,
        }
    }

    fn svc(ns: &str, name: &str, kind: SvcKind, ports: Vec<Port>) -> Arc<Svc> {
        Arc::new(Svc {
            namespace: ns.into(),
            name: name.into(),
            kind,
            ports,
            publish_not_ready: false,
        })
    }

    fn ep(ip: &str, hostname: Option<&str>, ready: bool) -> Endpoint {
        Endpoint {
            addresses: vec![ip.parse().unwrap()],
            hostname: hostname.map(str::to_string),
            ready,
        }
    }

    fn fixture() -> Fixture {
        let ips = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect();
        Fixture {
            services: vec![
                svc(
                    "default",
                    "web",
                    SvcKind::ClusterIp(ips(&["10.96.0.20", "fd00::20"])),
                    vec![port("http", "tcp", 80), port("dns", "udp", 53)],
                ),
                svc(
                    "default",
                    "db",
                    SvcKind::Headless,
                    vec![port("pg", "tcp", 5432)],
                ),
                svc(
                    "apps",
                    "ext",
                    SvcKind::ExternalName("example.test".into()),
                    vec![],
                ),
            ],
            slices: vec![Arc::new(Slice {
                namespace: "default".into(),
                service: "db".into(),
                ports: vec![port("pg", "tcp", 15432)],
                endpoints: vec![
                    ep("10.244.1.5", Some("db-0"), true),
                    ep("10.244.2.7", None, true),
                    ep("10.244.3.9", Some("db-2"), false),
                ],
            })],
        }
    }

    fn ask(q: &str, t: RecordType) -> Answer {
        let zone = Zone::new("cluster.local").unwrap();
        match zone.resolve(&fixture(), &Name::from_ascii(q).unwrap(), t) {
            Outcome::Answer(a) => a,
            Outcome::NotOurs => panic!("{q} {t} was not answered by the zone"),
        }
    }

    fn data(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    fn is_negative(a: &Answer, rcode: ResponseCode) {
        assert_eq!(a.rcode, rcode, "{a:?}");
        assert!(a.answers.is_empty(), "{a:?}");
        assert_eq!(a.authorities.len(), 1, "{a:?}");
        assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(a.authorities[0].name.to_ascii(), "cluster.local.");
        assert_eq!(a.authorities[0].ttl, TTL);
    }

    #[test]
    fn cluster_ip_service_answers_its_address_per_family() {
        let a = ask("web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(data(&a.answers), ["10.96.0.20"]);
        assert_eq!(a.answers[0].ttl, 5);
        assert_eq!(
            a.answers[0].name.to_ascii(),
            "web.default.svc.cluster.local."
        );
        let aaaa = ask("Web.Default.SVC.cluster.local.", RecordType::AAAA);
        assert_eq!(data(&aaaa.answers), ["fd00::20"]);
        // The name keeps the asker's case.
        assert_eq!(
            aaaa.answers[0].name.to_ascii(),
            "Web.Default.SVC.cluster.local."
        );
    }

    #[test]
    fn a_name_without_the_asked_type_is_nodata_and_a_missing_one_nxdomain() {
        is_negative(
            &ask("web.default.svc.cluster.local.", RecordType::MX),
            ResponseCode::NoError,
        );
        is_negative(
            &ask("nope.default.svc.cluster.local.", RecordType::A),
            ResponseCode::NXDomain,
        );
        // Empty non-terminals exist.
        is_negative(
            &ask("default.svc.cluster.local.", RecordType::A),
            ResponseCode::NoError,
        );
        is_negative(
            &ask("svc.cluster.local.", RecordType::A),
            ResponseCode::NoError,
        );
        is_negative(
            &ask("nons.svc.cluster.local.", RecordType::A),
            ResponseCode::NXDomain,
        );
        // What a search path makes of a fully qualified name.
        is_negative(
            &ask(
                "web.default.svc.cluster.local.default.svc.cluster.local.",
                RecordType::A,
            ),
            ResponseCode::NXDomain,
        );
        is_negative(
            &ask("web.cluster.local.", RecordType::A),
            ResponseCode::NXDomain,
        );
    }

    #[test]
    fn headless_service_answers_its_ready_endpoints_and_their_hostnames() {
        let a = ask("db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&a.answers), ["10.244.1.5", "10.244.2.7"]);
        let host = ask("db-0.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&host.answers), ["10.244.1.5"]);
        let dashed = ask("10-244-2-7.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&dashed.answers), ["10.244.2.7"]);
        // Not ready: no name.
        is_negative(
            &ask("db-2.db.default.svc.cluster.local.", RecordType::A),
            ResponseCode::NXDomain,
        );
        is_negative(
            &ask("db-0.db.default.svc.cluster.local.", RecordType::AAAA),
            ResponseCode::NoError,
        );
        // A ClusterIP Service's endpoints have no names of their own.
        is_negative(
            &ask("x.web.default.svc.cluster.local.", RecordType::A),
            ResponseCode::NXDomain,
        );
    }

    #[test]
    fn srv_for_named_ports() {
        let a = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&a.answers),
            ["0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(data(&a.additionals), ["10.96.0.20", "fd00::20"]);
        let udp = ask("_dns._udp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&udp.answers),
            ["0 100 53 web.default.svc.cluster.local."]
        );
        // Headless: one per ready endpoint, with the endpoint's port.
        let h = ask("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&h.answers),
            [
                "0 50 15432 10-244-2-7.db.default.svc.cluster.local.",
                "0 50 15432 db-0.db.default.svc.cluster.local."
            ]
        );
        assert_eq!(h.additionals.len(), 2);
        // Wrong protocol or port name: no such name. A on the SRV name: no data.
        is_negative(
            &ask("_http._udp.web.default.svc.cluster.local.", RecordType::SRV),
            ResponseCode::NXDomain,
        );
        is_negative(
            &ask("_web._tcp.web.default.svc.cluster.local.", RecordType::SRV),
            ResponseCode::NXDomain,
        );
        is_negative(
            &ask("_http._tcp.web.default.svc.cluster.local.", RecordType::A),
            ResponseCode::NoError,
        );
        is_negative(
            &ask("_tcp.web.default.svc.cluster.local.", RecordType::SRV),
            ResponseCode::NoError,
        );
    }

    #[test]
    fn external_name_is_a_cname_to_chase() {
        let a = ask("ext.apps.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&a.answers), ["example.test."]);
        assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(a.chase.unwrap().to_ascii(), "example.test.");
        let c = ask("ext.apps.svc.cluster.local.", RecordType::CNAME);
        assert_eq!(c.chase, None);
    }

    #[test]
    fn ptr_for_cluster_ips_and_endpoints_and_others_are_forwarded() {
        let a = ask("20.0.96.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(data(&a.answers), ["web.default.svc.cluster.local."]);
        let e = ask("5.1.244.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(data(&e.answers), ["db-0.db.default.svc.cluster.local."]);
        let v6 = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(
            data(&ask(v6, RecordType::PTR).answers),
            ["web.default.svc.cluster.local."]
        );
        let zone = Zone::new("cluster.local").unwrap();
        let other = Name::from_ascii("1.0.0.127.in-addr.arpa.").unwrap();
        assert_eq!(
            zone.resolve(&fixture(), &other, RecordType::PTR),
            Outcome::NotOurs
        );
        let outside = Name::from_ascii("example.test.").unwrap();
        assert_eq!(
            zone.resolve(&fixture(), &outside, RecordType::A),
            Outcome::NotOurs
        );
    }

    #[test]
    fn apex_version_and_pods() {
        let soa = ask("cluster.local.", RecordType::SOA);
        assert_eq!(
            data(&soa.answers),
            ["ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5"]
        );
        assert_eq!(
            data(&ask("dns-version.cluster.local.", RecordType::TXT).answers),
            ["1.1.0"]
        );
        assert_eq!(
            data(&ask("10-244-1-5.default.pod.cluster.local.", RecordType::A).answers),
            ["10.244.1.5"]
        );
        is_negative(
            &ask("not-an-ip.default.pod.cluster.local.", RecordType::A),
            ResponseCode::NXDomain,
        );
    }

    #[test]
    fn another_cluster_domain() {
        let zone = Zone::new("skiff.internal").unwrap();
        let q = Name::from_ascii("web.default.svc.skiff.internal.").unwrap();
        let Outcome::Answer(a) = zone.resolve(&fixture(), &q, RecordType::A) else {
            panic!("not answered");
        };
        assert_eq!(data(&a.answers), ["10.96.0.20"]);
        let q = Name::from_ascii("web.default.svc.cluster.local.").unwrap();
        assert_eq!(
            zone.resolve(&fixture(), &q, RecordType::A),
            Outcome::NotOurs
        );
    }
}
