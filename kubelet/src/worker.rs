//! One worker per pod: it brings the pod's sandbox and containers to what the spec asks,
//! restarts containers per the restart policy with Kubernetes' backoff, reports status, and
//! on deletion stops everything gracefully and removes the pod object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use skiff_client::events::EventType;
use skiff_common::Backoff;
use skiff_runtime::{
    ContainerConfig, ContainerState, Mount, PullPolicy, Resources, RuntimeError, SandboxConfig,
    SandboxNetwork, SandboxStatus,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::probe;
use crate::status::{self, condition, state_json, waiting};

/// What the manager tells a worker.
pub enum PodUpdate {
    /// The pod object changed.
    Changed(Box<Pod>),
    /// The pod object is gone from the API.
    Gone,
}

/// How often a worker re-checks its containers when nothing happens.
const RESYNC: Duration = Duration::from_secs(1);
/// Kubernetes' container restart backoff: 10 s doubling to 5 min, reset after 10 min running.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often projected volumes (configMap, secret, downwardAPI) are refreshed.
const PROJECTION_REFRESH: Duration = Duration::from_secs(5);

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
    sandbox: Option<SandboxStatus>,
    slots: BTreeMap<String, Slot>,
    start_time: Option<String>,
    reported: Option<Value>,
    sandbox_error: Option<String>,
    /// When configMap/secret/downwardAPI volumes were last re-projected.
    projected_at: Option<Instant>,
    /// Whether the MissingClusterDNS warning was recorded for this pod.
    dns_warned: AtomicBool,
}

/// The message of a Pulling event.
fn pulling(image: &str) -> String {
    format!("Pulling image {image:?}")
}

/// Whether `last_state` already records attempt `id` (a start error's record carries the
/// engine's message, which the runtime's state does not).
fn recorded_attempt(last_state: Option<&Value>, id: &str) -> bool {
    last_state.is_some_and(|l| l["terminated"]["containerID"] == format!("docker://{id}").as_str())
}

/// A duration as Go prints one (`850ms`, `1.204s`, `2m3.5s`), for event messages.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let trim = |x: f64| {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if secs < 60.0 {
        format!("{}s", trim(secs))
    } else {
        format!("{}m{}s", (secs / 60.0) as u64, trim(secs % 60.0))
    }
}

fn pull_policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        _ => PullPolicy::IfNotPresent,
    }
}

fn quantity_millis(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0) as u64),
    }
}

fn quantity_bytes(q: &str) -> Option<i64> {
    const UNITS: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, mult) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * mult) as i64);
        }
    }
    q.parse::<f64>().ok().map(|v| v as i64)
}

