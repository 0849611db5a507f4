//! VolumeBinding (with VolumeRestrictions' missing-claim check), as kube-scheduler's plugins of
//! those names: a pod whose claims are bound fits only nodes its volumes' node affinity
//! allows; an unbound claim of an `Immediate` class makes it unschedulable until the binder
//! binds it; an unbound claim of a `WaitForFirstConsumer` class fits any node where a static
//! volume could hold it or its class's provisioner could make one. Binding the pod then first
//! names the node on such claims (`volume.kubernetes.io/selected-node`) and waits until the
//! binder has bound them ([`VolumeBinding::pre_bind`], upstream's PreBind).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use skiff_api::storage::{ANN_SELECTED_NODE, fits, node_fits_volume};
use skiff_client::informer::Informer;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{CycleState, FilterPlugin, Reasons};
use crate::podinfo::PodInfo;

const STATE_KEY: &str = "VolumeBinding";
/// The provisioner of classes whose volumes are all made by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// How long binding a pod waits for its claims to be bound (upstream's `bindTimeoutSeconds`
/// is 600; a local provisioner answers in a second).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(120);

/// Upstream's reasons, as `kubectl describe pod` shows them.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const AFFINITY_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const NO_VOLUME_TO_BIND: &str = "node(s) didn't find available persistent volumes to bind";

/// Where the plugin reads claims, volumes and classes.
pub trait VolumeListers: Send + Sync {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    fn volumes(&self) -> Vec<Arc<PersistentVolume>>;
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
}

/// The listers on the scheduler's informers.
pub struct Informers {
    pub claims: Arc<Informer<PersistentVolumeClaim>>,
    pub volumes: Arc<Informer<PersistentVolume>>,
    pub classes: Arc<Informer<StorageClass>>,
}

impl VolumeListers for Informers {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(Some(namespace), name)
    }
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(None, name)
    }
    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.volumes.list()
    }
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(None, name)
    }
}

/// What the pre-filter found for one pod.
#[derive(Default)]
struct PodVolumes {
    /// A reason that rules out every node.
    refused: Option<String>,
    /// The volumes of its bound claims.
    bound: Vec<Arc<PersistentVolume>>,
    /// Its unbound `WaitForFirstConsumer` claims that need a static volume on the node.
    static_only: Vec<Arc<PersistentVolumeClaim>>,
    /// All volumes (for `static_only`).
    candidates: Vec<Arc<PersistentVolume>>,
}

/// Whether a claim is bound (or pre-bound to a volume by name).
pub fn claim_bound(claim: &PersistentVolumeClaim) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty())
}

fn delayed(class: Option<&StorageClass>) -> bool {
    class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}

pub struct VolumeBinding {
    pub listers: Option<Arc<dyn VolumeListers>>,
}

impl VolumeBinding {
    fn examine(&self, pod: &PodInfo) -> PodVolumes {
        let mut out = PodVolumes::default();
        let Some(listers) = &self.listers else {
            return out;
        };
        for name in &pod.claims {
            let Some(claim) = listers.claim(&pod.namespace, name) else {
                out.refused = Some(format!("persistentvolumeclaim \"{name}\" not found"));
                return out;
            };
            if claim.metadata.deletion_timestamp.is_some() {
                out.refused = Some(format!("persistentvolumeclaim \"{name}\" is being deleted"));
                return out;
            }
            if claim_bound(&claim) {
                let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
                match volume.and_then(|v| listers.volume(v)) {
                    Some(pv) => out.bound.push(pv),
                    None => {
                        out.refused = Some("pvc(s) bound to non-existent pv(s)".into());
                        return out;
                    }
                }
                continue;
            }
            let class_name = skiff_api::storage::claim_class(&claim);
            let class = listers.class(class_name);
            if !delayed(class.as_deref()) {
                out.refused = Some(UNBOUND_IMMEDIATE.into());
                return out;
            }
            if class.as_deref().map(|c| c.provisioner.as_str()) == Some(NO_PROVISIONER) {
                out.static_only.push(claim);
            }
        }
        if !out.static_only.is_empty() {
            out.candidates = listers.volumes();
        }
        out
    }
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn pre_filter(&self, pod: &PodInfo, _cache: &Cache, state: &mut CycleState) {
        if !pod.claims.is_empty() {
            state.write(STATE_KEY, self.examine(pod));
        }
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(v) = state.read::<PodVolumes>(STATE_KEY) else {
            return Ok(());
        };
        if let Some(why) = &v.refused {
            return Err(vec![why.clone().into()]);
        }
        let empty = BTreeMap::new();
        let labels = node.node.as_ref().map(|n| &n.labels).unwrap_or(&empty);
        if v.bound
            .iter()
            .any(|pv| !node_fits_volume(pv, &node.name, labels))
        {
            return Err(vec![AFFINITY_CONFLICT.into()]);
        }
        let free = |pv: &&Arc<PersistentVolume>| {
            pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none())
                && pv.metadata.deletion_timestamp.is_none()
        };
        for claim in &v.static_only {
            let found = v
                .candidates
                .iter()
                .filter(free)
                .any(|pv| fits(claim, pv, Some((&node.name, labels))));
            if !found {
                return Err(vec![NO_VOLUME_TO_BIND.into()]);
            }
        }
        Ok(())
    }
}

/// Why binding a pod's volumes failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("binding volumes: {0}")]
    Api(#[from] kube::Error),
    #[error("binding volumes: timed out waiting for the condition")]
    Timeout,
}

