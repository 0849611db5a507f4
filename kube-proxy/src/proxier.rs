//! The sync: one pass from the watched Services, EndpointSlices and Nodes to the kernel. A
//! [`Proxier`] decides between a full restore and a partial one (KEP-3453), re-renders the
//! Services that changed, writes the rules, clears the UDP flows the change made stale,
//! keeps the pod routes and records the health figures; [`Proxier::run`] is the loop that
//! calls it. The kernel is behind [`RuleWriter`] and [`RouteWriter`] and the caches behind
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
pub struct Proxier<W, R> {
    node_name: String,
    cluster_cidr: Option<ipnet::Ipv4Net>,
    service_cidr: Option<ipnet::Ipv4Net>,
    min_sync_period: Duration,
    sync_period: Duration,
    rules: W,
    routes: R,
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
    router: Router,
    /// When rules were last written: --min-sync-period spaces writes, not wake-ups (a sync
    /// that finds nothing to change must not hold back the next change).
    last_write: Instant,
    /// The per-Service chains in the kernel's nat table, as far as this proxy knows: a full
    /// restore deletes those no longer needed.
    known: BTreeSet<Name>,
}

impl<W: RuleWriter, R: RouteWriter> Proxier<W, R> {
    /// A proxier for `config` writing through `rules` and `routes`. It lists the chains there
    /// now: those left by an earlier run are deleted by the first sync if no longer needed.
    pub fn new(config: &Config, rules: W, routes: R, metrics: Arc<Metrics>) -> Proxier<W, R> {
        let known = service_chains(rules.chains("nat").unwrap_or_default()).collect();
        Proxier {
            node_name: config.node_name.clone(),
            cluster_cidr: config.cluster_cidr,
            service_cidr: config.service_cidr,
            min_sync_period: config.min_sync_period,
            sync_period: config.sync_period,
            router: Router::new(&config.node_name),
            rules,
            routes,
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
    /// when a full restore is due), clears stale UDP flows, and sets the routes.
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
        self.router.sync(&inputs.nodes(), &self.routes);
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
