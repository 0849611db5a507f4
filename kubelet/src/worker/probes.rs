//! Running a container's startup, liveness and readiness probes and acting on their
//! verdicts: a failed startup or liveness probe kills the container, readiness gates Ready.

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use skiff_client::events::EventType;
use skiff_runtime::ContainerState;

use super::Worker;
use crate::probe;

impl Worker {
    /// Runs the container's due probes: a failed startup or liveness probe kills the container
    /// (the restart policy then applies); readiness only gates Ready.
    pub(super) async fn run_probes(&mut self, c: &Container) {
        let pod_ip = self.sandbox.ip();
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
}
