//! [`DockerRuntime`]: the [`ContainerRuntime`] on a Docker engine, through bollard (one
//! concern: every trait method's Docker calls, side by side).
//!
//! A sandbox is a pause container ([`PAUSE_IMAGE`], built and loaded by this module when
//! missing) that owns the pod's network, IPC and UTS namespaces; app containers join it with
//! `container:<sandbox id>` network and IPC modes and keep a private PID namespace.
//!
//! The node's pod network is a Docker bridge network created by
//! [`ContainerRuntime::ensure_network`] with inter-container communication on and **IP
//! masquerading off**: pod traffic leaves the node with the pod's own source address (the
//! flannel host-gw model of DESIGN §5), and masquerading of traffic that needs it is the
//! proxy's job. Docker's FORWARD rules still drop *new* connections arriving from other nodes
//! into the bridge; accepting those (a `DOCKER-USER` rule for the cluster CIDR) belongs to
//! whoever programs the node's routes, not to this crate.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig,
    HostConfigLogConfig, Ipam, IpamConfig, NetworkCreateRequest, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ImportImageOptions, KillContainerOptions,
    ListContainersOptions, ListImagesOptions, LogsOptions, RemoveContainerOptions,
    RemoveImageOptions, StatsOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncWriteExt;

use crate::pause::{PAUSE_IMAGE, pause_image_tar};
use crate::runtime::*;

/// CFS period for CPU limits, as the kubelet uses (100 ms).
const CPU_PERIOD_MICROS: i64 = 100_000;

/// The Docker implementation of [`ContainerRuntime`].
pub struct DockerRuntime {
    docker: Docker,
    /// Serialises loading the pause image so concurrent sandboxes load it once.
    pause_ready: tokio::sync::Mutex<bool>,
    /// Serialises network creation: Docker allows two networks with one name.
    network_lock: tokio::sync::Mutex<()>,
    /// Image ID → the ID Kubernetes reports (`docker-pullable://repo@sha256:...` when the image
    /// has a repo digest). Image IDs are content addresses, so entries never go stale.
    image_ids: Mutex<HashMap<String, String>>,
    /// The json-file log limits set on every app container (None: the engine's defaults).
    log_rotation: Option<LogRotation>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").finish_non_exhaustive()
    }
}

