//! The controller-manager's configuration and [`run`]: which controllers run (`--controllers`),
//! the health endpoint, leader election and the shared informers wired together.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use skiff_client::leader::{LeaderElection, Leadership};
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Settings};
use crate::controllers;
use crate::credentials::{Credentials, TokenRequests};
use crate::metrics::Metrics;

/// The controller-manager's configuration, from flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    /// `--controllers`: `*` (all), names, and `-name` to leave one out.
    pub controllers: Vec<String>,
    pub leader_election: LeaderElection,
    pub serve_addr: SocketAddr,
    /// Workers per controller (`--concurrent-*-syncs`).
    pub workers: usize,
    pub settings: Settings,
    /// `--root-ca-file`: the CA bundle published as `kube-root-ca.crt`; without it, the
    /// kubeconfig's certificate authority.
    pub root_ca_file: Option<PathBuf>,
    /// `--use-service-account-credentials`: each controller writes as its own ServiceAccount
    /// ([`crate::credentials`]).
    pub use_service_account_credentials: bool,
    /// `--cluster-signing-cert-file` and `--cluster-signing-key-file`: the CA the CSR signer
    /// issues with (both or neither).
    pub cluster_signing_cert_file: Option<PathBuf>,
    pub cluster_signing_key_file: Option<PathBuf>,
}

/// The CSR signer's CA from `--cluster-signing-cert-file` and `--cluster-signing-key-file`:
/// none without them; both must be given and readable.
pub fn cluster_signing(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> anyhow::Result<Option<skiff_common::pki::CertKey>> {
    let read = |p: &std::path::Path, flag: &str| {
        std::fs::read_to_string(p).with_context(|| format!("reading {flag} {}", p.display()))
    };
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => Ok(Some(skiff_common::pki::CertKey {
            cert_pem: read(c, "--cluster-signing-cert-file")?,
            key_pem: read(k, "--cluster-signing-key-file")?,
        })),
        _ => anyhow::bail!(
            "--cluster-signing-cert-file and --cluster-signing-key-file go together: give both or neither"
        ),
    }
}

/// The cluster CA bundle to publish: `--root-ca-file` (which must be readable), else the
/// kubeconfig's certificate authority, else none.
pub fn root_ca(
    root_ca_file: Option<&std::path::Path>,
    kubeconfig: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    if let Some(path) = root_ca_file {
        return controllers::rootcacert::read_root_ca_file(path).map(Some);
    }
    controllers::rootcacert::kubeconfig_ca(kubeconfig)
}

