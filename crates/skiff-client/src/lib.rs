//! What Skiff's programs share as clients of the apiserver: loading a kubeconfig into a kube-rs
//! [`kube::Client`], the [`events::Recorder`] that writes core/v1 Events as kubectl describes
//! them, [`leader::LeaderElector`] (Lease-based leader election, as client-go's), and
//! [`health::serve`], the HTTPS `/healthz` + `/metrics` endpoint of the scheduler and the
//! controller-manager, typed label [`selector`] matching and [`tolerations`].

pub mod events;
pub mod health;
pub mod informer;
pub mod leader;
pub mod selector;
pub mod tolerations;

use anyhow::Context as _;

/// Builds a kube client from a kubeconfig file.
pub async fn client(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", kubeconfig.display()))?;
    Ok(kube::Client::try_from(cfg)?)
}

/// A name unique to this process, for Lease holders and event reporting instances:
/// `<hostname>_<uuid>`, as client-go's leader election builds it.
pub fn identity() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().to_lowercase())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Installs the ring TLS provider (DESIGN §9: kube's client panics when none is chosen).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts logging to stderr with `RUST_LOG` (default `info`), colored only on a terminal (not in
/// log files), and installs the TLS provider.
pub fn init() {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    install_crypto_provider();
}

/// A token cancelled on SIGTERM or SIGINT: the start of every program's one shutdown path.
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let signal = token.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        signal.cancel();
    });
    token
}
