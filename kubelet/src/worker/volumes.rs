//! Pod volumes on the node: emptyDir (a tmpfs for `medium: Memory`), hostPath, and the
//! configMap, secret and downwardAPI projections written into the pod's folder and refreshed
//! while the pod runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, EnvVarSource, KeyToPath, Volume,
};
use skiff_runtime::Mount;
use tokio::time::Instant;

use super::Worker;
use super::container::quantity_bytes;

/// How often projected volumes (configMap, secret, downwardAPI) are refreshed.
const PROJECTION_REFRESH: Duration = Duration::from_secs(5);

impl Worker {
    /// The container's volume mounts, preparing each volume: hostPath as is; emptyDir (a
    /// tmpfs for `medium: Memory`), configMap, secret and downwardAPI as a folder of the pod.
    pub(super) async fn volume_mounts(&self, c: &Container) -> Result<Vec<Mount>, String> {
        let mut mounts = Vec::new();
        let spec = self.pod.spec.clone().unwrap_or_default();
        for vm in c.volume_mounts.iter().flatten() {
            let Some(vol) = spec.volumes.iter().flatten().find(|v| v.name == vm.name) else {
                return Err(format!("volume {:?} not found", vm.name));
            };
            let host = if let Some(hp) = &vol.host_path {
                PathBuf::from(&hp.path)
            } else {
                let dir = self.volumes_dir().join(&vol.name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating volume {}: {e}", vol.name))?;
                self.project(vol, c, &dir).await?;
                if let Some(ed) = &vol.empty_dir
                    && ed.medium.as_deref() == Some("Memory")
                {
                    mount_tmpfs(&dir, ed.size_limit.as_ref().map(|q| q.0.as_str()))?;
                }
                dir
            };
            let mut container_path = vm.mount_path.clone();
            let mut host_path = host;
            if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                host_path = host_path.join(sub);
                if !container_path.is_empty() {
                    container_path = vm.mount_path.clone();
                }
            }
            mounts.push(Mount {
                host_path: host_path.display().to_string(),
                container_path,
                read_only: vm.read_only.unwrap_or(false),
            });
        }
        Ok(mounts)
    }

    /// Writes a configMap, secret or downwardAPI volume's files into `dir` (no-op for other
    /// volume types).
    async fn project(&self, vol: &Volume, c: &Container, dir: &Path) -> Result<(), String> {
        if let Some(cm) = &vol.config_map {
            let data = match self.config_map_data(&cm.name).await {
                Err(_) if cm.optional == Some(true) => BTreeMap::new(),
                other => other?,
            };
            write_projection(dir, &data, cm.items.as_ref(), cm.default_mode)?;
        }
        if let Some(secret) = &vol.secret {
            let data = match self
                .secret_data(secret.secret_name.as_deref().unwrap_or_default())
                .await
            {
                Err(_) if secret.optional == Some(true) => BTreeMap::new(),
                other => other?,
            };
            write_projection(dir, &data, secret.items.as_ref(), secret.default_mode)?;
        }
        if let Some(d) = &vol.downward_api {
            let (data, items) = self
                .downward_data(c, d.items.as_deref().unwrap_or_default())
                .await?;
            write_projection(dir, &data, Some(&items), d.default_mode)?;
        }
        Ok(())
    }

    /// Re-projects configMap, secret and downwardAPI volumes so running containers see their
    /// sources' changes (as the kubelet's periodic volume sync does).
    pub(super) async fn refresh_projections(&mut self) {
        if self
            .projected_at
            .is_some_and(|t| t.elapsed() < PROJECTION_REFRESH)
        {
            return;
        }
        self.projected_at = Some(Instant::now());
        let spec = self.pod.spec.clone().unwrap_or_default();
        let Some(first) = spec.containers.first().cloned() else {
            return;
        };
        for vol in spec.volumes.iter().flatten() {
            if vol.config_map.is_none() && vol.secret.is_none() && vol.downward_api.is_none() {
                continue;
            }
            let dir = self.volumes_dir().join(&vol.name);
            if !dir.exists() {
                continue;
            }
            if let Err(e) = self.project(vol, &first, &dir).await {
                tracing::debug!(pod = %self.name(), volume = %vol.name, error = %e, "volume refresh failed");
            }
        }
    }

    pub(super) async fn config_map_data(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let cm = self
            .ctx
            .api
            .config_map(self.namespace(), name)
            .await
            .map_err(|e| format!("configmap {name:?} not found: {e}"))?;
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        Ok(data)
    }

    pub(super) async fn secret_data(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let s = self
            .ctx
            .api
            .secret(self.namespace(), name)
            .await
            .map_err(|e| format!("secret {name:?} not found: {e}"))?;
        Ok(s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())
    }

    /// The files of a downwardAPI volume: each item's fieldRef or resourceFieldRef value.
    async fn downward_data(
        &self,
        c: &Container,
        items: &[DownwardAPIVolumeFile],
    ) -> Result<(BTreeMap<String, Vec<u8>>, Vec<KeyToPath>), String> {
        let mut data = BTreeMap::new();
        let mut paths = Vec::new();
        for item in items {
            let source = EnvVarSource {
                field_ref: item.field_ref.clone(),
                resource_field_ref: item.resource_field_ref.clone(),
                ..Default::default()
            };
            let value = match (
                &item.field_ref,
                &item.field_ref.as_ref().map(|f| f.field_path.as_str()),
            ) {
                (Some(_), Some("metadata.labels")) => map_lines(self.pod.metadata.labels.as_ref()),
                (Some(_), Some("metadata.annotations")) => {
                    map_lines(self.pod.metadata.annotations.as_ref())
                }
                _ => self.env_from_source_for(&source, c).await?,
            };
            data.insert(item.path.clone(), value.into_bytes());
            paths.push(KeyToPath {
                key: item.path.clone(),
                path: item.path.clone(),
                mode: item.mode,
            });
        }
        Ok((data, paths))
    }
}

/// Writes a configMap, secret or downwardAPI volume: every key (or just `items`, at their
/// paths and modes), with `defaultMode` (0644 by default) otherwise.
fn write_projection(
    dir: &std::path::Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let files: Vec<(String, String, Option<i32>)> = match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone(), i.mode))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone(), None)).collect(),
    };
    for (key, path, mode) in files {
        let Some(value) = data.get(&key) else {
            return Err(format!("couldn't find key {key} in the volume's source"));
        };
        if path.split('/').any(|p| p == "..") || path.starts_with('/') {
            return Err(format!("invalid path {path:?} in a volume item"));
        }
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&file, value).map_err(|e| e.to_string())?;
        let mode = mode.or(default_mode).unwrap_or(0o644) as u32;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `key="value"` lines, as the downward API writes label and annotation maps.
fn map_lines(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect())
        .unwrap_or_default()
}

/// Mounts a tmpfs (an emptyDir with `medium: Memory`) on `dir`, unless one is there already.
fn mount_tmpfs(dir: &Path, size: Option<&str>) -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let target = dir.display().to_string();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(target.as_str()))
    {
        return Ok(());
    }
    let mut opts = "mode=0777".to_string();
    if let Some(bytes) = size.and_then(quantity_bytes) {
        opts.push_str(&format!(",size={bytes}"));
    }
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("mounting tmpfs on {target}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mounting tmpfs on {target}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
