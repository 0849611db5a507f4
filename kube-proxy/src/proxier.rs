//! The sync: one pass from the watched Services, EndpointSlices and Nodes to the kernel. A
//! [`Proxier`] decides between a full restore and a partial one (KEP-3453), re-renders the
//! Services that changed, writes the rules, clears the UDP flows the change made stale,
//! keeps the pod network and records the health figures; [`Proxier::run`] is the loop that
//! calls it. The kernel is behind [`RuleWriter`] and [`Network`] and the caches behind
//! [`Inputs`], so the decisions are unit-tested with fakes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Node;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::health::Metrics;
use crate::iptables::{self, Iptables};
use crate::model::{self, Slice, SliceIndex, Svc};
use crate::routes::{RouteWriter, Router};
use crate::rules::{self, Name, Renderer, ServiceKey, ServicePort, Table};
use crate::vxlan::{Overlay, VxlanWriter};
use crate::{Config, conntrack};

/// How long after a failed write the (full) restore is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a sync writes to the kernel's packet filter: [`Iptables`], or a fake in tests.
pub trait RuleWriter {
    /// Applies `iptables-restore --noflush` input.
    fn restore(&self, input: &str) -> Result<(), iptables::Error>;
    /// Makes sure the built-in chains jump into Skiff's (after a full restore).
    fn ensure_jumps(&self) -> Result<(), iptables::Error>;
    /// The `SKIFF-*` chains that exist in `table`.
    fn chains(&self, table: &str) -> Result<BTreeSet<String>, iptables::Error>;
    /// Deletes the UDP conntrack entries matching `filter` (none matching is fine).
    fn conntrack_delete(&self, filter: &[String]);
}

impl RuleWriter for Iptables {
    fn restore(&self, input: &str) -> Result<(), iptables::Error> {
        Iptables::restore(self, input)
    }

    fn ensure_jumps(&self) -> Result<(), iptables::Error> {
        Iptables::ensure_jumps(self)
    }

    fn chains(&self, table: &str) -> Result<BTreeSet<String>, iptables::Error> {
        Iptables::chains(self, table)
    }

    fn conntrack_delete(&self, filter: &[String]) {
        Iptables::conntrack_delete(self, filter)
    }
}

/// What keeps other nodes' pods reachable from this node's, from the Nodes' pod CIDRs and
/// addresses (`--pod-network`): host-gw routes ([`Router`]) or the VXLAN overlay
/// ([`Overlay`]). Every sync calls it with every Node; it writes only what changed.
pub trait Network {
    fn sync(&mut self, nodes: &[Arc<Node>]);
}

impl<W: RouteWriter> Network for Router<W> {
    fn sync(&mut self, nodes: &[Arc<Node>]) {
        Router::sync(self, nodes)
    }
}

impl<W: VxlanWriter> Network for Overlay<W> {
    fn sync(&mut self, nodes: &[Arc<Node>]) {
        Overlay::sync(self, nodes)
    }
}

impl<N: Network + ?Sized> Network for Box<N> {
    fn sync(&mut self, nodes: &[Arc<Node>]) {
        (**self).sync(nodes)
    }
}

/// What a sync reads: compact Services and EndpointSlices by `namespace/name` key, the
/// Nodes, and which keys changed since the last sync. Lookups by key are all a partial sync
/// does, so it costs the same at 10 Services as at 10,000; the whole lists are read only after
/// a relist (or at first, or on new settings).
pub trait Inputs {
    /// The Service with cache key `namespace/name`.
    fn service(&self, key: &str) -> Option<Arc<Svc>>;
    /// Every Service's key.
    fn service_keys(&self) -> Vec<String>;
    /// The EndpointSlice with cache key `namespace/name`.
    fn slice(&self, key: &str) -> Option<Arc<Slice>>;
    /// Every EndpointSlice with its key.
    fn slices(&self) -> Vec<(String, Arc<Slice>)>;
    /// Every Node (its name, podCIDR and addresses are what is read).
    fn nodes(&self) -> Vec<Arc<Node>>;
    /// The Service and EndpointSlice keys changed since the last call; the first call (and
    /// the first after a relist) says everything may have. Node changes are not needed: the
    /// routes and this node's pod CIDR are read on every sync.
    fn take_changes(&self) -> Changes;
}

/// What changed since the last sync.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Possibly everything (a relist, or the first sync): every Service is re-rendered.
    pub all: bool,
    pub services: HashSet<String>,
    pub slices: HashSet<String>,
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole ruleset was restored (the first sync, after a failed write, every sync
    /// period, and on new settings).
    Full,
    /// Only the chains that changed were written.
    Partial,
    /// Nothing needed writing.
    Unchanged,
    /// Writing failed: the next sync, in a second, restores everything.
    Failed,
}