impl DockerRuntime {
    /// Connects to the engine at `$DOCKER_HOST` or `/var/run/docker.sock` and negotiates the API
    /// version. Fails with [`RuntimeError::Unavailable`] when no engine answers.
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_unix_defaults().map_err(unavailable)?;
        Self::negotiate(docker).await
    }

    /// Connects to the engine listening on the unix socket at `path` (one engine per node in a
    /// local multi-node cluster).
    pub async fn connect_socket(path: &str) -> Result<Self> {
        let docker = Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(unavailable)?;
        Self::negotiate(docker).await
    }

    async fn negotiate(docker: Docker) -> Result<Self> {
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        Ok(DockerRuntime {
            docker,
            pause_ready: tokio::sync::Mutex::new(false),
            network_lock: tokio::sync::Mutex::new(()),
            image_ids: Mutex::new(HashMap::new()),
            log_rotation: None,
        })
    }

    /// Bounds the log of every app container created from now on: Docker's json-file driver
    /// rotates it at `max_size_bytes` and keeps `max_files` files, and `docker logs` (so
    /// `kubectl logs`) reads across the files it keeps.
    pub fn with_log_rotation(mut self, rotation: LogRotation) -> Self {
        self.log_rotation = Some(rotation);
        self
    }

    /// The bollard client, for callers that need an engine call the trait does not cover.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Loads [`PAUSE_IMAGE`] from the program built into this binary unless the engine has it.
    pub async fn ensure_pause_image(&self) -> Result<()> {
        let mut ready = self.pause_ready.lock().await;
        if *ready {
            return Ok(());
        }
        match self.docker.inspect_image(PAUSE_IMAGE).await {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(404) => {
                tracing::info!(image = PAUSE_IMAGE, "loading the built-in pause image");
                let tar = pause_image_tar(PAUSE_IMAGE);
                let options = ImportImageOptions {
                    quiet: true,
                    ..Default::default()
                };
                let mut progress =
                    self.docker
                        .import_image(options, bollard::body_full(tar.into()), None);
                while let Some(item) = progress.next().await {
                    item.map_err(|e| {
                        RuntimeError::Other(format!(
                            "loading the pause image failed: {}",
                            message(&e)
                        ))
                    })?;
                }
            }
            Err(e) => return Err(engine_err(e)),
        }
        *ready = true;
        Ok(())
    }

    async fn inspect(&self, what: &'static str, id: &str) -> Result<ContainerInspectResponse> {
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(|e| not_found_or(e, what, id))
    }

    /// The image ID as Kubernetes reports it, cached per image ID.
    async fn reported_image_id(&self, image_id: &str) -> String {
        if let Some(known) = self.image_ids.lock().expect("poisoned").get(image_id) {
            return known.clone();
        }
        let reported = match self.docker.inspect_image(image_id).await {
            Ok(image) => match image.repo_digests.as_deref().and_then(|d| d.first()) {
                Some(digest) => format!("docker-pullable://{digest}"),
                None => image_id.to_string(),
            },
            // Not cached: the image may have been removed under a running container.
            Err(_) => return image_id.to_string(),
        };
        self.image_ids
            .lock()
            .expect("poisoned")
            .insert(image_id.to_string(), reported.clone());
        reported
    }

    async fn container_from_inspect(&self, c: ContainerInspectResponse) -> ContainerStatus {
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let image_id = match c.image.as_deref() {
            Some(id) => self.reported_image_id(id).await,
            None => String::new(),
        };
        ContainerStatus {
            id: c.id.clone().unwrap_or_default(),
            sandbox_id: labels.get(LABEL_SANDBOX_ID).cloned().or_else(|| {
                c.host_config
                    .as_ref()
                    .and_then(|h| h.network_mode.as_deref())
                    .and_then(|m| m.strip_prefix("container:"))
                    .map(str::to_string)
            }),
            pod_namespace: label(LABEL_POD_NAMESPACE),
            pod_name: label(LABEL_POD_NAME),
            pod_uid: label(LABEL_POD_UID),
            name: label(LABEL_CONTAINER_NAME),
            image: c
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            image_id,
            state: state_of(&c),
            restart_count: label(LABEL_RESTART_COUNT).parse().unwrap_or(0),
            created_at: c
                .created
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            labels: labels.clone().into_iter().collect(),
        }
    }

    async fn ids_with_kind(&self, kind: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_KIND}={kind}")])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_err)?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Sends `signal`; a container that is missing or not running is not an error.
    async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(engine_err(e)),
        }
    }

    /// Whether the container is running (false when it is gone).
    async fn running(&self, id: &str) -> Result<bool> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(c.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(engine_err(e)),
        }
    }

    /// Polls until the container stops or `within` passes; returns whether it stopped.
    async fn wait_stopped(&self, id: &str, within: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if !self.running(id).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        let v = self.docker.version().await.map_err(engine_err)?;
        Ok(RuntimeVersion {
            name: "docker".into(),
            version: v.version.unwrap_or_default(),
        })
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<EnsuredImage> {
        let present = match self.docker.inspect_image(image).await {
            Ok(found) => found.id,
            Err(e) if status_of(&e) == Some(404) => None,
            // An invalid reference is a pull error, whatever the policy.
            Err(e) if status_of(&e) == Some(400) => {
                return Err(RuntimeError::ImagePull {
                    image: image.into(),
                    message: message(&e),
                });
            }
            Err(e) => return Err(engine_err(e)),
        };
        match (policy, present) {
            (PullPolicy::IfNotPresent | PullPolicy::Never, Some(id)) => {
                return Ok(EnsuredImage { id, pulled: false });
            }
            (PullPolicy::Never, None) => {
                return Err(RuntimeError::ImageNeverPull {
                    image: image.into(),
                });
            }
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, None) => {}
        }
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag: Some(tag),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(item) = progress.next().await {
            if let Err(e) = item {
                if is_connection(&e) {
                    return Err(unavailable(e));
                }
                return Err(RuntimeError::ImagePull {
                    image: image.into(),
                    message: message(&e),
                });
            }
        }
        let pulled =
            self.docker
                .inspect_image(image)
                .await
                .map_err(|e| RuntimeError::ImagePull {
                    image: image.into(),
                    message: message(&e),
                })?;
        Ok(EnsuredImage {
            id: pulled.id.unwrap_or_default(),
            pulled: true,
        })
    }

    async fn ensure_network(&self, name: &str, subnet: &str) -> Result<()> {
        let gateway = first_host(subnet)?;
        let _serial = self.network_lock.lock().await;
        match self.docker.inspect_network(name, None).await {
            Ok(existing) => return check_subnet(name, subnet, existing.ipam),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(engine_err(e)),
        }
        let options = HashMap::from([
            (
                "com.docker.network.bridge.enable_icc".to_string(),
                "true".to_string(),
            ),
            (
                "com.docker.network.bridge.enable_ip_masquerade".to_string(),
                "false".to_string(),
            ),
        ]);
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    gateway: Some(gateway),
                    ..Default::default()
                }]),
                options: None,
            }),
            options: Some(options),
            labels: Some(HashMap::from([(
                LABEL_KIND.to_string(),
                "network".to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // Another process may be creating it at the same time (the engine then refuses
                // the overlapping subnet before the winner's network is visible); that is
                // success once the winner's network shows up with our subnet.
                for _ in 0..20 {
                    if let Ok(existing) = self.docker.inspect_network(name, None).await {
                        return check_subnet(name, subnet, existing.ipam);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(RuntimeError::Other(format!(
                    "creating the pod network {name:?} ({subnet}) failed: {}; \
                     check `docker network ls` for a network using an overlapping subnet",
                    message(&e)
                )))
            }
        }
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        self.ensure_pause_image().await?;
        let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
        labels.insert(LABEL_POD_NAME.into(), config.name.clone());
        labels.insert(LABEL_POD_NAMESPACE.into(), config.namespace.clone());
        labels.insert(LABEL_POD_UID.into(), config.uid.clone());
        labels.insert(LABEL_CONTAINER_NAME.into(), "POD".into());
        labels.insert(LABEL_KIND.into(), "sandbox".into());

        let (network_mode, hostname) = match &config.network {
            SandboxNetwork::Pod { network } => (network.clone(), Some(config.hostname.clone())),
            // Docker refuses a hostname with the host's UTS namespace.
            SandboxNetwork::Host => ("host".to_string(), None),
            SandboxNetwork::None => ("none".to_string(), Some(config.hostname.clone())),
        };
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &config.port_mappings {
            let key = format!("{}/{}", p.container_port, p.protocol.to_ascii_lowercase());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_default()
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let host_network = config.network == SandboxNetwork::Host;
        let body = ContainerCreateBody {
            image: Some(PAUSE_IMAGE.into()),
            hostname,
            labels: Some(labels),
            exposed_ports: (!port_bindings.is_empty())
                .then(|| port_bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                network_mode: Some(network_mode),
                // App containers join this IPC namespace, which Docker allows only when shareable.
                ipc_mode: Some("shareable".into()),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                dns: if host_network {
                    None
                } else {
                    nonempty(&config.dns_servers)
                },
                dns_search: if host_network {
                    None
                } else {
                    nonempty(&config.dns_searches)
                },
                dns_options: if host_network {
                    None
                } else {
                    nonempty(&config.dns_options)
                },
                extra_hosts: nonempty(&config.extra_hosts),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!(
            "k8s_POD_{}_{}_{}_{}",
            config.name,
            config.namespace,
            config.uid,
            suffix()
        );
        let options = CreateContainerOptions {
            name: Some(name),
            ..Default::default()
        };
        let created = match self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(created) => created,
            // Someone removed the pause image since we loaded it: load it again, once.
            Err(e) if status_of(&e) == Some(404) => {
                *self.pause_ready.lock().await = false;
                self.ensure_pause_image().await?;
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(create_err)?
            }
            Err(e) => return Err(create_err(e)),
        };
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove_sandbox(&created.id).await;
            return Err(create_err(e));
        }
        let inspected = self.inspect("sandbox", &created.id).await?;
        Ok(sandbox_from_inspect(&inspected))
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        remove(&self.docker, id).await
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        let mut out = Vec::new();
        for id in self.ids_with_kind("sandbox").await? {
            match self.docker.inspect_container(&id, None).await {
                Ok(c) => out.push(sandbox_from_inspect(&c)),
                Err(e) if status_of(&e) == Some(404) => {} // removed meanwhile
                Err(e) => return Err(engine_err(e)),
            }
        }
        Ok(out)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let sandbox = self.inspect("sandbox", sandbox_id).await?;
        let sandbox_id = sandbox.id.clone().unwrap_or_else(|| sandbox_id.to_string());
        let sandbox_labels = sandbox.config.and_then(|c| c.labels).unwrap_or_default();
        let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
        for key in [LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID] {
            labels.insert(
                key.into(),
                sandbox_labels.get(key).cloned().unwrap_or_default(),
            );
        }
        labels.insert(LABEL_CONTAINER_NAME.into(), config.name.clone());
        labels.insert(LABEL_KIND.into(), "container".into());
        labels.insert(LABEL_RESTART_COUNT.into(), config.restart_count.to_string());
        labels.insert(LABEL_SANDBOX_ID.into(), sandbox_id.clone());

        let (entrypoint, cmd) = entrypoint_and_cmd(&config.command, &config.args);
        let r = &config.resources;
        let cpu_quota = r
            .cpu_limit_millis
            .map(|m| (m as i64 * CPU_PERIOD_MICROS / 1000).max(1000));
        let body = ContainerCreateBody {
            image: Some(config.image.clone()),
            entrypoint,
            cmd,
            env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: config.working_dir.clone(),
            user: config.user.clone(),
            tty: Some(config.tty),
            open_stdin: Some(config.stdin),
            attach_stdin: Some(false),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{sandbox_id}")),
                ipc_mode: Some(format!("container:{sandbox_id}")),
                binds: Some(config.mounts.iter().map(bind).collect()),
                cpu_period: cpu_quota.map(|_| CPU_PERIOD_MICROS),
                cpu_quota,
                cpu_shares: r.cpu_request_millis.map(cpu_shares),
                memory: r.memory_limit_bytes,
                // No swap, as Kubernetes: a container over its limit is OOM-killed, not swapped.
                memory_swap: r.memory_limit_bytes,
                privileged: Some(config.privileged),
                readonly_rootfs: Some(config.read_only_root_fs),
                log_config: self.log_rotation.map(log_config),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod_name = sandbox_labels
            .get(LABEL_POD_NAME)
            .cloned()
            .unwrap_or_default();
        let pod_ns = sandbox_labels
            .get(LABEL_POD_NAMESPACE)
            .cloned()
            .unwrap_or_default();
        let pod_uid = sandbox_labels
            .get(LABEL_POD_UID)
            .cloned()
            .unwrap_or_default();
        let name = format!(
            "k8s_{}_{pod_name}_{pod_ns}_{pod_uid}_{}_{}",
            config.name,
            config.restart_count,
            suffix()
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(create_err)?;
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(RuntimeError::NotFound {
                what: "container",
                id: id.into(),
            }),
            Err(e) => Err(create_err(e)),
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        // Signal and wait ourselves rather than use Docker's stop: its whole-second timeout
        // cannot express sub-second graces, and a long grace outlives bollard's request timeout.
        let c = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) if status_of(&e) == Some(404) => return Ok(()),
            Err(e) => return Err(engine_err(e)),
        };
        if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Ok(());
        }
        let signal = c
            .config
            .as_ref()
            .and_then(|c| c.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        if !grace.is_zero() {
            self.kill(id, &signal).await?;
            if self.wait_stopped(id, grace).await? {
                return Ok(());
            }
        }
        self.kill(id, "SIGKILL").await?;
        if self.wait_stopped(id, Duration::from_secs(30)).await? {
            Ok(())
        } else {
            Err(RuntimeError::Other(format!(
                "container {id} did not stop 30s after SIGKILL; the engine may be wedged"
            )))
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        remove(&self.docker, id).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>> {
        let ids = self.ids_with_kind("container").await?;
        // Inspect concurrently, a few at a time, to bound the engine's load.
        let results: Vec<Result<Option<ContainerStatus>>> = futures::stream::iter(ids)
            .map(|id| async move {
                match self.docker.inspect_container(&id, None).await {
                    Ok(c) => Ok(Some(self.container_from_inspect(c).await)),
                    Err(e) if status_of(&e) == Some(404) => Ok(None),
                    Err(e) => Err(engine_err(e)),
                }
            })
            .buffered(8)
            .collect()
            .await;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let c = self.inspect("container", id).await?;
        Ok(self.container_from_inspect(c).await)
    }

    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<bytes::Bytes>>> {
        // Fail early (and typed) for a missing container; the stream would only say "404".
        self.inspect("container", id).await?;
        let since = options
            .since
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs().min(i32::MAX as u64) as i32)
            .unwrap_or(0);
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since,
            until: 0,
            timestamps: options.timestamps,
            tail: options
                .tail_lines
                .map(|n| n.to_string())
                .unwrap_or_else(|| "all".into()),
        };
        let id = id.to_string();
        let stream = self
            .docker
            .logs(&id, Some(query))
            .map(move |item| match item {
                Ok(out) => Ok(out.into_bytes()),
                Err(e) => Err(not_found_or(e, "container", &id)),
            });
        Ok(stream.boxed())
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<ExecSession> {
        let created = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| not_found_or(e, "container", id))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(engine_err)?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(RuntimeError::Other("exec started detached".into()));
        };

        let stdin_tx = if stdin {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
            tokio::spawn(async move {
                while let Some(chunk) = rx.recv().await {
                    if input.write_all(&chunk).await.is_err() {
                        return;
                    }
                    let _ = input.flush().await;
                }
                // Sender dropped: half-close so the process sees EOF.
                let _ = input.shutdown().await;
            });
            Some(tx)
        } else {
            drop(input);
            None
        };

        // A pump task forwards output and, once the process closes it, asks the engine for the
        // exit code. It stops early if the caller drops the output stream.
        let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<(u8, bytes::Bytes)>>(16);
        let (code_tx, code_rx) = tokio::sync::oneshot::channel();
        let docker = self.docker.clone();
        let exec_id = created.id;
        // Terminal sizes go to the engine as they come, while the session lasts.
        let resize = tty.then(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(u16, u16)>(4);
            let (docker, exec_id) = (docker.clone(), exec_id.clone());
            tokio::spawn(async move {
                while let Some((width, height)) = rx.recv().await {
                    let size = ResizeExecOptions { height, width };
                    if let Err(e) = docker.resize_exec(&exec_id, size).await {
                        tracing::debug!(exec = %exec_id, error = %e, "resizing an exec's terminal");
                    }
                }
            });
            tx
        });
        tokio::spawn(async move {
            while let Some(item) = output.next().await {
                let item = match item {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        Ok((1, message))
                    }
                    Ok(LogOutput::StdErr { message }) => Ok((2, message)),
                    Ok(LogOutput::StdIn { .. }) => continue,
                    Err(e) => Err(engine_err(e)),
                };
                if out_tx.send(item).await.is_err() {
                    break;
                }
            }
            drop(out_tx);
            // The exec may still be marked running for a moment after its output closes.
            for _ in 0..50 {
                match docker.inspect_exec(&exec_id).await {
                    Ok(info) if info.running != Some(true) => {
                        let _ = code_tx.send(info.exit_code.unwrap_or(-1));
                        return;
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_) => return,
                }
            }
        });
        let output =
            futures::stream::unfold(
                out_rx,
                |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
            );
        Ok(ExecSession {
            stdin: stdin_tx,
            output: output.boxed(),
            exit_code: code_rx,
            resize,
        })
    }

    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i64, Vec<u8>)> {
        let run = async {
            let mut session = self.exec(id, command, false, false).await?;
            let mut out = Vec::new();
            while let Some(item) = session.output.next().await {
                out.extend_from_slice(&item?.1);
            }
            let code = session.exit_code.await.map_err(|_| {
                RuntimeError::Other(format!("the exit code of {command:?} in {id} was lost"))
            })?;
            Ok((code, out))
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::Other(format!(
                "command {command:?} in container {id} timed out after {timeout:?}"
            ))),
        }
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = self.docker.stats(id, Some(options));
        let s = match stream.next().await {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(not_found_or(e, "container", id)),
            None => return Err(RuntimeError::Other(format!("no stats for container {id}"))),
        };
        let cpu = s
            .cpu_stats
            .and_then(|c| c.cpu_usage)
            .and_then(|u| u.total_usage)
            .unwrap_or(0);
        let memory = s.memory_stats.map(|m| {
            let usage = m.usage.unwrap_or(0);
            let stats = m.stats.unwrap_or_default();
            // cgroup v1 reports total_inactive_file, v2 inactive_file; the working set excludes
            // that reclaimable page cache, as cAdvisor computes it.
            let inactive = stats
                .get("total_inactive_file")
                .or_else(|| stats.get("inactive_file"))
                .copied()
                .unwrap_or(0);
            usage.saturating_sub(inactive)
        });
        Ok(ContainerStats {
            id: s.id.unwrap_or_else(|| id.to_string()),
            cpu_usage_nanos: cpu,
            memory_working_set_bytes: memory.unwrap_or(0),
        })
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(engine_err)?;
        Ok(images
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                // Docker lists a dangling image's tags as `<none>:<none>`.
                repo_tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                size_bytes: u64::try_from(i.size).unwrap_or(0),
            })
            .collect())
    }

    async fn images_in_use(&self) -> Result<BTreeSet<String>> {
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_err)?;
        Ok(list.into_iter().filter_map(|c| c.image_id).collect())
    }

    async fn remove_image(&self, id: &str) -> Result<()> {
        // An image with several tags cannot be removed by ID without force, and force would
        // also take it from under stopped containers: untag it first, then remove it, as
        // dockershim did.
        let tags = match self.docker.inspect_image(id).await {
            Ok(image) => image.repo_tags.unwrap_or_default(),
            Err(e) if status_of(&e) == Some(404) => return Ok(()),
            Err(e) => return Err(engine_err(e)),
        };
        for name in tags.iter().map(String::as_str).chain([id]) {
            match self
                .docker
                .remove_image(name, Some(RemoveImageOptions::default()), None)
                .await
            {
                Ok(_) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => {
                    return Err(RuntimeError::Other(format!(
                        "removing image {id} ({name}): {}",
                        message(&e)
                    )));
                }
            }
        }
        Ok(())
    }

    async fn image_fs_path(&self) -> Result<Option<PathBuf>> {
        let info = self.docker.info().await.map_err(engine_err)?;
        Ok(Some(PathBuf::from(
            info.docker_root_dir
                .unwrap_or_else(|| "/var/lib/docker".into()),
        )))
    }
}

