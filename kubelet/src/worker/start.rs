//! Starting containers and restarting them: restartPolicy (Always, OnFailure, Never) with
//! Kubernetes' CrashLoopBackOff, image pulls with ImagePullBackOff, and the attempts kept for
//! `kubectl logs --previous`.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Container;
use serde_json::{Value, json};
use skiff_client::events::EventType;
use skiff_common::Backoff;
use skiff_runtime::{ContainerState, RuntimeError};
use tokio::time::Instant;

use super::status::state_json;
use super::{Worker, container};
use crate::probe;

/// Kubernetes' container restart backoff: 10 s doubling to 5 min, reset after 10 min running.
pub(super) const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);

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

impl Worker {
    /// Starts (or restarts, per policy and backoff) one container if it should be running.
    pub(super) async fn ensure_started(&mut self, c: &Container, policy: &str) {
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
        let image_id = match runtime
            .ensure_image(&image, container::pull_policy(c))
            .await
        {
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
            .ready()
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
                finished_at: Some(SystemTime::now()),
            });
            slot.last_state = Some(
                json!({ "terminated": { "exitCode": 128, "reason": "StartError", "message": e.to_string(), "containerID": format!("docker://{id}") } }),
            );
            slot.waiting = Some(("RunContainerError".into(), e.to_string()));
        }
    }

    /// [kubelet server] Removes this pod's exited attempts of container `name` other than
    /// `keep` (the previous attempt that `logs --previous` reads).
    pub(super) async fn remove_attempts_except(&self, name: &str, keep: Option<&str>) {
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
}