/// The proxy's state between syncs.
pub struct Proxier<W, N> {
    node_name: String,
    cluster_cidr: Option<ipnet::Ipv4Net>,
    service_cidr: Option<ipnet::Ipv4Net>,
    min_sync_period: Duration,
    sync_period: Duration,
    rules: W,
    network: N,
    metrics: Arc<Metrics>,
    renderer: Renderer,
    index: SliceIndex,
    /// Whether the kernel holds the renderer's ruleset; if not (at start, after a failure and
    /// every sync period) the next sync restores it whole.
    applied: bool,
    /// Each changed Service's UDP ports before and after the changes not yet applied, for the
    /// conntrack clean-up.
    udp_before: BTreeMap<ServiceKey, Vec<ServicePort>>,
    udp_after: BTreeMap<ServiceKey, Vec<ServicePort>>,
    last_full: Instant,
    /// When rules were last written: --min-sync-period spaces writes, not wake-ups (a sync
    /// that finds nothing to change must not hold back the next change).
    last_write: Instant,
    /// The per-Service chains in the kernel's nat table, as far as this proxy knows: a full
    /// restore deletes those no longer needed.
    known: BTreeSet<Name>,
}

impl<W: RuleWriter, N: Network> Proxier<W, N> {
    /// A proxier for `config` writing through `rules` and `network`. It lists the chains there
    /// now: those left by an earlier run are deleted by the first sync if no longer needed.
    pub fn new(config: &Config, rules: W, network: N, metrics: Arc<Metrics>) -> Proxier<W, N> {
        let known = service_chains(rules.chains("nat").unwrap_or_default()).collect();
        Proxier {
            node_name: config.node_name.clone(),
            cluster_cidr: config.cluster_cidr,
            service_cidr: config.service_cidr,
            min_sync_period: config.min_sync_period,
            sync_period: config.sync_period,
            rules,
            network,
            metrics,
            renderer: Renderer::default(),
            index: SliceIndex::default(),
            applied: false,
            udp_before: BTreeMap::new(),
            udp_after: BTreeMap::new(),
            last_full: Instant::now(),
            last_write: Instant::now()
                .checked_sub(config.min_sync_period)
                .unwrap_or_else(Instant::now),
            known,
        }
    }

