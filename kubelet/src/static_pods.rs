//! Static pods: pod manifests in `--pod-manifest-path` that the kubelet runs without anyone
//! creating them through the API. Each is published as a *mirror pod* (named
//! `<name>-<node>`, bound to this node, annotated `kubernetes.io/config.mirror`) so that
//! `kubectl get pods` shows it; the kubelet then runs the mirror like any pod bound to it.
//! Editing a file replaces the pod; removing the file removes it.
//!
//! Unlike Kubernetes, deleting a mirror pod through the API stops the static pod until the next
//! scan recreates it (a few seconds), because the mirror is what the workers run.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::Context;

const SOURCE: &str = "kubernetes.io/config.source";
const MIRROR: &str = "kubernetes.io/config.mirror";
const SCAN_EVERY: Duration = Duration::from_secs(5);

fn hash(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Reads the manifests: (namespace, mirror name) → (pod, content hash).
fn read_manifests(dir: &PathBuf, node: &str) -> BTreeMap<(String, String), (Pod, String)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !matches!(
            path.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let mut pod: Pod = match serde_yaml::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping a static pod manifest that does not parse");
                continue;
            }
        };
        let Some(name) = pod.metadata.name.clone() else {
            tracing::warn!(file = %path.display(), "skipping a static pod manifest without metadata.name");
            continue;
        };
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mirror = format!("{name}-{node}");
        let h = hash(&bytes);
        pod.metadata.name = Some(mirror.clone());
        pod.metadata.namespace = Some(ns.clone());
        let ann = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
        ann.insert(SOURCE.into(), "file".into());
        ann.insert(MIRROR.into(), h.clone());
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.to_string());
        }
        out.insert((ns, mirror), (pod, h));
    }
    out
}

/// Keeps the mirror pods in step with the manifest folder until shutdown.
pub async fn run(ctx: Arc<Context>, dir: PathBuf, shutdown: CancellationToken) {
    let all: Api<Pod> = Api::all(ctx.client.clone());
    loop {
        let wanted = read_manifests(&dir, &ctx.node_name);
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", ctx.node_name));
        match all.list(&lp).await {
            Ok(list) => {
                let mut present = BTreeSet::new();
                for p in list.items {
                    let ann = p.metadata.annotations.clone().unwrap_or_default();
                    if ann.get(SOURCE).map(String::as_str) != Some("file") {
                        continue;
                    }
                    let key = (
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default(),
                    );
                    let current = wanted.get(&key).map(|(_, h)| h.as_str());
                    if current.is_some() && current == ann.get(MIRROR).map(String::as_str) {
                        present.insert(key);
                    } else if p.metadata.deletion_timestamp.is_none() {
                        // The file changed or went away: the old mirror goes (gracefully).
                        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.0);
                        let _ = api.delete(&key.1, &DeleteParams::default()).await;
                        present.insert(key);
                    } else {
                        present.insert(key);
                    }
                }
                for (key, (pod, _)) in &wanted {
                    if present.contains(key) {
                        continue;
                    }
                    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.0);
                    match api.create(&PostParams::default(), pod).await {
                        Ok(_) => {
                            tracing::info!(pod = %key.1, namespace = %key.0, "created mirror pod for a static pod")
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => {
                            tracing::warn!(pod = %key.1, error = %e, "could not create a mirror pod")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list this node's pods for static pods"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SCAN_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
