//! The root CA publisher: every namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt`
//! is the cluster's CA bundle, so that pods can verify the apiserver (the projected
//! ServiceAccount volume mounts it). A deleted one is created again; a changed one is put
//! back. The bundle is `--root-ca-file`, else the kubeconfig's certificate authority; without
//! either the controller does not run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::controllers::serviceaccount::{is_active, namespace_terminating};
use crate::workqueue::WorkQueue;
use skiff_client::informer::Change;

pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The key holding the bundle.
pub const CA_KEY: &str = "ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description of the ConfigMap, word for word: tools show it.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What the publisher must write for `existing` (the namespace's `kube-root-ca.crt`, if any):
/// nothing when its data is exactly the bundle and it has a description, else the ConfigMap
/// to create or to update in its place (other annotations and labels kept).
pub fn desired(namespace: &str, ca: &str, existing: Option<&ConfigMap>) -> Option<ConfigMap> {
    let data = BTreeMap::from([(CA_KEY.to_string(), ca.to_string())]);
    let Some(cm) = existing else {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(ROOT_CA_CONFIG_MAP.into());
        cm.metadata.namespace = Some(namespace.into());
        cm.metadata.annotations = Some(BTreeMap::from([(
            DESCRIPTION_ANNOTATION.to_string(),
            DESCRIPTION.to_string(),
        )]));
        cm.data = Some(data);
        return Some(cm);
    };
    let described = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    if cm.data.as_ref() == Some(&data) && described {
        return None;
    }
    let mut cm = cm.clone();
    cm.data = Some(data);
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Some(cm)
}

pub struct RootCaCertPublisher {
    ctx: Arc<Context>,
    client: Client,
}

impl RootCaCertPublisher {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.namespaces.clone();
        ctx.namespaces.on_change(move |c| match c {
            Change::Applied { old: None, new } => q.add(new.name_any()),
            Change::Applied { new, .. } if is_active(new) => q.add(new.name_any()),
            Change::Applied { .. } | Change::Deleted(_) => {}
            Change::Resynced => all.list().iter().for_each(|n| q.add(n.name_any())),
        });
        let q = queue.clone();
        ctx.root_ca_config_maps().on_change(move |c| match c {
            Change::Applied { old: Some(_), new } => q.add(new.namespace().unwrap_or_default()),
            Change::Deleted(cm) => q.add(cm.namespace().unwrap_or_default()),
            Change::Applied { old: None, .. } | Change::Resynced => {}
        });
        Arc::new(RootCaCertPublisher {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx,
        })
    }
}

impl Controller for RootCaCertPublisher {
    const SERVICE_ACCOUNT: &'static str = "root-ca-cert-publisher";

