//! The HTTPS endpoint of the scheduler and the controller-manager (as kube-scheduler's 10259
//! and kube-controller-manager's 10257): `/healthz`, `/livez`, `/readyz` and whatever routes the
//! program adds (its `/metrics`), on a self-signed certificate made at start.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use skiff_common::tls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `addr` (port 0 picks a free port; the bound address is logged and returned).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("binding {addr}; is another instance running? (--secure-port 0 picks a free port)")
    })?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz and /metrics over HTTPS");
    Ok(listener)
}

/// Binds `addr` and serves the health endpoints and `/metrics` (the text `metrics` renders at
/// each scrape) there until `shutdown`, in a task of its own.
pub async fn spawn<F>(
    addr: SocketAddr,
    metrics: F,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>>
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    let listener = bind(addr).await?;
    let routes = Router::new().route(
        "/metrics",
        get(move || {
            let render = metrics.clone();
            async move { render() }
        }),
    );
    Ok(tokio::spawn(serve(listener, routes, shutdown)))
}

/// Serves `routes` plus the health endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = self_signed()?;
    let router = routes
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    skiff_common::serve_tls(
        listener,
        tls,
        router,
        skiff_common::ServeLimits::default(),
        shutdown,
        |_| (),
    )
    .await;
    Ok(())
}

fn self_signed() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let identity = tls::Identity::self_signed("localhost", &["localhost"], &[loopback])?;
    Ok(tls::server_config(identity, None)?)
}
