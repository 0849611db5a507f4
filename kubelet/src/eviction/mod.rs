//! The eviction manager, as the kubelet's: every monitoring interval it measures the node's
//! signals (memory.available, nodefs.available/inodesFree, imagefs.available/inodesFree),
//! reports the `MemoryPressure`/`DiskPressure` conditions they call for (held for
//! `--eviction-pressure-transition-period` after they clear), and when a threshold is due
//! it first reclaims what the node itself holds (unused images, under disk pressure), then
//! evicts one pod, ranked as upstream ranks them. The pod manager carries the eviction out
//! ([`Eviction`]) and turns away new pods the node cannot take ([`admit`]).

mod rank;
mod thresholds;

pub use rank::{
    Candidate, ContainerUsage, MEMORY_PRESSURE_TAINT, SYSTEM_CRITICAL_PRIORITY, admit,
    eviction_message, is_best_effort, is_critical, rank, request_of,
};
pub use thresholds::{
    Amount, DEFAULT_EVICTION_HARD, EvictionError, Observation, Observations, PressureCondition,
    Signal, Threshold, Tracker, Verdict, bytes, parse_thresholds,
};

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use skiff_client::informer::Informer;
use skiff_runtime::ContainerState;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::image_gc::{ImageGc, ImageGcPolicy, Statvfs};
use crate::{Context, sysinfo};

/// The kubelet's housekeeping interval, at which eviction signals are measured.
pub const DEFAULT_MONITORING_INTERVAL: Duration = Duration::from_secs(10);

/// How long a hard eviction gives the pod's containers (upstream's
/// `immediateEvictionGracePeriodSeconds`).
pub const HARD_EVICTION_GRACE: Duration = Duration::from_secs(1);

/// The eviction flags.
#[derive(Debug, Clone)]
pub struct EvictionConfig {
    /// `--eviction-hard` and `--eviction-soft` (with their grace periods and minimum reclaims).
    pub thresholds: Vec<Threshold>,
    /// `--eviction-pressure-transition-period`.
    pub pressure_transition_period: Duration,
    /// `--eviction-max-pod-grace-period`: the grace period of soft evictions (capped by the
    /// pod's own).
    pub max_pod_grace_period_seconds: i64,
    /// How often the signals are measured.
    pub monitoring_interval: Duration,
    /// Test hook: a file of `<signal>=<quantity or percent>` lines whose values replace the
    /// measured available amounts, read at every pass (absent or empty: the real figures).
    pub signal_overrides_file: Option<PathBuf>,
    /// Test hook shared with image GC: the image filesystem is this percent full.
    pub image_fs_usage_override: Option<u8>,
    /// Which images are old enough for the reclaim under disk pressure; none is reclaimed
    /// when image GC is off (a high threshold of 100).
    pub image_gc_policy: ImageGcPolicy,
}

/// What the eviction manager asks of the pod manager: stop this pod for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub uid: String,
    /// The pod's status message and the `Evicted` event's.
    pub message: String,
    /// The containers' grace period.
    pub grace: Duration,
}

/// The node conditions the eviction manager holds True, for the node status and admission.
pub type Pressure = watch::Receiver<BTreeSet<PressureCondition>>;

/// The channels the manager speaks through: created before it, since the node agent and the
/// pod manager start with their ends.
pub fn channels() -> (
    watch::Sender<BTreeSet<PressureCondition>>,
    Pressure,
    mpsc::UnboundedSender<Eviction>,
    mpsc::UnboundedReceiver<Eviction>,
) {
    let (ptx, prx) = watch::channel(BTreeSet::new());
    let (etx, erx) = mpsc::unbounded_channel();
    (ptx, prx, etx, erx)
}

pub struct EvictionManager {
    ctx: Arc<Context>,
    config: EvictionConfig,
    tracker: Tracker,
    pods: Arc<Informer<Pod>>,
    pressure: watch::Sender<BTreeSet<PressureCondition>>,
    evictions: mpsc::UnboundedSender<Eviction>,
    image_fs: Option<PathBuf>,
    images: Option<ImageGc>,
    /// Pods already handed over for eviction (their status may not say so yet).
    evicted: HashSet<String>,
}

