//! Pod volumes on the node: emptyDir (a tmpfs for `medium: Memory`), hostPath, the
//! configMap, secret, downwardAPI and projected (those three plus ServiceAccount tokens)
//! volumes written into the pod's folder and refreshed while the pod runs, and
//! persistentVolumeClaim volumes whose bound volume is a `hostPath` or `local` directory of
//! the node (the built-in `local-path` provisioner's, created on first use).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, EnvVarSource, KeyToPath, ProjectedVolumeSource,
    Secret, ServiceAccountTokenProjection, Volume, VolumeProjection,
};
use skiff_client::events::EventType;
use skiff_runtime::Mount;
use tokio::time::Instant;

use super::Worker;
use super::atomic_writer::{self, FileProjection, Payload};
use super::container::quantity_bytes;
use super::tokens::TokenSpec;

/// How often a claim that could not be mounted is tried again.
const CLAIM_RETRY: Duration = Duration::from_secs(2);

/// How often projected volumes (configMap, secret, downwardAPI, projected) are refreshed.
const PROJECTION_REFRESH: Duration = Duration::from_secs(5);

/// The API's defaults for a volume's `defaultMode` and a token's `expirationSeconds`, for
/// objects that reach the kubelet without them.
const DEFAULT_MODE: i32 = 0o644;
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