    /// Syncs whenever `changed` is notified (at most one write per `--min-sync-period`) and
    /// every `--sync-period`, retrying a failed write after a second, until `shutdown`; every
    /// wait ends at once on shutdown.
    pub async fn run(
        &mut self,
        inputs: &impl Inputs,
        changed: &Notify,
        shutdown: &CancellationToken,
    ) {
        loop {
            let wait = self.until_next_write();
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            match self.sync(inputs) {
                Outcome::Failed => tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                    _ = shutdown.cancelled() => return,
                },
                Outcome::Full | Outcome::Partial | Outcome::Unchanged => tokio::select! {
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(self.sync_period) => {}
                    _ = shutdown.cancelled() => return,
                },
            }
        }
    }

    /// How long until rules may be written again.
    pub fn until_next_write(&self) -> Duration {
        self.min_sync_period
            .saturating_sub(self.last_write.elapsed())
    }

    /// One sync: re-renders what changed in `inputs` since the last, writes it (everything
    /// when a full restore is due), clears stale UDP flows, and keeps the pod network.
    pub fn sync(&mut self, inputs: &impl Inputs) -> Outcome {
        let started = Instant::now();
        let settings = rules::Settings {
            cluster_cidr: self.cluster_cidr,
            service_cidr: self.service_cidr,
            local_pod_cidr: local_pod_cidr(&inputs.nodes(), &self.node_name),
        };
        let changes = inputs.take_changes();
        let dirty = self.dirty(inputs, settings, changes);
        let updates = self.updates(inputs, dirty);
        let delta = self.renderer.update(updates);
        if self.last_full.elapsed() >= self.sync_period {
            self.applied = false;
        }
        // A full restore when due, else only the chains that changed (KEP-3453).
        let full = !self.applied;
        let writing = Instant::now();
        let written = if full {
            let input = self.renderer.ruleset().restore_deleting(&self.known);
            self.rules
                .restore(&input)
                .and_then(|()| self.rules.ensure_jumps())
                .map(|()| true)
        } else {
            let input = delta.restore();
            if input.is_empty() {
                Ok(false)
            } else {
                self.rules.restore(&input).map(|()| true)
            }
        };
        let wrote = match written {
            Ok(wrote) => wrote,
            Err(e) => {
                tracing::error!(error = %e, "applying the rules failed; a full restore follows");
                self.applied = false;
                self.learn_chains_after_failure(&delta, full);
                return Outcome::Failed;
            }
        };
        self.metrics.applied(SystemTime::now());
        if full {
            self.last_full = Instant::now();
            self.known = self.renderer.ruleset().service_chains();
        } else {
            for (table, chain) in &delta.delete {
                if *table == Table::Nat {
                    self.known.remove(chain);
                }
            }
            self.known.extend(
                delta
                    .write
                    .keys()
                    .filter(|(t, c)| *t == Table::Nat && c.starts_with("SKIFF-SVC-"))
                    .map(|(_, c)| c.clone()),
            );
        }
        self.applied = true;
        self.clean_conntrack();
        if wrote {
            self.last_write = started;
            tracing::info!(
                service_ports = self.renderer.port_count(),
                full,
                took_ms = started.elapsed().as_millis() as u64,
                restore_ms = writing.elapsed().as_millis() as u64,
                "rules synced"
            );
        }
        self.network.sync(&inputs.nodes());
        self.metrics.synced(
            SystemTime::now(),
            started.elapsed(),
            self.renderer.ruleset().rule_count(),
            self.renderer.port_count(),
        );
        match (full, wrote) {
            (true, _) => Outcome::Full,
            (false, true) => Outcome::Partial,
            (false, false) => Outcome::Unchanged,
        }
    }

    /// The Services to re-render: only those that changed (directly or through their
    /// slices); all after a relist, on new settings, or at first.
    fn dirty(
        &mut self,
        inputs: &impl Inputs,
        settings: rules::Settings,
        changes: Changes,
    ) -> BTreeSet<ServiceKey> {
        let mut dirty: BTreeSet<ServiceKey> = BTreeSet::new();
        let new_settings = settings != *self.renderer.settings();
        if !new_settings && !changes.all {
            dirty.extend(changes.services.iter().map(|k| model::service_key(k)));
            for key in &changes.slices {
                let owner = inputs.slice(key).map(|s| model::owner(&s));
                dirty.extend(self.index.set(key, owner));
            }
            return dirty;
        }
        if new_settings {
            // New settings change rules the renderer cannot diff against (a fresh one knows
            // nothing of the old): restore everything. The conntrack clean-up compares with
            // what was applied, which only the old renderer knows.
            let keys: Vec<ServiceKey> = self.renderer.services().cloned().collect();
            for key in keys {
                let before: Vec<_> = self.renderer.ports(&key).filter(is_udp).cloned().collect();
                if !before.is_empty() {
                    self.udp_before.entry(key).or_insert(before);
                }
            }
            self.renderer = Renderer::new(settings);
            self.applied = false;
        }
        self.index = SliceIndex::default();
        for (key, slice) in inputs.slices() {
            self.index.set(&key, Some(model::owner(&slice)));
        }
        dirty.extend(self.renderer.services().cloned());
        dirty.extend(inputs.service_keys().iter().map(|k| model::service_key(k)));
        dirty
    }

    /// The current ports of each Service in `dirty`, noting its UDP ports before and after
    /// for the conntrack clean-up.
    fn updates(
        &mut self,
        inputs: &impl Inputs,
        dirty: BTreeSet<ServiceKey>,
    ) -> Vec<(ServiceKey, Vec<ServicePort>)> {
        dirty
            .into_iter()
            .map(|key| {
                let ports = match inputs.service(&format!("{}/{}", key.0, key.1)) {
                    Some(svc) => {
                        // The index may lag a slice relabelled a moment ago (its key not
                        // recorded yet): only slices that say they are this Service's count.
                        let mine: Vec<Arc<Slice>> = self
                            .index
                            .slices(&key)
                            .filter_map(|k| inputs.slice(k))
                            .filter(|s| s.namespace == key.0 && s.service == key.1)
                            .collect();
                        let mine: Vec<&Slice> = mine.iter().map(|s| &**s).collect();
                        model::ports_of(&svc, &mine)
                    }
                    None => Vec::new(),
                };
                // The UDP ports as last applied (kept from the first change not yet applied).
                let before: Vec<_> = self.renderer.ports(&key).filter(is_udp).cloned().collect();
                let after: Vec<_> = ports.iter().filter(is_udp).cloned().collect();
                if !before.is_empty() || !after.is_empty() || self.udp_before.contains_key(&key) {
                    self.udp_before.entry(key.clone()).or_insert(before);
                    self.udp_after.insert(key.clone(), after);
                }
                (key, ports)
            })
            .collect()
    }

    /// Deletes the UDP flows the applied changes made stale. They are cleared whether or not
    /// a chain changed (a Service without endpoints keeps its REJECT, yet its flows may be
    /// stale).
    fn clean_conntrack(&mut self) {
        let before: Vec<ServicePort> = std::mem::take(&mut self.udp_before)
            .into_values()
            .flatten()
            .collect();
        let after: Vec<ServicePort> = std::mem::take(&mut self.udp_after)
            .into_values()
            .flatten()
            .collect();
        for filter in conntrack::stale(&before, &after) {
            self.rules.conntrack_delete(&filter);
        }
    }

    /// A restore may have stopped half way: learn the chains there now (or, if they cannot
    /// be listed, assume every chain it wrote is there), so the next full restore deletes
    /// those no longer needed.
    fn learn_chains_after_failure(&mut self, delta: &rules::Delta, full: bool) {
        match self.rules.chains("nat") {
            Ok(chains) => self.known.extend(service_chains(chains)),
            Err(_) => {
                self.known.extend(
                    delta
                        .write
                        .keys()
                        .filter(|(t, _)| *t == Table::Nat)
                        .map(|(_, c)| c.clone())
                        .filter(|c| c.starts_with("SKIFF-SVC-")),
                );
                if full {
                    self.known.extend(self.renderer.ruleset().service_chains());
                }
            }
        }
    }
}