/// json-file with rotation: the driver is named, not left to the engine's default, because
/// `max-size` and `max-file` mean nothing to (and are refused by) most other drivers.
fn log_config(rotation: LogRotation) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_string(), rotation.max_size_bytes.to_string()),
            ("max-file".to_string(), rotation.max_files.to_string()),
        ])),
    }
}

async fn remove(docker: &Docker, id: &str) -> Result<()> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        // 404: gone already; 409: a removal is already in progress.
        Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(engine_err(e)),
    }
}

fn sandbox_from_inspect(c: &ContainerInspectResponse) -> SandboxStatus {
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let network_mode = c
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let ip = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(&network_mode))
        .and_then(|e| e.ip_address.clone())
        .filter(|ip| running && !ip.is_empty());
    SandboxStatus {
        id: c.id.clone().unwrap_or_default(),
        namespace: label(LABEL_POD_NAMESPACE),
        name: label(LABEL_POD_NAME),
        uid: label(LABEL_POD_UID),
        ready: running,
        ip,
        created_at: c
            .created
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        labels: labels.into_iter().collect(),
    }
}

fn state_of(c: &ContainerInspectResponse) -> ContainerState {
    let Some(s) = c.state.as_ref() else {
        return ContainerState::Unknown;
    };
    let started_at = s.started_at.as_deref().and_then(parse_time);
    match s.status {
        // A start that failed (command not found, ...) leaves the container "created" with
        // the engine's error: that attempt is over, as CRI reports it (StartError).
        Some(ContainerStateStatusEnum::CREATED)
            if s.error.as_deref().is_some_and(|e| !e.is_empty()) =>
        {
            ContainerState::Exited {
                exit_code: s.exit_code.filter(|c| *c != 0).unwrap_or(128),
                reason: "StartError".into(),
                started_at: None,
                finished_at: s.finished_at.as_deref().and_then(parse_time),
            }
        }
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::RESTARTING
            | ContainerStateStatusEnum::STOPPING,
        ) => ContainerState::Running {
            started_at: started_at.unwrap_or(SystemTime::UNIX_EPOCH),
        },
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
            let exit_code = s.exit_code.unwrap_or(-1);
            let reason = if s.oom_killed == Some(true) {
                "OOMKilled"
            } else if exit_code == 0 {
                "Completed"
            } else {
                "Error"
            };
            ContainerState::Exited {
                exit_code,
                reason: reason.into(),
                started_at,
                // Docker stamps StartedAt after the start call returns, so a process that exits
                // at once can look finished before it started; report it as finishing then.
                finished_at: match (started_at, s.finished_at.as_deref().and_then(parse_time)) {
                    (Some(start), Some(end)) => Some(end.max(start)),
                    (_, end) => end,
                },
            }
        }
        Some(ContainerStateStatusEnum::REMOVING | ContainerStateStatusEnum::EMPTY) | None => {
            ContainerState::Unknown
        }
    }
}

