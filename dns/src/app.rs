//! The DNS server's configuration and [`run`]: the informers on Services and EndpointSlices
//! that the zone reads, the UDP and TCP listeners, and the health endpoint.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::watcher;
use skiff_client::informer::{Change, Informer};
use tokio_util::sync::CancellationToken;

use crate::forward::Forwarder;
use crate::metrics::{self, Metrics};
use crate::model::{Slice, Svc};
use crate::server::{self, Handler};
use crate::zone::{Cluster, Zone};

/// The DNS server's configuration, from flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    /// `--cluster-domain`: the zone answered from the cluster (`cluster.local`).
    pub cluster_domain: String,
    /// `--bind-address` and `--port`: where queries are served, over UDP and TCP.
    pub bind_address: IpAddr,
    pub port: u16,
    /// `--upstream`: where other names go (already defaulted to resolv.conf's nameservers).
    pub upstreams: Vec<SocketAddr>,
    /// `--cache-size`: forwarded answers kept.
    pub cache_size: usize,
    /// `--healthz-bind-address`: `/healthz`, `/readyz` and `/metrics`.
    pub healthz_addr: SocketAddr,
}

/// The watched Services and EndpointSlices, as the zone reads them.
pub struct Watched {
    services: Arc<Informer<Svc>>,
    slices: Arc<Informer<Slice>>,
    /// Which slices belong to which Service, so that a query reads one Service's slices
    /// rather than its whole namespace's.
    index: Arc<SliceIndex>,
    /// When a Service or slice last changed (Unix seconds): the SOA serial.
    serial: Arc<AtomicU32>,
}

/// The keys of each Service's slices (`ns/service` → slice keys), kept by the slice informer's
/// change handler.
#[derive(Default)]
struct SliceIndex {
    by_service: RwLock<HashMap<String, BTreeSet<String>>>,
}

impl SliceIndex {
    fn service_key(slice: &Slice) -> String {
        format!("{}/{}", slice.namespace, slice.service)
    }

    fn keys(&self, namespace: &str, service: &str) -> Vec<String> {
        let index = self.by_service.read().expect("index lock");
        index
            .get(&format!("{namespace}/{service}"))
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remove(index: &mut HashMap<String, BTreeSet<String>>, service: &str, key: &str) {
        if let Some(keys) = index.get_mut(service) {
            keys.remove(key);
            if keys.is_empty() {
                index.remove(service);
            }
        }
    }

    /// Follows one change of the slice informer (after a relist, `all` is the whole store).
    fn apply(
        &self,
        key: Option<&str>,
        change: &Change<'_, Slice>,
        all: impl FnOnce() -> Vec<(String, Arc<Slice>)>,
    ) {
        let mut index = self.by_service.write().expect("index lock");
        match (change, key) {
            (Change::Applied { old, new }, Some(key)) => {
                if let Some(old) = old {
                    Self::remove(&mut index, &Self::service_key(old), key);
                }
                index
                    .entry(Self::service_key(new))
                    .or_default()
                    .insert(key.to_string());
            }
            (Change::Deleted(old), Some(key)) => {
                Self::remove(&mut index, &Self::service_key(old), key);
            }
            (Change::Resynced, _) => {
                index.clear();
                for (key, slice) in all() {
                    index
                        .entry(Self::service_key(&slice))
                        .or_default()
                        .insert(key);
                }
            }
            _ => {}
        }
    }
}

impl Cluster for Watched {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Svc>> {
        self.services.get(Some(namespace), name)
    }

    fn services(&self) -> Vec<Arc<Svc>> {
        self.services.list()
    }

    fn slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<Slice>> {
        self.index
            .keys(namespace, service)
            .iter()
            .filter_map(|key| self.slices.get_key(key))
            .collect()
    }

    fn slices(&self) -> Vec<Arc<Slice>> {
        self.slices.list()
    }

    fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| u32::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// Runs the DNS server until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let zone = Zone::new(&config.cluster_domain).with_context(|| {
        format!(
            "--cluster-domain {:?} is not a domain name",
            config.cluster_domain
        )
    })?;
    if config.upstreams.is_empty() {
        tracing::warn!(
            "no upstream resolvers: names outside the cluster domain get SERVFAIL (give --upstream)"
        );
    }
    let addr = SocketAddr::new(config.bind_address, config.port);
    let (udp, tcp) = server::bind(addr).await.with_context(|| {
        format!("binding {addr} (UDP and TCP); is another DNS server running there? (--port picks another port)")
    })?;
    let health = metrics::bind(config.healthz_addr).await.with_context(|| {
        format!(
            "binding {} for /healthz; is another instance running?",
            config.healthz_addr
        )
    })?;
    let own = udp.local_addr()?;
    let mut upstreams = config.upstreams.clone();
    upstreams.retain(|u| {
        let looped = crate::forward::is_self(*u, own);
        if looped {
            tracing::warn!(upstream = %u, "ignoring an upstream resolver that is this server itself");
        }
        !looped
    });
    let client = skiff_client::client(&config.kubeconfig).await?;

    let serial = Arc::new(AtomicU32::new(unix_now()));
    let services = Informer::mapped(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        Svc::from_service,
    );
    let slices = Informer::mapped(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default(),
        Slice::from_slice,
    );
    for_each_change(&services, &serial);
    for_each_change(&slices, &serial);
    let index = Arc::new(SliceIndex::default());
    {
        let index = index.clone();
        // A weak reference: the informer holds its handlers.
        let store = Arc::downgrade(&slices);
        slices.on_keyed_change(move |key, change| {
            index.apply(key, change, || {
                store.upgrade().map(|s| s.entries()).unwrap_or_default()
            });
        });
    }
    tokio::spawn(services.clone().run(shutdown.clone()));
    tokio::spawn(slices.clone().run(shutdown.clone()));

    let metrics = Metrics::new();
    tokio::spawn(metrics::serve(health, metrics.clone(), shutdown.clone()));
    let ready = {
        let (services, slices, metrics) = (services.clone(), slices.clone(), metrics.clone());
        async move {
            services.synced().await;
            slices.synced().await;
            metrics.set_ready();
            tracing::info!("Services and EndpointSlices listed: answering from the cluster");
        }
    };
    // Queries are answered from the start (NXDOMAIN for what is not listed yet), as CoreDNS
    // does after its own wait; readiness says when the answers are complete.
    tokio::spawn(async move {
        if tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .is_err()
        {
            tracing::warn!("Services and EndpointSlices are not listed after 60s; still waiting");
        }
    });

    let handler = Arc::new(Handler {
        zone,
        cluster: Watched {
            services,
            slices,
            index,
            serial,
        },
        forwarder: Forwarder::new(upstreams.clone(), config.cache_size),
        metrics,
    });
    tracing::info!(
        udp = %udp.local_addr()?,
        tcp = %tcp.local_addr()?,
        domain = %config.cluster_domain,
        upstreams = ?upstreams,
        "serving DNS"
    );
    let udp_task = tokio::spawn(server::serve_udp(udp, handler.clone(), shutdown.clone()));
    let tcp_task = tokio::spawn(server::serve_tcp(tcp, handler, shutdown.clone()));
    let _ = tokio::join!(udp_task, tcp_task);
    Ok(())
}

/// Moves the SOA serial on every change of `informer`'s objects.
fn for_each_change<T: Send + Sync + 'static>(informer: &Informer<T>, serial: &Arc<AtomicU32>) {
    let serial = serial.clone();
    informer.on_change(move |_| serial.store(unix_now(), Ordering::Relaxed));
}
