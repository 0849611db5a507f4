//! `skiff-proxy`: Services as iptables rules, and pod routes between nodes. Informers
//! (kube-runtime watchers) on Services, EndpointSlices and Nodes mark the state dirty; the
//! sync loop (at most once per `--min-sync-period`) computes the Service ports ([`model`]),
//! renders the whole ruleset ([`rules`]) and applies it with one `iptables-restore`
//! ([`iptables`]) when it changed, and keeps a route to every other node's pod CIDR
//! ([`routes`], flannel's host-gw model).

mod cache;
pub mod conntrack;
pub mod iptables;
pub mod model;
pub mod routes;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The proxy's configuration, from flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    /// `--service-cluster-ip-range`: lets one rule mark outside traffic to every ClusterIP.
    pub service_cidr: Option<ipnet::Ipv4Net>,
    pub min_sync_period: Duration,
    pub sync_period: Duration,
    pub healthz_addr: SocketAddr,
}

/// What `/healthz` and `/metrics` report.
#[derive(Debug, Default)]
struct Health {
    last_sync: Option<SystemTime>,
    /// When the last sync's rules were in place in the kernel.
    last_applied: Option<SystemTime>,
    last_duration: Duration,
    syncs: u64,
    rules: usize,
    service_ports: usize,
}

