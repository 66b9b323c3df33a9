//! NodeName: a pod that names its node (`spec.nodeName` set before
//! scheduling, as with a pod created for one node) fits only there.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, NodeInfo, Plugin, Status};

pub const NAME: &str = "NodeName";
pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        match pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            Some(wanted) if wanted != node.name() => Err(Status::unresolvable(NAME, REASON)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{node, pod};

    #[test]
    fn only_the_named_node_fits() {
        let s = CycleState::default();
        let mut named = pod("p", "1", "1Gi");
        named.spec.as_mut().unwrap().node_name = Some("a".into());
        for (p, n, fits) in [
            (&named, "a", true),
            (&named, "b", false),
            (&pod("q", "1", "1Gi"), "b", true),
        ] {
            let result = NodeName.filter(&s, p, &node(n, "4", "8Gi", &[]));
            assert_eq!(result.is_ok(), fits, "{n}");
        }
    }
}