    fn disabled(ctx: &Context) -> Option<String> {
        ctx.settings.root_ca.is_none().then(|| {
            "no cluster CA: neither --root-ca-file nor the kubeconfig's certificate-authority \
             names one"
                .to_string()
        })
    }

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for RootCaCertPublisher {
    const NAME: &'static str = "root-ca-cert-publisher";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(ca) = self.ctx.settings.root_ca.as_deref() else {
            return Ok(None);
        };
        let Some(ns) = self.ctx.namespaces.get(None, key) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let existing = self
            .ctx
            .root_ca_config_maps()
            .get(Some(key), ROOT_CA_CONFIG_MAP);
        let Some(cm) = desired(key, ca, existing.as_deref()) else {
            return Ok(None);
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), key);
        let written = if existing.is_some() {
            api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &cm)
                .await
        } else {
            api.create(&PostParams::default(), &cm).await
        };
        match written {
            Ok(_) => Ok(None),
            // Not retried: the namespace is gone or going (as upstream).
            Err(kube::Error::Api(s)) if existing.is_none() && s.code == 404 => Ok(None),
            Err(e) if namespace_terminating(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The CA bundle from `--root-ca-file`: it must hold at least one PEM certificate (as
/// upstream refuses a file it cannot parse).
pub fn read_root_ca_file(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading --root-ca-file {}", path.display()))?;
    check_bundle(&pem).with_context(|| format!("--root-ca-file {}", path.display()))?;
    Ok(pem)
}

/// Checks that `pem` holds at least one certificate and nothing unreadable.
pub fn check_bundle(pem: &str) -> anyhow::Result<()> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        cert.map_err(|e| anyhow::anyhow!("not a PEM certificate bundle: {e:?}"))?;
        count += 1;
    }
    anyhow::ensure!(count > 0, "no PEM certificate in the CA bundle");
    Ok(())
}

/// The CA bundle of the cluster the kubeconfig's current context names, if it has one
/// ([`skiff_client::kubeconfig_ca`]), checked to hold a certificate.
pub fn kubeconfig_ca(kubeconfig: &std::path::Path) -> anyhow::Result<Option<String>> {
    use anyhow::Context as _;
    let Some(pem) = skiff_client::kubeconfig_ca(kubeconfig)? else {
        return Ok(None);
    };
    check_bundle(&pem).context("the kubeconfig's certificate authority")?;
    Ok(Some(pem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Settings;
    use crate::testing::{FakeApi, namespace};
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBdjCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n";

    fn published(cm: &serde_json::Value) -> bool {
        cm["data"] == json!({ CA_KEY: CA })
            && cm["metadata"]["annotations"][DESCRIPTION_ANNOTATION] == DESCRIPTION
    }

    #[tokio::test]
    async fn every_namespace_gets_the_bundle_and_keeps_it() {
        let api = FakeApi::new();
        api.create("namespaces", None, namespace("default", false));
        let stop = CancellationToken::new();
        let settings = Settings {
            root_ca: Some(CA.into()),
            ..Default::default()
        };
        let ctx = api.context(settings, &stop);
        api.start(&ctx, &[RootCaCertPublisher::NAME], &stop).await;
        api.wait_for(
            "configmaps",
            Some("default"),
            ROOT_CA_CONFIG_MAP,
            "published",
            published,
        )
        .await;

        api.create("namespaces", None, namespace("team-a", false));
        api.wait_for(
            "configmaps",
            Some("team-a"),
            ROOT_CA_CONFIG_MAP,
            "published",
            published,
        )
        .await;

        // A changed bundle is put back; other annotations and labels stay.
        let mut cm = api
            .get("configmaps", Some("team-a"), ROOT_CA_CONFIG_MAP)
            .unwrap();
        cm["data"] = json!({ CA_KEY: "tampered", "extra": "x" });
        cm["metadata"]["labels"] = json!({ "team": "a" });
        api.replace("configmaps", Some("team-a"), cm);
        let cm = api
            .wait_for(
                "configmaps",
                Some("team-a"),
                ROOT_CA_CONFIG_MAP,
                "restored",
                published,
            )
            .await;
        assert_eq!(cm["metadata"]["labels"], json!({ "team": "a" }));

        // A deleted one comes back.
        api.delete("configmaps", Some("team-a"), ROOT_CA_CONFIG_MAP);
        api.wait_for(
            "configmaps",
            Some("team-a"),
            ROOT_CA_CONFIG_MAP,
            "recreated",
            published,
        )
        .await;
        stop.cancel();
    }

    #[test]
    fn only_a_differing_or_undescribed_config_map_is_written() {
        let fresh = desired("a", CA, None).unwrap();
        assert_eq!(fresh.metadata.name.as_deref(), Some(ROOT_CA_CONFIG_MAP));
        assert_eq!(fresh.metadata.namespace.as_deref(), Some("a"));
        assert!(desired("a", CA, Some(&fresh)).is_none());
        let mut undescribed = fresh.clone();
        undescribed.metadata.annotations = None;
        let fixed = desired("a", CA, Some(&undescribed)).unwrap();
        assert_eq!(fixed, fresh);
        assert!(desired("a", "another CA", Some(&fresh)).is_some());
    }

    #[test]
    fn bundles_must_hold_certificates() {
        assert!(check_bundle("not a certificate").is_err());
        assert!(check_bundle("").is_err());
    }
}
