//! One worker per pod: it brings the pod's sandbox and containers to what the spec asks,
//! restarts containers per the restart policy with Kubernetes' backoff, reports status, and
//! on deletion stops everything gracefully and removes the pod object. A pod the eviction
//! manager evicts (or the node turned away) is stopped for good and left `Failed`.
//!
//! This module is the worker's lifecycle (its loop, sync, adoption and termination); the
//! concerns it delegates to live beside it: `start` (starting and restarting containers),
//! `container` (the runtime's container config), `env`, `volumes` (with `tokens`, the pod's
//! ServiceAccount tokens, and `atomic_writer`, how their files are written), `probes` and `status`.

mod atomic_writer;
mod container;
mod env;
mod probes;
mod start;
mod status;
mod tokens;
mod volumes;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use serde_json::Value;
use skiff_client::events::EventType;
use skiff_common::Backoff;
use skiff_runtime::{ContainerState, RuntimeError, SandboxConfig, SandboxNetwork, SandboxStatus};
use tokio::sync::mpsc;
// Tokio's clock, so that tests can pause and advance it.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::handler::{self, Action, Caller, Target};
use crate::probe;

/// What the manager tells a worker.
pub enum PodUpdate {
    /// The pod object changed.
    Changed(Box<Pod>),
    /// The pod object is gone from the API.
    Gone,
    /// The eviction manager evicts the pod.
    Evict(crate::eviction::Eviction),
}

/// Why the kubelet stopped a pod for good while its object stays: an eviction, or admission
/// refused under node pressure. The pod's status says so (`phase: Failed`).
struct Terminal {
    reason: String,
    message: String,
    /// Whether the status carries a `DisruptionTarget` condition (evictions, as upstream's
    /// `TerminationByKubelet`; rejections have none).
    disruption: bool,
}

/// How often a worker re-checks its containers when nothing happens.
const RESYNC: Duration = Duration::from_secs(1);

/// Where the pod's sandbox is.
enum Sandbox {
    /// Not started (yet, or any more).
    Pending,
    /// The last attempt to start it failed; the message is the pod status's `message`.
    Failed(String),
    Ready(SandboxStatus),
}

impl Sandbox {
    fn ready(&self) -> Option<&SandboxStatus> {
        match self {
            Sandbox::Ready(s) => Some(s),
            Sandbox::Pending | Sandbox::Failed(_) => None,
        }
    }

    /// The pod's IP on the pod network, once the sandbox has one.
    fn ip(&self) -> Option<String> {
        self.ready().and_then(|s| s.ip.clone())
    }
}

/// What the worker knows of one container of the pod.
#[derive(Default)]
struct Slot {
    id: Option<String>,
    image_id: String,
    restarts: u32,
    state: Option<ContainerState>,
    last_state: Option<Value>,
    /// A waiting reason/message to report instead of the runtime state.
    waiting: Option<(String, String)>,
    /// CrashLoopBackOff's schedule (created at the first restart).
    restart_backoff: Option<Backoff>,
    /// ImagePullBackOff's schedule.
    pull_backoff: Option<Backoff>,
    not_before: Option<Instant>,
    pull_failures: u32,
    /// Probe tallies of the current attempt.
    startup: probe::Tracker,
    liveness: probe::Tracker,
    readiness: probe::Tracker,
}

/// How a worker's sync loop ends.
enum Exit {
    /// The pod has a deletionTimestamp: stop it gracefully, then delete the object.
    Deleted,
    /// The pod object is gone already: stop what is left.
    Gone,
    /// The kubelet is shutting down: leave the pod running, to be adopted on restart.
    Shutdown,
}