/// Upstream's PreBind: names `node` on the pod's unbound `WaitForFirstConsumer` claims and
/// waits (up to [`BIND_TIMEOUT`]) until the binder has bound each, so that the kubelet finds
/// bound claims. Pods without such claims pass at once.
pub async fn pre_bind(
    client: &kube::Client,
    listers: &dyn VolumeListers,
    pod: &PodInfo,
    node: &str,
) -> Result<(), BindError> {
    let mut waiting = Vec::new();
    for name in &pod.claims {
        let Some(claim) = listers.claim(&pod.namespace, name) else {
            continue;
        };
        if claim_bound(&claim) {
            continue;
        }
        let class = listers.class(skiff_api::storage::claim_class(&claim));
        if !delayed(class.as_deref()) {
            continue;
        }
        let selected = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE));
        if selected.map(String::as_str) != Some(node) {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &pod.namespace);
            let patch = json!({ "metadata": { "annotations": { ANN_SELECTED_NODE: node } } });
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        waiting.push(name.clone());
    }
    if waiting.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
    // The informer's cache shows the binder's writes; it is read every 100 ms rather than
    // subscribed to, as upstream's PreBind polls its cache.
    loop {
        let all_bound = waiting.iter().all(|name| {
            listers
                .claim(&pod.namespace, name)
                .is_some_and(|c| claim_bound(&c))
        });
        if all_bound {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BindError::Timeout);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::plugins::test_util::filter_all;
    use crate::testing::PodBuilder;

    #[derive(Default)]
    struct Fake {
        claims: HashMap<String, Arc<PersistentVolumeClaim>>,
        volumes: HashMap<String, Arc<PersistentVolume>>,
        classes: HashMap<String, Arc<StorageClass>>,
    }

    impl VolumeListers for Fake {
        fn claim(&self, _ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            self.claims.get(name).cloned()
        }
        fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
            self.volumes.get(name).cloned()
        }
        fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
            self.volumes.values().cloned().collect()
        }
        fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
            self.classes.get(name).cloned()
        }
    }

    fn fake() -> Fake {
        let mut f = Fake::default();
        let claim = |name: &str, class: &str, volume: Option<&str>| {
            Arc::new(
                serde_json::from_value::<PersistentVolumeClaim>(json!({
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"storageClassName": class, "volumeName": volume,
                             "accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}},
                }))
                .unwrap(),
            )
        };
        f.claims
            .insert("bound".into(), claim("bound", "local-path", Some("pv-n1")));
        f.claims
            .insert("immediate".into(), claim("immediate", "fast", None));
        f.claims
            .insert("later".into(), claim("later", "local-path", None));
        f.claims
            .insert("manual".into(), claim("manual", "local-storage", None));
        let pinned = |name: &str, node: &str, claimed: bool| {
            Arc::new(
                serde_json::from_value::<PersistentVolume>(json!({
                    "metadata": {"name": name},
                    "spec": {"storageClassName": "local-storage", "accessModes": ["ReadWriteOnce"],
                             "capacity": {"storage": "5Gi"},
                             "claimRef": if claimed { json!({"name": "x", "namespace": "default"}) } else { json!(null) },
                             "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                 {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
                }))
                .unwrap(),
            )
        };
        f.volumes
            .insert("pv-n1".into(), pinned("pv-n1", "n1", true));
        f.volumes
            .insert("static-n2".into(), pinned("static-n2", "n2", false));
        let class = |name: &str, provisioner: &str, mode: &str| {
            Arc::new(
                serde_json::from_value::<StorageClass>(json!({
                    "metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode,
                }))
                .unwrap(),
            )
        };
        f.classes.insert(
            "local-path".into(),
            class("local-path", "skiff.io/local-path", "WaitForFirstConsumer"),
        );
        f.classes.insert(
            "fast".into(),
            class("fast", "example.com/fast", "Immediate"),
        );
        f.classes.insert(
            "local-storage".into(),
            class("local-storage", NO_PROVISIONER, "WaitForFirstConsumer"),
        );
        f
    }

    fn run(claim: &str) -> Vec<Option<String>> {
        let plugin = VolumeBinding {
            listers: Some(Arc::new(fake())),
        };
        let mut pod = PodBuilder::new("p").info();
        pod.claims = vec![claim.to_string()];
        let nodes = ["n1", "n2", "n3"]
            .iter()
            .map(|n| {
                let mut info = NodeInfo::for_test(n, 1000, 1 << 30, 10);
                Arc::make_mut(info.node.as_mut().unwrap())
                    .labels
                    .insert("kubernetes.io/hostname".into(), n.to_string());
                info
            })
            .collect();
        filter_all(&plugin, &pod, nodes)
    }

    #[test]
    fn claims_decide_which_nodes_fit() {
        let conflict = Some(AFFINITY_CONFLICT.to_string());
        assert_eq!(run("bound"), [None, conflict.clone(), conflict]);
        let unbound = Some(UNBOUND_IMMEDIATE.to_string());
        assert_eq!(
            run("immediate"),
            [unbound.clone(), unbound.clone(), unbound]
        );
        assert_eq!(run("later"), [None, None, None]);
        let none = Some(NO_VOLUME_TO_BIND.to_string());
        assert_eq!(run("manual"), [none.clone(), None, none]);
        let missing = Some("persistentvolumeclaim \"nope\" not found".to_string());
        assert_eq!(run("nope"), [missing.clone(), missing.clone(), missing]);
    }
}
