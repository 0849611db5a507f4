//! The apiserver program: opens the store, sets up the PKI, starts the watch cache, creates
//! the built-in objects, and serves HTTPS until shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use serde_json::json;
use skiff_api::resources;
use skiff_common::tls;
use skiff_store::{EmbeddedStore, EtcdStore, EtcdTls, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alloc::Allocator;
use crate::app::App;
use crate::auth::{
    AlwaysAllow, AlwaysDeny, AuthorizationMode, Authorizer, PeerIdentity, TokenFile, Union,
    user_from_cert,
};
use crate::cache::WatchCache;
use crate::config::Config;
use crate::encryption::{EncryptingStore, EncryptionConfig};
use crate::metrics::Metrics;
use crate::pki::{self, Pki};
use crate::registry::Registry;
use crate::request::Params;

/// Opens the configured store, behind the encryption-at-rest transformers when
/// `--encryption-provider-config` is given (a bad configuration stops the start here); the
/// encryption layer is returned too, for the registry.
pub async fn open_store(
    config: &Config,
) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<EncryptingStore>>)> {
    let encryption = match &config.encryption_provider_config {
        Some(path) => Some(EncryptionConfig::load(path)?),
        None => None,
    };
    let store: Arc<dyn Store> = if config.etcd_servers.is_empty() {
        let dir = config.data_dir.join("db");
        skiff_common::pki::create_private_dir(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("state.redb");
        let store = EmbeddedStore::open(&path)
            .with_context(|| format!("opening the embedded store {}", path.display()))?;
        tracing::info!(path = %path.display(), "using the embedded store");
        Arc::new(store)
    } else {
        let tls = etcd_tls(&config.etcd_tls)?;
        let store = EtcdStore::connect_with_tls(&config.etcd_servers, tls)
            .await
            .with_context(|| format!("connecting to etcd at {}", config.etcd_servers.join(",")))?;
        tracing::info!(endpoints = %config.etcd_servers.join(","), "using etcd");
        Arc::new(store)
    };
    Ok(match encryption {
        Some(encryption) => {
            tracing::info!(?encryption, "encrypting at rest");
            let encrypting = Arc::new(EncryptingStore::new(store, encryption));
            (encrypting.clone(), Some(encrypting))
        }
        None => (store, None),
    })
}

/// Reads the `--etcd-*file` flags' files; none given: plain connections.
fn etcd_tls(files: &crate::config::EtcdTls) -> anyhow::Result<Option<EtcdTls>> {
    let read = |flag: &str, path: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        path.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading --{flag} {}", p.display()))
            })
            .transpose()
    };
    let ca_pem = read("etcd-cafile", &files.ca_file)?;
    let cert = read("etcd-certfile", &files.cert_file)?;
    let key = read("etcd-keyfile", &files.key_file)?;
    let client_pem = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("--etcd-certfile and --etcd-keyfile go together: give both or neither"),
    };
    Ok((ca_pem.is_some() || client_pem.is_some()).then_some(EtcdTls { ca_pem, client_pem }))
}

/// The addresses of this machine's interfaces (for certificate SANs and the `kubernetes`
/// Endpoints).
fn local_ips() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// The IP other cluster members reach this apiserver on.
fn advertise_ip(config: &Config) -> IpAddr {
    if let Some(ip) = config.advertise_address {
        return ip;
    }
    if !config.bind_address.is_unspecified() {
        return config.bind_address;
    }
    local_ips()
        .into_iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The addresses this apiserver answers on: its bind address, or every local one when bound
/// to all, and the address it advertises.
fn own_ips(config: &Config, advertise: IpAddr) -> std::collections::BTreeSet<IpAddr> {
    let mut ips: std::collections::BTreeSet<IpAddr> = if config.bind_address.is_unspecified() {
        local_ips().into_iter().collect()
    } else {
        [config.bind_address].into()
    };
    ips.insert(advertise);
    ips
}

/// TLS with the apiserver's serving certificate; clients may present one from the cluster CA.
fn tls_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let identity = tls::Identity::from_pem(&pki.serving.cert_pem, &pki.serving.key_pem)
        .context("loading apiserver.crt and apiserver.key")?;
    Ok(tls::server_config(identity, Some(&pki.ca.cert_pem))?)
}

