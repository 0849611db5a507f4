//! NodeReady: a node whose Ready condition is not True takes no new pods. Kubernetes expresses
//! this through the `node.kubernetes.io/not-ready` and `unreachable` NoSchedule taints that the
//! node lifecycle controller adds; this filter applies the same rule straight from the
//! condition (so a node is avoided the moment it reports trouble) and words the refusal as
//! Kubernetes does. Pods that tolerate the taint (DaemonSet pods) still fit.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Reasons};
use crate::plugins::taint_toleration::tolerates;
use crate::podinfo::PodInfo;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub struct NodeReady;

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(data) = &node.node else {
            return Ok(());
        };
        let key = match data.ready.as_deref() {
            Some("True") => return Ok(()),
            Some("False") => NOT_READY,
            _ => UNREACHABLE,
        };
        // Already expressed as a taint: TaintToleration will judge it.
        if data.taints.iter().any(|t| t.key == key) {
            return Ok(());
        }
        let taint = Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if tolerates(&pod.tolerations, &taint) {
            Ok(())
        } else {
            Err(vec![
                format!("node(s) had untolerated taint {{{key}: }}").into(),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::filter_all;
    use crate::testing::PodBuilder;
    use serde_json::json;

    #[test]
    fn ready_condition_decides() {
        let node = |ready: Option<&str>| {
            let mut n = NodeInfo::for_test("n", 1000, 1 << 30, 10);
            std::sync::Arc::make_mut(n.node.as_mut().unwrap()).ready = ready.map(String::from);
            n
        };
        let plain = || PodBuilder::new("p");
        let cases = [
            ("ready", plain(), Some("True"), None),
            (
                "not ready",
                plain(),
                Some("False"),
                Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
            (
                "unknown",
                plain(),
                Some("Unknown"),
                Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
            ),
            (
                "never reported",
                plain(),
                None,
                Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
            ),
            (
                "tolerating pod",
                plain().toleration(
                    json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists"}),
                ),
                Some("False"),
                None,
            ),
            (
                "tolerate-everything pod",
                plain().toleration(json!({"operator": "Exists"})),
                Some("Unknown"),
                None,
            ),
        ];
        for (name, pod, ready, want) in cases {
            let got = filter_all(&NodeReady, &pod.info(), vec![node(ready)]);
            assert_eq!(got[0].as_deref(), want, "{name}");
        }
    }
}
