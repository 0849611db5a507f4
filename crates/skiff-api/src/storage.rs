//! Names shared by the programs that act on persistent storage (the controller-manager's
//! binder and provisioner, the scheduler's volume binding, the kubelet's mounts): Kubernetes'
//! annotations, and Skiff's built-in `local-path` provisioner's conventions.

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