/// Creates the built-in namespaces, priority classes and the `kubernetes` Service, if missing.
async fn bootstrap(
    registry: &Registry,
    config: &Config,
    port: u16,
    advertise: IpAddr,
) -> anyhow::Result<()> {
    let params = Params::default();
    let ns_info = resources::find("", "v1", "namespaces").context("namespaces not served")?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        match registry.create(ns_info, None, obj, &params, None).await {
            Ok(_) => tracing::info!(namespace = ns, "created namespace"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(anyhow::anyhow!("creating namespace {ns}: {e}")),
        }
    }
    // The built-in priority classes, as kube-apiserver's scheduling post-start hook makes them.
    let pc_info = resources::find("scheduling.k8s.io", "v1", "priorityclasses")
        .context("priorityclasses not served")?;
    for pc in skiff_api::strategy::SYSTEM_PRIORITY_CLASSES {
        let obj = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": pc.name },
            "value": pc.value,
            "description": pc.description,
        });
        match registry.create(pc_info, None, obj, &params, None).await {
            Ok(_) => tracing::info!(name = pc.name, "created priority class"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(anyhow::anyhow!("creating priority class {}: {e}", pc.name)),
        }
    }
    let svc_info = resources::find("", "v1", "services").context("services not served")?;
    let first_ip = registry.alloc.first_ip().to_string();
    if registry
        .get(svc_info, Some("default"), "kubernetes", &params)
        .await
        .is_err()
    {
        // A crash between claiming the IP and creating the Service may have left the claim.
        registry.alloc.release_ip(&first_ip).await;
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "component": "apiserver", "provider": "kubernetes" } },
            "spec": { "type": "ClusterIP", "clusterIP": first_ip, "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": port }] },
        });
        match registry
            .create(svc_info, Some("default"), svc, &params, None)
            .await
        {
            Ok(_) => tracing::info!(ip = %first_ip, "created the kubernetes Service"),
            Err(e) if e.code == 409 || e.code == 422 => {}
            Err(e) => return Err(anyhow::anyhow!("creating the kubernetes Service: {e}")),
        }
    }
    let ep_info = resources::find("", "v1", "endpoints").context("endpoints not served")?;
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "endpointslice.kubernetes.io/skip-mirror": "true" } },
        "subsets": [{ "addresses": [{ "ip": advertise.to_string() }], "ports": [{ "name": "https", "port": port, "protocol": "TCP" }] }],
    });
    match registry
        .create(ep_info, Some("default"), ep.clone(), &params, None)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == 409 => {
            registry
                .guaranteed_update(
                    ep_info,
                    Some("default"),
                    "kubernetes",
                    |mut cur| {
                        cur["subsets"] = ep["subsets"].clone();
                        Ok(Some(cur))
                    },
                    false,
                )
                .await
                .map_err(|e| anyhow::anyhow!("updating the kubernetes Endpoints: {e}"))?;
        }
        Err(e) => return Err(anyhow::anyhow!("creating the kubernetes Endpoints: {e}")),
    }
    // In-cluster clients and skiff-proxy read EndpointSlices: the `kubernetes` Service gets
    // one with this apiserver's address, as kube-apiserver's endpoint reconciler writes it.
    let slice_info = resources::find("discovery.k8s.io", "v1", "endpointslices")
        .context("endpointslices not served")?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "kubernetes.io/service-name": "kubernetes" } },
        "addressType": if advertise.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{ "addresses": [advertise.to_string()], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
    });
    match registry
        .create(slice_info, Some("default"), slice.clone(), &params, None)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == 409 => {
            registry
                .guaranteed_update(
                    slice_info,
                    Some("default"),
                    "kubernetes",
                    |mut cur| {
                        cur["endpoints"] = slice["endpoints"].clone();
                        cur["ports"] = slice["ports"].clone();
                        cur["addressType"] = slice["addressType"].clone();
                        Ok(Some(cur))
                    },
                    false,
                )
                .await
                .map_err(|e| anyhow::anyhow!("updating the kubernetes EndpointSlice: {e}"))?;
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "creating the kubernetes EndpointSlice: {e}"
            ));
        }
    }
    let _ = config;
    Ok(())
}

