//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable` NoSchedule taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Reasons};
use crate::plugins::taint_toleration::tolerates;
use crate::podinfo::PodInfo;

pub const REASON: &str = "node(s) were unschedulable";

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(data) = &node.node else {
            return Ok(());
        };
        if !data.unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if tolerates(&pod.tolerations, &taint) {
            Ok(())
        } else {
            Err(vec![REASON.into()])
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
    fn cordoned_nodes_refuse_unless_tolerated() {
        let cordoned = || {
            let mut n = NodeInfo::for_test("n", 1000, 1 << 30, 10);
            std::sync::Arc::make_mut(n.node.as_mut().unwrap()).unschedulable = true;
            n
        };
        let cases = [
            ("plain pod on open node", PodBuilder::new("p"), false, None),
            ("plain pod on cordoned node", PodBuilder::new("p"), true, Some(REASON)),
            (
                "tolerating pod",
                PodBuilder::new("p").toleration(json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"})),
                true,
                None,
            ),
        ];
        for (name, pod, cordon, want) in cases {
            let node = if cordon {
                cordoned()
            } else {
                NodeInfo::for_test("n", 1000, 1 << 30, 10)
            };
            let got = filter_all(&NodeUnschedulable, &pod.info(), vec![node]);
            assert_eq!(got[0].as_deref(), want, "{name}");
        }
    }
}