impl EvictionManager {
    pub fn new(
        ctx: Arc<Context>,
        config: EvictionConfig,
        pods: Arc<Informer<Pod>>,
        pressure: watch::Sender<BTreeSet<PressureCondition>>,
        evictions: mpsc::UnboundedSender<Eviction>,
    ) -> EvictionManager {
        let tracker = Tracker::new(config.thresholds.clone(), config.pressure_transition_period);
        EvictionManager {
            ctx,
            config,
            tracker,
            pods,
            pressure,
            evictions,
            image_fs: None,
            images: None,
            evicted: HashSet::new(),
        }
    }

    /// Measures and acts every monitoring interval until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        match self.ctx.runtime.image_fs_path().await {
            Ok(Some(path)) => {
                // `--image-gc-high-threshold=100` says this engine's images must stay (local
                // clusters load theirs, tests share the machine's engine): then disk pressure
                // goes straight to pods. Upstream reclaims images regardless.
                if self.config.image_gc_policy.high_threshold_percent < 100 {
                    self.images = Some(ImageGc::new(
                        self.ctx.runtime.clone(),
                        self.ctx.api.clone(),
                        Box::new(Statvfs { path: path.clone() }),
                        &self.ctx.node_name,
                        self.config.image_gc_policy,
                    ));
                }
                self.image_fs = Some(path);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the image filesystem: no imagefs eviction signals")
            }
        }
        let mut tick = tokio::time::interval(self.config.monitoring_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.pass().await;
        }
    }

    /// Measures every signal (overrides applied).
    async fn observe(&self) -> Observations {
        let mut obs = Observations::new();
        let capacity = sysinfo::memory_kib() * 1024;
        if capacity > 0 {
            let available = match sysinfo::memory_working_set_bytes() {
                Some(ws) => capacity.saturating_sub(ws),
                None => sysinfo::memory_available_kib() * 1024,
            };
            obs.insert(
                Signal::MemoryAvailable,
                Observation {
                    available,
                    capacity,
                },
            );
        }
        let mut fs = |path: &Path, bytes: Signal, inodes: Signal| {
            if let Ok(s) = rustix::fs::statvfs(path) {
                obs.insert(
                    bytes,
                    Observation {
                        available: s.f_bavail.saturating_mul(s.f_frsize),
                        capacity: s.f_blocks.saturating_mul(s.f_frsize),
                    },
                );
                if s.f_files > 0 {
                    obs.insert(
                        inodes,
                        Observation {
                            available: s.f_ffree,
                            capacity: s.f_files,
                        },
                    );
                }
            }
        };
        fs(
            &self.ctx.root_dir,
            Signal::NodeFsAvailable,
            Signal::NodeFsInodesFree,
        );
        if let Some(path) = &self.image_fs {
            fs(path, Signal::ImageFsAvailable, Signal::ImageFsInodesFree);
        }
        if let (Some(percent), Some(o)) = (
            self.config.image_fs_usage_override,
            obs.get_mut(&Signal::ImageFsAvailable),
        ) {
            o.available = o.capacity / 100 * (100 - u64::from(percent.min(100)));
        }
        if let Some(file) = &self.config.signal_overrides_file {
            apply_overrides(&mut obs, &std::fs::read_to_string(file).unwrap_or_default());
        }
        obs
    }

    /// One pass of the manager: conditions, then at most one reclaim.
    pub async fn pass(&mut self) {
        let now = tokio::time::Instant::now();
        let obs = self.observe().await;
        let verdict = self.tracker.observe(&obs, now);
        self.pressure.send_if_modified(|c| {
            let changed = *c != verdict.conditions;
            if changed {
                tracing::info!(conditions = ?verdict.conditions, "node pressure changed");
                *c = verdict.conditions.clone();
            }
            changed
        });
        if let Some(gc) = &mut self.images
            && let Err(e) = gc.observe(std::time::Instant::now()).await
        {
            tracing::debug!(error = %e, "could not list images");
        }
        // Memory first, then hard thresholds before soft ones, as upstream's order.
        let mut due = verdict.reclaim;
        due.sort_by_key(|i| {
            let t = &self.tracker.thresholds()[*i];
            (t.signal != Signal::MemoryAvailable, !t.is_hard())
        });
        let Some(&i) = due.first() else { return };
        let threshold = self.tracker.thresholds()[i].clone();
        tracing::warn!(signal = %threshold.signal, "eviction threshold met; reclaiming");
        if threshold.signal.condition() == PressureCondition::DiskPressure
            && let Some(gc) = &mut self.images
        {
            match gc.delete_unused_images(std::time::Instant::now()).await {
                Ok(freed) => tracing::info!(bytes = freed, "removed unused images"),
                Err(e) => tracing::warn!(error = %e, "removing unused images failed"),
            }
            let obs = self.observe().await;
            if !self.tracker.is_met(i, &obs, true) {
                tracing::info!(signal = %threshold.signal, "node-level reclaim was enough; no pod evicted");
                return;
            }
        }
        let Some(&observation) = obs.get(&threshold.signal) else {
            return;
        };
        self.evict_one(&threshold, observation).await;
    }

    /// Evicts the first-ranked pod that may be evicted.
    async fn evict_one(&mut self, threshold: &Threshold, observation: Observation) {
        let resource = match threshold.signal {
            Signal::MemoryAvailable => "memory",
            _ => "ephemeral-storage",
        };
        let containers = self.ctx.runtime.list_containers().await.unwrap_or_default();
        let mut candidates = Vec::new();
        for pod in self.pods.list() {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed"))
                || pod.metadata.deletion_timestamp.is_some()
                || is_critical(&pod)
                || self.evicted.contains(&uid)
            {
                continue;
            }
            let spec = pod.spec.clone().unwrap_or_default();
            let mut usages = Vec::new();
            for c in &spec.containers {
                let running = containers.iter().find(|rc| {
                    rc.pod_uid == uid
                        && rc.name == c.name
                        && self.ctx.owns(&rc.labels)
                        && matches!(rc.state, ContainerState::Running { .. })
                });
                // Per-container disk usage is not measured: disk pressure ranks by
                // priority alone.
                let usage = match running {
                    Some(rc) if resource == "memory" => self
                        .ctx
                        .runtime
                        .stats(&rc.id)
                        .await
                        .map(|s| s.memory_working_set_bytes)
                        .unwrap_or(0),
                    _ => 0,
                };
                usages.push(ContainerUsage {
                    name: c.name.clone(),
                    usage,
                    request: request_of(c, resource),
                });
            }
            candidates.push(Candidate {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid,
                priority: spec.priority.unwrap_or(0),
                termination_grace_seconds: spec.termination_grace_period_seconds,
                containers: usages,
            });
        }
        rank(&mut candidates);
        let Some(victim) = candidates.into_iter().next() else {
            tracing::warn!(signal = %threshold.signal, "eviction threshold met, but no pod may be evicted");
            return;
        };
        let grace = if threshold.is_hard() {
            HARD_EVICTION_GRACE
        } else {
            let max = self.config.max_pod_grace_period_seconds.max(0);
            let secs = victim
                .termination_grace_seconds
                .map_or(max, |own| own.clamp(0, max));
            Duration::from_secs(secs as u64)
        };
        let message = eviction_message(threshold, observation, &victim);
        tracing::warn!(pod = %victim.name, namespace = %victim.namespace, %message, "evicting pod");
        self.evicted.insert(victim.uid.clone());
        let _ = self.evictions.send(Eviction {
            uid: victim.uid,
            message,
            grace,
        });
    }
}