/// Kubernetes' mapping: `command` replaces the entrypoint (and then the image's CMD is not
/// used), `args` replaces CMD; `args` alone keep the image's entrypoint.
fn entrypoint_and_cmd(
    command: &[String],
    args: &[String],
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let entrypoint = (!command.is_empty()).then(|| command.to_vec());
    let cmd = (!args.is_empty()).then(|| args.to_vec());
    (entrypoint, cmd)
}

/// CPU shares from a request in millicores, as the kubelet computes them (minimum 2).
fn cpu_shares(millis: u64) -> i64 {
    ((millis as i64).saturating_mul(1024) / 1000).max(2)
}

fn bind(m: &Mount) -> String {
    let mode = if m.read_only { ":ro" } else { "" };
    format!("{}:{}{mode}", m.host_path, m.container_path)
}

/// `name[:tag]` → (name, tag), with "latest" when no tag is given; a digest reference is
/// passed whole. (Docker pulls every tag when the tag is empty.)
fn split_reference(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_string(), String::new());
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => {
            let at = name_start + colon;
            (image[..at].to_string(), image[at + 1..].to_string())
        }
        None => (image.to_string(), "latest".to_string()),
    }
}

/// The first host address of an IPv4 subnet ("10.244.1.0/24" → "10.244.1.1").
fn first_host(subnet: &str) -> Result<String> {
    let bad = || {
        RuntimeError::Other(format!(
            "pod subnet {subnet:?} is not an IPv4 CIDR like 10.244.1.0/24"
        ))
    };
    let (addr, len) = subnet.split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > 30 {
        return Err(bad());
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok(std::net::Ipv4Addr::from((u32::from(addr) & mask) + 1).to_string())
}

fn check_subnet(name: &str, subnet: &str, ipam: Option<Ipam>) -> Result<()> {
    let subnets: Vec<String> = ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.subnet)
        .collect();
    if subnets.iter().any(|s| s == subnet) {
        Ok(())
    } else {
        Err(RuntimeError::Other(format!(
            "Docker network {name:?} exists with subnet {subnets:?}, not {subnet}; \
             remove it (`docker network rm {name}`) once no container uses it"
        )))
    }
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    // Docker writes 0001-01-01T00:00:00Z for "never".
    (ts.as_second() > 0).then(|| SystemTime::from(ts))
}

