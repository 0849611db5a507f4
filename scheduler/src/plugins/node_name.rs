//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Reasons};
use crate::podinfo::PodInfo;

pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        match &pod.node_name {
            Some(n) if *n != node.name => Err(vec![REASON.into()]),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::filter_all;
    use crate::testing::PodBuilder;

    #[test]
    fn only_the_named_node_fits() {
        let nodes = || {
            vec![
                NodeInfo::for_test("a", 1, 1, 1),
                NodeInfo::for_test("b", 1, 1, 1),
            ]
        };
        assert_eq!(
            filter_all(&NodeName, &PodBuilder::new("p").info(), nodes()),
            vec![None, None]
        );
        assert_eq!(
            filter_all(
                &NodeName,
                &PodBuilder::new("p").on_node("b").info(),
                nodes()
            ),
            vec![Some(REASON.to_string()), None]
        );
    }
}
