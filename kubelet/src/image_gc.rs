//! Image garbage collection: when the image filesystem (Docker's data root) is fuller than
//! `--image-gc-high-threshold` percent, the kubelet removes images no container uses, least
//! recently used first, until usage is back under `--image-gc-low-threshold`; images it first
//! saw less than `--minimum-image-ttl-duration` ago and the pause image are kept. As the
//! kubelet's image GC manager, it reports `FreeDiskSpaceFailed` on the Node when it cannot free
//! enough, and `ImageGCFailed` when a run fails twice in a row.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use skiff_client::events::EventType;
use skiff_runtime::{ContainerRuntime, PAUSE_IMAGE, RuntimeError};
use tokio_util::sync::CancellationToken;

use crate::api::PodApi;

/// How often the collector runs (the kubelet's `ImageGCPeriod`).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5 * 60);

/// The thresholds, from the kubelet's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// `--image-gc-high-threshold`: collect when usage is at or above this percent.
    pub high_threshold_percent: u8,
    /// `--image-gc-low-threshold`: collect down to this percent.
    pub low_threshold_percent: u8,
    /// `--minimum-image-ttl-duration`: never remove an image seen for less than this.
    pub minimum_image_ttl: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        ImageGcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            minimum_image_ttl: Duration::from_secs(120),
        }
    }
}

impl ImageGcPolicy {
    /// Checks the thresholds as the kubelet validates its configuration.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_threshold_percent > 100 {
            return Err(format!(
                "--image-gc-high-threshold must be between 0 and 100, not {}",
                self.high_threshold_percent
            ));
        }
        if self.low_threshold_percent > 100 {
            return Err(format!(
                "--image-gc-low-threshold must be between 0 and 100, not {}",
                self.low_threshold_percent
            ));
        }
        if self.low_threshold_percent >= self.high_threshold_percent {
            return Err(format!(
                "--image-gc-low-threshold ({}) must be less than --image-gc-high-threshold ({})",
                self.low_threshold_percent, self.high_threshold_percent
            ));
        }
        Ok(())
    }
}

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub capacity: u64,
    /// What an unprivileged writer may still use (statvfs' `f_bavail`).
    pub available: u64,
}

/// Where the collector learns how full the image filesystem is: the real filesystem, or a
/// fixed figure in tests.
pub trait DiskUsage: Send + Sync + 'static {
    fn stats(&self) -> std::io::Result<FsStats>;
}

/// The filesystem holding a folder, through statvfs.
#[derive(Debug, Clone)]
pub struct Statvfs {
    pub path: PathBuf,
}

impl DiskUsage for Statvfs {
    fn stats(&self) -> std::io::Result<FsStats> {
        let s = rustix::fs::statvfs(&self.path)?;
        Ok(FsStats {
            capacity: s.f_blocks.saturating_mul(s.f_frsize),
            available: s.f_bavail.saturating_mul(s.f_frsize),
        })
    }
}

/// A filesystem that always reports the same usage percent of another one's capacity (the
/// kubelet's hidden test flag `--image-fs-usage-override`): removing images never brings
/// it down, so a run frees every image it may.
#[derive(Debug, Clone)]
pub struct FixedUsage<D> {
    pub real: D,
    pub percent: u8,
}

impl<D: DiskUsage> DiskUsage for FixedUsage<D> {
    fn stats(&self) -> std::io::Result<FsStats> {
        let capacity = self.real.stats()?.capacity;
        let used = capacity / 100 * u64::from(self.percent.min(100));
        Ok(FsStats {
            capacity,
            available: capacity - used,
        })
    }
}

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("failed to get the image filesystem's usage: {0}")]
    Stats(#[from] std::io::Error),
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free."
    )]
    NotEnoughFreed { wanted: u64, freed: u64 },
    #[error("failed to remove images: {}", .0.join("; "))]
    Removals(Vec<String>),
}

/// What the collector remembers about one image.
#[derive(Debug, Clone)]
struct Record {
    first_detected: Instant,
    /// When a container last used it, as far as this kubelet has seen.
    last_used: Option<Instant>,
    size: u64,
    in_use: bool,
    pinned: bool,
}

