//! Liveness, readiness and startup probes: when each is due and what its verdict is, with
//! Kubernetes' initial delay, period, timeout and success/failure thresholds. The action
//! itself (exec, httpGet, tcpSocket) runs through [`crate::handler`].

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use skiff_runtime::ContainerRuntime;
// Tokio's clock, so that tests can pause and advance it.
use tokio::time::Instant;

use crate::handler::{self, Action, Caller, Target};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// The running tally of one probe of one container attempt.
#[derive(Debug, Clone)]
pub struct Tracker {
    started: Instant,
    next: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The probe's verdict so far (None until it has one).
    pub result: Option<bool>,
    /// The last failure's message.
    pub message: Option<String>,
}

impl Tracker {
    /// Consecutive failed attempts so far.
    pub fn failures(&self) -> i32 {
        self.failures
    }

    pub fn new() -> Self {
        Tracker {
            started: Instant::now(),
            next: None,
            successes: 0,
            failures: 0,
            result: None,
            message: None,
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the probe if it is due and updates the tracker; returns true when it changed the
/// verdict.
pub async fn step(
    tracker: &mut Tracker,
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: Option<&str>,
    runtime: &dyn ContainerRuntime,
) -> bool {
    let now = Instant::now();
    let due = match tracker.next {
        Some(t) => now >= t,
        None => {
            now >= tracker.started
                + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)
        }
    };
    if !due {
        return false;
    }
    tracker.next =
        Some(now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
    let before = tracker.result;
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let target = Target {
        runtime,
        container,
        container_id,
        pod_ip,
    };
    match handler::run(Caller::Probe, Action::of_probe(probe), &target, timeout).await {
        Ok(()) => {
            tracker.failures = 0;
            tracker.successes += 1;
            if tracker.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                tracker.result = Some(true);
                tracker.message = None;
            }
        }
        Err(message) => {
            tracker.successes = 0;
            tracker.failures += 1;
            tracker.message = Some(message);
            if tracker.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                tracker.result = Some(false);
            }
        }
    }
    before != tracker.result
}
