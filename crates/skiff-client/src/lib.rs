//! What Skiff's programs share as clients of the apiserver: loading a kubeconfig into a kube-rs
//! [`kube::Client`], the [`events::Recorder`] that writes core/v1 Events as kubectl describes
//! them, [`leader::LeaderElector`] (Lease-based leader election, as client-go's), and
//! [`health::serve`], the HTTPS `/healthz` + `/metrics` endpoint of the scheduler and the
//! controller-manager, typed label [`selector`] matching, [`tolerations`], and
//! [`tls_bootstrap`] (a client certificate from a CertificateSigningRequest, rotated before it
//! expires).

pub mod events;
pub mod health;
pub mod informer;
pub mod leader;
pub mod selector;
pub mod tls_bootstrap;
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

/// The cluster the kubeconfig's current context names (else its first context's, else its
/// first cluster).
pub fn current_cluster(kc: &kube::config::Kubeconfig) -> Option<&kube::config::Cluster> {
    let cluster_name = kc
        .current_context
        .as_ref()
        .and_then(|current| kc.contexts.iter().find(|c| &c.name == current))
        .or(kc.contexts.first())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.as_str());
    kc.clusters
        .iter()
        .find(|c| Some(c.name.as_str()) == cluster_name)
        .or(kc.clusters.first())
        .and_then(|c| c.cluster.as_ref())
}

/// The CA bundle (PEM) of the cluster the kubeconfig's current context names
/// (`certificate-authority-data`, or the `certificate-authority` file, relative to the
/// kubeconfig), if it has one: the cluster CA, for programs that check who calls them.
pub fn kubeconfig_ca(kubeconfig: &std::path::Path) -> anyhow::Result<Option<String>> {
    use base64::Engine as _;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let Some(cluster) = current_cluster(&kc) else {
        return Ok(None);
    };
    let pem = if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("the kubeconfig's certificate-authority-data is not base64")?;
        String::from_utf8(bytes).context("the kubeconfig's certificate-authority-data")?
    } else if let Some(file) = &cluster.certificate_authority {
        let path = kubeconfig
            .parent()
            .map(|dir| dir.join(file))
            .unwrap_or_else(|| file.into());
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading the kubeconfig's CA {}", path.display()))?
    } else {
        return Ok(None);
    };
    Ok(Some(pem))
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

/// Starts logging ([`skiff_common::init_logging`]) and installs the TLS provider kube's
/// client needs.
pub fn init() {
    skiff_common::init_logging();
    install_crypto_provider();
}

pub use skiff_common::shutdown_on_signal;