/// A short random suffix keeping container names unique across retries and crashed runs.
fn suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:08x}", RandomState::new().hash_one(nanos) as u32)
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own words for an error.
fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

fn is_connection(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::IOError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
    )
}

fn unavailable(e: DockerError) -> RuntimeError {
    RuntimeError::Unavailable(format!(
        "{e}; is dockerd running and is its socket (/var/run/docker.sock or $DOCKER_HOST) readable?"
    ))
}

fn engine_err(e: DockerError) -> RuntimeError {
    if is_connection(&e) {
        unavailable(e)
    } else {
        RuntimeError::Other(message(&e))
    }
}

fn not_found_or(e: DockerError, what: &'static str, id: &str) -> RuntimeError {
    if status_of(&e) == Some(404) {
        RuntimeError::NotFound {
            what,
            id: id.to_string(),
        }
    } else {
        engine_err(e)
    }
}

fn create_err(e: DockerError) -> RuntimeError {
    if is_connection(&e) {
        unavailable(e)
    } else {
        RuntimeError::CreateOrStart {
            message: message(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag() {
        let cases = [
            ("busybox", ("busybox", "latest")),
            ("busybox:1.36", ("busybox", "1.36")),
            ("localhost:5000/app", ("localhost:5000/app", "latest")),
            ("localhost:5000/app:v2", ("localhost:5000/app", "v2")),
            ("app@sha256:abc", ("app@sha256:abc", "")),
        ];
        for (input, (name, tag)) in cases {
            assert_eq!(
                split_reference(input),
                (name.to_string(), tag.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn gateway_is_first_host() {
        assert_eq!(first_host("10.244.1.0/24").unwrap(), "10.244.1.1");
        assert_eq!(first_host("10.244.1.7/24").unwrap(), "10.244.1.1");
        assert!(first_host("10.244.1.0").is_err());
        assert!(first_host("fd00::/64").is_err());
    }

    #[test]
    fn command_and_args_map_as_kubernetes_does() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(entrypoint_and_cmd(&[], &[]), (None, None));
        assert_eq!(
            entrypoint_and_cmd(&s(&["sh"]), &[]),
            (Some(s(&["sh"])), None)
        );
        assert_eq!(
            entrypoint_and_cmd(&[], &s(&["-c", "x"])),
            (None, Some(s(&["-c", "x"])))
        );
        assert_eq!(
            entrypoint_and_cmd(&s(&["sh"]), &s(&["-c", "x"])),
            (Some(s(&["sh"])), Some(s(&["-c", "x"])))
        );
    }

    #[test]
    fn cpu_shares_have_a_floor() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(250), 256);
    }

    #[test]
    fn log_rotation_names_json_file_and_its_limits_in_bytes() {
        let c = log_config(LogRotation {
            max_size_bytes: 10 << 20,
            max_files: 5,
        });
        assert_eq!(c.typ.as_deref(), Some("json-file"));
        let options = c.config.unwrap();
        assert_eq!(options["max-size"], "10485760");
        assert_eq!(options["max-file"], "5");
    }

    #[test]
    fn docker_zero_time_is_none() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert!(parse_time("2024-05-01T10:00:00.123456789Z").is_some());
    }
}