/// Controllers' clients: the controller-manager's own, or one per ServiceAccount made from
/// the kubeconfig's connection settings.
async fn credentials(
    config: &Config,
    client: &kube::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<Credentials> {
    if !config.use_service_account_credentials {
        return Ok(Credentials::shared(client.clone()));
    }
    let kc = kube::config::Kubeconfig::read_from(&config.kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", config.kubeconfig.display()))?;
    let base = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", config.kubeconfig.display()))?;
    let source = Arc::new(TokenRequests {
        client: client.clone(),
    });
    Ok(Credentials::per_account(base, source, shutdown)?)
}

/// Resolves `--controllers` to the set of controllers to run.
pub fn enabled(spec: &[String]) -> anyhow::Result<BTreeSet<&'static str>> {
    let words: Vec<&str> = spec
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut out = BTreeSet::new();
    for w in words.iter().filter(|w| **w != "*") {
        let name = w.trim_start_matches('-');
        let Some(known) = controllers::names().find(|c| *c == name) else {
            anyhow::bail!(
                "unknown controller {name:?} in --controllers; known: {}",
                controllers::names().collect::<Vec<_>>().join(", ")
            );
        };
        if !w.starts_with('-') {
            out.insert(known);
        }
    }
    if words.contains(&"*") {
        out.extend(
            controllers::ALL
                .iter()
                .filter(|c| c.enabled_by_default)
                .map(|c| c.name)
                .filter(|c| !words.contains(&format!("-{c}").as_str())),
        );
    }
    Ok(out)
}

/// Runs the enabled controllers until `shutdown` (Ok) or until leadership is lost (Err).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let enabled = enabled(&config.controllers)?;
    let mut settings = config.settings.clone();
    settings.root_ca = root_ca(config.root_ca_file.as_deref(), &config.kubeconfig)?;
    settings.cluster_signing = cluster_signing(
        config.cluster_signing_cert_file.as_deref(),
        config.cluster_signing_key_file.as_deref(),
    )?;
    let client = skiff_client::client(&config.kubeconfig).await?;
    let identity = skiff_client::identity();
    let metrics = Metrics::new();

    let for_scrape = metrics.clone();
    let server = skiff_client::health::spawn(
        config.serve_addr,
        move || for_scrape.render(),
        shutdown.clone(),
    )
    .await?;

    // Work stops on shutdown, or when leadership is lost.
    let Some(leadership) = Leadership::start(
        client.clone(),
        &config.leader_election,
        &identity,
        &shutdown,
    )
    .await
    else {
        return Ok(());
    };
    let work = leadership.work.clone();

    let credentials = credentials(&config, &client, work.clone()).await?;
    let ctx = Arc::new(
        Context::new(client, identity, settings, work.clone()).with_credentials(credentials),
    );
    // Controllers register their handlers before the informers start, so no event is missed.
    let tasks: Vec<_> = controllers::ALL
        .iter()
        .filter(|c| enabled.contains(c.name))
        .map(|c| tokio::spawn(c.start(&ctx, &metrics, config.workers, work.clone())))
        .collect();
    if ctx.credentials.per_controller() {
        // Controllers act on what the informers show: let them have their tokens first.
        tracing::info!(accounts = ?ctx.credentials.accounts(), "getting the controllers' ServiceAccount tokens");
        tokio::select! {
            _ = ctx.credentials.ready() => {}
            _ = work.cancelled() => {}
        }
    }
    tokio::select! {
        _ = ctx.start_informers() => {}
        _ = work.cancelled() => {}
    }
    tracing::info!(controllers = ?enabled, "caches synced; controllers running");
    for t in tasks {
        let _ = t.await;
    }
    leadership
        .finish()
        .await
        .context("stopping: another controller-manager may take over")?;
    let _ = server.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_write_as_kube_controller_managers_service_accounts() {
        let accounts: Vec<(&str, &str)> = controllers::ALL
            .iter()
            .map(|e| (e.name, e.service_account))
            .collect();
        assert_eq!(
            accounts,
            [
                ("replicationcontroller", "replication-controller"),
                ("replicaset", "replicaset-controller"),
                ("deployment", "deployment-controller"),
                ("disruption", "disruption-controller"),
                ("daemonset", "daemon-set-controller"),
                ("statefulset", "statefulset-controller"),
                ("garbagecollector", "generic-garbage-collector"),
                ("namespace", "namespace-controller"),
                ("nodeipam", "node-controller"),
                ("nodelifecycle", "node-controller"),
                ("endpoint", "endpoint-controller"),
                ("horizontalpodautoscaling", "horizontal-pod-autoscaler"),
                ("service-lb", "service-controller"),
                ("serviceaccount", "service-account-controller"),
                ("root-ca-cert-publisher", "root-ca-cert-publisher"),
                (
                    "clusterrole-aggregation",
                    "clusterrole-aggregation-controller"
                ),
                ("bootstrapsigner", "bootstrap-signer"),
                ("tokencleaner", "token-cleaner"),
                ("csrapproving", "certificate-controller"),
                ("csrsigning", "certificate-controller"),
                ("job", "job-controller"),
                ("ttl-after-finished", "ttl-after-finished-controller"),
                ("cronjob", "cronjob-controller"),
                ("resourcequota", "resourcequota-controller"),
                ("persistentvolume-binder", "persistent-volume-binder"),
                ("pvc-protection", "pvc-protection-controller"),
                ("pv-protection", "pv-protection-controller"),
            ]
        );
    }

    #[test]
    fn the_root_ca_comes_from_the_flag_or_the_kubeconfig() {
        use base64::Engine as _;
        let ca = "-----BEGIN CERTIFICATE-----\nMIIBdjCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n";
        let dir = std::env::temp_dir().join(format!("skiff-cm-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = |data: Option<&str>| {
            let ca_line = data
                .map(|d| format!("    certificate-authority-data: {d}\n"))
                .unwrap_or_default();
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: skiff\n  cluster:\n    server: https://127.0.0.1:6443\n{ca_line}contexts:\n- name: c\n  context:\n    cluster: skiff\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n"
            )
        };
        let with_ca = dir.join("with-ca.kubeconfig");
        let encoded = base64::engine::general_purpose::STANDARD.encode(ca);
        std::fs::write(&with_ca, kubeconfig(Some(&encoded))).unwrap();
        let without_ca = dir.join("without-ca.kubeconfig");
        std::fs::write(&without_ca, kubeconfig(None)).unwrap();
        let flag = dir.join("ca.crt");
        std::fs::write(&flag, ca.replace("MIIB", "MIIC")).unwrap();
        let bad = dir.join("bad.crt");
        std::fs::write(&bad, "not a certificate").unwrap();

        assert_eq!(root_ca(None, &with_ca).unwrap().as_deref(), Some(ca));
        assert_eq!(
            root_ca(Some(&flag), &with_ca).unwrap(),
            Some(ca.replace("MIIB", "MIIC"))
        );
        assert_eq!(root_ca(None, &without_ca).unwrap(), None);
        let err = root_ca(Some(&bad), &without_ca).unwrap_err();
        assert!(format!("{err:#}").contains("--root-ca-file"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn controllers_flag() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Upstream's `*` leaves the bootstrap-token controllers out; kubeadm names them.
        let all = enabled(&s(&["*"])).unwrap();
        assert_eq!(all.len(), controllers::ALL.len() - 2);
        assert!(!all.contains("bootstrapsigner") && !all.contains("tokencleaner"));
        let kubeadm = enabled(&s(&["*,bootstrapsigner,tokencleaner"])).unwrap();
        assert_eq!(kubeadm.len(), controllers::ALL.len());
        assert_eq!(controllers::names().count(), 27);
        let e = enabled(&s(&["*,-replicaset"])).unwrap();
        assert!(!e.contains("replicaset") && e.contains("replicationcontroller"));
        assert_eq!(
            enabled(&s(&["replicaset"]))
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["replicaset"]
        );
        assert!(
            enabled(&s(&["nope"]))
                .unwrap_err()
                .to_string()
                .contains("unknown controller")
        );
    }
}