/// Compacts the store like kube-apiserver: every interval, up to the revision seen one
/// interval earlier, so watchers always have at least one interval of history.
async fn compactor(store: Arc<dyn Store>, interval: Duration, shutdown: CancellationToken) {
    let mut last_seen: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Some(rev) = last_seen
            && let Err(e) = store.compact(rev).await
        {
            tracing::debug!(revision = rev, error = %e, "compaction skipped");
        }
        last_seen = store.current_revision().await.ok();
    }
}

/// The union of the authorizers `--authorization-mode` names, in its order, and the RBAC
/// authorizer among them (admission's escalation checks read its roles).
fn authorizer(
    modes: &[AuthorizationMode],
    registry: &Registry,
    shutdown: &CancellationToken,
) -> (Arc<dyn Authorizer>, Option<Arc<crate::rbac::Rbac>>) {
    let mut rbac = None;
    let authorizers = modes
        .iter()
        .map(|m| -> Box<dyn Authorizer> {
            match m {
                AuthorizationMode::AlwaysAllow => Box::new(AlwaysAllow),
                AuthorizationMode::AlwaysDeny => Box::new(AlwaysDeny),
                AuthorizationMode::Node => Box::new(crate::node_authz::NodeAuthorizer::start(
                    &registry.cache,
                    crate::rbac::bootstrap::node_rules(),
                    shutdown.clone(),
                )),
                AuthorizationMode::Rbac => {
                    let r = crate::rbac::Rbac::start(&registry.cache, shutdown.clone());
                    rbac = Some(r.clone());
                    Box::new(r)
                }
            }
        })
        .collect();
    (Arc::new(Union { authorizers }), rbac)
}

/// Writes the admin kubeconfig unless the one there already names this server, this CA and
/// the current admin certificate (which [`Pki::ensure`] renews before it expires): a file the
/// user added contexts to, or one an admin is reading, is left alone across restarts.
fn write_admin_kubeconfig(
    path: &std::path::Path,
    kubeconfig: &str,
    server_url: &str,
    pki: &Pki,
) -> anyhow::Result<()> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let up_to_date = current.contains(&format!("server: {server_url}\n"))
        && current.contains(&b64(&pki.ca.cert_pem))
        && current.contains(&b64(&pki.admin.cert_pem))
        && current.contains(&b64(&pki.admin.key_pem));
    if !up_to_date {
        pki::write_kubeconfig(path, kubeconfig)?;
    }
    Ok(())
}

