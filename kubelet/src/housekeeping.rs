//! Housekeeping: now and then, look for pod directories (`pods/<uid>`)
//! whose pod the kubelet no longer has — left by a pod deleted while the
//! kubelet was down, or by a crash between removing containers and
//! directories — and hand each to its pod worker, whose sync of a pod
//! that is gone removes containers, volumes (unmounting memory-backed
//! ones) and directories. Containers of unknown pods are found the same
//! way by the [PLEG](crate::pleg).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;
use crate::Kubelet;

pub const PERIOD: Duration = Duration::from_secs(30);

/// The uids of pod directories whose pod is not in the cache.
pub fn orphans<R: Runtime>(kubelet: &Kubelet<R>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(kubelet.root_dir.join("pods")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|uid| kubelet.pods.indexer().by_index(crate::UID_INDEX, uid).is_empty())
        .collect()
}

pub async fn run<R: Runtime>(kubelet: Arc<Kubelet<R>>, stop: CancellationToken) {
    loop {
        for uid in orphans(&kubelet) {
            tracing::info!(pod = %uid, "cleaning up the directory of a pod that is gone");
            kubelet.workers.dispatch(&kubelet, &uid);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}
