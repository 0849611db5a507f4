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

use std::collections::BTreeSet;
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
    // The last ruleset applied; None forces a full restore (at start and every sync period).
    let mut applied: Option<rules::Ruleset> = None;
    // The UDP ports of the last sync (only UDP flows are cleaned up after a change).
    let mut applied_udp: Vec<rules::ServicePort> = Vec::new();
    let mut port_count: usize;
    let mut last_full = Instant::now();
    let mut router = routes::Router::new(&config.node_name);
    let mut last = Instant::now() - config.min_sync_period;
    loop {
        let wait = config.min_sync_period.saturating_sub(last.elapsed());
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        last = Instant::now();
        let started = Instant::now();
        let settings = rules::Settings {
            cluster_cidr: config.cluster_cidr,
            service_cidr: config.service_cidr,
            local_pod_cidr: local_pod_cidr(&nodes.values(), &config.node_name),
        };
        if settings != *renderer.settings() {
            renderer = rules::Renderer::new(settings);
        }
        let ports = model::service_ports(&services.values(), &slices.values());
        let ruleset = renderer.render(&ports, &known);
        if last_full.elapsed() >= config.sync_period {
            applied = None;
        }
        // A full restore when due, else only the chains that changed (KEP-3453).
        let outcome = match &applied {
            None => ipt.apply(&ruleset).map(|()| true),
            Some(prev) => {
                let input = rules::partial(prev, &ruleset);
                ipt.restore(&input).map(|()| !input.is_empty())
            }
        };
        match outcome {
            Ok(wrote) => {
                if applied.is_none() {
                    last_full = Instant::now();
                }
                known = ruleset.service_chains();
                applied = Some(ruleset);
                port_count = ports.len();
                let udp: Vec<rules::ServicePort> = ports
                    .into_iter()
                    .filter(|p| p.protocol == rules::Protocol::Udp)
                    .collect();
                for filter in conntrack::stale(&applied_udp, &udp) {
                    ipt.conntrack_delete(&filter);
                }
                applied_udp = udp;
                if wrote {
                    tracing::info!(
                        service_ports = port_count,
                        took_ms = started.elapsed().as_millis() as u64,
                        "rules synced"
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "applying the rules failed; a full restore follows");
                applied = None;
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
            h.rules = applied.as_ref().map(|r| r.rule_count()).unwrap_or(0);
            h.service_ports = port_count;
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
                         # TYPE skiff_proxy_syncs_total counter\nskiff_proxy_syncs_total {}\n\
                         # TYPE skiff_proxy_iptables_rules gauge\nskiff_proxy_iptables_rules {}\n\
                         # TYPE skiff_proxy_service_ports gauge\nskiff_proxy_service_ports {}\n",
                        h.last_duration.as_secs_f64(),
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
