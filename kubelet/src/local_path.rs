//! The node's share of the built-in `local-path` provisioner: where its volumes live
//! (`<root-dir>/storage`, published on the Node as `skiff.io/local-path-dir` so the
//! provisioner names this node's directory), and removing a volume's directory once its
//! PersistentVolume is gone (the binder deletes volumes whose reclaim policy is `Delete`; a
//! `Retain` volume's data stays for as long as its PersistentVolume does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use tokio_util::sync::CancellationToken;

/// How often the storage directory is checked for volumes that are gone.
const SCAN_EVERY: Duration = Duration::from_secs(10);

/// The directory this node's `local-path` volumes live under.
pub fn storage_dir(root_dir: &Path) -> PathBuf {
    std::path::absolute(root_dir)
        .unwrap_or_else(|_| root_dir.to_path_buf())
        .join("storage")
}

/// The volume directories under `dir`, as (volume name, path).
pub fn volume_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let volume = skiff_api::storage::volume_of_local_path_dir(&name)?.to_string();
            Some((volume, e.path()))
        })
        .collect()
}

/// Removes, every [`SCAN_EVERY`] until `shutdown`, the directories of volumes the apiserver
/// no longer has.
pub async fn run_cleanup(client: kube::Client, dir: PathBuf, shutdown: CancellationToken) {
    let api: Api<PersistentVolume> = Api::all(client);
    loop {
        for (volume, path) in volume_dirs(&dir) {
            match api.get_opt(&volume).await {
                Ok(None) => match std::fs::remove_dir_all(&path) {
                    Ok(()) => {
                        tracing::info!(%volume, path = %path.display(), "removed the directory of a deleted local-path volume")
                    }
                    Err(e) => {
                        tracing::warn!(%volume, path = %path.display(), error = %e, "could not remove the directory of a deleted local-path volume")
                    }
                },
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::debug!(%volume, error = %e, "could not check a local-path volume")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SCAN_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_volume_directories_are_candidates() {
        let dir = std::env::temp_dir().join(format!("skiff-local-path-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pvc-1_default_data")).unwrap();
        std::fs::create_dir_all(dir.join("lost+found")).unwrap();
        std::fs::write(dir.join("pvc-2_default_file"), "not a directory").unwrap();
        let found = volume_dirs(&dir);
        assert_eq!(
            found,
            [("pvc-1".to_string(), dir.join("pvc-1_default_data"))]
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(storage_dir(Path::new("/var/lib/kubelet")).ends_with("kubelet/storage"));
    }
}
