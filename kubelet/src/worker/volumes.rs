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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Duration;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, Container, DownwardAPIVolumeFile,
        DownwardAPIVolumeSource, HostPathVolumeSource, KeyToPath, ObjectFieldSelector, PodSpec,
        ResourceFieldSelector, ResourceRequirements, Secret, SecretVolumeSource, Volume,
        VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;

    use super::super::testing::{Node, container, pod};

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
        assert_eq!(
            seen,
            vec![
                (at("all"), "/all".into(), false),
                (at("picked"), "/picked".into(), false),
                (at("secret"), "/secret".into(), true),
                (at("missing"), "/missing".into(), false),
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
        assert_eq!(
            std::fs::read_dir(volumes.join("missing")).unwrap().count(),
            0
        );
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
}