impl Worker {
    /// The container's volume mounts, preparing each volume: hostPath as is; emptyDir (a
    /// tmpfs for `medium: Memory`), configMap, secret, downwardAPI and projected as a folder
    /// of the pod. The last four are mounted read-only whatever the volumeMount says, as
    /// Kubernetes does: the kubelet rewrites their files, so a container must not change them.
    pub(super) async fn volume_mounts(&self, c: &Container) -> Result<Vec<Mount>, String> {
        let mut mounts = Vec::new();
        let spec = self.pod.spec.clone().unwrap_or_default();
        for vm in c.volume_mounts.iter().flatten() {
            let Some(vol) = spec.volumes.iter().flatten().find(|v| v.name == vm.name) else {
                return Err(format!("volume {:?} not found", vm.name));
            };
            let host = if let Some(hp) = &vol.host_path {
                PathBuf::from(&hp.path)
            } else if vol.persistent_volume_claim.is_some() {
                self.claim_paths
                    .get(&vol.name)
                    .cloned()
                    .ok_or_else(|| format!("volume {:?} is not mounted yet", vol.name))?
            } else {
                let dir = self.volumes_dir().join(&vol.name);
                let fresh = !dir.exists();
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating volume {}: {e}", vol.name))?;
                if let Some(ed) = &vol.empty_dir
                    && ed.medium.as_deref() == Some("Memory")
                {
                    mount_tmpfs(&dir, "0777", ed.size_limit.as_ref().map(|q| q.0.as_str()))?;
                }
                // Only on a new folder: one that has files is in use by running containers
                // (adopted after a kubelet restart), which would not see a tmpfs put over it.
                if fresh && memory_backed(vol) {
                    self.mount_memory_volume(&vol.name, &dir);
                }
                self.project(vol, c, &dir).await?;
                dir
            };
            let host_path = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                None => host,
                Some(sub) => self.sub_path(&host, sub, &vm.name, &c.name)?,
            };
            mounts.push(Mount {
                host_path: host_path.display().to_string(),
                container_path: vm.mount_path.clone(),
                read_only: vm.read_only.unwrap_or(false)
                    || projected_kind(vol)
                    || vol
                        .persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.read_only == Some(true)),
            });
        }
        Ok(mounts)
    }

    /// Whether every persistentVolumeClaim volume of the pod has its directory: resolves each
    /// claim to its bound volume (the first time, and again every [`CLAIM_RETRY`] while one
    /// fails), recording a FailedMount event when the reason changes, as the kubelet's volume
    /// manager keeps a pod in ContainerCreating until its volumes are mounted.
    pub(super) async fn claims_ready(&mut self) -> bool {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let pending: Vec<(String, String)> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| !self.claim_paths.contains_key(&v.name))
            .filter_map(|v| {
                Some((
                    v.name.clone(),
                    v.persistent_volume_claim.as_ref()?.claim_name.clone(),
                ))
            })
            .collect();
        if pending.is_empty() {
            return true;
        }
        if self
            .claims_retry
            .as_ref()
            .is_some_and(|(at, _)| Instant::now() < *at)
        {
            return false;
        }
        for (volume, claim) in pending {
            match self.claim_path(&claim).await {
                Ok(path) => {
                    self.claim_paths.insert(volume, path);
                }
                Err(e) => {
                    let message = format!(
                        "Unable to attach or mount volumes: unmounted volumes=[{volume}], unattached volumes=[], failed to process volumes=[{volume}]: {e}"
                    );
                    let repeated = self
                        .claims_retry
                        .as_ref()
                        .is_some_and(|(_, m)| *m == message);
                    if !repeated {
                        self.event(None, EventType::Warning, "FailedMount", message.clone());
                    }
                    self.claims_retry = Some((Instant::now() + CLAIM_RETRY, message));
                    return false;
                }
            }
        }
        self.claims_retry = None;
        true
    }

    /// The host directory of claim `name`'s volume, created when the volume asks for it
    /// (`hostPath` type `DirectoryOrCreate`, or a `local-path` volume).
    async fn claim_path(&self, name: &str) -> Result<PathBuf, String> {
        let ns = self.namespace().to_string();
        let failed = |why: String| format!("error processing PVC {ns}/{name}: {why}");
        let claim = self
            .ctx
            .api
            .persistent_volume_claim(&ns, name)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    failed(format!(
                        "failed to fetch PVC from API server: persistentvolumeclaims \"{name}\" not found"
                    ))
                } else {
                    failed(format!("failed to fetch PVC from API server: {e}"))
                }
            })?;
        let volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let (Some(volume), true) = (volume, bound) else {
            return Err(failed("PVC is not bound".into()));
        };
        let pv = self.ctx.api.persistent_volume(&volume).await.map_err(|e| {
            failed(format!(
                "failed to fetch PV {volume:?} from API server: {e}"
            ))
        })?;
        let spec = pv.spec.clone().unwrap_or_default();
        let ours = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(skiff_api::storage::ANN_PROVISIONED_BY))
            .is_some_and(|p| p == skiff_api::storage::LOCAL_PATH_PROVISIONER);
        let (path, create) = match (&spec.host_path, &spec.local) {
            (Some(hp), _) => (
                PathBuf::from(&hp.path),
                ours || hp.type_.as_deref() == Some("DirectoryOrCreate"),
            ),
            (None, Some(local)) => (PathBuf::from(&local.path), ours),
            (None, None) => {
                return Err(format!(
                    "volume {volume:?} of PVC {ns}/{name} is neither hostPath nor local: this kubelet mounts no other kind"
                ));
            }
        };
        if create && !path.is_dir() {
            std::fs::create_dir_all(&path)
                .map_err(|e| format!("creating {} for volume {volume:?}: {e}", path.display()))?;
            // As k3s's provisioner: any user of any container may write its volume.
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
        } else if !path.exists() {
            return Err(format!(
                "MountVolume.NewMounter initialization failed for volume {volume:?} : path {:?} does not exist",
                path.display().to_string()
            ));
        }
        Ok(path)
    }

    /// Gives a secret or projected volume its own tmpfs, so that its content never reaches
    /// the node's disk, as Kubernetes' kubelet does. Without one (mount refused, or a kubelet
    /// told not to), the files go to disk, and the log says so.
    fn mount_memory_volume(&self, name: &str, dir: &Path) {
        if !self.ctx.memory_volumes {
            return;
        }
        if let Err(e) = mount_tmpfs(dir, "0755", None) {
            tracing::warn!(
                pod = %self.name(), volume = name, error = %e,
                "secret volume on the node's disk: mounting a tmpfs failed"
            );
        }
    }

    /// The host path of `volumeMount` `mount`'s `subPath` `sub` in the volume at `root`,
    /// created as a folder if missing (as Kubernetes' SafeMakeDir does). A subPath that is
    /// absolute, climbs with `..`, or leads out of the volume through a symlink (one a
    /// container planted in an emptyDir, say) is refused; the container does not start.
    /// The answer has every symlink resolved, so the runtime mounts what was checked.
    fn sub_path(
        &self,
        root: &Path,
        sub: &str,
        mount: &str,
        container: &str,
    ) -> Result<PathBuf, String> {
        if Path::new(sub).is_absolute() {
            return Err(format!(
                "error SubPath `{sub}` must not be an absolute path"
            ));
        }
        if sub.split('/').any(|p| p == "..") {
            return Err(format!(
                "unable to provision SubPath `{sub}`: must not contain '..'"
            ));
        }
        resolve_sub_path(root, sub).map_err(|e| {
            // As Kubernetes, the pod's status does not describe the node's filesystem; the
            // kubelet's log does.
            tracing::warn!(pod = %self.name(), volume_mount = mount, container, sub_path = sub, error = %e, "refused a subPath");
            format!("failed to create subPath directory for volumeMount {mount:?} of container {container:?}")
        })
    }

    /// Writes a configMap, secret, downwardAPI or projected volume's files into `dir` with the
    /// atomic writer (no-op for other volume types).
    async fn project(&self, vol: &Volume, c: &Container, dir: &Path) -> Result<(), String> {
        let payload = if let Some(p) = &vol.projected {
            self.projected_payload(p, c).await?
        } else if let Some(cm) = &vol.config_map {
            let data = match self.config_map_data(&cm.name).await {
                Err(_) if cm.optional == Some(true) => BTreeMap::new(),
                other => other?,
            };
            key_payload(&data, cm.items.as_ref(), cm.default_mode)?
        } else if let Some(secret) = &vol.secret {
            let data = match self
                .secret_data(secret.secret_name.as_deref().unwrap_or_default())
                .await
            {
                Err(_) if secret.optional == Some(true) => BTreeMap::new(),
                other => other?,
            };
            key_payload(&data, secret.items.as_ref(), secret.default_mode)?
        } else if let Some(d) = &vol.downward_api {
            let (data, items) = self
                .downward_data(c, d.items.as_deref().unwrap_or_default())
                .await?;
            key_payload(&data, Some(&items), d.default_mode)?
        } else {
            return Ok(());
        };
        atomic_writer::write(dir, &payload).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Re-projects configMap, secret, downwardAPI and projected volumes so running containers
    /// see their sources' changes and fresh tokens (as the kubelet's periodic volume sync
    /// does).
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
            if vol.config_map.is_none()
                && vol.secret.is_none()
                && vol.downward_api.is_none()
                && vol.projected.is_none()
            {
                continue;
            }
            let dir = self.volumes_dir().join(&vol.name);
            if !dir.exists() {
                continue;
            }
            if let Err(e) = self.project(vol, &first, &dir).await {
                tracing::debug!(pod = %self.name(), volume = %vol.name, error = %e, "volume refresh failed");
                // A projected volume holds the pod's token: a running pod whose token could
                // not be renewed must say so, as the kubelet's FailedMount does.
                if vol.projected.is_some() {
                    self.event(
                        None,
                        EventType::Warning,
                        "FailedMount",
                        format!("MountVolume.SetUp failed for volume {:?} : {e}", vol.name),
                    );
                }
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
        Ok(config_map_bytes(cm))
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
        Ok(secret_bytes(s))
    }

    /// A projected volume's files, every source's together, as Kubernetes' projected volume
    /// collects them. Any source that fails fails the volume (nothing is written), with every
    /// source's error.
    async fn projected_payload(
        &self,
        p: &ProjectedVolumeSource,
        c: &Container,
    ) -> Result<Payload, String> {
        let default_mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut payload = Payload::new();
        let mut errors = Vec::new();
        for source in p.sources.iter().flatten() {
            match self.projection(source, c, default_mode).await {
                Ok(files) => payload.extend(files),
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(payload),
            1 => Err(errors.remove(0)),
            // As Kubernetes prints an aggregate of errors.
            _ => Err(format!("[{}]", errors.join(", "))),
        }
    }

    /// The files of one source of a projected volume.
    async fn projection(
        &self,
        source: &VolumeProjection,
        c: &Container,
        default_mode: i32,
    ) -> Result<Payload, String> {
        if let Some(cm) = &source.config_map {
            let optional = cm.optional == Some(true);
            let data = match self.ctx.api.config_map(self.namespace(), &cm.name).await {
                Ok(found) => config_map_bytes(found),
                Err(e) if e.is_not_found() && optional => return Ok(Payload::new()),
                Err(e) if e.is_not_found() => {
                    return Err(format!("configmap {:?} not found: {e}", cm.name));
                }
                Err(e) => return Err(format!("couldn't get configmap {:?}: {e}", cm.name)),
            };
            let missing = "configmap references non-existent config key";
            make_payload(&data, cm.items.as_deref(), default_mode, optional, missing)
        } else if let Some(secret) = &source.secret {
            let optional = secret.optional == Some(true);
            let data = match self.ctx.api.secret(self.namespace(), &secret.name).await {
                Ok(found) => secret_bytes(found),
                Err(e) if e.is_not_found() && optional => return Ok(Payload::new()),
                Err(e) if e.is_not_found() => {
                    return Err(format!("secret {:?} not found: {e}", secret.name));
                }
                Err(e) => return Err(format!("couldn't get secret {:?}: {e}", secret.name)),
            };
            let missing = "references non-existent secret key";
            make_payload(
                &data,
                secret.items.as_deref(),
                default_mode,
                optional,
                missing,
            )
        } else if let Some(d) = &source.downward_api {
            let items = d.items.as_deref().unwrap_or_default();
            let (data, items) = self.downward_data(c, items).await?;
            make_payload(&data, Some(&items), default_mode, false, "no such field")
        } else if let Some(t) = &source.service_account_token {
            let token = self.token(t).await?;
            // The token takes the volume's defaultMode. (Kubernetes writes it 0600 when the
            // pod has an fsGroup, then hands it to that group; Skiff does not chown volumes,
            // so it keeps defaultMode, which containers of any user can read.)
            let file = FileProjection {
                data: token.into_bytes(),
                mode: default_mode as u32,
            };
            Ok(Payload::from([(t.path.clone(), file)]))
        } else {
            // clusterTrustBundle and podCertificate sources.
            Err(
                "unsupported projected volume source: Skiff projects serviceAccountToken, \
                 configMap, secret and downwardAPI"
                    .to_string(),
            )
        }
    }

    /// The token of a serviceAccountToken projection: the pod's ServiceAccount's, bound to
    /// the pod, from the worker's token cache.
    async fn token(&self, t: &ServiceAccountTokenProjection) -> Result<String, String> {
        let spec = self.pod.spec.as_ref();
        let service_account = spec
            .and_then(|s| {
                s.service_account_name
                    .as_deref()
                    .or(s.service_account.as_deref())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let token = TokenSpec {
            namespace: self.namespace().to_string(),
            service_account: service_account.to_string(),
            // No audience: the apiserver's own.
            audiences: t
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            expiration_seconds: t
                .expiration_seconds
                .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
        };
        self.tokens
            .get(&*self.ctx.api, &token, self.name(), self.uid())
            .await
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

/// Whether a volume's files are written by the kubelet (configMap, secret, downwardAPI,
/// projected): those are mounted read-only.
fn projected_kind(vol: &Volume) -> bool {
    vol.config_map.is_some()
        || vol.secret.is_some()
        || vol.downward_api.is_some()
        || vol.projected.is_some()
}

/// Whether a volume lives on its own tmpfs: secrets, and projected volumes (which hold
/// ServiceAccount tokens and may hold secrets), as Kubernetes' secret and projected plugins
/// put them on memory-backed emptyDirs.
fn memory_backed(vol: &Volume) -> bool {
    vol.secret.is_some() || vol.projected.is_some()
}

/// The payload of a configMap, secret or downwardAPI volume: every key (or just `items`, at
/// their paths and modes), with `defaultMode` (0644 by default) otherwise.
fn key_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
) -> Result<Payload, String> {
    let files: Vec<(String, String, Option<i32>)> = match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone(), i.mode))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone(), None)).collect(),
    };
    let mut payload = Payload::new();
    for (key, path, mode) in files {
        let Some(value) = data.get(&key) else {
            return Err(format!("couldn't find key {key} in the volume's source"));
        };
        let mode = mode.or(default_mode).unwrap_or(DEFAULT_MODE) as u32;
        payload.insert(
            path,
            FileProjection {
                data: value.clone(),
                mode,
            },
        );
    }
    Ok(payload)
}