/// Replaces observed available amounts by the lines of an overrides file
/// (`memory.available=50Mi`, `nodefs.available=5%`); bad lines are ignored with a warning.
pub fn apply_overrides(obs: &mut Observations, text: &str) {
    for line in text
        .lines()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let parsed = line.split_once('=').and_then(|(name, value)| {
            let signal = Signal::parse(name.trim())?;
            let value = value.trim();
            let amount = if let Some(p) = value.strip_suffix('%') {
                Amount::Percentage(p.parse::<f64>().ok()? / 100.0)
            } else {
                let q = skiff_api::Quantity::parse(value).ok()?;
                Amount::Quantity {
                    value: q.value().max(0) as u64,
                    text: value.into(),
                }
            };
            Some((signal, amount))
        });
        match parsed {
            Some((signal, amount)) => {
                let o = obs.entry(signal).or_insert(Observation {
                    available: 0,
                    capacity: 0,
                });
                o.available = amount.of(o.capacity);
            }
            None => tracing::warn!(line, "ignoring a bad eviction signal override"),
        }
    }
}

/// Whether a worker should run a pod it is about to start, as the kubelet's admission of a
/// new pod under node pressure; `Err` is its status message (reason `Evicted`).
pub fn admit_new(pressure: &Pressure, pod: &Pod) -> Result<(), String> {
    admit(&pressure.borrow(), pod)
}