/// Runs the apiserver until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // A bad audit policy stops the apiserver before it serves anything.
    let metrics = Metrics::default();
    let audit = crate::audit::Auditor::start(&config.audit, &metrics)?;
    let (store, encryption) = open_store(&config).await?;
    let advertise = advertise_ip(&config);
    let mut sans: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    if let Ok(h) = hostname::get() {
        sans.push(h.to_string_lossy().into_owned());
    }
    for ip in local_ips() {
        sans.push(ip.to_string());
    }
    let allocator = Allocator::new(
        store.clone(),
        config.service_cluster_ip_range,
        config.service_node_port_range,
    );
    sans.push(allocator.first_ip().to_string());
    sans.dedup();
    let pki = Pki::ensure_in(&config.cert_dir(), &sans)?;
    let tls = tls_config(&pki)?;

    let cache = WatchCache::start(store.clone(), resources::all(), shutdown.clone());
    cache.wait_synced().await;
    let mut registry = Registry::new(store.clone(), cache, allocator);
    registry.event_ttl = config.event_ttl;
    let registry = Arc::new(registry);
    if let Some(encryption) = encryption {
        let _ = registry.encryption.set(encryption);
    }

    let listener = TcpListener::bind(SocketAddr::new(config.bind_address, config.secure_port))
        .await
        .with_context(|| {
            format!(
                "binding {}:{}; is another apiserver running?",
                config.bind_address, config.secure_port
            )
        })?;
    let local = listener.local_addr()?;
    bootstrap(&registry, &config, local.port(), advertise).await?;
    crate::rbac::bootstrap_policy(&registry)
        .await
        .map_err(|e| anyhow::anyhow!("writing the bootstrap RBAC policy: {e}"))?;

    let tokens = match &config.token_auth_file {
        Some(p) => TokenFile::load(p)?,
        None => TokenFile::default(),
    };
    let client_host = if config.bind_address.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        config.bind_address.to_string()
    };
    let server_url = format!("https://{client_host}:{}", local.port());
    let kubeconfig = pki::kubeconfig(&server_url, &pki.ca.cert_pem, &pki.admin, "admin");
    let kc_path = config.kubeconfig_path();
    write_admin_kubeconfig(&kc_path, &kubeconfig, &server_url, &pki)?;

    let (authz, rbac) = authorizer(&config.authorization_modes, &registry, &shutdown);
    let _ = registry.admission.set(crate::admission::Admission {
        authz: authz.clone(),
        rbac,
        pod_security: config.pod_security.clone(),
        external_ips: crate::admission::external_ips::Config {
            deny: config.deny_service_external_ips,
            apiserver_ips: own_ips(&config, advertise),
        },
    });
    let kubelet_ca =
        match &config.kubelet_certificate_authority {
            Some(p) => Some(std::fs::read_to_string(p).with_context(|| {
                format!("reading --kubelet-certificate-authority {}", p.display())
            })?),
            None => None,
        };
    let sa_key = crate::serviceaccount::SigningKey::load_or_create(&pki.dir)
        .context("loading the service account signing key (sa.key)")?;
    let app = Arc::new(App {
        registry,
        tokens,
        sa_tokens: Some(crate::sa_tokens::Tokens {
            key: sa_key,
            audiences: Vec::new(),
        }),
        authz,
        anonymous: config.anonymous_auth,
        bootstrap_token_auth: config.enable_bootstrap_token_auth,
        metrics,
        advertise: format!("{advertise}:{}", local.port()),
        kubelet: crate::proxy::KubeletClient::new(&pki.kubelet_client, kubelet_ca.as_deref())?,
        resource_metrics: Default::default(),
        audit: audit.clone(),
    });
    if !config.metric_resolution.is_zero() {
        tokio::spawn(crate::resource_metrics::scrape_loop(
            app.clone(),
            config.metric_resolution,
            shutdown.clone(),
        ));
    }
    let router = Router::new()
        .fallback(crate::handlers::dispatch)
        .with_state(app);
    if !config.compaction_interval.is_zero() {
        tokio::spawn(compactor(
            store,
            config.compaction_interval,
            shutdown.clone(),
        ));
    }

    if let Some(ready) = &config.ready_file {
        std::fs::write(ready, local.to_string())
            .with_context(|| format!("writing {}", ready.display()))?;
    }
    tracing::info!(address = %local, kubeconfig = %kc_path.display(), "skiff-apiserver is serving");
    // The verified client certificate (if any) names the user: CN, with O as groups.
    skiff_common::serve_tls(
        listener,
        tls,
        router,
        config.serve_limits,
        shutdown,
        |certs| {
            PeerIdentity(
                certs
                    .and_then(|c| c.first())
                    .and_then(|c| user_from_cert(c))
                    .map(Arc::new),
            )
        },
    )
    .await;
    if let Some(audit) = audit {
        tokio::task::spawn_blocking(move || audit.sync(Duration::from_secs(5)))
            .await
            .ok();
    }
    tracing::info!("skiff-apiserver stopped");
    Ok(())
}

/// The data dir to use when none is given.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/skiff")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_kubeconfig_is_rewritten_only_when_what_it_names_changed() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::ensure(dir.path(), &["localhost".into()]).unwrap();
        let path = dir.path().join("admin.kubeconfig");
        let url = "https://127.0.0.1:6443";
        let write = |url: &str| {
            let kubeconfig = pki::kubeconfig(url, &pki.ca.cert_pem, &pki.admin, "admin");
            write_admin_kubeconfig(&path, &kubeconfig, url, &pki).unwrap();
        };
        write(url);
        // A line the user added survives a restart that changed nothing ...
        let edited = std::fs::read_to_string(&path).unwrap() + "# mine\n";
        std::fs::write(&path, &edited).unwrap();
        write(url);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
        // ... and a new address is written.
        write("https://127.0.0.1:7443");
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.contains("server: https://127.0.0.1:7443\n"), "{now}");
    }
}
