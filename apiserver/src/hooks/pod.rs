//! Pod hooks: a Pod on a node is deleted gracefully, since its kubelet must stop the containers
//! first and then finishes the delete.

use serde_json::Value;

use super::KindHooks;

#[derive(Debug, Clone, Copy)]
pub struct PodHooks;

impl KindHooks for PodHooks {
    /// An unscheduled or finished Pod has nothing to stop: it goes at once. Otherwise the
    /// requested grace period, else the Pod's `terminationGracePeriodSeconds`, else 30 s.
    fn grace_period(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let scheduled = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !scheduled || finished {
            return 0;
        }
        requested
            .unwrap_or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            })
            .max(0)
    }
}