pub struct Worker {
    ctx: Arc<Context>,
    pod: Pod,
    rx: mpsc::UnboundedReceiver<PodUpdate>,
    sandbox: Sandbox,
    slots: BTreeMap<String, Slot>,
    start_time: Option<String>,
    reported: Option<Value>,
    /// When configMap/secret/downwardAPI/projected volumes were last re-projected.
    projected_at: Option<Instant>,
    /// The ServiceAccount tokens projected into the pod's volumes.
    tokens: tokens::Tokens,
    /// Whether the MissingClusterDNS warning was recorded for this pod.
    dns_warned: bool,
    /// Set once the pod is evicted or rejected: nothing runs any more.
    terminal: Option<Terminal>,
    /// Its persistentVolumeClaim volumes' host directories, by volume name, once resolved.
    claim_paths: BTreeMap<String, std::path::PathBuf>,
    /// When claims that could not be resolved are tried again, and the last FailedMount.
    claims_retry: Option<(Instant, String)>,
}

impl Worker {
    pub fn new(ctx: Arc<Context>, pod: Pod, rx: mpsc::UnboundedReceiver<PodUpdate>) -> Self {
        // An evicted or rejected pod stays stopped across kubelet restarts.
        let terminal = pod.status.as_ref().and_then(|s| {
            (s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")).then(
                || Terminal {
                    reason: "Evicted".into(),
                    message: s.message.clone().unwrap_or_default(),
                    disruption: s
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True"),
                },
            )
        });
        Worker {
            ctx,
            pod,
            rx,
            sandbox: Sandbox::Pending,
            slots: BTreeMap::new(),
            start_time: None,
            reported: None,
            projected_at: None,
            tokens: tokens::Tokens::default(),
            dns_warned: false,
            terminal,
            claim_paths: BTreeMap::new(),
            claims_retry: None,
        }
    }

    /// Refuses the pod before it starts (admission under node pressure): its status becomes
    /// `Failed` with this reason and message, and nothing of it runs.
    pub fn reject(&mut self, reason: &str, message: String) {
        self.terminal = Some(Terminal {
            reason: reason.into(),
            message,
            disruption: false,
        });
    }

    /// Carries out an eviction: the Warning `Evicted` event, the containers stopped within
    /// the eviction's grace period, and the pod left `Failed` (its controller replaces it).
    async fn evict(&mut self, eviction: crate::eviction::Eviction) {
        if self.terminal.is_some() {
            return;
        }
        self.event(
            None,
            EventType::Warning,
            "Evicted",
            eviction.message.clone(),
        );
        self.terminate(Some(eviction.grace)).await;
        let now = std::time::SystemTime::now();
        for slot in self.slots.values_mut() {
            if let Some(ContainerState::Running { started_at }) = slot.state {
                slot.state = Some(ContainerState::Exited {
                    exit_code: 137,
                    reason: "Error".into(),
                    started_at: Some(started_at),
                    finished_at: Some(now),
                });
            }
        }
        self.terminal = Some(Terminal {
            reason: "Evicted".into(),
            message: eviction.message,
            disruption: true,
        });
    }