fn is_udp(p: &&ServicePort) -> bool {
    p.protocol == rules::Protocol::Udp
}

/// The per-Service chains among `chains` (those of an earlier layout included).
fn service_chains(chains: BTreeSet<String>) -> impl Iterator<Item = Name> {
    chains
        .into_iter()
        .filter(|c| c.starts_with("SKIFF-SVC-") || c.starts_with("SKIFF-SEP-"))
        .map(Name::from)
}

/// This node's `spec.podCIDR`, once the controller-manager has assigned it.
fn local_pod_cidr(nodes: &[Arc<Node>], name: &str) -> Option<ipnet::Ipv4Net> {
    nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))
        .and_then(|n| n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    use crate::model::SvcPort;
    use crate::routes;
    use crate::rules::Protocol;

    /// A call the proxier made to the kernel side.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Restore(String),
        EnsureJumps,
        Conntrack(Vec<String>),
        Route(String, String),
        Unroute(String),
    }

    #[derive(Debug, Default)]
    struct Recorded {
        calls: Vec<Call>,
        /// When each restore was attempted.
        restores: Vec<Instant>,
        chains: BTreeSet<String>,
        /// How many of the next restores fail.
        failing: usize,
    }

    /// The recording fake of both writers (one log, so their order shows).
    #[derive(Debug, Clone, Default)]
    struct Fake(Arc<Mutex<Recorded>>);

    impl Fake {
        fn with_chains(chains: &[&str]) -> Fake {
            let fake = Fake::default();
            fake.0.lock().unwrap().chains = chains.iter().map(|c| c.to_string()).collect();
            fake
        }

        fn fail_next(&self, n: usize) {
            self.0.lock().unwrap().failing = n;
        }

        fn take(&self) -> Vec<Call> {
            std::mem::take(&mut self.0.lock().unwrap().calls)
        }

        fn restores(&self) -> Vec<Instant> {
            self.0.lock().unwrap().restores.clone()
        }

        fn record(&self, call: Call) {
            self.0.lock().unwrap().calls.push(call);
        }
    }

    impl RuleWriter for Fake {
        fn restore(&self, input: &str) -> Result<(), iptables::Error> {
            let mut r = self.0.lock().unwrap();
            r.calls.push(Call::Restore(input.to_string()));
            r.restores.push(Instant::now());
            if r.failing > 0 {
                r.failing -= 1;
                return Err(iptables::Error::Failed {
                    cmd: "iptables-restore --noflush".into(),
                    stderr: "iptables-restore: line 3 failed".into(),
                });
            }
            Ok(())
        }

        fn ensure_jumps(&self) -> Result<(), iptables::Error> {
            self.record(Call::EnsureJumps);
            Ok(())
        }

        fn chains(&self, _table: &str) -> Result<BTreeSet<String>, iptables::Error> {
            Ok(self.0.lock().unwrap().chains.clone())
        }

        fn conntrack_delete(&self, filter: &[String]) {
            self.record(Call::Conntrack(filter.to_vec()));
        }
    }

    impl RouteWriter for Fake {
        fn replace(&self, cidr: &str, via: &str) -> Result<(), routes::Error> {
            self.record(Call::Route(cidr.into(), via.into()));
            Ok(())
        }

        fn delete(&self, cidr: &str) {
            self.record(Call::Unroute(cidr.into()));
        }
    }

    /// Services, slices and nodes in memory; every change is recorded as a cache records it.
    /// Changed through `&self`, as a cache is, so a test can change it while the loop runs.
    struct Memory(Mutex<Objects>);

    #[derive(Default)]
    struct Objects {
        services: HashMap<String, Arc<Svc>>,
        slices: HashMap<String, Arc<Slice>>,
        nodes: Vec<Arc<Node>>,
        changes: Changes,
    }

    impl Memory {
        /// Empty, and (as a cache after its first list) saying everything changed.
        fn new() -> Memory {
            let mut objects = Objects::default();
            objects.changes.all = true;
            Memory(Mutex::new(objects))
        }

        /// Service `name` (namespace `default`) with one port `p` (80), endpoints in slice
        /// `<name>-1` (target port 8080).
        fn put_service(&self, name: &str, ip: [u8; 4], protocol: Protocol, ready: &[[u8; 4]]) {
            let svc = Svc {
                namespace: "default".into(),
                name: name.into(),
                cluster_ip: ip.into(),
                ports: vec![SvcPort {
                    name: "p".into(),
                    protocol,
                    port: 80,
                    node_port: None,
                }],
                external_ips: vec![],
                affinity_seconds: None,
            };
            let key = format!("default/{name}");
            let mut o = self.0.lock().unwrap();
            o.services.insert(key.clone(), Arc::new(svc));
            o.changes.services.insert(key);
            drop(o);
            self.put_endpoints(name, protocol, ready);
        }

        fn put_endpoints(&self, name: &str, protocol: Protocol, ready: &[[u8; 4]]) {
            let slice = Slice {
                namespace: "default".into(),
                service: name.into(),
                ports: vec![("p".into(), protocol, 8080)],
                ready: ready.iter().map(|a| Ipv4Addr::from(*a)).collect(),
            };
            let key = format!("default/{name}-1");
            let mut o = self.0.lock().unwrap();
            o.slices.insert(key.clone(), Arc::new(slice));
            o.changes.slices.insert(key);
        }

        fn delete_service(&self, name: &str) {
            let key = format!("default/{name}");
            let mut o = self.0.lock().unwrap();
            o.services.remove(&key);
            o.changes.services.insert(key);
        }

        fn put_node(&self, name: &str, pod_cidr: Option<&str>, ip: &str) {
            let mut v = serde_json::json!({
                "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
            });
            if let Some(c) = pod_cidr {
                v["spec"] = serde_json::json!({"podCIDR": c});
            }
            self.delete_node(name);
            let node = Arc::new(serde_json::from_value(v).unwrap());
            self.0.lock().unwrap().nodes.push(node);
        }

        fn delete_node(&self, name: &str) {
            self.0
                .lock()
                .unwrap()
                .nodes
                .retain(|n| n.metadata.name.as_deref() != Some(name));
        }
    }

    impl Inputs for Memory {
        fn service(&self, key: &str) -> Option<Arc<Svc>> {
            self.0.lock().unwrap().services.get(key).cloned()
        }

        fn service_keys(&self) -> Vec<String> {
            self.0.lock().unwrap().services.keys().cloned().collect()
        }

        fn slice(&self, key: &str) -> Option<Arc<Slice>> {
            self.0.lock().unwrap().slices.get(key).cloned()
        }

        fn slices(&self) -> Vec<(String, Arc<Slice>)> {
            let o = self.0.lock().unwrap();
            o.slices
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }

        fn nodes(&self) -> Vec<Arc<Node>> {
            self.0.lock().unwrap().nodes.clone()
        }

        fn take_changes(&self) -> Changes {
            std::mem::take(&mut self.0.lock().unwrap().changes)
        }
    }

    fn config() -> Config {
        Config {
            kubeconfig: Default::default(),
            bootstrap_kubeconfig: None,
            cert_dir: Default::default(),
            node_name: "me".into(),
            cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
            service_cidr: None,
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            healthz_addr: "127.0.0.1:0".parse().unwrap(),
            pod_network: Default::default(),
        }
    }

    fn proxier(fake: &Fake) -> Proxier<Fake, Router<Fake>> {
        Proxier::new(
            &config(),
            fake.clone(),
            Router::new("me", fake.clone()),
            Metrics::new(),
        )
    }

    /// The one restore among `calls`.
    fn restored(calls: &[Call]) -> &str {
        let inputs: Vec<&str> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Restore(input) => Some(input.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(inputs.len(), 1, "one restore: {calls:?}");
        inputs[0]
    }

    /// Inputs with two TCP Services, `web` (one endpoint) and `api` (one endpoint), synced
    /// once; the fake's log is empty again.
    fn synced_once(fake: &Fake) -> (Proxier<Fake, Router<Fake>>, Memory) {
        let inputs = Memory::new();
        inputs.put_service("web", [10, 96, 0, 10], Protocol::Tcp, &[[10, 244, 1, 5]]);
        inputs.put_service("api", [10, 96, 0, 11], Protocol::Tcp, &[[10, 244, 2, 5]]);
        let mut p = proxier(fake);
        assert_eq!(p.sync(&inputs), Outcome::Full);
        fake.take();
        (p, inputs)
    }

    #[test]
    fn the_first_sync_restores_everything_and_then_the_jumps() {
        let fake = Fake::default();
        let inputs = Memory::new();
        inputs.put_service("web", [10, 96, 0, 10], Protocol::Tcp, &[[10, 244, 1, 5]]);
        let mut p = proxier(&fake);
        assert_eq!(p.sync(&inputs), Outcome::Full);
        let calls = fake.take();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[1], Call::EnsureJumps);
        let input = restored(&calls);
        for part in [
            "*nat\n",
            ":SKIFF-SERVICES - [0:0]",
            ":SKIFF-NODEPORTS - [0:0]",
            "--to-destination 10.244.1.5:8080",
            "*filter\n",
            ":SKIFF-FORWARD - [0:0]",
        ] {
            assert!(input.contains(part), "{part} in:\n{input}");
        }
        let metrics = p.metrics.render();
        assert!(metrics.contains("skiff_proxy_syncs_total 1\n"), "{metrics}");
        assert!(
            metrics.contains("skiff_proxy_service_ports 1\n"),
            "{metrics}"
        );
        assert_eq!(p.metrics.healthz().0, 200);
    }

    #[test]
    fn a_changed_service_writes_only_its_chains() {
        let fake = Fake::default();
        let (mut p, inputs) = synced_once(&fake);
        inputs.put_endpoints("web", Protocol::Tcp, &[[10, 244, 1, 5], [10, 244, 1, 6]]);
        assert_eq!(p.sync(&inputs), Outcome::Partial);
        let calls = fake.take();
        assert_eq!(calls.len(), 1, "no jumps checked: {calls:?}");
        let input = restored(&calls);
        assert!(
            input.contains("--to-destination 10.244.1.6:8080"),
            "{input}"
        );
        assert!(
            !input.contains("10.244.2.5"),
            "api is not rewritten:\n{input}"
        );
        assert!(
            !input.contains("SKIFF-SERVICES"),
            "the top-level chains are unchanged:\n{input}"
        );

        // A Service gone: its chain is deleted, and it leaves the top-level chains.
        inputs.delete_service("api");
        assert_eq!(p.sync(&inputs), Outcome::Partial);
        let calls = fake.take();
        let input = restored(&calls);
        assert!(input.contains("\n-X SKIFF-SVC-"), "{input}");
        assert!(input.contains(":SKIFF-SERVICES - [0:0]"), "{input}");
        assert!(!input.contains("10.96.0.11"), "{input}");
    }

    #[test]
    fn nothing_changed_writes_nothing() {
        let fake = Fake::default();
        let (mut p, inputs) = synced_once(&fake);
        assert_eq!(p.sync(&inputs), Outcome::Unchanged);
        assert_eq!(fake.take(), []);
        // A change that renders the same rules (a slice written again as it was).
        inputs.put_endpoints("web", Protocol::Tcp, &[[10, 244, 1, 5]]);
        assert_eq!(p.sync(&inputs), Outcome::Unchanged);
        assert_eq!(fake.take(), []);
        let metrics = p.metrics.render();
        assert!(metrics.contains("skiff_proxy_syncs_total 3\n"), "{metrics}");
    }

    #[test]
    fn a_failed_write_makes_the_next_sync_a_full_restore() {
        let fake = Fake::default();
        let (mut p, inputs) = synced_once(&fake);
        inputs.put_endpoints("web", Protocol::Tcp, &[[10, 244, 1, 6]]);
        fake.fail_next(1);
        assert_eq!(p.sync(&inputs), Outcome::Failed);
        assert!(!restored(&fake.take()).contains("10.244.2.5"));

        assert_eq!(p.sync(&inputs), Outcome::Full);
        let calls = fake.take();
        assert_eq!(calls.last(), Some(&Call::EnsureJumps));
        let input = restored(&calls);
        assert!(
            input.contains("--to-destination 10.244.1.6:8080"),
            "{input}"
        );
        assert!(
            input.contains("--to-destination 10.244.2.5:8080"),
            "{input}"
        );

        assert_eq!(p.sync(&inputs), Outcome::Unchanged);
    }

    #[test]
    fn a_failed_first_sync_is_not_healthy() {
        let fake = Fake::default();
        let inputs = Memory::new();
        inputs.put_service("web", [10, 96, 0, 10], Protocol::Tcp, &[[10, 244, 1, 5]]);
        inputs.put_node("me", Some("10.244.0.0/24"), "10.0.0.1");
        inputs.put_node("two", Some("10.244.1.0/24"), "10.0.0.2");
        let mut p = proxier(&fake);
        fake.fail_next(1);
        assert_eq!(p.sync(&inputs), Outcome::Failed);
        let calls = fake.take();
        assert_eq!(calls.len(), 1, "no jumps, no routes: {calls:?}");
        assert_eq!(p.metrics.healthz().0, 503);
        assert!(p.metrics.render().contains("skiff_proxy_syncs_total 0\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sync_period_forces_a_full_restore() {
        let fake = Fake::default();
        let (mut p, inputs) = synced_once(&fake);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(p.sync(&inputs), Outcome::Unchanged);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.sync(&inputs), Outcome::Full);
        let calls = fake.take();
        assert!(restored(&calls).contains("10.244.2.5"));
        assert_eq!(p.sync(&inputs), Outcome::Unchanged);
    }

    #[test]
    fn chains_left_by_an_earlier_run_are_deleted() {
        let fake = Fake::with_chains(&[
            "SKIFF-SERVICES",
            "SKIFF-SVC-LEFTBYANEARLIER",
            "SKIFF-SEP-OLDLAYOUT0000",
        ]);
        let (mut p, _) = synced_once(&fake);
        // The first restore deleted them; later full restores no longer name them.
        let _ = p.sync(&Memory::new());
        let calls = fake.take();
        let input = restored(&calls);
        assert!(!input.contains("LEFTBYANEARLIER"), "{input}");

        let fake = Fake::with_chains(&["SKIFF-SVC-LEFTBYANEARLIER", "SKIFF-SEP-OLDLAYOUT0000"]);
        let mut p = proxier(&fake);
        let inputs = Memory::new();
        inputs.put_service("web", [10, 96, 0, 10], Protocol::Tcp, &[[10, 244, 1, 5]]);
        assert_eq!(p.sync(&inputs), Outcome::Full);
        let calls = fake.take();
        let input = restored(&calls);
        assert!(
            input.contains("\n-X SKIFF-SVC-LEFTBYANEARLIER\n"),
            "{input}"
        );
        assert!(input.contains("\n-X SKIFF-SEP-OLDLAYOUT0000\n"), "{input}");
        assert!(!input.contains("-X SKIFF-SERVICES"), "{input}");
    }

    #[test]
    fn a_udp_endpoint_removal_clears_its_flows() {
        let fake = Fake::default();
        let inputs = Memory::new();
        let dns = [10, 96, 0, 10];
        inputs.put_service(
            "dns",
            dns,
            Protocol::Udp,
            &[[10, 244, 1, 5], [10, 244, 1, 6]],
        );
        let mut p = proxier(&fake);
        assert_eq!(p.sync(&inputs), Outcome::Full);
        // Flows sent to the port while it had no endpoints (rejected) are cleared too.
        assert_eq!(
            fake.take()[2..],
            [Call::Conntrack(
                ["--orig-dst", "10.96.0.10", "--orig-port-dst", "80"]
                    .map(String::from)
                    .to_vec()
            )]
        );

        inputs.put_endpoints("dns", Protocol::Udp, &[[10, 244, 1, 6]]);
        assert_eq!(p.sync(&inputs), Outcome::Partial);
        let flushed = |ep: &str| {
            Call::Conntrack(
                ["--orig-dst", "10.96.0.10", "--dst-nat", ep]
                    .map(String::from)
                    .to_vec(),
            )
        };
        let calls = fake.take();
        assert!(
            matches!(calls[0], Call::Restore(_)),
            "rules first: {calls:?}"
        );
        assert_eq!(calls[1..], [flushed("10.244.1.5")]);

        // A removal whose write fails is cleared after the write that succeeds.
        inputs.put_endpoints("dns", Protocol::Udp, &[]);
        fake.fail_next(1);
        assert_eq!(p.sync(&inputs), Outcome::Failed);
        assert!(!fake.take().contains(&flushed("10.244.1.6")));
        assert_eq!(p.sync(&inputs), Outcome::Full);
        assert!(fake.take().contains(&flushed("10.244.1.6")));
    }

    #[test]
    fn routes_follow_the_nodes_pod_cidrs() {
        let fake = Fake::default();
        let inputs = Memory::new();
        inputs.put_node("me", Some("10.244.0.0/24"), "10.0.0.1");
        inputs.put_node("two", Some("10.244.1.0/24"), "10.0.0.2");
        inputs.put_node("three", None, "10.0.0.3");
        let mut p = proxier(&fake);
        assert_eq!(p.sync(&inputs), Outcome::Full);
        let routes = |calls: Vec<Call>| -> Vec<Call> {
            calls
                .into_iter()
                .filter(|c| matches!(c, Call::Route(..) | Call::Unroute(_)))
                .collect()
        };
        let route = |cidr: &str, via: &str| Call::Route(cidr.into(), via.into());
        assert_eq!(routes(fake.take()), [route("10.244.1.0/24", "10.0.0.2")]);

        // Node changes need no recorded change: every sync reads the nodes.
        inputs.put_node("three", Some("10.244.2.0/24"), "10.0.0.3");
        inputs.delete_node("two");
        assert_eq!(p.sync(&inputs), Outcome::Unchanged);
        assert_eq!(
            routes(fake.take()),
            [
                route("10.244.2.0/24", "10.0.0.3"),
                Call::Unroute("10.244.1.0/24".into())
            ]
        );
        assert_eq!(p.sync(&inputs), Outcome::Unchanged);
        assert_eq!(fake.take(), []);
    }

    #[test]
    fn this_nodes_pod_cidr_arriving_restores_everything() {
        let fake = Fake::default();
        let (mut p, inputs) = synced_once(&fake);
        // Only endpoints in the node's own pod CIDR keep a hairpin rule: new settings.
        inputs.put_node("me", Some("10.244.1.0/24"), "10.0.0.1");
        assert_eq!(p.sync(&inputs), Outcome::Full);
        let calls = fake.take();
        let input = restored(&calls);
        assert!(input.contains("-s 10.244.1.5/32"), "{input}");
        assert!(!input.contains("-s 10.244.2.5/32"), "{input}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_spaces_writes_and_retries_a_failed_one() {
        let fake = Fake::default();
        let inputs = Memory::new();
        inputs.put_service("web", [10, 96, 0, 10], Protocol::Tcp, &[[10, 244, 1, 5]]);
        let mut p = proxier(&fake);
        let changed = Notify::new();
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        fake.fail_next(1);
        let drive = async {
            // The first write fails: retried (whole) a second later.
            while fake.restores().len() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // A change right away waits for the min-sync window after that write.
            inputs.put_endpoints("web", Protocol::Tcp, &[[10, 244, 1, 6]]);
            changed.notify_one();
            while fake.restores().len() < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            shutdown.cancel();
        };
        tokio::join!(p.run(&inputs, &changed, &shutdown), drive);
        let at: Vec<Duration> = fake.restores().iter().map(|t| *t - start).collect();
        assert_eq!(
            at,
            [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
        let calls = fake.take();
        assert_eq!(
            calls.iter().filter(|c| **c == Call::EnsureJumps).count(),
            1,
            "the retry is a full restore, the change a partial one: {calls:?}"
        );
        assert!(restored(&calls[calls.len() - 1..]).contains("10.244.1.6:8080"));
    }

    /// Where the loop is waiting when shutdown comes.
    #[derive(Debug, Clone, Copy)]
    enum Waiting {
        /// A second before retrying a failed write.
        Retry,
        /// For a change or the sync period.
        Change,
        /// For the min-sync window after a write, a change pending.
        MinSync,
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_every_wait_at_once() {
        for waiting in [Waiting::Retry, Waiting::Change, Waiting::MinSync] {
            let fake = Fake::default();
            let inputs = Memory::new();
            inputs.put_service("web", [10, 96, 0, 10], Protocol::Tcp, &[[10, 244, 1, 5]]);
            let changed = Notify::new();
            let mut p = proxier(&fake);
            if let Waiting::Retry = waiting {
                fake.fail_next(1);
            }
            let shutdown = CancellationToken::new();
            let start = Instant::now();
            let stop = async {
                while fake.restores().is_empty() {
                    tokio::task::yield_now().await;
                }
                if let Waiting::MinSync = waiting {
                    inputs.put_endpoints("web", Protocol::Tcp, &[[10, 244, 1, 6]]);
                    changed.notify_one();
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                }
                shutdown.cancel();
            };
            tokio::join!(p.run(&inputs, &changed, &shutdown), stop);
            assert_eq!(start.elapsed(), Duration::ZERO, "{waiting:?}");
            assert_eq!(fake.restores().len(), 1, "{waiting:?}");
        }
    }
}