/// The collector: its records of images and what it talks to.
pub struct ImageGc {
    runtime: Arc<dyn ContainerRuntime>,
    api: Arc<dyn PodApi>,
    disk: Box<dyn DiskUsage>,
    node_name: String,
    policy: ImageGcPolicy,
    records: HashMap<String, Record>,
}

impl ImageGc {
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        api: Arc<dyn PodApi>,
        disk: Box<dyn DiskUsage>,
        node_name: &str,
        policy: ImageGcPolicy,
    ) -> ImageGc {
        ImageGc {
            runtime,
            api,
            disk,
            node_name: node_name.to_string(),
            policy,
            records: HashMap::new(),
        }
    }

    fn node_ref(&self) -> ObjectReference {
        ObjectReference {
            kind: Some("Node".into()),
            name: Some(self.node_name.clone()),
            uid: Some(self.node_name.clone()),
            ..Default::default()
        }
    }

    /// Refreshes the records from the engine: new images are first detected `now`, images in
    /// use are used `now`, images gone are forgotten.
    async fn detect(&mut self, now: Instant) -> Result<(), RuntimeError> {
        let images = self.runtime.list_images().await?;
        let in_use = self.runtime.images_in_use().await?;
        self.records
            .retain(|id, _| images.iter().any(|image| &image.id == id));
        for image in images {
            let record = self.records.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: None,
                size: 0,
                in_use: false,
                pinned: false,
            });
            record.size = image.size_bytes;
            record.in_use = in_use.contains(&image.id);
            record.pinned = image.repo_tags.iter().any(|t| t == PAUSE_IMAGE);
            if record.in_use {
                record.last_used = Some(now);
            }
        }
        Ok(())
    }

    /// One run: refreshes the records and, when the disk is at or over the high threshold,
    /// frees space down to the low one. Returns the IDs of the images removed.
    pub async fn collect(&mut self, now: Instant) -> Result<Vec<String>, GcError> {
        self.detect(now).await?;
        let FsStats {
            capacity,
            available,
        } = self.disk.stats()?;
        if capacity == 0 {
            let err = GcError::InvalidCapacity;
            self.api.event(
                self.node_ref(),
                EventType::Warning,
                "InvalidDiskCapacity",
                err.to_string(),
            );
            return Err(err);
        }
        let usage = 100 - (u128::from(available) * 100 / u128::from(capacity)) as u64;
        if usage < u64::from(self.policy.high_threshold_percent) {
            return Ok(Vec::new());
        }
        let target_available = (u128::from(capacity)
            * u128::from(100 - self.policy.low_threshold_percent)
            / 100) as u64;
        let wanted = target_available.saturating_sub(available);
        tracing::info!(
            usage,
            high_threshold = self.policy.high_threshold_percent,
            low_threshold = self.policy.low_threshold_percent,
            bytes = wanted,
            "image filesystem over the high threshold; removing unused images"
        );
        let (removed, freed, failures) = self.free(wanted, now).await;
        if !failures.is_empty() {
            return Err(GcError::Removals(failures));
        }
        if freed < wanted {
            let err = GcError::NotEnoughFreed { wanted, freed };
            self.api.event(
                self.node_ref(),
                EventType::Warning,
                "FreeDiskSpaceFailed",
                err.to_string(),
            );
            return Err(err);
        }
        Ok(removed)
    }

    /// Refreshes what the collector knows of the engine's images (when each was first seen
    /// and last used), for a collector that is not run on a period (the eviction manager's).
    pub async fn observe(&mut self, now: Instant) -> Result<(), RuntimeError> {
        self.detect(now).await
    }

    /// Removes every unused, unpinned image old enough, whatever the thresholds: the
    /// eviction manager's reclaim under disk pressure (upstream's `DeleteUnusedImages`).
    /// Returns the bytes freed.
    pub async fn delete_unused_images(&mut self, now: Instant) -> Result<u64, GcError> {
        self.detect(now).await?;
        let (_, freed, failures) = self.free(u64::MAX, now).await;
        if !failures.is_empty() {
            return Err(GcError::Removals(failures));
        }
        Ok(freed)
    }

    /// Removes unused, unpinned images old enough, least recently used (then first detected)
    /// first, until `wanted` bytes are freed. Returns what it removed, the bytes freed and the
    /// removals that failed.
    async fn free(&mut self, wanted: u64, now: Instant) -> (Vec<String>, u64, Vec<String>) {
        let mut candidates: Vec<(String, Record)> = self
            .records
            .iter()
            .filter(|(_, r)| !r.in_use && !r.pinned)
            .filter(|(_, r)| now.duration_since(r.first_detected) >= self.policy.minimum_image_ttl)
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
        // Never-used images sort first (None < Some); ties go by ID so runs are repeatable.
        candidates.sort_by(|(a_id, a), (b_id, b)| {
            (a.last_used, a.first_detected, a_id).cmp(&(b.last_used, b.first_detected, b_id))
        });
        let (mut removed, mut freed, mut failures) = (Vec::new(), 0u64, Vec::new());
        for (id, record) in candidates {
            if freed >= wanted {
                break;
            }
            tracing::info!(image = %id, size = record.size, "removing unused image");
            match self.runtime.remove_image(&id).await {
                Ok(()) => {
                    self.records.remove(&id);
                    freed += record.size;
                    removed.push(id);
                }
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "removing an unused image failed");
                    failures.push(e.to_string());
                }
            }
        }
        (removed, freed, failures)
    }

    /// Runs [`ImageGc::collect`] every `period` (the first at once) until `shutdown`. A failure
    /// is logged; a second in a row is also reported on the Node as `ImageGCFailed`, since
    /// the first may only mean the engine is still starting.
    pub async fn run(mut self, period: Duration, shutdown: CancellationToken) {
        let mut failed_before = false;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.collect(Instant::now()).await {
                Ok(_) => failed_before = false,
                Err(e) if failed_before => {
                    tracing::error!(error = %e, "image garbage collection failed multiple times in a row");
                    self.api.event(
                        self.node_ref(),
                        EventType::Warning,
                        "ImageGCFailed",
                        e.to_string(),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "image garbage collection failed once");
                    failed_before = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakeApi;
    use skiff_runtime::{ContainerConfig, FakeRuntime, SandboxConfig, SandboxNetwork};

    const MIB: u64 = 1 << 20;

    /// A disk of 100 MiB with `used` MiB used.
    struct Disk(u64);

    impl DiskUsage for Disk {
        fn stats(&self) -> std::io::Result<FsStats> {
            Ok(FsStats {
                capacity: 100 * MIB,
                available: (100 - self.0) * MIB,
            })
        }
    }

    fn gc(runtime: &FakeRuntime, api: &Arc<FakeApi>, used_mib: u64, ttl: Duration) -> ImageGc {
        ImageGc::new(
            Arc::new(runtime.clone()),
            api.clone(),
            Box::new(Disk(used_mib)),
            "n1",
            ImageGcPolicy {
                high_threshold_percent: 85,
                low_threshold_percent: 80,
                minimum_image_ttl: ttl,
            },
        )
    }

    async fn run_container(runtime: &FakeRuntime, image: &str) -> String {
        let sandbox = runtime
            .run_sandbox(&SandboxConfig {
                namespace: "default".into(),
                name: format!("pod-{image}"),
                uid: format!("uid-{image}"),
                hostname: "pod".into(),
                network: SandboxNetwork::None,
                port_mappings: Vec::new(),
                labels: Default::default(),
                dns_servers: Vec::new(),
                dns_searches: Vec::new(),
                dns_options: Vec::new(),
                extra_hosts: Vec::new(),
            })
            .await
            .unwrap();
        runtime
            .create_container(
                &sandbox.id,
                &ContainerConfig {
                    name: "main".into(),
                    image: image.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    fn id(image: &str) -> String {
        FakeRuntime::image_id(image)
    }

    async fn present(runtime: &FakeRuntime) -> Vec<String> {
        let mut tags: Vec<String> = runtime
            .list_images()
            .await
            .unwrap()
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect();
        tags.sort();
        tags
    }

    #[tokio::test]
    async fn below_the_high_threshold_nothing_goes() {
        let runtime = FakeRuntime::new();
        runtime.add_image_of_size("old:1", 10 * MIB);
        let api = Arc::new(FakeApi::new());
        let mut gc = gc(&runtime, &api, 84, Duration::ZERO);
        assert_eq!(
            gc.collect(Instant::now()).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(present(&runtime).await, ["old:1"]);
    }

    #[tokio::test]
    async fn least_recently_used_go_first_until_under_the_low_threshold() {
        let runtime = FakeRuntime::new();
        for image in ["a:1", "b:1", "c:1"] {
            runtime.add_image_of_size(image, 3 * MIB);
        }
        let api = Arc::new(FakeApi::new());
        let t0 = Instant::now();
        // 90% used: 10 MiB must go to reach 80%.
        let mut gc = gc(&runtime, &api, 90, Duration::ZERO);
        // b is used, then its container goes away: it was used more recently than a and c,
        // which were never used; c is detected later than a.
        let b = run_container(&runtime, "b:1").await;
        gc.detect(t0).await.unwrap();
        runtime.remove_container(&b).await.unwrap();
        runtime.add_image_of_size("d:1", 3 * MIB);
        let t1 = t0 + Duration::from_secs(1);
        gc.detect(t1).await.unwrap();
        // Order: a and c (never used, detected at t0; between them by ID), d (never used,
        // detected at t1), b. 3 + 3 + 3 = 9 MiB is not enough; b's 3 more make 12.
        let removed = gc.collect(t1 + Duration::from_secs(1)).await.unwrap();
        let mut first = [id("a:1"), id("c:1")];
        first.sort();
        assert_eq!(removed[..2], first);
        assert_eq!(removed[2..], [id("d:1"), id("b:1")]);

        let runtime = FakeRuntime::new();
        for image in ["a:1", "b:1", "c:1"] {
            runtime.add_image_of_size(image, 6 * MIB);
        }
        let mut gc = super::tests::gc(&runtime, &api, 90, Duration::ZERO);
        let b = run_container(&runtime, "b:1").await;
        gc.detect(t0).await.unwrap();
        runtime.remove_container(&b).await.unwrap();
        // a (6) and c (6) free 12 MiB >= 10: b, used lately, stays.
        let mut removed = gc.collect(t1).await.unwrap();
        removed.sort();
        let mut expected = [id("a:1"), id("c:1")];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(present(&runtime).await, ["b:1"]);
    }

    #[tokio::test]
    async fn images_in_use_the_pause_image_and_young_images_stay() {
        let runtime = FakeRuntime::new();
        runtime.add_image_of_size(PAUSE_IMAGE, MIB);
        runtime.add_image_of_size("running:1", MIB);
        runtime.add_image_of_size("stopped:1", MIB);
        runtime.add_image_of_size("unused:1", MIB);
        let api = Arc::new(FakeApi::new());
        let t0 = Instant::now();
        let mut gc = gc(&runtime, &api, 90, Duration::from_secs(120));
        let running = run_container(&runtime, "running:1").await;
        runtime.start_container(&running).await.unwrap();
        // A container that exited (and is kept for its logs) still holds its image.
        run_container(&runtime, "stopped:1").await;
        gc.detect(t0).await.unwrap();
        runtime.add_image_of_size("young:1", MIB);

        let err = gc.collect(t0 + Duration::from_secs(121)).await.unwrap_err();
        assert_eq!(
            present(&runtime).await,
            ["running:1", PAUSE_IMAGE, "stopped:1", "young:1"]
        );
        // Not enough could go: the Node hears why, in Kubernetes' words.
        assert!(
            matches!(err, GcError::NotEnoughFreed { wanted, freed } if wanted == 10 * MIB && freed == MIB)
        );
        let events = api.events();
        let last = events.last().expect("an event");
        assert_eq!(last.reason, "FreeDiskSpaceFailed");
        assert_eq!(last.type_, EventType::Warning);
        assert_eq!(
            last.message,
            format!(
                "Failed to garbage collect required amount of images. Attempted to free {} bytes, but only found {} bytes eligible to free.",
                10 * MIB,
                MIB
            )
        );
    }

    #[test]
    fn thresholds_are_validated() {
        assert!(ImageGcPolicy::default().validate().is_ok());
        let bad = ImageGcPolicy {
            high_threshold_percent: 80,
            low_threshold_percent: 80,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("must be less than"));
        let bad = ImageGcPolicy {
            high_threshold_percent: 101,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn fixed_usage_keeps_the_real_capacity() {
        let fixed = FixedUsage {
            real: Disk(10),
            percent: 90,
        };
        let s = fixed.stats().unwrap();
        assert_eq!(s.capacity, 100 * MIB);
        assert_eq!(s.available, 10 * MIB);
    }
}
