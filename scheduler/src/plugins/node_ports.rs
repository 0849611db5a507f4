//! NodePorts: a pod asking for a host port fits only on nodes where no pod holds that port
//! (same protocol, and the same address or either on all addresses).

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Reasons};
use crate::podinfo::PodInfo;

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let taken = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Err(vec![REASON.into()])
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_util::filter_all;
    use crate::testing::PodBuilder;

    #[test]
    fn host_ports_are_exclusive() {
        let nodes = || {
            vec![
                NodeInfo::for_test("a", 1000, 1 << 30, 10)
                    .with_pod(PodBuilder::new("web").host_port(8080).on_node("a").info()),
                NodeInfo::for_test("b", 1000, 1 << 30, 10),
            ]
        };
        let r = Some(REASON.to_string());
        assert_eq!(
            filter_all(
                &NodePorts,
                &PodBuilder::new("p").host_port(8080).info(),
                nodes()
            ),
            vec![r, None]
        );
        assert_eq!(
            filter_all(
                &NodePorts,
                &PodBuilder::new("p").host_port(9090).info(),
                nodes()
            ),
            vec![None, None]
        );
        assert_eq!(
            filter_all(&NodePorts, &PodBuilder::new("p").info(), nodes()),
            vec![None, None]
        );
    }
}
