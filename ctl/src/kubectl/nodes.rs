//! `skiffctl cordon|uncordon|drain`, as kubectl does them: drain cordons the node, then evicts
//! its pods through the Eviction API (so PodDisruptionBudgets are honoured) and waits until
//! they are gone.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::Session;

#[derive(clap::Args, Debug, Clone)]
pub struct DrainArgs {
    pub node: String,
    /// Leave DaemonSet pods alone.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Also evict pods with emptyDir volumes (their data goes).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Also evict pods no controller will recreate.
    #[arg(long)]
    pub force: bool,
    /// Give up after this long (0: never).
    #[arg(long, default_value = "0")]
    pub timeout: String,
    /// Seconds of grace for each pod (-1: the pod's own).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
}

async fn set_unschedulable(s: &Session, node: &str, on: bool) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(s.client.clone());
    let err = |e| super::explain(e, &s.server);
    let n = api.get(node).await.map_err(err)?;
    let now = n
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let word = if on { "cordoned" } else { "uncordoned" };
    if now == on {
        println!("node/{node} already {word}");
        return Ok(());
    }
    api.patch(
        node,
        &PatchParams::default(),
        &Patch::Merge(
            json!({ "spec": { "unschedulable": if on { json!(true) } else { json!(null) } } }),
        ),
    )
    .await
    .map_err(err)?;
    println!("node/{node} {word}");
    Ok(())
}

pub async fn cordon(s: &Session, node: &str, on: bool) -> anyhow::Result<()> {
    set_unschedulable(s, node, on).await
}

fn controller_kind(p: &Pod) -> Option<String> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.clone())
}

pub async fn drain(s: &Session, a: &DrainArgs) -> anyhow::Result<()> {
    set_unschedulable(s, &a.node, true).await?;
    let all: Api<Pod> = Api::all(s.client.clone());
    let err = |e| super::explain(e, &s.server);
    let on_node = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", a.node)))
        .await
        .map_err(err)?
        .items;
    let mut evict = Vec::new();
    let mut refused = Vec::new();
    let mut unmanaged = Vec::new();
    let mut ignored = Vec::new();
    for p in on_node {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let id = format!("{ns}/{name}");
        let finished = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
        let mirror = p
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
        if mirror || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match controller_kind(&p).as_deref() {
            Some("DaemonSet") => {
                if a.ignore_daemonsets {
                    ignored.push(id);
                } else {
                    refused.push(format!("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {id}"));
                }
                continue;
            }
            None if !finished => {
                if a.force {
                    unmanaged.push(id.clone());
                } else {
                    refused.push(format!("cannot delete Pods that declare no controller (use --force to override): {id}"));
                    continue;
                }
            }
            _ => {}
        }
        let empty_dir = p
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
        if empty_dir && !a.delete_emptydir_data {
            refused.push(format!("cannot delete Pods with local storage (use --delete-emptydir-data to override): {id}"));
            continue;
        }
        evict.push((ns, name));
    }
    if !refused.is_empty() {
        bail!(
            "unable to drain node \"{}\" due to error: {}, continuing command...\nThere are pending nodes to be drained:\n {}",
            a.node,
            refused.join(", "),
            a.node
        );
    }
    if !ignored.is_empty() {
        eprintln!(
            "Warning: ignoring DaemonSet-managed Pods: {}",
            ignored.join(", ")
        );
    }
    if !unmanaged.is_empty() {
        eprintln!(
            "Warning: deleting Pods that declare no controller: {}",
            unmanaged.join(", ")
        );
    }
    let limit = if a.timeout == "0" {
        None
    } else {
        Some(skiff_common::parse_duration(&a.timeout).map_err(|e| anyhow!(e))?)
    };
    let started = Instant::now();
    for (ns, name) in &evict {
        println!("evicting pod {ns}/{name}");
        let api: Api<Pod> = Api::namespaced(s.client.clone(), ns);
        let mut params = EvictParams::default();
        if a.grace_period >= 0 {
            params.delete_options = Some(kube::api::DeleteParams {
                grace_period_seconds: Some(a.grace_period as u32),
                ..Default::default()
            });
        }
        // A disruption budget may refuse for now (429): try again, as kubectl does.
        loop {
            match api.evict(name, &params).await {
                Ok(_) => break,
                Err(kube::Error::Api(st)) if st.code == 404 => break,
                Err(kube::Error::Api(st)) if st.code == 429 => {
                    eprintln!(
                        "error when evicting pods/\"{name}\" -n \"{ns}\" (will retry after 5s): {}",
                        st.message
                    );
                    if limit.is_some_and(|l| started.elapsed() > l) {
                        bail!("drain did not complete within {}", a.timeout);
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
    for (ns, name) in &evict {
        let api: Api<Pod> = Api::namespaced(s.client.clone(), ns);
        while api.get_opt(name).await.map_err(err)?.is_some() {
            if limit.is_some_and(|l| started.elapsed() > l) {
                bail!("drain did not complete within {}", a.timeout);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("pod/{name} evicted");
    }
    println!("node/{} drained", a.node);
    Ok(())
}
