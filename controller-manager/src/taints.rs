//! Taints and tolerations, as the node lifecycle controller evicts by
//! them: for how long does a pod tolerate a node's NoExecute taints.

use api::scheduling::tolerates;
use k8s_openapi::api::core::v1::{Taint, Toleration};

/// For a pod on a node with these NoExecute `taints`: `None` if some taint
/// is not tolerated (evict now), else the shortest tolerationSeconds that
/// applies (`Some(None)`: tolerated forever).
pub fn toleration_window(tolerations: &[Toleration], taints: &[Taint]) -> Option<Option<i64>> {
    let mut shortest: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return None;
        }
        // A taint is tolerated for the longest of its matching tolerations.
        let window = if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            matching.iter().filter_map(|t| t.toleration_seconds).max()
        };
        if let Some(w) = window {
            shortest = Some(shortest.map_or(w, |s| s.min(w)));
        }
    }
    Some(shortest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn windows_follow_the_tolerations() {
        let unreachable = [taint("node.kubernetes.io/unreachable")];
        assert_eq!(toleration_window(&[], &unreachable), None);
        let t = [toleration("node.kubernetes.io/unreachable", Some(300))];
        assert_eq!(toleration_window(&t, &unreachable), Some(Some(300)));
        let forever = [toleration("", None)];
        assert_eq!(toleration_window(&forever, &unreachable), Some(None));
        let other = [toleration("node.kubernetes.io/not-ready", Some(5))];
        assert_eq!(toleration_window(&other, &unreachable), None);
    }
}
