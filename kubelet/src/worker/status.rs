//! Pod status as Kubernetes reports it: phase, conditions and container statuses, built from
//! what the worker knows about each container, and written when it changes.

use k8s_openapi::api::core::v1::Container;
use serde_json::{Value, json};
use skiff_common::time::{now, rfc3339_system as rfc3339};
use skiff_runtime::ContainerState;

use super::{Sandbox, Slot, Worker};

/// A container's `state` (or `lastState`) object.
pub fn state_json(state: &ContainerState, container_id: &str) -> Value {
    match state {
        ContainerState::Running { started_at } => {
            json!({ "running": { "startedAt": rfc3339(*started_at) } })
        }
        ContainerState::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => {
            let mut t = json!({ "exitCode": exit_code, "reason": reason, "containerID": format!("docker://{container_id}") });
            if let Some(s) = started_at {
                t["startedAt"] = json!(rfc3339(*s));
            }
            if let Some(f) = finished_at {
                t["finishedAt"] = json!(rfc3339(*f));
            }
            json!({ "terminated": t })
        }
        ContainerState::Created | ContainerState::Unknown => {
            json!({ "waiting": { "reason": "ContainerCreating" } })
        }
    }
}

/// A `waiting` state with reason and message.
pub fn waiting(reason: &str, message: Option<&str>) -> Value {
    let mut w = json!({ "reason": reason });
    if let Some(m) = message {
        w["message"] = json!(m);
    }
    json!({ "waiting": w })
}

/// One pod condition, keeping the transition time of `old` when the status did not change.
pub fn condition(old: Option<&Value>, ty: &str, ok: bool, reason: Option<&str>) -> Value {
    let status = if ok { "True" } else { "False" };
    let old_same = old
        .and_then(|o| {
            o.get("conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == ty)
                .cloned()
        })
        .filter(|c| c["status"] == status);
    let since = old_same
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now()));
    let mut c =
        json!({ "type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": since });
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// Adds to `status` the conditions of `old` that others wrote (`DisruptionTarget` from an
/// eviction or a preemption, readiness gates' types): the status is written as a merge
/// patch, which replaces the whole list, and the kubelet's status manager keeps the
/// conditions it does not own.
fn keep_others_conditions(status: &mut Value, old: Option<&Value>) {
    let Some(old) = old
        .and_then(|o| o.get("conditions"))
        .and_then(Value::as_array)
    else {
        return;
    };
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    let others: Vec<Value> = old
        .iter()
        .filter(|c| !conditions.iter().any(|own| own["type"] == c["type"]))
        .cloned()
        .collect();
    conditions.extend(others);
}

impl Worker {
    /// Whether a container's probes let it count as started and ready.
    fn probes_pass(c: &Container, slot: &Slot) -> (bool, bool) {
        let started = c.startup_probe.is_none() || slot.startup.result == Some(true);
        let ready = started && (c.readiness_probe.is_none() || slot.readiness.result == Some(true));
        (started, ready)
    }

    /// The pod's status as the worker sees it now.
    pub(super) fn pod_status(&self) -> Value {
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
        } else if self.sandbox.ready().is_some()
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
                condition(old_ref, "PodReadyToStartContainers", self.sandbox.ready().is_some(), None),
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
            self.sandbox.ip()
        };
        if let Some(ip) = pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{ "ip": ip }]);
        }
        if let Sandbox::Failed(msg) = &self.sandbox {
            status["message"] = json!(msg);
        }
        if let Some(t) = &self.terminal {
            status["phase"] = json!("Failed");
            status["reason"] = json!(t.reason);
            status["message"] = json!(t.message);
            if t.disruption
                && let Some(conditions) = status["conditions"].as_array_mut()
            {
                let mut c = condition(
                    old_ref,
                    "DisruptionTarget",
                    true,
                    Some("TerminationByKubelet"),
                );
                c["message"] = json!(t.message);
                conditions.push(c);
            }
        }
        keep_others_conditions(&mut status, old_ref);
        status
    }

    /// Builds the status and writes it if it changed.
    pub(super) async fn report(&mut self) {
        let status = self.pod_status();
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        match self
            .ctx
            .api
            .patch_pod_status(self.namespace(), self.name(), &status)
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