/// A configMap's or secret's files as Kubernetes makes their payload: every key (`items`
/// absent or empty) or just the items, at their paths; an item whose key is missing is
/// skipped when the source is optional, else an error (`missing`: the key).
fn make_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing: &str,
) -> Result<Payload, String> {
    let file = |data: &[u8], mode: Option<i32>| FileProjection {
        data: data.to_vec(),
        mode: mode.unwrap_or(default_mode) as u32,
    };
    let items = items.unwrap_or_default();
    if items.is_empty() {
        return Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), file(v, None)))
            .collect());
    }
    let mut payload = Payload::new();
    for item in items {
        match data.get(&item.key) {
            Some(v) => {
                payload.insert(item.path.clone(), file(v, item.mode));
            }
            None if optional => {}
            None => return Err(format!("{missing}: {}", item.key)),
        }
    }
    Ok(payload)
}

/// A ConfigMap's `data` and `binaryData` as bytes.
fn config_map_bytes(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
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
    data
}

/// A Secret's `data`.
fn secret_bytes(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// `key="value"` lines, as the downward API writes label and annotation maps.
fn map_lines(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect())
        .unwrap_or_default()
}

/// Resolves the relative, `..`-free `sub` inside the volume at `root`: each missing element is
/// made a folder (0755), each existing one is followed, and wherever a symlink leads it must
/// stay inside the volume. Returns the path with every symlink resolved.
fn resolve_sub_path(root: &Path, sub: &str) -> io::Result<PathBuf> {
    let base = root.canonicalize()?;
    let outside = |p: &Path| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is outside of the volume {}",
                p.display(),
                base.display()
            ),
        )
    };
    let mut current = base.clone();
    for part in sub.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let next = current.join(part);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                // A dangling link cannot be followed, nor made a folder without writing
                // where it points: refused too.
                let target = next.canonicalize()?;
                if !target.starts_with(&base) {
                    return Err(outside(&next));
                }
                current = target;
            }
            Ok(_) => current = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().mode(0o755).create(&next)?;
                current = next;
            }
            Err(e) => return Err(e),
        }
    }
    // Checked once more whole, as the runtime will see it.
    let resolved = current.canonicalize()?;
    if !resolved.starts_with(&base) {
        return Err(outside(&resolved));
    }
    Ok(resolved)
}

