//! A pod's `resolv.conf` and `/etc/hosts`, as the kubelet writes them.
//!
//! DNS follows `dnsPolicy`: `ClusterFirst` (the default) points at `--cluster-dns` with the
//! cluster's search domains and `ndots:5`, and falls back to the node's resolver (with a
//! `MissingClusterDNS` warning) when no cluster DNS is configured; a host-network pod gets the
//! node's resolver unless it asks for `ClusterFirstWithHostNet`; `Default` is the node's
//! resolver (`--resolv-conf`); `None` is only what `dnsConfig` gives. `dnsConfig` is then
//! merged in: nameservers and searches appended without duplicates, options by name.
//!
//! `/etc/hosts` is the Kubernetes-managed file: localhost entries, the pod's own address with
//! its hostname (and FQDN when it has a subdomain), then `hostAliases`. A host-network pod sees
//! the node's hosts file under the same header.

use k8s_openapi::api::core::v1::PodSpec;

/// What the kubelet's flags say about DNS.
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    /// `--cluster-dns`.
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// The node's resolver, read from `--resolv-conf`.
    pub host: ResolvConf,
}

/// The content of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Reads `nameserver`, `search` (and `domain`) and `options` lines; the last `search`
    /// wins, as in the resolver.
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_string)),
                Some("search" | "domain") => out.searches = words.map(str::to_string).collect(),
                Some("options") => out.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        out
    }
}

/// The pod's DNS configuration, and the warning to record when `ClusterFirst` had to fall back
/// to the node's resolver.
pub fn pod_dns(
    settings: &DnsSettings,
    spec: &PodSpec,
    namespace: &str,
) -> (ResolvConf, Option<String>) {
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut warning = None;
    let mut conf = if policy == "None" {
        ResolvConf::default()
    } else if cluster && !settings.cluster_dns.is_empty() {
        let domain = &settings.cluster_domain;
        let mut searches = if domain.is_empty() {
            Vec::new()
        } else {
            vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ]
        };
        searches.extend(settings.host.searches.iter().cloned());
        ResolvConf {
            nameservers: settings.cluster_dns.clone(),
            searches: dedup(searches),
            options: vec!["ndots:5".into()],
        }
    } else {
        if cluster {
            warning = Some("kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.".to_string());
        }
        settings.host.clone()
    };
    if let Some(extra) = &spec.dns_config {
        conf.nameservers
            .extend(extra.nameservers.iter().flatten().cloned());
        conf.nameservers = dedup(std::mem::take(&mut conf.nameservers));
        conf.searches
            .extend(extra.searches.iter().flatten().cloned());
        conf.searches = dedup(std::mem::take(&mut conf.searches));
        for o in extra.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            conf.options
                .retain(|have| have.split(':').next() != Some(name));
            conf.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    (conf, warning)
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The Kubernetes-managed `/etc/hosts` of a pod with its own network namespace.
pub fn hosts_file(
    spec: &PodSpec,
    pod_ip: &str,
    pod_name: &str,
    namespace: &str,
    domain: &str,
) -> String {
    let hostname = spec
        .hostname
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_name);
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => {
            out.push_str(&format!(
                "{pod_ip}\t{hostname}.{sub}.{namespace}.svc.{domain}\t{hostname}\n"
            ));
        }
        None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    out.push_str(&host_aliases(spec));
    out
}

/// A host-network pod's `/etc/hosts`: the node's, under the managed header.
pub fn host_network_hosts_file(spec: &PodSpec, node_hosts: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&host_aliases(spec));
    out
}

fn host_aliases(spec: &PodSpec) -> String {
    let Some(aliases) = spec.host_aliases.as_ref().filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    fn settings(cluster_dns: &[&str]) -> DnsSettings {
        DnsSettings {
            cluster_dns: cluster_dns.iter().map(|s| s.to_string()).collect(),
            cluster_domain: "cluster.local".into(),
            host: ResolvConf::parse(
                "# node\nnameserver 10.0.0.2\nnameserver 10.0.0.3 ; second\nsearch corp.example\noptions edns0\n",
            ),
        }
    }

    #[test]
    fn cluster_first_points_at_cluster_dns_with_the_cluster_searches() {
        let (conf, warning) = pod_dns(&settings(&["10.96.0.10"]), &spec(json!({})), "shop");
        assert_eq!(warning, None);
        assert_eq!(conf.nameservers, ["10.96.0.10"]);
        assert_eq!(
            conf.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(conf.options, ["ndots:5"]);
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_the_node_with_a_warning() {
        let (conf, warning) = pod_dns(&settings(&[]), &spec(json!({})), "shop");
        assert_eq!(conf, settings(&[]).host);
        assert!(
            warning
                .unwrap()
                .contains("Falling back to \"Default\" policy")
        );
    }

    #[test]
    fn host_network_uses_the_node_unless_it_asks_for_cluster_dns() {
        let s = settings(&["10.96.0.10"]);
        let (conf, warning) = pod_dns(&s, &spec(json!({"hostNetwork": true})), "shop");
        assert_eq!((conf, warning), (s.host.clone(), None));
        let (conf, _) = pod_dns(
            &s,
            &spec(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            "shop",
        );
        assert_eq!(conf.nameservers, ["10.96.0.10"]);
        let (conf, _) = pod_dns(&s, &spec(json!({"dnsPolicy": "Default"})), "shop");
        assert_eq!(conf.nameservers, ["10.0.0.2", "10.0.0.3"]);
    }

    #[test]
    fn dns_config_is_merged_and_none_takes_only_it() {
        let s = settings(&["10.96.0.10"]);
        let extra = json!({"nameservers": ["10.96.0.10", "1.2.3.4"], "searches": ["a.example", "cluster.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]});
        let (conf, _) = pod_dns(&s, &spec(json!({"dnsConfig": extra})), "shop");
        assert_eq!(conf.nameservers, ["10.96.0.10", "1.2.3.4"]);
        assert_eq!(
            conf.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "a.example"
            ]
        );
        assert_eq!(conf.options, ["ndots:2", "single-request"]);
        let (conf, _) = pod_dns(
            &s,
            &spec(json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"]}})),
            "shop",
        );
        assert_eq!(
            conf,
            ResolvConf {
                nameservers: vec!["1.2.3.4".into()],
                ..Default::default()
            }
        );
    }

    #[test]
    fn the_hosts_file_is_kubernetes_managed() {
        let s = spec(
            json!({"hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}),
        );
        assert_eq!(
            hosts_file(&s, "10.244.1.5", "web", "shop", "cluster.local"),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.1.5\tweb\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"
        );
        let s = spec(json!({"hostname": "db-0", "subdomain": "db"}));
        assert!(
            hosts_file(&s, "10.244.1.6", "x", "shop", "cluster.local")
                .ends_with("10.244.1.6\tdb-0.db.shop.svc.cluster.local\tdb-0\n")
        );
        assert_eq!(
            host_network_hosts_file(&spec(json!({})), "127.0.0.1 localhost"),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }
}
