//! The [`ContainerRuntime`] trait and the types it speaks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;

/// Label keys every Skiff container carries.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// "sandbox" on pause containers, "container" on app containers.
pub const LABEL_KIND: &str = "io.skiff.kind";
/// How many times this container has been restarted (set by the kubelet on create).
pub const LABEL_RESTART_COUNT: &str = "io.skiff.restart-count";
/// On app containers: the ID of the sandbox they joined.
pub const LABEL_SANDBOX_ID: &str = "io.skiff.sandbox-id";

/// What went wrong in the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image could not be pulled; the message is the engine's.
    #[error("failed to pull image {image:?}: {message}")]
    ImagePull { image: String, message: String },
    /// The image is not present and the pull policy is Never.
    #[error("container image {image:?} is not present with pull policy of Never")]
    ImageNeverPull { image: String },
    /// The container could not be created or started (bad command, bad mount, ...); the
    /// message is the engine's.
    #[error("{message}")]
    CreateOrStart { message: String },
    /// No such container or sandbox.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The engine is unreachable or failed.
    #[error("container runtime is down: {0}")]
    Unavailable(String),
    #[error("container runtime error: {0}")]
    Other(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// imagePullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The runtime's identity, for `nodeInfo.containerRuntimeVersion` ("docker://20.10.24").
#[derive(Debug, Clone)]
pub struct RuntimeVersion {
    pub name: String,
    pub version: String,
}

/// How a pod's sandbox gets its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxNetwork {
    /// The node's pod network: a bridge network with this name (created by `ensure_network`).
    Pod { network: String },
    /// `hostNetwork: true`.
    Host,
    /// No network (tests).
    None,
}

/// A bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

/// A hostPort mapping (`containerPort` → `hostPort`), set on the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    pub host_ip: Option<String>,
}

/// Everything needed to start a pod's sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod's hostname (the pod name unless `spec.hostname` says otherwise).
    pub hostname: String,
    pub network: SandboxNetwork,
    pub port_mappings: Vec<PortMapping>,
    /// Extra labels (the standard ones are added by the runtime).
    pub labels: BTreeMap<String, String>,
    /// DNS servers, searches and options for resolv.conf (empty = the engine's default).
    pub dns_servers: Vec<String>,
    pub dns_searches: Vec<String>,
    pub dns_options: Vec<String>,
    /// Extra /etc/hosts lines (`ip name...`).
    pub extra_hosts: Vec<String>,
}

/// A running (or dead) sandbox.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ready: bool,
    /// The pod IP (None for host network or when not running).
    pub ip: Option<String>,
    pub created_at: SystemTime,
    /// All labels, the caller's extra ones included.
    pub labels: BTreeMap<String, String>,
}

/// Resource limits for a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU limit in millicores (→ CFS quota).
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores (→ CPU shares).
    pub cpu_request_millis: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
}

/// Everything needed to create one app (or init) container in a sandbox.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    /// Entrypoint override (`command`); empty = the image's.
    pub command: Vec<String>,
    /// `args`; empty = the image's CMD when `command` is empty too.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    /// "uid" or "uid:gid".
    pub user: Option<String>,
    pub privileged: bool,
    pub read_only_root_fs: bool,
    pub tty: bool,
    pub stdin: bool,
    pub restart_count: u32,
    /// Extra labels (the standard ones are added by the runtime).
    pub labels: BTreeMap<String, String>,
}

/// The state of one container, as Kubernetes reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running {
        started_at: SystemTime,
    },
    Exited {
        exit_code: i64,
        /// "Completed" (exit 0), "Error", or "OOMKilled".
        reason: String,
        started_at: Option<SystemTime>,
        finished_at: Option<SystemTime>,
    },
    Unknown,
}

/// One container and its state.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: String,
    pub sandbox_id: Option<String>,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub name: String,
    pub image: String,
    /// `docker-pullable://...@sha256:...` or `sha256:...`.
    pub image_id: String,
    pub state: ContainerState,
    pub restart_count: u32,
    pub created_at: SystemTime,
    /// All labels, the caller's extra ones included.
    pub labels: BTreeMap<String, String>,
}

/// Options for reading a container's log.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<SystemTime>,
    pub timestamps: bool,
}

