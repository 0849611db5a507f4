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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::hooks::{Hooks, KindHooks};

    /// A Pod, on `node` if given, in `phase` if given, with `terminationGracePeriodSeconds` if
    /// given.
    fn pod(node: Option<&str>, phase: Option<&str>, termination_grace: Option<i64>) -> Value {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": "p", "namespace": "default" },
            "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
        });
        if let Some(n) = node {
            pod["spec"]["nodeName"] = json!(n);
        }
        if let Some(g) = termination_grace {
            pod["spec"]["terminationGracePeriodSeconds"] = json!(g);
        }
        if let Some(p) = phase {
            pod["status"] = json!({ "phase": p });
        }
        pod
    }

    #[test]
    fn grace_period() {
        let hooks = Hooks::of("", "pods");
        assert!(matches!(hooks, Hooks::Pod(_)));
        #[rustfmt::skip]
        let cases: &[(&str, Value, Option<i64>, i64)] = &[
            ("unscheduled pod goes at once", pod(None, Some("Pending"), Some(60)), Some(30), 0),
            ("empty nodeName is unscheduled", pod(Some(""), None, None), None, 0),
            ("succeeded pod goes at once", pod(Some("n1"), Some("Succeeded"), None), Some(30), 0),
            ("failed pod goes at once", pod(Some("n1"), Some("Failed"), None), None, 0),
            ("running pod: default 30 s", pod(Some("n1"), Some("Running"), None), None, 30),
            ("the pod's own period", pod(Some("n1"), Some("Running"), Some(10)), None, 10),
            ("the request wins", pod(Some("n1"), Some("Running"), Some(10)), Some(5), 5),
            ("zero requested: at once", pod(Some("n1"), None, None), Some(0), 0),
            ("negative requested: at once", pod(Some("n1"), None, None), Some(-3), 0),
            ("negative in the spec: at once", pod(Some("n1"), None, Some(-1)), None, 0),
        ];
        for (what, pod, requested, want) in cases {
            assert_eq!(hooks.grace_period(pod, *requested), *want, "{what}");
        }
    }

    #[test]
    fn other_kinds_delete_at_once() {
        let running = pod(Some("n1"), Some("Running"), Some(10));
        for (group, resource) in [("", "configmaps"), ("example.com", "pods")] {
            assert_eq!(
                Hooks::of(group, resource).grace_period(&running, Some(5)),
                0,
                "{group}/{resource}"
            );
        }
    }
}