impl Worker {
    pub fn new(ctx: Arc<Context>, pod: Pod, rx: mpsc::UnboundedReceiver<PodUpdate>) -> Self {
        Worker {
            ctx,
            pod,
            rx,
            sandbox: None,
            slots: BTreeMap::new(),
            start_time: None,
            reported: None,
            sandbox_error: None,
            projected_at: None,
            dns_warned: AtomicBool::new(false),
        }
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
        self.ctx.events.publish(object, type_, reason, message);
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

    /// The pod's `/etc/hosts` and `/etc/resolv.conf`, written into its folder (again each time
    /// a container starts: the pod's address or aliases may be new), as mounts for a container
    /// that does not mount those paths itself.
    fn etc_mounts(&self, c: &Container) -> Result<Vec<Mount>, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let dir = self.ctx.root_dir.join("pods").join(self.uid());
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let (conf, warning) = crate::dns::pod_dns(&self.ctx.dns, &spec, self.namespace());
        if let Some(w) = warning
            && !self.dns_warned.swap(true, Ordering::Relaxed)
        {
            let pod = format!("{}_{}({})", self.name(), self.namespace(), self.uid());
            self.event(
                None,
                EventType::Warning,
                "MissingClusterDNS",
                format!("pod: {pod:?}. {w}"),
            );
        }
        let mut resolv = String::new();
        if !conf.searches.is_empty() {
            resolv.push_str(&format!("search {}\n", conf.searches.join(" ")));
        }
        for ns in &conf.nameservers {
            resolv.push_str(&format!("nameserver {ns}\n"));
        }
        if !conf.options.is_empty() {
            resolv.push_str(&format!("options {}\n", conf.options.join(" ")));
        }
        let hosts = if spec.host_network.unwrap_or(false) {
            let node = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            Some(crate::dns::host_network_hosts_file(&spec, &node))
        } else {
            self.sandbox.as_ref().and_then(|s| s.ip.clone()).map(|ip| {
                crate::dns::hosts_file(
                    &spec,
                    &ip,
                    self.name(),
                    self.namespace(),
                    &self.ctx.dns.cluster_domain,
                )
            })
        };
        let mounted = |path: &str| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path.trim_end_matches('/') == path)
        };
        let mut mounts = Vec::new();
        let files = [
            ("etc-hosts", "/etc/hosts", hosts),
            ("resolv.conf", "/etc/resolv.conf", Some(resolv)),
        ];
        for (file, path, content) in files {
            let Some(content) = content else { continue };
            if mounted(path) {
                continue;
            }
            let host = dir.join(file);
            std::fs::write(&host, content)
                .map_err(|e| format!("writing {}: {e}", host.display()))?;
            mounts.push(Mount {
                host_path: host.display().to_string(),
                container_path: path.to_string(),
                read_only: false,
            });
        }
        Ok(mounts)
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

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), self.namespace())
    }

    fn volumes_dir(&self) -> std::path::PathBuf {
        self.ctx
            .root_dir
            .join("pods")
            .join(self.uid())
            .join("volumes")
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        self.adopt().await;
        self.start_time = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        let exit = loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                break Exit::Deleted;
            }
            self.sync().await;
            self.report().await;
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(PodUpdate::Changed(p)) => self.pod = *p,
                    Some(PodUpdate::Gone) | None => break Exit::Gone,
                },
                _ = tokio::time::sleep(RESYNC) => {}
                _ = shutdown.cancelled() => break Exit::Shutdown,
            }
        };
        if matches!(exit, Exit::Shutdown) {
            return;
        }
        self.terminate().await;
        if matches!(exit, Exit::Deleted) {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid().to_string()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = self.api().delete(self.name(), &params).await {
                tracing::debug!(pod = %self.name(), error = %e, "final delete of the pod object failed");
            }
        }
    }

    /// Finds this pod's sandbox and containers left by an earlier kubelet.
    async fn adopt(&mut self) {
        let uid = self.uid().to_string();
        if let Ok(sandboxes) = self.ctx.runtime.list_sandboxes().await {
            self.sandbox = sandboxes
                .into_iter()
                .find(|s| s.uid == uid && s.ready && self.ctx.owns(&s.labels));
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
        if self.sandbox.is_none() && !self.start_sandbox().await {
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

    /// Runs the container's due probes: a failed startup or liveness probe kills the container
    /// (the restart policy then applies); readiness only gates Ready.
    async fn run_probes(&mut self, c: &Container) {
        let pod_ip = self.sandbox.as_ref().and_then(|s| s.ip.clone());
        let runtime = self.ctx.runtime.clone();
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        let pod_name = self.name().to_string();
        let mut unhealthy: Vec<String> = Vec::new();
        let Some(slot) = self.slots.get_mut(&c.name) else {
            return;
        };
        let (Some(id), Some(ContainerState::Running { .. })) = (slot.id.clone(), &slot.state)
        else {
            return;
        };
        let ip = pod_ip.as_deref();
        let mut kill = None;
        if let Some(p) = &c.startup_probe
            && slot.startup.result != Some(true)
        {
            let failures = slot.startup.failures();
            probe::step(&mut slot.startup, p, c, &id, ip, &*runtime).await;
            if slot.startup.failures() > failures {
                unhealthy.push(format!(
                    "Startup probe failed: {}",
                    slot.startup.message.clone().unwrap_or_default()
                ));
            }
            if slot.startup.result == Some(false) {
                kill = Some("startup");
            }
        } else {
            if let Some(p) = &c.liveness_probe {
                let failures = slot.liveness.failures();
                probe::step(&mut slot.liveness, p, c, &id, ip, &*runtime).await;
                if slot.liveness.failures() > failures {
                    unhealthy.push(format!(
                        "Liveness probe failed: {}",
                        slot.liveness.message.clone().unwrap_or_default()
                    ));
                }
                if slot.liveness.result == Some(false) {
                    kill = Some("liveness");
                }
            }
            if let Some(p) = &c.readiness_probe {
                let failures = slot.readiness.failures();
                probe::step(&mut slot.readiness, p, c, &id, ip, &*runtime).await;
                if slot.readiness.failures() > failures {
                    unhealthy.push(format!(
                        "Readiness probe failed: {}",
                        slot.readiness.message.clone().unwrap_or_default()
                    ));
                }
            }
        }
        if let Some(probe) = kill {
            tracing::info!(pod = %pod_name, container = %c.name, "{probe} probe failed; killing the container");
            slot.startup = probe::Tracker::new();
            slot.liveness = probe::Tracker::new();
            slot.readiness = probe::Tracker::new();
        }
        for message in unhealthy {
            self.event(Some(&c.name), EventType::Warning, "Unhealthy", message);
        }
        if let Some(probe) = kill {
            self.event(
                Some(&c.name),
                EventType::Normal,
                "Killing",
                format!(
                    "Container {} failed {probe} probe, will be restarted",
                    c.name
                ),
            );
            let _ = runtime
                .stop_container(&id, Duration::from_secs(grace))
                .await;
        }
    }

    /// Whether a container's probes let it count as started and ready.
    fn probes_pass(c: &Container, slot: &Slot) -> (bool, bool) {
        let started = c.startup_probe.is_none() || slot.startup.result == Some(true);
        let ready = started && (c.readiness_probe.is_none() || slot.readiness.result == Some(true));
        (started, ready)
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
                    self.sandbox_error =
                        Some("the node has no pod network yet (no spec.podCIDR)".into());
                    return false;
                }
            }
        };
        let mut port_mappings = Vec::new();
        for c in &spec.containers {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                    port_mappings.push(skiff_runtime::PortMapping {
                        container_port: p.container_port as u16,
                        host_port: hp as u16,
                        protocol: p
                            .protocol
                            .clone()
                            .unwrap_or_else(|| "TCP".into())
                            .to_lowercase(),
                        host_ip: p.host_ip.clone(),
                    });
                }
            }
        }
        let cfg = SandboxConfig {
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
            uid: self.uid().to_string(),
            hostname: spec
                .hostname
                .clone()
                .unwrap_or_else(|| self.name().to_string()),
            network,
            port_mappings,
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
                self.sandbox = Some(s);
                self.sandbox_error = None;
                if self.start_time.is_none() {
                    self.start_time = Some(status::now());
                }
                true
            }
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %e, "could not start the pod sandbox");
                self.sandbox_error = Some(e.to_string());
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

    /// Starts (or restarts, per policy and backoff) one container if it should be running.
    async fn ensure_started(&mut self, c: &Container, policy: &str) {
        let slot = self.slots.entry(c.name.clone()).or_default();
        match &slot.state {
            Some(ContainerState::Running { started_at }) => {
                // A container that ran long enough earns a fresh backoff.
                if started_at.elapsed().unwrap_or_default() >= BACKOFF_RESET {
                    slot.restart_backoff = None;
                }
                slot.waiting = None;
                return;
            }
            Some(ContainerState::Exited { exit_code, .. }) => {
                let restart = match policy {
                    "Never" => false,
                    "OnFailure" => *exit_code != 0,
                    _ => true,
                };
                if !restart {
                    return;
                }
                match slot.not_before {
                    None => {
                        let delay = slot
                            .restart_backoff
                            .get_or_insert_with(|| Backoff::exact(BACKOFF_START, BACKOFF_MAX))
                            .next_delay();
                        // While it waits, the attempt that ended is the container's lastState
                        // (unless that attempt's record is there already, with the start
                        // error's message).
                        if let (Some(id), Some(state)) = (&slot.id, &slot.state)
                            && !recorded_attempt(slot.last_state.as_ref(), id)
                        {
                            slot.last_state = Some(state_json(state, id));
                        }
                        slot.not_before = Some(Instant::now() + delay);
                        let pod = format!("{}_{}({})", self.name(), self.namespace(), self.uid());
                        self.event(
                            Some(&c.name),
                            EventType::Warning,
                            "BackOff",
                            format!(
                                "Back-off restarting failed container {} in pod {pod}",
                                c.name
                            ),
                        );
                        let slot = self.slots.entry(c.name.clone()).or_default();
                        slot.waiting = Some((
                            "CrashLoopBackOff".into(),
                            format!(
                                "back-off {}s restarting failed container={} pod={}_{}({})",
                                delay.as_secs(),
                                c.name,
                                self.pod.metadata.name.as_deref().unwrap_or_default(),
                                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                                self.pod.metadata.uid.as_deref().unwrap_or_default()
                            ),
                        ));
                        return;
                    }
                    Some(t) if Instant::now() < t => return,
                    Some(_) => {}
                }
            }
            Some(ContainerState::Created) | Some(ContainerState::Unknown) | None => {
                if slot.not_before.is_some_and(|t| Instant::now() < t) {
                    return;
                }
            }
        }
        self.start_container(c).await;
    }

    async fn start_container(&mut self, c: &Container) {
        let runtime = self.ctx.runtime.clone();
        let image = c.image.clone().unwrap_or_default();
        // The previous attempt becomes lastState.
        let (old_id, restarts) = {
            let slot = self.slots.entry(c.name.clone()).or_default();
            if let (Some(id), Some(state @ ContainerState::Exited { .. })) = (&slot.id, &slot.state)
                && !recorded_attempt(slot.last_state.as_ref(), id)
            {
                slot.last_state = Some(state_json(state, id));
            }
            let restarts = if slot.id.is_some() {
                slot.restarts + 1
            } else {
                slot.restarts
            };
            (slot.id.clone(), restarts)
        };
        // [kubelet server] Keep the attempt that just ended, for `kubectl logs --previous`,
        // and remove the ones before it: one dead container per container name, as the
        // kubelet's container GC keeps. (`terminate` removes the kept one with the pod.)
        if let Some(id) = old_id {
            self.remove_attempts_except(&c.name, Some(&id)).await;
        }
        let pull_started = Instant::now();
        let image_id = match runtime.ensure_image(&image, pull_policy(c)).await {
            Ok(pulled) => {
                let name = Some(c.name.as_str());
                if pulled.pulled {
                    let took = go_duration(pull_started.elapsed());
                    self.event(name, EventType::Normal, "Pulling", pulling(&image));
                    self.event(
                        name,
                        EventType::Normal,
                        "Pulled",
                        format!("Successfully pulled image {image:?} in {took} ({took} including waiting)"),
                    );
                } else {
                    self.event(
                        name,
                        EventType::Normal,
                        "Pulled",
                        format!("Container image {image:?} already present on machine"),
                    );
                }
                pulled.id
            }
            Err(e) => {
                let slot = self.slots.entry(c.name.clone()).or_default();
                slot.id = None;
                slot.state = None;
                slot.pull_failures += 1;
                let reason = match (&e, slot.pull_failures) {
                    (RuntimeError::ImageNeverPull { .. }, _) => "ErrImageNeverPull",
                    (_, 1) => "ErrImagePull",
                    _ => "ImagePullBackOff",
                };
                let delay = slot
                    .pull_backoff
                    .get_or_insert_with(|| Backoff::exact(BACKOFF_START, BACKOFF_MAX))
                    .next_delay();
                slot.not_before = Some(Instant::now() + delay);
                slot.waiting = Some((reason.into(), e.to_string()));
                let name = Some(c.name.as_str());
                match reason {
                    "ErrImageNeverPull" => self.event(
                        name,
                        EventType::Warning,
                        "ErrImageNeverPull",
                        format!(
                            "Container image {image:?} is not present with pull policy of Never"
                        ),
                    ),
                    "ErrImagePull" => {
                        self.event(name, EventType::Normal, "Pulling", pulling(&image));
                        self.event(
                            name,
                            EventType::Warning,
                            "Failed",
                            format!("Failed to pull image {image:?}: {e}"),
                        );
                    }
                    _ => self.event(
                        name,
                        EventType::Normal,
                        "BackOff",
                        format!("Back-off pulling image {image:?}"),
                    ),
                }
                self.event(
                    name,
                    EventType::Warning,
                    "Failed",
                    format!("Error: {reason}"),
                );
                return;
            }
        };
        let cfg = match self.container_config(c, restarts).await {
            Ok(cfg) => cfg,
            Err(message) => {
                self.event(
                    Some(&c.name),
                    EventType::Warning,
                    "Failed",
                    format!("Error: {message}"),
                );
                let slot = self.slots.entry(c.name.clone()).or_default();
                slot.waiting = Some(("CreateContainerConfigError".into(), message));
                slot.not_before = Some(Instant::now() + BACKOFF_START);
                return;
            }
        };
        let sandbox_id = self
            .sandbox
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default();
        let created = runtime.create_container(&sandbox_id, &cfg).await;
        self.step_event(&c.name, &created, "Created");
        let slot = self.slots.entry(c.name.clone()).or_default();
        slot.pull_failures = 0;
        slot.pull_backoff = None;
        slot.image_id = image_id;
        slot.restarts = restarts;
        slot.not_before = None;
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                slot.id = None;
                slot.waiting = Some(("CreateContainerError".into(), e.to_string()));
                slot.not_before = Some(Instant::now() + BACKOFF_START);
                return;
            }
        };
        slot.id = Some(id.clone());
        slot.state = Some(ContainerState::Created);
        slot.waiting = None;
        slot.startup = probe::Tracker::new();
        slot.liveness = probe::Tracker::new();
        slot.readiness = probe::Tracker::new();
        let started = runtime.start_container(&id).await;
        self.step_event(&c.name, &started, "Started");
        if let Err(e) = started {
            // A command that cannot run (not found, not executable) fails here, as
            // Kubernetes reports it: the attempt terminated with StartError, and the next
            // one backs off.
            tracing::info!(pod = %self.pod.metadata.name.as_deref().unwrap_or_default(), container = %c.name, error = %e, "container failed to start");
            let slot = self.slots.entry(c.name.clone()).or_default();
            slot.state = Some(ContainerState::Exited {
                exit_code: 128,
                reason: "StartError".into(),
                started_at: None,
                finished_at: Some(std::time::SystemTime::now()),
            });
            slot.last_state = Some(
                json!({ "terminated": { "exitCode": 128, "reason": "StartError", "message": e.to_string(), "containerID": format!("docker://{id}") } }),
            );
            slot.waiting = Some(("RunContainerError".into(), e.to_string()));
        }
    }

    /// [kubelet server] Removes this pod's exited attempts of container `name` other than
    /// `keep` (the previous attempt that `logs --previous` reads).
    async fn remove_attempts_except(&self, name: &str, keep: Option<&str>) {
        let Ok(all) = self.ctx.runtime.list_containers().await else {
            return;
        };
        for c in all.iter().filter(|c| {
            c.pod_uid == self.uid()
                && c.name == name
                && self.ctx.owns(&c.labels)
                && Some(c.id.as_str()) != keep
                && !matches!(c.state, ContainerState::Running { .. })
        }) {
            let _ = self.ctx.runtime.remove_container(&c.id).await;
        }
    }

    /// Maps a Kubernetes container onto the runtime's config: command, env, mounts, limits.
    async fn container_config(
        &self,
        c: &Container,
        restarts: u32,
    ) -> Result<ContainerConfig, String> {
        let mut env = Vec::new();
        if self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true)
        {
            env.extend(self.service_env().await);
        }
        // envFrom first: explicit env entries override what it brings.
        for ef in c.env_from.iter().flatten() {
            let prefix = ef.prefix.clone().unwrap_or_default();
            let data = if let Some(r) = &ef.config_map_ref {
                match self.config_map_data(&r.name).await {
                    Ok(d) => d,
                    Err(_) if r.optional == Some(true) => BTreeMap::new(),
                    Err(e) => return Err(e),
                }
            } else if let Some(r) = &ef.secret_ref {
                match self.secret_data(&r.name).await {
                    Ok(d) => d,
                    Err(_) if r.optional == Some(true) => BTreeMap::new(),
                    Err(e) => return Err(e),
                }
            } else {
                BTreeMap::new()
            };
            for (k, v) in data {
                env.push((
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
        }
        for e in c.env.iter().flatten() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => self.env_from_source_for(from, c).await?,
                (None, None) => String::new(),
            };
            env.push((e.name.clone(), value));
        }
        let mut mounts = Vec::new();
        let spec = self.pod.spec.clone().unwrap_or_default();
        for vm in c.volume_mounts.iter().flatten() {
            let Some(vol) = spec.volumes.iter().flatten().find(|v| v.name == vm.name) else {
                return Err(format!("volume {:?} not found", vm.name));
            };
            let host = if let Some(hp) = &vol.host_path {
                std::path::PathBuf::from(&hp.path)
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
        mounts.extend(self.etc_mounts(c)?);
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        let user = sc.run_as_user.map(|u| match sc.run_as_group {
            Some(g) => format!("{u}:{g}"),
            None => u.to_string(),
        });
        let labels = crate::node_labels(&self.ctx.node_name);
        Ok(ContainerConfig {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            env,
            working_dir: c.working_dir.clone(),
            mounts,
            resources: Resources {
                cpu_limit_millis: limits.get("cpu").and_then(|q| quantity_millis(&q.0)),
                cpu_request_millis: requests.get("cpu").and_then(|q| quantity_millis(&q.0)),
                memory_limit_bytes: limits.get("memory").and_then(|q| quantity_bytes(&q.0)),
            },
            user,
            privileged: sc.privileged.unwrap_or(false),
            read_only_root_fs: sc.read_only_root_filesystem.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            restart_count: restarts,
            labels,
        })
    }

    /// `<NAME>_SERVICE_HOST` / `_PORT` (and the docker-link style `<NAME>_PORT_...`) for the
    /// Services of the pod's namespace and the `kubernetes` Service, as they exist now.
    async fn service_env(&self) -> Vec<(String, String)> {
        let mut services = Vec::new();
        for ns in [self.namespace(), "default"] {
            let api: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(self.ctx.client.clone(), ns);
            if let Ok(list) = api.list(&Default::default()).await {
                services.extend(list.items.into_iter().filter(|s| {
                    ns == self.namespace() || s.metadata.name.as_deref() == Some("kubernetes")
                }));
            }
            if ns == "default" || self.namespace() == "default" {
                break;
            }
        }
        let mut env = Vec::new();
        for svc in services {
            let Some(spec) = svc.spec else { continue };
            let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
                continue;
            };
            let name = svc
                .metadata
                .name
                .unwrap_or_default()
                .to_uppercase()
                .replace('-', "_");
            let ports = spec.ports.unwrap_or_default();
            let Some(first) = ports.first() else { continue };
            env.push((format!("{name}_SERVICE_HOST"), ip.clone()));
            env.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
            env.push((
                format!("{name}_PORT"),
                format!(
                    "{}://{ip}:{}",
                    first
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_lowercase(),
                    first.port
                ),
            ));
            for p in &ports {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                    env.push((
                        format!(
                            "{name}_SERVICE_PORT_{}",
                            pn.to_uppercase().replace('-', "_")
                        ),
                        p.port.to_string(),
                    ));
                }
                let prefix = format!("{name}_PORT_{}_{}", p.port, proto);
                env.push((
                    prefix.clone(),
                    format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
                ));
                env.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
                env.push((format!("{prefix}_PORT"), p.port.to_string()));
                env.push((format!("{prefix}_ADDR"), ip.clone()));
            }
        }
        env
    }

    /// A `valueFrom` for container `c` (resourceFieldRef reads `c`'s own resources unless
    /// it names another container).
    async fn env_from_source_for(
        &self,
        from: &k8s_openapi::api::core::v1::EnvVarSource,
        c: &Container,
    ) -> Result<String, String> {
        if let Some(r) = &from.resource_field_ref {
            let spec = self.pod.spec.clone().unwrap_or_default();
            let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => spec
                    .containers
                    .iter()
                    .find(|x| x.name == n)
                    .cloned()
                    .ok_or_else(|| format!("container {n:?} not found"))?,
                None => c.clone(),
            };
            let res = target.resources.clone().unwrap_or_default();
            let (map, key) = match r.resource.split_once('.') {
                Some(("limits", k)) => (res.limits, k),
                Some(("requests", k)) => (res.requests, k),
                _ => return Err(format!("unsupported resourceFieldRef {:?}", r.resource)),
            };
            let q = map.and_then(|m| m.get(key).map(|q| q.0.clone()));
            let divisor = r
                .divisor
                .as_ref()
                .map(|d| d.0.clone())
                .unwrap_or_else(|| "1".into());
            return Ok(match key {
                "cpu" => {
                    // Unset limits fall back to the node's capacity, as Kubernetes does.
                    let millis = q
                        .as_deref()
                        .and_then(quantity_millis)
                        .unwrap_or(crate::sysinfo::cpus() as u64 * 1000);
                    let div = quantity_millis(&divisor).unwrap_or(1000).max(1);
                    millis.div_ceil(div).to_string()
                }
                _ => {
                    let bytes = q
                        .as_deref()
                        .and_then(quantity_bytes)
                        .unwrap_or(crate::sysinfo::memory_kib() as i64 * 1024);
                    let div = quantity_bytes(&divisor).unwrap_or(1).max(1);
                    ((bytes + div - 1) / div).to_string()
                }
            });
        }
        self.env_from_source(from).await
    }

    async fn env_from_source(
        &self,
        from: &k8s_openapi::api::core::v1::EnvVarSource,
    ) -> Result<String, String> {
        if let Some(f) = &from.field_ref {
            let pod = &self.pod;
            return Ok(match f.field_path.as_str() {
                "metadata.name" => self.name().to_string(),
                "metadata.namespace" => self.namespace().to_string(),
                "metadata.uid" => self.uid().to_string(),
                "spec.nodeName" => self.ctx.node_name.clone(),
                "spec.serviceAccountName" => pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_default(),
                "status.hostIP" => self.ctx.node_ip.to_string(),
                "status.podIP" => self
                    .sandbox
                    .as_ref()
                    .and_then(|s| s.ip.clone())
                    .unwrap_or_default(),
                other => {
                    if let Some(key) = other
                        .strip_prefix("metadata.labels['")
                        .and_then(|k| k.strip_suffix("']"))
                    {
                        pod.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(key).cloned())
                            .unwrap_or_default()
                    } else if let Some(key) = other
                        .strip_prefix("metadata.annotations['")
                        .and_then(|k| k.strip_suffix("']"))
                    {
                        pod.metadata
                            .annotations
                            .as_ref()
                            .and_then(|l| l.get(key).cloned())
                            .unwrap_or_default()
                    } else {
                        return Err(format!("unsupported fieldRef {other:?}"));
                    }
                }
            });
        }
        if let Some(r) = &from.config_map_key_ref {
            let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(self.ctx.client.clone(), self.namespace());
            let cm = api
                .get(&r.name)
                .await
                .map_err(|e| format!("configmap {:?} not found: {e}", r.name))?;
            return cm.data.and_then(|d| d.get(&r.key).cloned()).ok_or_else(|| {
                format!(
                    "couldn't find key {} in ConfigMap {}/{}",
                    r.key,
                    self.namespace(),
                    r.name
                )
            });
        }
        if let Some(r) = &from.secret_key_ref {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(self.ctx.client.clone(), self.namespace());
            let s = api
                .get(&r.name)
                .await
                .map_err(|e| format!("secret {:?} not found: {e}", r.name))?;
            return s
                .data
                .and_then(|d| {
                    d.get(&r.key)
                        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                })
                .ok_or_else(|| {
                    format!(
                        "couldn't find key {} in Secret {}/{}",
                        r.key,
                        self.namespace(),
                        r.name
                    )
                });
        }
        Err("unsupported env valueFrom".into())
    }

    /// Writes a configMap, secret or downwardAPI volume's files into `dir` (no-op for other
    /// volume types).
    async fn project(
        &self,
        vol: &k8s_openapi::api::core::v1::Volume,
        c: &Container,
        dir: &std::path::Path,
    ) -> Result<(), String> {
        if let Some(cm) = &vol.config_map {
            let data = match self.config_map_data(&cm.name).await {
                Err(_) if cm.optional == Some(true) => BTreeMap::new(),
                other => other?,
            };
            Self::write_projection(dir, &data, cm.items.as_ref(), cm.default_mode)?;
        }
        if let Some(secret) = &vol.secret {
            let data = match self
                .secret_data(secret.secret_name.as_deref().unwrap_or_default())
                .await
            {
                Err(_) if secret.optional == Some(true) => BTreeMap::new(),
                other => other?,
            };
            Self::write_projection(dir, &data, secret.items.as_ref(), secret.default_mode)?;
        }
        if let Some(d) = &vol.downward_api {
            let (data, items) = self
                .downward_data(c, d.items.as_deref().unwrap_or_default())
                .await?;
            Self::write_projection(dir, &data, Some(&items), d.default_mode)?;
        }
        Ok(())
    }

    /// Re-projects configMap, secret and downwardAPI volumes so running containers see their
    /// sources' changes (as the kubelet's periodic volume sync does).
    async fn refresh_projections(&mut self) {
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

    async fn config_map_data(&self, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.ctx.client.clone(), self.namespace());
        let cm = api
            .get(name)
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

    async fn secret_data(&self, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let api: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.ctx.client.clone(), self.namespace());
        let s = api
            .get(name)
            .await
            .map_err(|e| format!("secret {name:?} not found: {e}"))?;
        Ok(s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())
    }

    /// Writes a configMap, secret or downwardAPI volume: every key (or just `items`, at their
    /// paths and modes), with `defaultMode` (0644 by default) otherwise.
    fn write_projection(
        dir: &std::path::Path,
        data: &BTreeMap<String, Vec<u8>>,
        items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
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

    /// The files of a downwardAPI volume: each item's fieldRef or resourceFieldRef value.
    async fn downward_data(
        &self,
        c: &Container,
        items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    ) -> Result<
        (
            BTreeMap<String, Vec<u8>>,
            Vec<k8s_openapi::api::core::v1::KeyToPath>,
        ),
        String,
    > {
        let mut data = BTreeMap::new();
        let mut paths = Vec::new();
        for item in items {
            let source = k8s_openapi::api::core::v1::EnvVarSource {
                field_ref: item.field_ref.clone(),
                resource_field_ref: item.resource_field_ref.clone(),
                ..Default::default()
            };
            let value = match (
                &item.field_ref,
                &item.field_ref.as_ref().map(|f| f.field_path.as_str()),
            ) {
                (Some(_), Some("metadata.labels")) => {
                    Self::map_lines(self.pod.metadata.labels.as_ref())
                }
                (Some(_), Some("metadata.annotations")) => {
                    Self::map_lines(self.pod.metadata.annotations.as_ref())
                }
                _ => self.env_from_source_for(&source, c).await?,
            };
            data.insert(item.path.clone(), value.into_bytes());
            paths.push(k8s_openapi::api::core::v1::KeyToPath {
                key: item.path.clone(),
                path: item.path.clone(),
                mode: item.mode,
            });
        }
        Ok((data, paths))
    }

    /// `key="value"` lines, as the downward API writes label and annotation maps.
    fn map_lines(m: Option<&BTreeMap<String, String>>) -> String {
        m.map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect())
            .unwrap_or_default()
    }

    /// Stops every container (SIGTERM, the grace period, SIGKILL), then the sandbox.
    async fn terminate(&mut self) {
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
        let runtime = self.ctx.runtime.clone();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let pod_ip = self.sandbox.as_ref().and_then(|s| s.ip.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(grace);
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
                let pre_stop = spec
                    .containers
                    .iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| c.lifecycle.as_ref()?.pre_stop.clone());
                let pod_ip = pod_ip.clone();
                stops.push(tokio::spawn(async move {
                    // preStop runs first and counts against the grace period; SIGTERM follows.
                    if let Some(hook) = pre_stop {
                        run_pre_stop(
                            &*runtime,
                            &id,
                            &hook,
                            pod_ip.as_deref(),
                            Duration::from_secs(grace),
                        )
                        .await;
                    }
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
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
        if let Some(sandbox) = self.sandbox.take() {
            let _ = runtime.remove_sandbox(&sandbox.id).await;
        }
        // Memory-backed emptyDirs are tmpfs mounts: unmount before removing.
        if let Ok(vols) = std::fs::read_dir(self.volumes_dir()) {
            for v in vols.flatten() {
                let _ = std::process::Command::new("umount").arg(v.path()).output();
            }
        }
        let _ = std::fs::remove_dir_all(self.ctx.root_dir.join("pods").join(self.uid()));
        tracing::info!(pod = %self.name(), namespace = %self.namespace(), "pod terminated");
    }

    /// Builds the status and writes it if it changed.
    async fn report(&mut self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let old = self
            .pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let status_of = |c: &Container| -> (Value, bool, bool) {
            let slot = self.slots.get(&c.name);
            let (state, running, done_ok) = match slot {
                Some(Slot {
                    waiting: Some((r, m)),
                    ..
                }) => (waiting(r, Some(m)), false, false),
                Some(Slot {
                    id: Some(id),
                    state: Some(st),
                    ..
                }) => (
                    state_json(st, id),
                    matches!(st, ContainerState::Running { .. }),
                    matches!(st, ContainerState::Exited { exit_code: 0, .. }),
                ),
                _ => (waiting("ContainerCreating", None), false, false),
            };
            let (probe_started, probe_ready) = slot
                .map(|sl| Self::probes_pass(c, sl))
                .unwrap_or((false, false));
            let running = running && probe_ready;
            let mut s = json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": slot.map(|s| s.image_id.clone()).unwrap_or_default(),
                "ready": running,
                "restartCount": slot.map(|s| s.restarts).unwrap_or(0),
                "started": running || (probe_started && matches!(slot.and_then(|s| s.state.as_ref()), Some(ContainerState::Running { .. }))),
                "state": state,
                "lastState": slot.and_then(|s| s.last_state.clone()).unwrap_or(json!({})),
            });
            if let Some(id) = slot.and_then(|s| s.id.as_ref()) {
                s["containerID"] = json!(format!("docker://{id}"));
            }
            (s, running, done_ok)
        };
        let inits: Vec<(Value, bool, bool)> = spec
            .init_containers
            .iter()
            .flatten()
            .map(status_of)
            .collect();
        let apps: Vec<(Value, bool, bool)> = spec.containers.iter().map(status_of).collect();
        let initialized = inits.iter().all(|(_, _, ok)| *ok);
        let all_running = !apps.is_empty() && apps.iter().all(|(_, r, _)| *r);
        let all_done_ok = apps.iter().all(|(_, _, ok)| *ok);
        let any_failed = apps.iter().any(|(s, _, _)| {
            s.pointer("/state/terminated/exitCode")
                .and_then(Value::as_i64)
                .is_some_and(|c| c != 0)
        });
        let all_terminated = apps
            .iter()
            .all(|(s, _, _)| s.pointer("/state/terminated").is_some());
        let phase = if all_terminated && !apps.is_empty() && policy != "Always" {
            if all_done_ok {
                "Succeeded"
            } else if policy == "Never" || !any_failed {
                "Failed"
            } else {
                "Running"
            }
        } else if self.sandbox.is_some()
            && apps.iter().any(|(s, _, _)| {
                s.pointer("/state/running").is_some()
                    || s.pointer("/state/terminated").is_some()
                    || s.pointer("/lastState/terminated").is_some()
            })
        {
            "Running"
        } else {
            "Pending"
        };
        let old_ref = old.as_ref();
        let mut status = json!({
            "phase": phase,
            "hostIP": self.ctx.node_ip.to_string(),
            "hostIPs": [{ "ip": self.ctx.node_ip.to_string() }],
            "conditions": [
                condition(old_ref, "PodReadyToStartContainers", self.sandbox.is_some(), None),
                condition(old_ref, "Initialized", initialized, (!initialized).then_some("ContainersNotInitialized")),
                condition(old_ref, "Ready", all_running, (!all_running).then_some("ContainersNotReady")),
                condition(old_ref, "ContainersReady", all_running, (!all_running).then_some("ContainersNotReady")),
                condition(old_ref, "PodScheduled", true, None),
            ],
            "containerStatuses": apps.into_iter().map(|(s, _, _)| s).collect::<Vec<_>>(),
            "qosClass": old_ref.and_then(|o| o.get("qosClass").cloned()).unwrap_or(json!("BestEffort")),
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] =
                json!(inits.into_iter().map(|(s, _, _)| s).collect::<Vec<_>>());
        }
        if let Some(t) = &self.start_time {
            status["startTime"] = json!(t);
        }
        let pod_ip = if spec.host_network.unwrap_or(false) {
            Some(self.ctx.node_ip.to_string())
        } else {
            self.sandbox.as_ref().and_then(|s| s.ip.clone())
        };
        if let Some(ip) = pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{ "ip": ip }]);
        }
        if let Some(msg) = &self.sandbox_error {
            status["message"] = json!(msg);
        }
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        match self
            .api()
            .patch_status(
                self.name(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
        {
            Ok(p) => {
                self.pod.status = p.status;
                self.reported = Some(status);
            }
            Err(e) => tracing::debug!(pod = %self.name(), error = %e, "status update failed"),
        }
    }
}

