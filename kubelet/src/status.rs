//! Pod status as Kubernetes reports it: phase, conditions and container statuses, built from
//! what the worker knows about each container.

use std::time::SystemTime;

use serde_json::{Value, json};
use skiff_runtime::ContainerState;

pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    jiff::Timestamp::from_second(secs)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

pub fn now() -> String {
    rfc3339(SystemTime::now())
}

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
