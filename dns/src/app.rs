//! The DNS server's configuration and [`run`]: the informers on Services and EndpointSlices
//! that the zone reads, the UDP and TCP listeners, and the health endpoint.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::watcher;
use skiff_client::informer::Informer;
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
    /// When a Service or slice last changed (Unix seconds): the SOA serial.
    serial: Arc<AtomicU32>,
}

impl Cluster for Watched {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Svc>> {
        self.services.get(Some(namespace), name)
    }

    fn services(&self) -> Vec<Arc<Svc>> {
        self.services.list()
    }

    fn slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<Slice>> {
        let mut slices = self.slices.list_in(namespace);
        slices.retain(|s| s.service == service);
        slices
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
            serial,
        },
        forwarder: Forwarder::new(config.upstreams.clone(), config.cache_size),
        metrics,
    });
    tracing::info!(
        udp = %udp.local_addr()?,
        tcp = %tcp.local_addr()?,
        domain = %config.cluster_domain,
        upstreams = ?config.upstreams,
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
