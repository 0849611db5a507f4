//! Names shared by the programs that act on persistent storage (the controller-manager's
//! binder and provisioner, the scheduler's volume binding, the kubelet's mounts): Kubernetes'
//! annotations, Skiff's built-in `local-path` provisioner's conventions, and which volume
//! may hold which claim.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Set on a claim once the binder has bound it (`"yes"`).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding the binder made (rather than the user pre-binding it).
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Set on a claim by the scheduler: the node chosen for the first pod that uses it, where a
/// `WaitForFirstConsumer` volume is to be provisioned or found.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim: the provisioner expected to make its volume (and the beta spelling).
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set on a provisioned volume: the provisioner that made it.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The built-in dynamic provisioner: a directory on the node the claim's first pod runs on, as
/// k3s's `rancher.io/local-path`.
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.io/local-path";
/// The default StorageClass the controller-manager creates when absent.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// Set by the kubelet on its Node: the directory under which `local-path` volumes of that node
/// live (`<root-dir>/storage`), so that the provisioner names a path of that node's disk and
/// two nodes sharing one machine (a local cluster) do not share one directory.
pub const ANN_LOCAL_PATH_DIR: &str = "skiff.io/local-path-dir";
/// The directory a node's `local-path` volumes live under when its Node does not say.
pub const DEFAULT_LOCAL_PATH_DIR: &str = "/var/lib/skiff/storage";

/// The name of the volume provisioned for the claim with `claim_uid` (as external
/// provisioners name theirs).
pub fn provisioned_volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The directory of a `local-path` volume, under its node's storage directory:
/// `<volume>_<namespace>_<claim>`, as k3s's provisioner names it.
pub fn local_path_dir_name(volume: &str, namespace: &str, claim: &str) -> String {
    format!("{volume}_{namespace}_{claim}")
}

/// The volume a `local-path` directory belongs to (the part before the first `_`), if the name
/// is one.
pub fn volume_of_local_path_dir(dir_name: &str) -> Option<&str> {
    let (volume, _) = dir_name.split_once('_')?;
    volume.starts_with("pvc-").then_some(volume)
}

/// Whether a typed label selector matches `labels` (a claim's selector over a volume's labels).
fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().flatten().all(|e| {
            crate::selectors::LabelOp::from_api(&e.operator)
                .filter(|op| {
                    !matches!(
                        op,
                        crate::selectors::LabelOp::GreaterThan
                            | crate::selectors::LabelOp::LessThan
                    )
                })
                .is_some_and(|op| {
                    op.holds(
                        e.values.as_deref().unwrap_or_default(),
                        labels.get(&e.key).map(String::as_str),
                    )
                })
        })
}

pub fn bytes(q: Option<&Quantity>) -> i128 {
    q.and_then(|q| crate::Quantity::try_from(q).ok())
        .map(|q| q.as_nanos())
        .unwrap_or(0)
}

/// The storage a claim asks for.
pub fn requested(claim: &PersistentVolumeClaim) -> Option<&Quantity> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
}

/// A volume's capacity.
pub fn capacity(pv: &PersistentVolume) -> Option<&Quantity> {
    pv.spec.as_ref()?.capacity.as_ref()?.get("storage")
}

/// The class a claim names ("" for none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

pub fn phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The claim a volume's `claimRef` names, as `(namespace, name, uid)`.
pub fn claim_ref(pv: &PersistentVolume) -> Option<(&str, &str, &str)> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some((
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default(),
        r.uid.as_deref().unwrap_or_default(),
    ))
}

pub fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// Whether a node (name and labels) satisfies a volume's node affinity (none: every node).
pub fn node_fits_volume(
    pv: &PersistentVolume,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        let holds = |r: &NodeSelectorRequirement, have: Option<&str>| {
            crate::selectors::LabelOp::from_api(&r.operator)
                .is_some_and(|op| op.holds(r.values.as_deref().unwrap_or_default(), have))
        };
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs
                .iter()
                .all(|r| holds(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && holds(r, Some(node)))
    })
}

/// Whether `pv` could hold `claim` (ignoring who it is bound to): class, access modes, volume
/// mode, selector, capacity, and the selected node when there is one.
pub fn fits(
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> bool {
    let (Some(cs), Some(vs)) = (claim.spec.as_ref(), pv.spec.as_ref()) else {
        return false;
    };
    let modes_ok = cs
        .access_modes
        .iter()
        .flatten()
        .all(|m| vs.access_modes.iter().flatten().any(|v| v == m));
    let selector_ok = cs.selector.as_ref().is_none_or(|s| {
        label_selector_matches(s, pv.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
    });
    modes_ok
        && selector_ok
        && claim_class(claim) == volume_class(pv)
        && volume_mode(cs.volume_mode.as_ref()) == volume_mode(vs.volume_mode.as_ref())
        && bytes(capacity(pv)) >= bytes(requested(claim))
        && node.is_none_or(|(name, labels)| node_fits_volume(pv, name, labels))
}

/// The volume to bind `claim` to: one pre-bound to it (by its uid, or by name without one),
/// else the smallest Available unclaimed volume that fits.
pub fn find_volume(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Option<Arc<PersistentVolume>> {
    let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let uid = claim.metadata.uid.as_deref().unwrap_or_default();
    let usable = |pv: &PersistentVolume| {
        pv.metadata.deletion_timestamp.is_none() && !matches!(phase(pv), "Released" | "Failed")
    };
    if let Some(pre) = volumes.iter().find(|pv| {
        claim_ref(pv).is_some_and(|(n, c, u)| n == ns && c == name && (u.is_empty() || u == uid))
            && usable(pv)
    }) {
        // A volume pre-bound to the claim is used even if it does not fit, as upstream does;
        // the binding then shows what the user asked for.
        return Some(pre.clone());
    }
    volumes
        .iter()
        .filter(|pv| claim_ref(pv).is_none() && usable(pv) && fits(claim, pv, node))
        .min_by_key(|pv| bytes(capacity(pv)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_path_directories_name_their_volume() {
        let v = provisioned_volume_name("1234-abcd");
        let dir = local_path_dir_name(&v, "default", "data_x");
        assert_eq!(dir, "pvc-1234-abcd_default_data_x");
        assert_eq!(volume_of_local_path_dir(&dir), Some("pvc-1234-abcd"));
        assert_eq!(volume_of_local_path_dir("lost+found"), None);
        assert_eq!(volume_of_local_path_dir("other_dir"), None);
    }
}