/// Runs the proxy until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = skiff_client::client(&config.kubeconfig).await?;
    let changed = Arc::new(Notify::new());
    let services = cache::watch(
        Api::<Service>::all(client.clone()),
        model::Svc::from_service,
        changed.clone(),
        shutdown.clone(),
    );
    let slices = cache::watch(
        Api::<EndpointSlice>::all(client.clone()),
        model::Slice::from_slice,
        changed.clone(),
        shutdown.clone(),
    );
    let nodes = cache::watch(
        Api::<Node>::all(client.clone()),
        compact_node,
        changed.clone(),
        shutdown.clone(),
    );
    let health = Arc::new(Mutex::new(Health::default()));
    tokio::spawn(serve_health(
        config.healthz_addr,
        health.clone(),
        shutdown.clone(),
    ));
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        services.wait_until_ready().await;
        slices.wait_until_ready().await;
        nodes.wait_until_ready().await;
    })
    .await;

    let ipt = iptables::Iptables::new();
    // NodePorts answer on 127.0.0.1 too (as kube-proxy allows): packets to and from the
    // loopback address may then be routed after DNAT (and are masqueraded on the way out).
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1") {
        tracing::warn!(error = %e, "cannot set route_localnet; NodePorts will not answer on 127.0.0.1");
    }
    // Chains left by an earlier run are deleted by the first sync if no longer needed.
    let mut known: BTreeSet<rules::Name> = ipt
        .chains("nat")
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.starts_with("SKIFF-SVC-") || c.starts_with("SKIFF-SEP-"))
        .map(rules::Name::from)
        .collect();
    let mut renderer = rules::Renderer::default();
    let mut index = model::SliceIndex::default();
    // Whether the kernel holds the renderer's ruleset; if not (at start, after a failure and
    // every sync period) the next sync restores it whole.
    let mut applied = false;
    // Each changed Service's UDP ports before and after the changes not yet applied, for the
    // conntrack clean-up.
    let mut udp_before: BTreeMap<rules::ServiceKey, Vec<rules::ServicePort>> = BTreeMap::new();
    let mut udp_after: BTreeMap<rules::ServiceKey, Vec<rules::ServicePort>> = BTreeMap::new();
    let mut last_full = Instant::now();
    let mut router = routes::Router::new(&config.node_name);
    // When rules were last written: --min-sync-period spaces writes, not wake-ups (a sync
    // that finds nothing to change must not hold back the next change).
    let mut last_write = Instant::now()
        .checked_sub(config.min_sync_period)
        .unwrap_or_else(Instant::now);
    let udp = |p: &&rules::ServicePort| p.protocol == rules::Protocol::Udp;
    loop {
        let wait = config.min_sync_period.saturating_sub(last_write.elapsed());
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let started = Instant::now();
        let settings = rules::Settings {
            cluster_cidr: config.cluster_cidr,
            service_cidr: config.service_cidr,
            local_pod_cidr: local_pod_cidr(&nodes.values(), &config.node_name),
        };
        // Only the Services that changed (directly or through their slices) are re-rendered;
        // a relist, new settings or the first sync re-render all.
        let svc_changes = services.take_changes();
        let slice_changes = slices.take_changes();
        // Routes follow the nodes on every sync; their change log is not needed.
        let _ = nodes.take_changes();
        let mut dirty: BTreeSet<rules::ServiceKey> = BTreeSet::new();
        if settings != *renderer.settings() || svc_changes.all || slice_changes.all {
            if settings != *renderer.settings() {
                // New settings change rules the renderer cannot diff against (a fresh one
                // knows nothing of the old): restore everything. The conntrack clean-up
                // compares with what was applied, which only the old renderer knows.
                let keys: Vec<rules::ServiceKey> = renderer.services().cloned().collect();
                for key in keys {
                    let before: Vec<_> = renderer.ports(&key).filter(udp).cloned().collect();
                    if !before.is_empty() {
                        udp_before.entry(key).or_insert(before);
                    }
                }
                renderer = rules::Renderer::new(settings);
                applied = false;
            }
            index = model::SliceIndex::default();
            for (key, slice) in slices.entries() {
                index.set(&key, Some(model::owner(&slice)));
            }
            dirty.extend(renderer.services().cloned());
            dirty.extend(
                services
                    .entries()
                    .iter()
                    .map(|(k, _)| model::service_key(k)),
            );
        } else {
            dirty.extend(svc_changes.keys.iter().map(|k| model::service_key(k)));
            for key in &slice_changes.keys {
                let owner = slices.get(key).map(|s| model::owner(&s));
                dirty.extend(index.set(key, owner));
            }
        }
        let updates: Vec<(rules::ServiceKey, Vec<rules::ServicePort>)> = dirty
            .into_iter()
            .map(|key| {
                let ports = match services.get(&format!("{}/{}", key.0, key.1)) {
                    Some(svc) => {
                        // The index may lag a slice relabelled a moment ago (its key not
                        // recorded yet): only slices that say they are this Service's count.
                        let mine: Vec<Arc<model::Slice>> = index
                            .slices(&key)
                            .filter_map(|k| slices.get(k))
                            .filter(|s| s.namespace == key.0 && s.service == key.1)
                            .collect();
                        let mine: Vec<&model::Slice> = mine.iter().map(|s| &**s).collect();
                        model::ports_of(&svc, &mine)
                    }
                    None => Vec::new(),
                };
                // The UDP ports as last applied (kept from the first change not yet applied).
                let before: Vec<_> = renderer.ports(&key).filter(udp).cloned().collect();
                let after: Vec<_> = ports.iter().filter(udp).cloned().collect();
                if !before.is_empty() || !after.is_empty() || udp_before.contains_key(&key) {
                    udp_before.entry(key.clone()).or_insert(before);
                    udp_after.insert(key.clone(), after);
                }
                (key, ports)
            })
            .collect();
        let delta = renderer.update(updates);
        if last_full.elapsed() >= config.sync_period {
            applied = false;
        }
        // A full restore when due, else only the chains that changed (KEP-3453).
        let full = !applied;
        let writing = Instant::now();
        let outcome = if full {
            ipt.apply_text(&renderer.ruleset().restore_deleting(&known))
                .map(|()| true)
        } else {
            let input = delta.restore();
            ipt.restore(&input).map(|()| !input.is_empty())
        };
        match outcome {
            Ok(wrote) => {
                health.lock().expect("health lock").last_applied = Some(SystemTime::now());
                if full {
                    last_full = Instant::now();
                    known = renderer.ruleset().service_chains();
                } else {
                    for (table, chain) in &delta.delete {
                        if *table == rules::Table::Nat {
                            known.remove(chain);
                        }
                    }
                    known.extend(
                        delta
                            .write
                            .keys()
                            .filter(|(t, c)| *t == rules::Table::Nat && c.starts_with("SKIFF-SVC-"))
                            .map(|(_, c)| c.clone()),
                    );
                }
                applied = true;
                // Stale UDP flows are cleared whether or not a chain changed (a Service
                // without endpoints keeps its REJECT, yet its flows may be stale).
                let before: Vec<rules::ServicePort> = std::mem::take(&mut udp_before)
                    .into_values()
                    .flatten()
                    .collect();
                let after: Vec<rules::ServicePort> = std::mem::take(&mut udp_after)
                    .into_values()
                    .flatten()
                    .collect();
                for filter in conntrack::stale(&before, &after) {
                    ipt.conntrack_delete(&filter);
                }
                if wrote {
                    last_write = started;
                    tracing::info!(
                        service_ports = renderer.port_count(),
                        full,
                        took_ms = started.elapsed().as_millis() as u64,
                        restore_ms = writing.elapsed().as_millis() as u64,
                        "rules synced"
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "applying the rules failed; a full restore follows");
                applied = false;
                // A partial restore may have stopped half way: learn the chains there now
                // (or, if they cannot be listed, assume every chain it wrote is there).
                match ipt.chains("nat") {
                    Ok(chains) => known.extend(
                        chains
                            .into_iter()
                            .filter(|c| c.starts_with("SKIFF-SVC-") || c.starts_with("SKIFF-SEP-"))
                            .map(rules::Name::from),
                    ),
                    Err(_) => {
                        known.extend(
                            delta
                                .write
                                .keys()
                                .filter(|(t, _)| *t == rules::Table::Nat)
                                .map(|(_, c)| c.clone())
                                .filter(|c| c.starts_with("SKIFF-SVC-")),
                        );
                        if full {
                            known.extend(renderer.ruleset().service_chains());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        router.sync(&nodes.values());
        {
            let mut h = health.lock().expect("health lock");
            h.last_sync = Some(SystemTime::now());
            h.last_duration = started.elapsed();
            h.syncs += 1;
            h.rules = renderer.ruleset().rule_count();
            h.service_ports = renderer.port_count();
        }
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(config.sync_period) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    Ok(())
}

/// What the routes need of a Node: its name, spec (podCIDR) and addresses; the rest (images,
/// conditions, managedFields) is dropped.
fn compact_node(n: &Node) -> Option<Node> {
    Some(Node {
        metadata: kube::api::ObjectMeta {
            name: n.metadata.name.clone(),
            ..Default::default()
        },
        spec: n.spec.clone(),
        status: Some(k8s_openapi::api::core::v1::NodeStatus {
            addresses: n.status.as_ref().and_then(|s| s.addresses.clone()),
            ..Default::default()
        }),
    })
}

/// This node's `spec.podCIDR`, once the controller-manager has assigned it.
fn local_pod_cidr(nodes: &[Arc<Node>], name: &str) -> Option<ipnet::Ipv4Net> {
    nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))
        .and_then(|n| n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok())
}

async fn serve_health(addr: SocketAddr, health: Arc<Mutex<Health>>, shutdown: CancellationToken) {
    use axum::routing::get;
    let h1 = health.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let h = h1.clone();
                async move {
                    let h = h.lock().expect("health lock");
                    let since = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    let body = serde_json::json!({
                        "lastUpdated": h.last_sync.map(since),
                        "currentTime": since(SystemTime::now()),
                    })
                    .to_string();
                    let code = if h.last_sync.is_some() { 200 } else { 503 };
                    (axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK), body)
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let h = health.clone();
                async move {
                    let h = h.lock().expect("health lock");
                    format!(
                        "# TYPE skiff_proxy_sync_proxy_rules_duration_seconds gauge\nskiff_proxy_sync_proxy_rules_duration_seconds {}\n\
                         # TYPE skiff_proxy_sync_proxy_rules_last_timestamp_seconds gauge\nskiff_proxy_sync_proxy_rules_last_timestamp_seconds {}\n\
                         # TYPE skiff_proxy_syncs_total counter\nskiff_proxy_syncs_total {}\n\
                         # TYPE skiff_proxy_iptables_rules gauge\nskiff_proxy_iptables_rules {}\n\
                         # TYPE skiff_proxy_service_ports gauge\nskiff_proxy_service_ports {}\n",
                        h.last_duration.as_secs_f64(),
                        h.last_applied
                            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                            .map(|d| d.as_secs_f64())
                            .unwrap_or(0.0),
                        h.syncs,
                        h.rules,
                        h.service_ports
                    )
                }
            }),
        );
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot serve /healthz");
            return;
        }
    };
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}
