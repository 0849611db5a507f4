//! The ruleset: from Service ports and their ready endpoints to `iptables-restore` input, as
//! kube-proxy's iptables mode lays it out. In the nat table, `SKIFF-SERVICES` matches each
//! ClusterIP (and external IP) port and jumps to a per-port `SKIFF-SVC-*` chain that picks an
//! endpoint with the `statistic` module (with `recent` first for ClientIP session affinity);
//! each `SKIFF-SEP-*` chain DNATs to one endpoint. NodePorts live in `SKIFF-NODEPORTS`,
//! reached for local destination addresses. Traffic that needs source NAT (from outside the
//! cluster CIDR, to a NodePort, or a pod reaching itself through its Service) is marked in
//! `SKIFF-MARK-MASQ` and masqueraded in `SKIFF-POSTROUTING`. In the filter table,
//! `SKIFF-SERVICES` REJECTs (ICMP port-unreachable) every port of a Service with no ready
//! endpoint, so no packet to a Service IP ever leaves the node.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use base64::Engine as _;
use sha2::{Digest, Sha256};

pub const SERVICES: &str = "SKIFF-SERVICES";
pub const NODEPORTS: &str = "SKIFF-NODEPORTS";
pub const POSTROUTING: &str = "SKIFF-POSTROUTING";
pub const MARK_MASQ: &str = "SKIFF-MARK-MASQ";
pub const FORWARD: &str = "SKIFF-FORWARD";
/// The fwmark bit that asks for masquerading (kube-proxy's 0x4000).
pub const MASQ_MARK: &str = "0x4000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service, with its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name in the Service (may be empty).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP` with this timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// Ready endpoints (address, target port), in a stable order.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

impl ServicePort {
    /// `namespace/name:port`, as rule comments and chain hashes name it.
    pub fn id(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port_name)
    }

    fn svc_chain(&self) -> String {
        chain(
            "SKIFF-SVC-",
            &format!("{}{}", self.id(), self.protocol.name()),
        )
    }

    fn sep_chain(&self, ep: &(Ipv4Addr, u16)) -> String {
        chain(
            "SKIFF-SEP-",
            &format!("{}{}{}:{}", self.id(), self.protocol.name(), ep.0, ep.1),
        )
    }
}

/// A chain name: the prefix and 16 characters of a hash (iptables allows 28 in all).
fn chain(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest);
    let clean: String = encoded
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .take(16)
        .collect();
    format!("{prefix}{clean}")
}

/// What every node's ruleset depends on besides the Services.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Traffic to a ClusterIP from outside this range is masqueraded.
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
}

/// The ruleset, and the names of the per-Service chains it contains (so the next sync can
/// delete the ones that are gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub restore: String,
    pub nat_chains: BTreeSet<String>,
}