/// Mounts a tmpfs whose root has `mode` (an emptyDir with `medium: Memory`, a secret or
/// projected volume) on `dir`, unless one is there already.
fn mount_tmpfs(dir: &Path, mode: &str, size: Option<&str>) -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let target = dir.display().to_string();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(target.as_str()))
    {
        return Ok(());
    }
    let mut opts = format!("mode={mode}");
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Duration;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
        DownwardAPIVolumeFile, DownwardAPIVolumeSource, HostPathVolumeSource, KeyToPath,
        ObjectFieldSelector, PodSpec, ProjectedVolumeSource, ResourceFieldSelector,
        ResourceRequirements, Secret, SecretProjection, SecretVolumeSource,
        ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;
    use skiff_client::events::EventType;

    use super::super::testing::{Node, container, pod};
    use crate::api::RecordedTokenRequest;

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    fn volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Default::default()
        }
    }

    fn read(path: &Path) -> (String, u32) {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        (text, mode)
    }

    fn settings() -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("mode".to_string(), "fast".to_string()),
                ("level".to_string(), "3".to_string()),
            ])),
            binary_data: Some(BTreeMap::from([(
                "blob".to_string(),
                ByteString(vec![1, 2, 3]),
            )])),
            ..Default::default()
        }
    }

    fn app_with(mounts: Vec<VolumeMount>) -> Container {
        let mut app = container("app", &["sleep", "infinity"]);
        app.volume_mounts = Some(mounts);
        app
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_mounted_once_bound_and_its_local_path_directory_made() {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
        let node = Node::new();
        let dir = node.root.path().join("storage/pvc-1_default_data");
        let claim = |bound: bool| -> PersistentVolumeClaim {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "data", "namespace": "default"},
                "spec": {"volumeName": if bound { "pvc-1" } else { "" }},
                "status": {"phase": if bound { "Bound" } else { "Pending" }},
            }))
            .unwrap()
        };
        node.api.add_claim(claim(false));
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pvc-1",
                         "annotations": {"pv.kubernetes.io/provisioned-by": "skiff.io/local-path"}},
            "spec": {"hostPath": {"path": dir.display().to_string()}},
        }))
        .unwrap();
        node.api.add_volume(pv);
        let app = app_with(vec![mount("data", "/data")]);
        let (mut w, _tx) = node.worker(pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![Volume {
                persistent_volume_claim: Some(
                    k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                        claim_name: "data".into(),
                        read_only: None,
                    },
                ),
                ..volume("data")
            }]),
            ..Default::default()
        }));
        assert!(!w.claims_ready().await);
        let failed: Vec<String> = node
            .api
            .events()
            .into_iter()
            .filter(|e| e.reason == "FailedMount")
            .map(|e| e.message)
            .collect();
        assert_eq!(
            failed,
            [
                "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], failed to process volumes=[data]: error processing PVC default/data: PVC is not bound"
            ]
        );
        node.api.add_claim(claim(true));
        // Tried again only after the retry interval.
        assert!(!w.claims_ready().await);
        tokio::time::advance(super::CLAIM_RETRY).await;
        assert!(w.claims_ready().await);
        assert!(
            dir.is_dir(),
            "the local-path directory is made on first use"
        );
        let mounts = w.volume_mounts(&app).await.unwrap();
        assert_eq!(mounts[0].host_path, dir.display().to_string());
        assert_eq!(mounts[0].container_path, "/data");
    }

    #[tokio::test]
    async fn config_map_and_secret_volumes_write_keys_items_and_modes() {
        let node = Node::new();
        node.api.add_config_map(settings());
        node.api.add_secret(Secret {
            metadata: ObjectMeta {
                name: Some("creds".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        });
        let all = Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            ..volume("all")
        };
        let picked = Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                default_mode: Some(0o600),
                items: Some(vec![
                    KeyToPath {
                        key: "mode".into(),
                        path: "conf/mode.txt".into(),
                        mode: Some(0o400),
                    },
                    KeyToPath {
                        key: "level".into(),
                        path: "level".into(),
                        mode: None,
                    },
                ]),
                ..Default::default()
            }),
            ..volume("picked")
        };
        let secret = Volume {
            secret: Some(SecretVolumeSource {
                secret_name: Some("creds".into()),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..volume("secret")
        };
        let missing = Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: "absent".into(),
                optional: Some(true),
                ..Default::default()
            }),
            ..volume("missing")
        };
        let mut ro = mount("secret", "/secret");
        ro.read_only = Some(true);
        let app = app_with(vec![
            mount("all", "/all"),
            mount("picked", "/picked"),
            ro,
            mount("missing", "/missing"),
        ]);
        let (w, _tx) = node.worker(pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![all, picked, secret, missing]),
            ..Default::default()
        }));
        let mounts = w.volume_mounts(&app).await.unwrap();
        let volumes = node.root.path().join("pods/uid-web/volumes");
        let seen: Vec<(String, String, bool)> = mounts
            .iter()
            .map(|m| (m.host_path.clone(), m.container_path.clone(), m.read_only))
            .collect();
        let at = |name: &str| volumes.join(name).display().to_string();
        // Read-only whatever the volumeMount says: the kubelet owns these files.
        assert_eq!(
            seen,
            vec![
                (at("all"), "/all".into(), true),
                (at("picked"), "/picked".into(), true),
                (at("secret"), "/secret".into(), true),
                (at("missing"), "/missing".into(), true),
            ]
        );
        assert_eq!(read(&volumes.join("all/mode")), ("fast".into(), 0o644));
        assert_eq!(read(&volumes.join("all/level")), ("3".into(), 0o644));
        assert_eq!(
            std::fs::read(volumes.join("all/blob")).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            read(&volumes.join("picked/conf/mode.txt")),
            ("fast".into(), 0o400)
        );
        assert_eq!(read(&volumes.join("picked/level")), ("3".into(), 0o600));
        assert!(!volumes.join("picked/blob").exists(), "only the items");
        assert_eq!(
            read(&volumes.join("secret/password")),
            ("hunter2".into(), 0o440)
        );
        let visible = std::fs::read_dir(volumes.join("missing"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("..")
            })
            .count();
        assert_eq!(visible, 0);
    }

    #[tokio::test]
    async fn downward_api_volumes_write_fields_labels_and_resources() {
        let node = Node::new();
        let file =
            |path: &str, field: Option<&str>, resource: Option<&str>| DownwardAPIVolumeFile {
                path: path.into(),
                field_ref: field.map(|f| ObjectFieldSelector {
                    field_path: f.into(),
                    api_version: None,
                }),
                resource_field_ref: resource.map(|r| ResourceFieldSelector {
                    resource: r.into(),
                    divisor: Some(Quantity("1m".into())),
                    container_name: None,
                }),
                mode: None,
            };
        let mut name_file = file("name", Some("metadata.name"), None);
        name_file.mode = Some(0o400);
        let info = Volume {
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![
                    file("labels", Some("metadata.labels"), None),
                    name_file,
                    file("cpu_limit", None, Some("limits.cpu")),
                ]),
                default_mode: None,
            }),
            ..volume("info")
        };
        let mut app = app_with(vec![mount("info", "/etc/podinfo")]);
        app.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "cpu".to_string(),
                Quantity("500m".into()),
            )])),
            ..Default::default()
        });
        let mut p = pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![info]),
            ..Default::default()
        });
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "front".into());
        let (w, _tx) = node.worker(p);
        w.volume_mounts(&app).await.unwrap();
        let dir = node.root.path().join("pods/uid-web/volumes/info");
        assert_eq!(
            read(&dir.join("labels")),
            ("app=\"web\"\ntier=\"front\"\n".into(), 0o644)
        );
        assert_eq!(read(&dir.join("name")), ("web".into(), 0o400));
        assert_eq!(read(&dir.join("cpu_limit")), ("500".into(), 0o644));
    }

    #[tokio::test]
    async fn host_paths_and_sub_paths_mount_where_they_point() {
        let node = Node::new();
        let host = Volume {
            host_path: Some(HostPathVolumeSource {
                path: "/var/log".into(),
                type_: None,
            }),
            ..volume("logs")
        };
        let scratch = Volume {
            empty_dir: Some(Default::default()),
            ..volume("scratch")
        };
        let mut sub = mount("scratch", "/work/cache");
        sub.sub_path = Some("cache".into());
        let app = app_with(vec![mount("logs", "/host-logs"), sub]);
        let (w, _tx) = node.worker(pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![host, scratch]),
            ..Default::default()
        }));
        let mounts = w.volume_mounts(&app).await.unwrap();
        let scratch_dir = node.root.path().join("pods/uid-web/volumes/scratch");
        assert_eq!(mounts[0].host_path, "/var/log");
        assert_eq!(mounts[0].container_path, "/host-logs");
        assert_eq!(
            mounts[1].host_path,
            scratch_dir.join("cache").display().to_string()
        );
        assert_eq!(mounts[1].container_path, "/work/cache");
        assert!(scratch_dir.is_dir());
    }

    #[tokio::test]
    async fn sub_paths_stay_inside_their_volume() {
        let node = Node::new();
        let scratch = Volume {
            empty_dir: Some(Default::default()),
            ..volume("scratch")
        };
        let scratch_dir = node.root.path().join("pods/uid-web/volumes/scratch");
        let outside = tempfile::tempdir().unwrap();
        let try_mount = |sub: &str| {
            let mut m = mount("scratch", "/work");
            m.sub_path = Some(sub.into());
            let app = app_with(vec![m]);
            let (w, _tx) = node.worker(pod(PodSpec {
                containers: vec![app.clone()],
                volumes: Some(vec![scratch.clone()]),
                ..Default::default()
            }));
            async move { w.volume_mounts(&app).await.map(|m| m[0].host_path.clone()) }
        };
        try_mount("data").await.unwrap();
        // Links a container could have made in its emptyDir: one within, two out.
        std::os::unix::fs::symlink("data", scratch_dir.join("within")).unwrap();
        std::os::unix::fs::symlink(outside.path(), scratch_dir.join("out")).unwrap();
        std::os::unix::fs::symlink("../../../../..", scratch_dir.join("up")).unwrap();

        let inside = scratch_dir.canonicalize().unwrap().join("data");
        assert_eq!(try_mount("within").await, Ok(inside.display().to_string()));
        assert_eq!(
            try_mount("within/deeper").await,
            Ok(inside.join("deeper").display().to_string())
        );
        let refused = "failed to create subPath directory for volumeMount \"scratch\" of \
                       container \"app\"";
        for sub in ["out", "out/made", "up/etc", "data/../up"] {
            let want = if sub.contains("..") {
                format!("unable to provision SubPath `{sub}`: must not contain '..'")
            } else {
                refused.to_string()
            };
            assert_eq!(try_mount(sub).await, Err(want), "{sub}");
        }
        assert_eq!(
            try_mount("/etc").await,
            Err("error SubPath `/etc` must not be an absolute path".into())
        );
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing was made outside the volume"
        );
    }

    #[tokio::test]
    async fn bad_volumes_are_errors_that_name_the_cause() {
        let node = Node::new();
        node.api.add_config_map(settings());
        let cm = |items: Vec<KeyToPath>, name: &str| Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: name.into(),
                items: Some(items),
                ..Default::default()
            }),
            ..volume("v")
        };
        let item = |key: &str, path: &str| KeyToPath {
            key: key.into(),
            path: path.into(),
            mode: None,
        };
        let cases = [
            (
                Some(cm(vec![item("nope", "x")], "settings")),
                "couldn't find key nope in the volume's source",
            ),
            (
                Some(cm(vec![item("mode", "../escape")], "settings")),
                "invalid path \"../escape\" in a volume item",
            ),
            (
                Some(cm(vec![item("mode", "/abs")], "settings")),
                "invalid path \"/abs\" in a volume item",
            ),
            (
                Some(cm(vec![], "absent")),
                "configmap \"absent\" not found: configmap default/absent not found",
            ),
            (None, "volume \"v\" not found"),
        ];
        for (vol, message) in cases {
            let app = app_with(vec![mount("v", "/v")]);
            let (w, _tx) = node.worker(pod(PodSpec {
                containers: vec![app.clone()],
                volumes: vol.map(|v| vec![v]),
                ..Default::default()
            }));
            assert_eq!(
                w.volume_mounts(&app).await.map(|_| ()),
                Err(message.to_string())
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn projections_follow_their_source_every_five_seconds() {
        let node = Node::new();
        node.api.add_config_map(settings());
        let vol = Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            ..volume("conf")
        };
        let app = app_with(vec![mount("conf", "/conf")]);
        let (mut w, _tx) = node.worker(pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![vol]),
            ..Default::default()
        }));
        w.volume_mounts(&app).await.unwrap();
        w.refresh_projections().await;
        let file = node.root.path().join("pods/uid-web/volumes/conf/mode");
        let mut changed = settings();
        changed
            .data
            .as_mut()
            .unwrap()
            .insert("mode".into(), "slow".into());
        node.api.add_config_map(changed);

        tokio::time::advance(Duration::from_secs(4)).await;
        w.refresh_projections().await;
        assert_eq!(read(&file).0, "fast", "not yet");
        tokio::time::advance(Duration::from_secs(1)).await;
        w.refresh_projections().await;
        assert_eq!(read(&file).0, "slow");
    }

    fn creds() -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("creds".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        }
    }

    fn token_source(path: &str, audience: Option<&str>, seconds: Option<i64>) -> VolumeProjection {
        VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                path: path.into(),
                audience: audience.map(String::from),
                expiration_seconds: seconds,
            }),
            ..Default::default()
        }
    }

    fn config_map_source(
        name: &str,
        items: Option<Vec<KeyToPath>>,
        optional: bool,
    ) -> VolumeProjection {
        VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: name.into(),
                items,
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }
    }

    fn projected(name: &str, default_mode: Option<i32>, sources: Vec<VolumeProjection>) -> Volume {
        Volume {
            projected: Some(ProjectedVolumeSource {
                default_mode,
                sources: Some(sources),
            }),
            ..volume(name)
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    /// What the symlink at `path` points to.
    fn link(path: &Path) -> String {
        std::fs::read_link(path)
            .unwrap_or_else(|e| panic!("{path:?}: {e}"))
            .display()
            .to_string()
    }

    /// The kube-api-access volume the ServiceAccount admission adds to pods.
    fn kube_api_access() -> Volume {
        let namespace = DownwardAPIVolumeFile {
            path: "namespace".into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.namespace".into(),
                api_version: Some("v1".into()),
            }),
            ..Default::default()
        };
        projected(
            "kube-api-access-x9k2p",
            Some(0o644),
            vec![
                token_source("token", None, Some(3607)),
                config_map_source(
                    "kube-root-ca.crt",
                    Some(vec![item("ca.crt", "ca.crt", None)]),
                    false,
                ),
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![namespace]),
                    }),
                    ..Default::default()
                },
            ],
        )
    }

    fn root_ca() -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("kube-root-ca.crt".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "ca.crt".to_string(),
                "-----BEGIN CERTIFICATE-----\n".to_string(),
            )])),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn projected_volumes_write_every_source_with_modes_in_the_atomic_layout() {
        let node = Node::new();
        node.api.add_config_map(settings());
        node.api.add_config_map(root_ca());
        node.api.add_secret(creds());
        let vault = projected(
            "vault",
            Some(0o440),
            vec![
                token_source("vault/token", Some("vault"), None),
                VolumeProjection {
                    secret: Some(SecretProjection {
                        name: "creds".into(),
                        items: None,
                        optional: None,
                    }),
                    ..Default::default()
                },
                config_map_source(
                    "settings",
                    Some(vec![item("mode", "conf/mode", Some(0o400))]),
                    false,
                ),
            ],
        );
        let mut api_mount = mount(
            "kube-api-access-x9k2p",
            "/var/run/secrets/kubernetes.io/serviceaccount",
        );
        api_mount.read_only = Some(true);
        let app = app_with(vec![api_mount, mount("vault", "/vault")]);
        let (w, _tx) = node.worker(pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![kube_api_access(), vault]),
            service_account_name: Some("builder".into()),
            ..Default::default()
        }));
        let mounts = w.volume_mounts(&app).await.unwrap();
        assert_eq!(
            mounts[0].container_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert!(mounts[0].read_only);

        let request = |audiences: &[&str], expiration_seconds| RecordedTokenRequest {
            namespace: "default".into(),
            service_account: "builder".into(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds,
            pod_name: "web".into(),
            pod_uid: "uid-web".into(),
        };
        assert_eq!(
            node.api.token_requests(),
            vec![request(&[], 3607), request(&["vault"], 3600)]
        );

        let volumes = node.root.path().join("pods/uid-web/volumes");
        let api = volumes.join("kube-api-access-x9k2p");
        assert_eq!(read(&api.join("token")), ("fake-token-1".into(), 0o644));
        assert_eq!(
            read(&api.join("ca.crt")),
            ("-----BEGIN CERTIFICATE-----\n".into(), 0o644)
        );
        assert_eq!(read(&api.join("namespace")), ("default".into(), 0o644));
        assert_eq!(link(&api.join("token")), "..data/token");
        assert!(link(&api.join("..data")).starts_with(".."));

        let vault = volumes.join("vault");
        assert_eq!(
            read(&vault.join("vault/token")),
            ("fake-token-2".into(), 0o440)
        );
        assert_eq!(read(&vault.join("password")), ("hunter2".into(), 0o440));
        assert_eq!(read(&vault.join("conf/mode")), ("fast".into(), 0o400));
        assert_eq!(link(&vault.join("vault")), "..data/vault");
        assert_eq!(link(&vault.join("conf")), "..data/conf");
        let mut visible: Vec<String> = std::fs::read_dir(&vault)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        visible.sort();
        assert_eq!(visible, ["conf", "password", "vault"]);
    }

    #[tokio::test(start_paused = true)]
    async fn projected_tokens_are_rewritten_after_80_percent_of_their_lifetime() {
        let node = Node::new();
        let vol = projected("sa", None, vec![token_source("token", None, None)]);
        let app = app_with(vec![mount("sa", "/sa")]);
        let (mut w, _tx) = node.worker(pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![vol]),
            ..Default::default()
        }));
        w.volume_mounts(&app).await.unwrap();
        w.refresh_projections().await;
        let dir = node.root.path().join("pods/uid-web/volumes/sa");
        let first = link(&dir.join("..data"));
        assert_eq!(read(&dir.join("token")), ("fake-token-1".into(), 0o644));

        // 48 minutes is 80% of the hour: until then the same token, and no rewrite.
        tokio::time::advance(Duration::from_secs(2870)).await;
        w.refresh_projections().await;
        assert_eq!(read(&dir.join("token")).0, "fake-token-1");
        assert_eq!(link(&dir.join("..data")), first);
        tokio::time::advance(Duration::from_secs(10)).await;
        w.refresh_projections().await;
        assert_eq!(read(&dir.join("token")), ("fake-token-2".into(), 0o644));
        assert_ne!(link(&dir.join("..data")), first);
        assert!(!dir.join(&first).exists(), "the old data folder is removed");
        let requests = node.api.token_requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].service_account, "default");
        assert_eq!(requests[1].expiration_seconds, 3600);
        assert!(requests[1].audiences.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_that_cannot_be_renewed_is_kept_until_it_expires_then_reported() {
        let node = Node::new();
        let vol = projected("sa", None, vec![token_source("token", None, None)]);
        let app = app_with(vec![mount("sa", "/sa")]);
        let (mut w, _tx) = node.worker(pod(PodSpec {
            containers: vec![app.clone()],
            volumes: Some(vec![vol]),
            ..Default::default()
        }));
        w.volume_mounts(&app).await.unwrap();
        w.refresh_projections().await;
        let token = node.root.path().join("pods/uid-web/volumes/sa/token");
        node.api.fail_token_requests(Some("apiserver unavailable"));
        let failed_mounts = |node: &Node| {
            node.api
                .events()
                .into_iter()
                .filter(|e| e.reason == "FailedMount")
                .map(|e| (e.type_, e.message))
                .collect::<Vec<_>>()
        };

        tokio::time::advance(Duration::from_secs(2880)).await;
        w.refresh_projections().await;
        assert_eq!(read(&token).0, "fake-token-1", "still valid: kept");
        assert!(failed_mounts(&node).is_empty());

        tokio::time::advance(Duration::from_secs(720)).await;
        w.refresh_projections().await;
        assert_eq!(read(&token).0, "fake-token-1");
        assert_eq!(
            failed_mounts(&node),
            vec![(
                EventType::Warning,
                "MountVolume.SetUp failed for volume \"sa\" : token for serviceaccount \
                 default/default expired and refresh failed: apiserver unavailable"
                    .to_string()
            )]
        );
    }

    #[tokio::test]
    async fn projected_config_maps_and_secrets_may_be_optional_else_their_absence_is_named() {
        let node = Node::new();
        node.api.add_config_map(settings());
        let app = app_with(vec![mount("v", "/v")]);
        let try_mount = |sources: Vec<VolumeProjection>| {
            let (w, _tx) = node.worker(pod(PodSpec {
                containers: vec![app.clone()],
                volumes: Some(vec![projected("v", None, sources)]),
                ..Default::default()
            }));
            let app = app.clone();
            async move { w.volume_mounts(&app).await.map(|_| ()) }
        };
        let optional_secret = VolumeProjection {
            secret: Some(SecretProjection {
                name: "absent".into(),
                items: None,
                optional: Some(true),
            }),
            ..Default::default()
        };

        // Optional and absent: skipped, the other sources are written.
        try_mount(vec![
            config_map_source("absent", None, true),
            optional_secret,
            config_map_source(
                "settings",
                Some(vec![item("mode", "mode", None), item("nope", "nope", None)]),
                true,
            ),
        ])
        .await
        .unwrap();
        let dir = node.root.path().join("pods/uid-web/volumes/v");
        assert_eq!(read(&dir.join("mode")).0, "fast");
        assert!(!dir.join("nope").exists());

        let cases = [
            (
                vec![config_map_source("absent", None, false)],
                "configmap \"absent\" not found: configmap default/absent not found",
            ),
            (
                vec![config_map_source(
                    "settings",
                    Some(vec![item("nope", "x", None)]),
                    false,
                )],
                "configmap references non-existent config key: nope",
            ),
            (
                vec![
                    config_map_source("absent", None, false),
                    VolumeProjection {
                        secret: Some(SecretProjection {
                            name: "gone".into(),
                            items: None,
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ],
                "[configmap \"absent\" not found: configmap default/absent not found, \
                 secret \"gone\" not found: secret default/gone not found]",
            ),
            (
                vec![config_map_source(
                    "settings",
                    Some(vec![item("mode", "..data", None)]),
                    false,
                )],
                "invalid path \"..data\" in a volume item",
            ),
        ];
        for (sources, message) in cases {
            assert_eq!(try_mount(sources).await, Err(message.to_string()));
        }
    }
}
