//! ImageLocality: prefers nodes that already have the pod's images, by
//! their size, discounted when the image is on few nodes (so that the
//! first node with a popular image does not attract every pod).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, NodeInfo, Plugin, Snapshot, MAX_NODE_SCORE};

pub const NAME: &str = "ImageLocality";
const MIN_THRESHOLD: i64 = 23 * 1024 * 1024;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * 1024 * 1024;
const STATE: &str = "PreScoreImageLocality";

pub struct ImageLocality;

/// The names an image may be listed under on a node (`nginx` is also
/// `nginx:latest` and `docker.io/library/nginx:latest`).
fn names(image: &str) -> Vec<String> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tagged = if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    };
    let mut out = vec![tagged.clone()];
    if !tagged.contains('/') {
        out.push(format!("docker.io/library/{tagged}"));
    } else if tagged.matches('/').count() == 1 && !tagged.split('/').next().unwrap_or("").contains('.') {
        out.push(format!("docker.io/{tagged}"));
    }
    out
}

fn images(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.iter().filter_map(|c| c.image.clone()).collect())
        .unwrap_or_default()
}

fn size_on(node: &NodeInfo, image: &str) -> Option<i64> {
    names(image).iter().find_map(|n| node.images.get(n).copied())
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot, _: &[Arc<NodeInfo>]) {
        let mut spread: HashMap<String, usize> = HashMap::new();
        for image in images(pod) {
            let count = snapshot.nodes.iter().filter(|n| size_on(n, &image).is_some()).count();
            spread.insert(image, count);
        }
        state.write(STATE, (spread, snapshot.nodes.len()));
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let Some((spread, total)) = state.read::<(HashMap<String, usize>, usize)>(STATE) else {
            return 0;
        };
        let images = images(pod);
        let sum: i64 = images
            .iter()
            .filter_map(|image| {
                let size = size_on(node, image)?;
                let on = spread.get(image).copied().unwrap_or(0) as f64;
                Some((size as f64 * on / (*total).max(1) as f64) as i64)
            })
            .sum();
        let max = MAX_CONTAINER_THRESHOLD * i64::try_from(images.len().max(1)).unwrap_or(1);
        let clamped = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_normalized() {
        assert_eq!(names("nginx"), vec!["nginx:latest", "docker.io/library/nginx:latest"]);
        assert_eq!(names("me/app:1"), vec!["me/app:1", "docker.io/me/app:1"]);
        assert_eq!(names("registry.example.com/app:2"), vec!["registry.example.com/app:2"]);
    }
}

#[cfg(test)]
mod score_tests {
    use super::*;
    use crate::plugins::test_support::pod;

    fn with_image(name: &str, image: &str, size: i64) -> Arc<NodeInfo> {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "images": [{"names": [image], "sizeBytes": size}]}}))
        .unwrap();
        Arc::new(NodeInfo::new(Arc::new(node)))
    }

    #[test]
    fn nodes_with_the_image_score_higher_by_size_and_spread() {
        let mut p = pod("p", "1", "1Gi");
        p.spec.as_mut().unwrap().containers[0].image = Some("nginx".into());
        let big = 500 * 1024 * 1024;
        let has = with_image("has", "docker.io/library/nginx:latest", big);
        let lacks = with_image("lacks", "redis:7", big);
        let snapshot = Snapshot {
            nodes: vec![has.clone(), lacks.clone()],
        };
        let mut state = CycleState::default();
        ImageLocality.pre_score(&mut state, &p, &snapshot, &snapshot.nodes);
        let (s_has, s_lacks) = (
            ImageLocality.score(&state, &p, &has),
            ImageLocality.score(&state, &p, &lacks),
        );
        assert_eq!(s_lacks, 0);
        // Half the nodes have it: 250 MB effective, between the 23 MB and 1000 MB thresholds.
        assert!(s_has > 15 && s_has < 30, "{s_has}");
    }
}