/// The `{ MemoryPressure, DiskPressure }` conditions' (status, reason, message) as the kubelet
/// words them.
pub fn condition_words(condition: PressureCondition, active: bool) -> (&'static str, &'static str) {
    match (condition, active) {
        (PressureCondition::MemoryPressure, false) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (PressureCondition::MemoryPressure, true) => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        (PressureCondition::DiskPressure, false) => {
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
        }
        (PressureCondition::DiskPressure, true) => {
            ("KubeletHasDiskPressure", "kubelet has disk pressure")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakeApi;
    use skiff_runtime::{ContainerRuntime, FakeRuntime};

    /// A manager on the fake runtime whose signals come from `overrides`, with image reclaim
    /// on the fake engine's images.
    fn manager(
        runtime: &FakeRuntime,
        hard: &str,
        overrides: &std::path::Path,
        root: &std::path::Path,
    ) -> (EvictionManager, Pressure, mpsc::UnboundedReceiver<Eviction>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Nothing here reaches the API: the pod informer is never run (no pods).
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        let client = kube::Client::try_from(config).expect("a kube client");
        let api = Arc::new(FakeApi::new());
        let (_tx, pod_network) = watch::channel(None);
        let ctx = Arc::new(Context {
            client: client.clone(),
            api: api.clone(),
            reviews: api,
            runtime: Arc::new(runtime.clone()),
            node_name: "n1".into(),
            node_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            root_dir: root.to_path_buf(),
            pod_network,
            port: 10250,
            dns: crate::dns::DnsSettings {
                cluster_dns: Vec::new(),
                cluster_domain: "cluster.local".into(),
                host: Default::default(),
            },
            memory_volumes: false,
        });
        let policy = ImageGcPolicy {
            minimum_image_ttl: Duration::ZERO,
            ..Default::default()
        };
        let config = EvictionConfig {
            thresholds: parse_thresholds(hard, "", "", "").unwrap(),
            pressure_transition_period: Duration::from_secs(300),
            max_pod_grace_period_seconds: 0,
            monitoring_interval: DEFAULT_MONITORING_INTERVAL,
            signal_overrides_file: Some(overrides.to_path_buf()),
            image_fs_usage_override: None,
            image_gc_policy: policy,
        };
        let pods = crate::manager::pod_informer(&ctx);
        let (ptx, prx, etx, erx) = channels();
        let mut m = EvictionManager::new(ctx.clone(), config, pods, ptx, etx);
        m.images = Some(ImageGc::new(
            ctx.runtime.clone(),
            ctx.api.clone(),
            Box::new(Statvfs {
                path: root.to_path_buf(),
            }),
            "n1",
            policy,
        ));
        (m, prx, erx)
    }

    #[tokio::test]
    async fn disk_pressure_removes_unused_images_before_any_pod_and_reports_the_condition() {
        let runtime = FakeRuntime::new();
        runtime.add_image_of_size("unused:1", 1 << 20);
        let dir = tempfile::tempdir().unwrap();
        let overrides = dir.path().join("signals");
        std::fs::write(&overrides, "nodefs.available=1%\n").unwrap();
        let (mut m, pressure, mut evictions) = manager(
            &runtime,
            "memory.available<1Ki,nodefs.available<10%",
            &overrides,
            dir.path(),
        );
        m.pass().await;
        assert_eq!(
            *pressure.borrow(),
            BTreeSet::from([PressureCondition::DiskPressure])
        );
        assert!(runtime.list_images().await.unwrap().is_empty());
        // The override keeps the disk full, but no pod is there to evict.
        assert!(evictions.try_recv().is_err());
        // Cleared: the condition holds for the transition period.
        std::fs::write(&overrides, "").unwrap();
        m.pass().await;
        assert_eq!(pressure.borrow().len(), 1);
    }

    #[test]
    fn overrides_replace_the_measured_amounts() {
        let mut obs = Observations::new();
        obs.insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 900,
                capacity: 1000,
            },
        );
        apply_overrides(
            &mut obs,
            "memory.available=50Mi\n# comment\nnodefs.available=5%, bogus=1\n",
        );
        assert_eq!(obs[&Signal::MemoryAvailable].available, 50 << 20);
        assert_eq!(obs[&Signal::NodeFsAvailable].available, 50);
        assert_eq!(obs[&Signal::NodeFsAvailable].capacity, 1000);
    }
}