/// Renders the whole ruleset. `stale` are per-Service chains from the previous sync that are
/// no longer needed: they are flushed and deleted in the same restore.
pub fn render(ports: &[ServicePort], settings: &Settings, stale: &BTreeSet<String>) -> Ruleset {
    let mut sorted: Vec<&ServicePort> = ports.iter().collect();
    sorted.sort_by_key(|a| (a.id(), a.protocol));

    let mut chains: BTreeSet<String> = BTreeSet::new();
    let mut nat = String::new();
    let mut filter = String::new();
    let comment =
        |sp: &ServicePort, what: &str| format!("-m comment --comment \"{} {what}\"", sp.id());

    for sp in &sorted {
        let proto = sp.protocol.name();
        let mut dests: Vec<(Ipv4Addr, &str)> = Vec::new();
        if let Some(ip) = sp.cluster_ip {
            dests.push((ip, "cluster IP"));
        }
        for ip in &sp.external_ips {
            dests.push((*ip, "external IP"));
        }
        if sp.endpoints.is_empty() {
            for (ip, what) in &dests {
                let _ = writeln!(
                    filter,
                    "-A {SERVICES} -d {ip}/32 -p {proto} {} -m {proto} --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    comment(sp, &format!("has no endpoints ({what})")),
                    sp.port
                );
            }
            if let Some(np) = sp.node_port {
                let _ = writeln!(
                    filter,
                    "-A {SERVICES} -m addrtype --dst-type LOCAL -p {proto} {} -m {proto} --dport {np} -j REJECT --reject-with icmp-port-unreachable",
                    comment(sp, "has no endpoints (node port)")
                );
            }
            continue;
        }
        let svc = sp.svc_chain();
        chains.insert(svc.clone());
        for (ip, what) in &dests {
            let _ = writeln!(
                nat,
                "-A {SERVICES} -d {ip}/32 -p {proto} {} -m {proto} --dport {} -j {svc}",
                comment(sp, what),
                sp.port
            );
            match (&settings.cluster_cidr, *what == "cluster IP") {
                (Some(cidr), true) => {
                    let _ = writeln!(
                        nat,
                        "-A {svc} ! -s {cidr} -d {ip}/32 -p {proto} {} -m {proto} --dport {} -j {MARK_MASQ}",
                        comment(sp, "cluster IP from outside the cluster"),
                        sp.port
                    );
                }
                (_, false) => {
                    let _ = writeln!(
                        nat,
                        "-A {svc} -d {ip}/32 -p {proto} {} -m {proto} --dport {} -j {MARK_MASQ}",
                        comment(sp, what),
                        sp.port
                    );
                }
                (None, true) => {}
            }
        }
        if let Some(np) = sp.node_port {
            let _ = writeln!(
                nat,
                "-A {NODEPORTS} -p {proto} {} -m {proto} --dport {np} -j {MARK_MASQ}",
                comment(sp, "node port")
            );
            let _ = writeln!(
                nat,
                "-A {NODEPORTS} -p {proto} {} -m {proto} --dport {np} -j {svc}",
                comment(sp, "node port")
            );
        }
        let seps: Vec<String> = sp.endpoints.iter().map(|ep| sp.sep_chain(ep)).collect();
        if let Some(seconds) = sp.affinity_seconds {
            for sep in &seps {
                let _ = writeln!(
                    nat,
                    "-A {svc} {} -m recent --name {sep} --rcheck --seconds {seconds} --reap -j {sep}",
                    comment(sp, "session affinity")
                );
            }
        }
        let n = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            if i + 1 < n {
                let p = 1.0 / (n - i) as f64;
                let _ = writeln!(
                    nat,
                    "-A {svc} -m comment --comment \"{}\" -m statistic --mode random --probability {p:.11} -j {sep}",
                    sp.id()
                );
            } else {
                let _ = writeln!(nat, "-A {svc} -j {sep}");
            }
        }
        for (ep, sep) in sp.endpoints.iter().zip(&seps) {
            chains.insert(sep.clone());
            let _ = writeln!(nat, "-A {sep} -s {}/32 -j {MARK_MASQ}", ep.0);
            let affinity = if sp.affinity_seconds.is_some() {
                format!(" -m recent --name {sep} --set")
            } else {
                String::new()
            };
            let _ = writeln!(
                nat,
                "-A {sep} -p {proto}{affinity} -m {proto} -j DNAT --to-destination {}:{}",
                ep.0, ep.1
            );
        }
    }

    let mut out = String::new();
    out.push_str("*nat\n");
    for c in [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ] {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    let gone: Vec<&String> = stale.iter().filter(|c| !chains.contains(*c)).collect();
    for c in chains.iter().chain(gone.iter().copied()) {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    let _ = writeln!(
        out,
        "-A {POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
    );
    let _ = writeln!(out, "-A {POSTROUTING} -j MARK --xor-mark {MASQ_MARK}");
    let _ = writeln!(
        out,
        "-A {POSTROUTING} -m comment --comment \"skiff service traffic requiring SNAT\" -j MASQUERADE"
    );
    let _ = writeln!(out, "-A {MARK_MASQ} -j MARK --or-mark {MASQ_MARK}");
    out.push_str(&nat);
    let _ = writeln!(
        out,
        "-A {SERVICES} -m comment --comment \"skiff service nodeports\" -m addrtype --dst-type LOCAL -j {NODEPORTS}"
    );
    for c in gone {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n*filter\n");
    let _ = writeln!(out, ":{SERVICES} - [0:0]");
    let _ = writeln!(out, ":{FORWARD} - [0:0]");
    out.push_str(&filter);
    let _ = writeln!(
        out,
        "-A {FORWARD} -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"
    );
    let _ = writeln!(
        out,
        "-A {FORWARD} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    out.push_str("COMMIT\n");
    Ruleset {
        restore: out,
        nat_chains: chains,
    }
}

/// A ruleset as chains: table → chain → its rules (declared chains without rules included,
/// chains the restore deletes left out).
pub fn chains_of(restore: &str) -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut deleted = Vec::new();
    let mut table = String::new();
    for line in restore.lines() {
        if let Some(chain) = line.strip_prefix("-X ") {
            deleted.push((table.clone(), chain.trim().to_string()));
        } else if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let chain = decl
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            out.entry((table.clone(), chain)).or_insert_with(Vec::new);
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            out.entry((table.clone(), chain))
                .or_insert_with(Vec::new)
                .push(line.to_string());
        }
    }
    for k in deleted {
        out.remove(&k);
    }
    out
}

/// The restore input that turns `prev` (applied) into `next`: only the chains whose rules
/// changed are rewritten, chains that are gone are deleted, and a table with no change is left
/// out (KEP-3453's partial sync; empty when nothing changed).
pub fn partial(prev: &Ruleset, next: &Ruleset) -> String {
    let before = chains_of(&prev.restore);
    let after = chains_of(&next.restore);
    let mut out = String::new();
    for table in ["nat", "filter"] {
        let changed: Vec<(&String, &Vec<String>)> = after
            .iter()
            .filter(|((t, _), _)| t == table)
            .filter(|(k, rules)| before.get(*k) != Some(*rules))
            .map(|((_, c), rules)| (c, rules))
            .collect();
        let gone: Vec<&String> = before
            .keys()
            .filter(|(t, c)| t == table && !after.contains_key(&(t.clone(), c.clone())))
            .map(|(_, c)| c)
            .collect();
        if changed.is_empty() && gone.is_empty() {
            continue;
        }
        let _ = writeln!(out, "*{table}");
        for (c, _) in &changed {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for c in &gone {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for (_, rules) in &changed {
            for r in *rules {
                let _ = writeln!(out, "{r}");
            }
        }
        for c in &gone {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The jumps from the built-in chains into Skiff's: (table, chain, rule spec).
pub fn jumps() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "nat",
            "PREROUTING",
            vec![
                "-m",
                "comment",
                "--comment",
                "skiff service portals",
                "-j",
                SERVICES,
            ],
        ),
        (
            "nat",
            "OUTPUT",
            vec![
                "-m",
                "comment",
                "--comment",
                "skiff service portals",
                "-j",
                SERVICES,
            ],
        ),
        (
            "nat",
            "POSTROUTING",
            vec![
                "-m",
                "comment",
                "--comment",
                "skiff postrouting rules",
                "-j",
                POSTROUTING,
            ],
        ),
        (
            "filter",
            "INPUT",
            vec![
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "comment",
                "--comment",
                "skiff services without endpoints",
                "-j",
                SERVICES,
            ],
        ),
        (
            "filter",
            "OUTPUT",
            vec![
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "comment",
                "--comment",
                "skiff services without endpoints",
                "-j",
                SERVICES,
            ],
        ),
        (
            "filter",
            "FORWARD",
            vec![
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "comment",
                "--comment",
                "skiff services without endpoints",
                "-j",
                SERVICES,
            ],
        ),
        (
            "filter",
            "FORWARD",
            vec![
                "-m",
                "comment",
                "--comment",
                "skiff forwarding rules",
                "-j",
                FORWARD,
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, ip: [u8; 4], endpoints: &[([u8; 4], u16)]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(Ipv4Addr::from(ip)),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_seconds: None,
            endpoints: endpoints
                .iter()
                .map(|(a, p)| (Ipv4Addr::from(*a), *p))
                .collect(),
        }
    }

    #[test]
    fn one_service_with_two_endpoints_renders_exactly() {
        let sp = port(
            "web",
            [10, 96, 0, 10],
            &[([10, 244, 1, 5], 8080), ([10, 244, 2, 7], 8080)],
        );
        let svc = sp.svc_chain();
        let sep1 = sp.sep_chain(&sp.endpoints[0]);
        let sep2 = sp.sep_chain(&sp.endpoints[1]);
        let settings = Settings {
            cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
        };
        let r = render(&[sp], &settings, &BTreeSet::new());
        let mut chains: Vec<&String> = vec![&svc, &sep1, &sep2];
        chains.sort();
        let want = format!(
            "*nat
:SKIFF-SERVICES - [0:0]
:SKIFF-NODEPORTS - [0:0]
:SKIFF-POSTROUTING - [0:0]
:SKIFF-MARK-MASQ - [0:0]
:{} - [0:0]
:{} - [0:0]
:{} - [0:0]
-A SKIFF-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A SKIFF-POSTROUTING -j MARK --xor-mark 0x4000
-A SKIFF-POSTROUTING -m comment --comment \"skiff service traffic requiring SNAT\" -j MASQUERADE
-A SKIFF-MARK-MASQ -j MARK --or-mark 0x4000
-A SKIFF-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web:http cluster IP\" -m tcp --dport 80 -j {svc}
-A {svc} ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web:http cluster IP from outside the cluster\" -m tcp --dport 80 -j SKIFF-MARK-MASQ
-A {svc} -m comment --comment \"default/web:http\" -m statistic --mode random --probability 0.50000000000 -j {sep1}
-A {svc} -j {sep2}
-A {sep1} -s 10.244.1.5/32 -j SKIFF-MARK-MASQ
-A {sep1} -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A {sep2} -s 10.244.2.7/32 -j SKIFF-MARK-MASQ
-A {sep2} -p tcp -m tcp -j DNAT --to-destination 10.244.2.7:8080
-A SKIFF-SERVICES -m comment --comment \"skiff service nodeports\" -m addrtype --dst-type LOCAL -j SKIFF-NODEPORTS
COMMIT
*filter
:SKIFF-SERVICES - [0:0]
:SKIFF-FORWARD - [0:0]
-A SKIFF-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A SKIFF-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
",
            chains[0], chains[1], chains[2]
        );
        assert_eq!(r.restore, want);
        assert_eq!(r.nat_chains.len(), 3);
    }

    #[test]
    fn no_endpoints_means_reject_and_no_nat() {
        let mut sp = port("empty", [10, 96, 0, 11], &[]);
        sp.node_port = Some(30080);
        let r = render(&[sp], &Settings::default(), &BTreeSet::new());
        assert!(r.restore.contains("-A SKIFF-SERVICES -d 10.96.0.11/32 -p tcp -m comment --comment \"default/empty:http has no endpoints (cluster IP)\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"), "{}", r.restore);
        assert!(r.restore.contains("-m addrtype --dst-type LOCAL -p tcp -m comment --comment \"default/empty:http has no endpoints (node port)\" -m tcp --dport 30080 -j REJECT"), "{}", r.restore);
        assert!(!r.restore.contains("SKIFF-SVC-"));
        assert!(r.nat_chains.is_empty());
    }

    #[test]
    fn probabilities_split_evenly_and_affinity_checks_recent_first() {
        let mut sp = port(
            "three",
            [10, 96, 0, 12],
            &[
                ([10, 0, 0, 1], 80),
                ([10, 0, 0, 2], 80),
                ([10, 0, 0, 3], 80),
            ],
        );
        sp.affinity_seconds = Some(10800);
        let r = render(&[sp.clone()], &Settings::default(), &BTreeSet::new());
        assert!(r.restore.contains("--probability 0.33333333333"));
        assert!(r.restore.contains("--probability 0.50000000000"));
        let svc = sp.svc_chain();
        let first_rule = r
            .restore
            .lines()
            .find(|l| l.starts_with(&format!("-A {svc} ")))
            .unwrap();
        assert!(
            first_rule.contains("--rcheck --seconds 10800 --reap"),
            "{first_rule}"
        );
        assert!(r.restore.contains("-m recent --name SKIFF-SEP-"));
        assert!(
            r.restore
                .contains("--set -m tcp -j DNAT --to-destination 10.0.0.3:80")
        );
    }

    #[test]
    fn node_ports_and_external_ips() {
        let mut sp = port("np", [10, 96, 0, 13], &[([10, 0, 0, 1], 8080)]);
        sp.node_port = Some(30080);
        sp.external_ips = vec![Ipv4Addr::new(192, 0, 2, 50)];
        sp.protocol = Protocol::Udp;
        let r = render(&[sp.clone()], &Settings::default(), &BTreeSet::new());
        let svc = sp.svc_chain();
        assert!(r.restore.contains("-A SKIFF-NODEPORTS -p udp -m comment --comment \"default/np:http node port\" -m udp --dport 30080 -j SKIFF-MARK-MASQ"));
        assert!(r.restore.contains(&format!("-A SKIFF-NODEPORTS -p udp -m comment --comment \"default/np:http node port\" -m udp --dport 30080 -j {svc}")));
        assert!(r.restore.contains(&format!("-A SKIFF-SERVICES -d 192.0.2.50/32 -p udp -m comment --comment \"default/np:http external IP\" -m udp --dport 80 -j {svc}")));
    }

    #[test]
    fn partial_syncs_rewrite_only_the_chains_that_changed() {
        let a = port("a", [10, 96, 0, 30], &[([10, 0, 0, 1], 80)]);
        let b = port("b", [10, 96, 0, 31], &[([10, 0, 0, 2], 80)]);
        let first = render(
            &[a.clone(), b.clone()],
            &Settings::default(),
            &BTreeSet::new(),
        );
        assert_eq!(partial(&first, &first), "", "no change, no restore");
        // b's endpoint moves: only b's SVC chain and its new SEP chain are written, the old
        // SEP chain is deleted, and SKIFF-SERVICES (unchanged) is not touched.
        let mut b2 = b.clone();
        b2.endpoints = vec![(Ipv4Addr::new(10, 0, 0, 9), 80)];
        let second = render(
            &[a.clone(), b2.clone()],
            &Settings::default(),
            &first.nat_chains,
        );
        let p = partial(&first, &second);
        let old_sep = b.sep_chain(&b.endpoints[0]);
        let new_sep = b2.sep_chain(&b2.endpoints[0]);
        let want = format!(
            "*nat\n:{new_sep} - [0:0]\n:{svc} - [0:0]\n:{old_sep} - [0:0]\n-A {new_sep} -s 10.0.0.9/32 -j SKIFF-MARK-MASQ\n-A {new_sep} -p tcp -m tcp -j DNAT --to-destination 10.0.0.9:80\n-A {svc} -j {new_sep}\n-X {old_sep}\nCOMMIT\n",
            svc = b.svc_chain()
        );
        // The order of chains follows their names; compare as sets of lines plus structure.
        let sorted = |s: &str| {
            let mut l: Vec<&str> = s.lines().collect();
            l.sort();
            l.join("\n")
        };
        assert_eq!(sorted(&p), sorted(&want), "{p}");
        assert!(!p.contains("SKIFF-SERVICES"));
        // A Service losing its last endpoint changes the filter table too.
        let mut b3 = b.clone();
        b3.endpoints.clear();
        let third = render(&[a, b3], &Settings::default(), &first.nat_chains);
        let p = partial(&first, &third);
        assert!(p.contains("*filter\n:SKIFF-SERVICES - [0:0]"), "{p}");
        assert!(p.contains("REJECT"), "{p}");
        assert!(p.contains(&format!("-X {}", b.svc_chain())), "{p}");
    }

    #[test]
    fn chains_of_removed_services_are_deleted_in_the_same_restore() {
        let a = port("a", [10, 96, 0, 20], &[([10, 0, 0, 1], 80)]);
        let b = port("b", [10, 96, 0, 21], &[([10, 0, 0, 2], 80)]);
        let first = render(
            &[a.clone(), b.clone()],
            &Settings::default(),
            &BTreeSet::new(),
        );
        let second = render(
            std::slice::from_ref(&a),
            &Settings::default(),
            &first.nat_chains,
        );
        let b_svc = b.svc_chain();
        assert!(
            second.restore.contains(&format!(":{b_svc} - [0:0]")),
            "declared so it is flushed"
        );
        assert!(second.restore.contains(&format!("-X {b_svc}")));
        assert!(!second.restore.contains(&format!("-X {}", a.svc_chain())));
        assert_eq!(second.nat_chains.len(), 2);
        // Stable: the same input renders the same text.
        assert_eq!(
            render(&[b, a], &Settings::default(), &BTreeSet::new()),
            first
        );
    }
}