/// A running exec session's I/O.
pub struct ExecSession {
    /// Bytes to the process's stdin (dropped = EOF).
    pub stdin: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    /// Output: (stream, bytes) where stream is 1 = stdout, 2 = stderr.
    pub output: BoxStream<'static, Result<(u8, bytes::Bytes)>>,
    /// Resolves to the exit code when the process ends.
    pub exit_code: tokio::sync::oneshot::Receiver<i64>,
    /// New terminal sizes (columns, rows) for a TTY session; `None` without a TTY or where
    /// the runtime cannot resize.
    pub resize: Option<tokio::sync::mpsc::Sender<(u16, u16)>>,
}

/// CPU and memory use of one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerStats {
    pub id: String,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_nanos: u64,
    pub memory_working_set_bytes: u64,
}

/// An image made available by [`ContainerRuntime::ensure_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredImage {
    pub id: String,
    /// Pulled now (false: it was already present and the policy allowed using it).
    pub pulled: bool,
}

/// An image the engine holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image ID (`sha256:...`).
    pub id: String,
    /// Every `name:tag` pointing at it (empty for a dangling image).
    pub repo_tags: Vec<String>,
    /// What removing it would free at most (Docker's size, shared layers included).
    pub size_bytes: u64,
}

/// How the engine should bound each container's log: Docker's json-file `max-size` and
/// `max-file`, from the kubelet's `--container-log-max-size` and `--container-log-max-files`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// A log file is rotated once it reaches this many bytes.
    pub max_size_bytes: u64,
    /// At most this many files (the live one included) are kept per container.
    pub max_files: u32,
}

/// A container engine as the kubelet needs it.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    async fn version(&self) -> Result<RuntimeVersion>;

    /// Makes `image` available per `policy`: its image ID, and whether it was pulled.
    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<EnsuredImage>;

    /// Creates the node's pod network (a bridge for `subnet`, gateway = its first address) if
    /// missing. Idempotent.
    async fn ensure_network(&self, name: &str, subnet: &str) -> Result<()>;

    /// Starts a pod's sandbox (pause container) and returns its status (with the pod IP).
    /// Each call makes a new sandbox, even for a pod that already has one.
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus>;

    /// Stops and removes a sandbox. Missing is fine.
    async fn remove_sandbox(&self, id: &str) -> Result<()>;

    /// All sandboxes this runtime holds that carry Skiff's labels.
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>>;

    /// Creates an app container joined to `sandbox_id`'s namespaces (not started). The pod's
    /// labels are copied from the sandbox; the image must be present (see `ensure_image`).
    /// A missing sandbox is [`RuntimeError::NotFound`].
    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String>;

    async fn start_container(&self, id: &str) -> Result<()>;

    /// SIGTERM (the image's STOPSIGNAL on Docker), then SIGKILL after `grace`; returns once the
    /// container has stopped. Already stopped or missing is fine.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes a container. Missing is fine.
    async fn remove_container(&self, id: &str) -> Result<()>;

    /// All app containers carrying Skiff's labels (running or not).
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>>;

    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;

    /// The container's log (stdout and stderr interleaved), as a byte stream.
    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<bytes::Bytes>>>;

    /// Runs `command` in the container.
    async fn exec(
        &self,
        id: &str,
        command: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<ExecSession>;

    /// Runs `command` to completion (for exec probes); returns (exit code, stdout and stderr
    /// interleaved). Past `timeout` it fails with [`RuntimeError::Other`] (the process may
    /// keep running in the container, as with Docker's own exec).
    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i64, Vec<u8>)>;

    async fn stats(&self, id: &str) -> Result<ContainerStats>;

    /// Every image the engine holds.
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;

    /// The IDs of the images of every container the engine holds, running or not, Skiff's or
    /// not: those images must not be removed.
    async fn images_in_use(&self) -> Result<BTreeSet<String>>;

    /// Removes an image by ID, with all its tags. Missing is fine; an image a container uses
    /// is an error.
    async fn remove_image(&self, id: &str) -> Result<()>;

    /// The folder on the filesystem where the engine keeps images (Docker's data root), for
    /// the image garbage collector's disk usage; `None` when images take no disk (fake).
    async fn image_fs_path(&self) -> Result<Option<PathBuf>>;
}