/// Mounts a tmpfs (an emptyDir with `medium: Memory`) on `dir`, unless one is there already.
fn mount_tmpfs(dir: &std::path::Path, size: Option<&str>) -> Result<(), String> {
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

/// Runs a container's preStop hook (exec or httpGet), waiting at most `limit`.
async fn run_pre_stop(
    runtime: &dyn skiff_runtime::ContainerRuntime,
    id: &str,
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    pod_ip: Option<&str>,
    limit: Duration,
) {
    if let Some(exec) = &hook.exec {
        let command = exec.command.clone().unwrap_or_default();
        if let Err(e) = runtime.exec_sync(id, &command, limit).await {
            tracing::info!(container = id, error = %e, "preStop hook failed");
        }
    } else if let Some(get) = &hook.http_get {
        let host = get
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .or(pod_ip.map(String::from));
        let port = match &get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => Some(*p),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(p) => p.parse().ok(),
        };
        if let (Some(host), Some(port)) = (host, port) {
            let url = format!(
                "http://{host}:{port}{}",
                get.path.clone().unwrap_or_else(|| "/".into())
            );
            if let Ok(client) = reqwest::Client::builder().timeout(limit).build() {
                let _ = client.get(&url).send().await;
            }
        }
    } else if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(limit)).await;
    }
}