    /// Records an event about the pod, or about one of its containers (`fieldPath`
    /// `spec.containers{name}` / `spec.initContainers{name}`), as `kubectl describe` shows them.
    fn event(&self, container: Option<&str>, type_: EventType, reason: &str, message: String) {
        let field_path = container.map(|name| {
            let init = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.name == name));
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            }
        });
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: self.pod.metadata.name.clone(),
            namespace: self.pod.metadata.namespace.clone(),
            uid: self.pod.metadata.uid.clone(),
            field_path,
            ..Default::default()
        };
        self.ctx.api.event(object, type_, reason, message);
    }

    /// `<reason> container <name>` when a step on a container worked, `Failed: Error: …` when
    /// it did not.
    fn step_event<T, E: std::fmt::Display>(
        &self,
        container: &str,
        result: &Result<T, E>,
        reason: &str,
    ) {
        match result {
            Ok(_) => self.event(
                Some(container),
                EventType::Normal,
                reason,
                format!("{reason} container {container}"),
            ),
            Err(e) => self.event(
                Some(container),
                EventType::Warning,
                "Failed",
                format!("Error: {e}"),
            ),
        }
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    /// The pod's folder under the kubelet's root: its hosts and resolv.conf, its volumes.
    fn pod_dir(&self) -> std::path::PathBuf {
        self.ctx.root_dir.join("pods").join(self.uid())
    }

    fn volumes_dir(&self) -> std::path::PathBuf {
        self.pod_dir().join("volumes")
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        self.adopt().await;
        self.start_time = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| skiff_common::time::rfc3339(t.0));
        let exit = loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                break Exit::Deleted;
            }
            self.sync().await;
            self.report().await;
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(PodUpdate::Changed(p)) => self.pod = *p,
                    Some(PodUpdate::Evict(e)) => self.evict(e).await,
                    Some(PodUpdate::Gone) | None => break Exit::Gone,
                },
                _ = tokio::time::sleep(RESYNC) => {}
                _ = shutdown.cancelled() => break Exit::Shutdown,
            }
        };
        match exit {
            Exit::Shutdown => {}
            Exit::Gone => self.terminate(None).await,
            Exit::Deleted => {
                self.terminate(None).await;
                if let Err(e) = self
                    .ctx
                    .api
                    .delete_pod(self.namespace(), self.name(), self.uid())
                    .await
                {
                    tracing::debug!(pod = %self.name(), error = %e, "final delete of the pod object failed");
                }
            }
        }
    }

    /// Finds this pod's sandbox and containers left by an earlier kubelet.
    async fn adopt(&mut self) {
        let uid = self.uid().to_string();
        if let Ok(sandboxes) = self.ctx.runtime.list_sandboxes().await
            && let Some(s) = sandboxes
                .into_iter()
                .find(|s| s.uid == uid && s.ready && self.ctx.owns(&s.labels))
        {
            self.sandbox = Sandbox::Ready(s);
        }
        if let Ok(containers) = self.ctx.runtime.list_containers().await {
            for c in containers
                .into_iter()
                .filter(|c| c.pod_uid == uid && self.ctx.owns(&c.labels))
            {
                let slot = self.slots.entry(c.name.clone()).or_default();
                // Keep the newest attempt.
                if slot.id.is_none() || c.restart_count >= slot.restarts {
                    slot.id = Some(c.id.clone());
                    slot.restarts = c.restart_count;
                    slot.image_id = c.image_id.clone();
                    slot.state = Some(c.state.clone());
                }
            }
        }
    }

    async fn sync(&mut self) {
        // An evicted or rejected pod runs nothing any more.
        if self.terminal.is_some() {
            return;
        }
        // As the kubelet's volume manager: no container starts before its claims are mounted.
        if !self.claims_ready().await {
            return;
        }
        if self.sandbox.ready().is_none() && !self.start_sandbox().await {
            return;
        }
        self.refresh_projections().await;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        // Init containers run one at a time, in order, each to success.
        for c in spec.init_containers.iter().flatten() {
            self.refresh(&c.name).await;
            match self.slots.get(&c.name).and_then(|s| s.state.clone()) {
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Running { .. }) => return,
                Some(ContainerState::Exited { .. }) if policy == "Never" => return,
                _ => {
                    self.ensure_started(c, &policy).await;
                    return;
                }
            }
        }
        for c in &spec.containers {
            self.refresh(&c.name).await;
            self.ensure_started(c, &policy).await;
            self.run_probes(c).await;
        }
    }

    async fn start_sandbox(&mut self) -> bool {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let network = if host_network {
            SandboxNetwork::Host
        } else {
            let mut rx = self.ctx.pod_network.clone();
            let net = rx.borrow_and_update().clone();
            match net {
                Some(n) => SandboxNetwork::Pod { network: n },
                None => {
                    self.sandbox =
                        Sandbox::Failed("the node has no pod network yet (no spec.podCIDR)".into());
                    return false;
                }
            }
        };
        let cfg = SandboxConfig {
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
            uid: self.uid().to_string(),
            hostname: spec
                .hostname
                .clone()
                .unwrap_or_else(|| self.name().to_string()),
            network,
            port_mappings: container::port_mappings(&spec),
            labels: crate::node_labels(&self.ctx.node_name),
            dns_servers: Vec::new(),
            dns_searches: vec![
                format!("{}.svc.cluster.local", self.namespace()),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            dns_options: vec!["ndots:5".into()],
            extra_hosts: Vec::new(),
        };
        match self.ctx.runtime.run_sandbox(&cfg).await {
            Ok(s) => {
                self.sandbox = Sandbox::Ready(s);
                if self.start_time.is_none() {
                    self.start_time = Some(skiff_common::time::now());
                }
                true
            }
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %e, "could not start the pod sandbox");
                self.sandbox = Sandbox::Failed(e.to_string());
                false
            }
        }
    }

    /// Reads the runtime's view of one container.
    async fn refresh(&mut self, name: &str) {
        let Some(id) = self.slots.get(name).and_then(|s| s.id.clone()) else {
            return;
        };
        match self.ctx.runtime.container_status(&id).await {
            Ok(st) => {
                let slot = self.slots.entry(name.to_string()).or_default();
                slot.image_id = st.image_id;
                slot.state = Some(st.state);
            }
            Err(RuntimeError::NotFound { .. }) => {
                let slot = self.slots.entry(name.to_string()).or_default();
                slot.id = None;
                slot.state = None;
            }
            Err(e) => {
                tracing::debug!(pod = %self.name(), container = name, error = %e, "container status failed")
            }
        }
    }

    /// Stops every container (preStop, SIGTERM, the grace period, SIGKILL), then the sandbox.
    /// The grace period is the deletion's or the pod's, unless an eviction sets its own.
    async fn terminate(&mut self, grace_override: Option<Duration>) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        let grace = grace_override.unwrap_or(Duration::from_secs(grace));
        let runtime = self.ctx.runtime.clone();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let pod_ip = self.sandbox.ip();
        let deadline = Instant::now() + grace;
        let mut stops = Vec::new();
        for (name, slot) in &self.slots {
            if matches!(slot.state, Some(ContainerState::Running { .. })) {
                self.event(
                    Some(name),
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {name}"),
                );
            }
            if let Some(id) = slot.id.clone() {
                let runtime = runtime.clone();
                let container = spec.containers.iter().find(|c| &c.name == name).cloned();
                let pod_ip = pod_ip.clone();
                stops.push(tokio::spawn(async move {
                    // preStop runs first and counts against the grace period; SIGTERM follows.
                    if let Some(c) = &container
                        && let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
                    {
                        let target = Target {
                            runtime: &*runtime,
                            container: c,
                            container_id: &id,
                            pod_ip: pod_ip.as_deref(),
                        };
                        if let Err(e) =
                            handler::run(Caller::Hook, Action::of_hook(hook), &target, grace).await
                        {
                            tracing::info!(container = %id, error = %e, "preStop hook failed");
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = runtime.stop_container(&id, left).await;
                    let _ = runtime.remove_container(&id).await;
                }));
            }
        }
        for s in stops {
            let _ = s.await;
        }
        // [kubelet server] Also the previous attempts kept for `logs --previous`.
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            self.remove_attempts_except(&name, None).await;
        }
        if let Sandbox::Ready(sandbox) = &self.sandbox {
            let _ = runtime.remove_sandbox(&sandbox.id).await;
            self.sandbox = Sandbox::Pending;
        }
        // Memory-backed emptyDirs, secret and projected volumes are tmpfs mounts: unmount
        // before removing.
        if let Ok(vols) = std::fs::read_dir(self.volumes_dir()) {
            for v in vols.flatten() {
                let _ = std::process::Command::new("umount").arg(v.path()).output();
            }
        }
        let _ = std::fs::remove_dir_all(self.pod_dir());
        tracing::info!(pod = %self.name(), namespace = %self.namespace(), "pod terminated");
    }
}
