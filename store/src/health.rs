//! `/health` on the metrics port, as etcd 3.4 answers it: unhealthy while
//! an alarm is raised, while there is no leader, or while a linearizable
//! read cannot complete (etcd's "QGET" check). The read is probed once a
//! second in the background, because the metrics server's routes answer
//! synchronously; a probe older than that is not trusted either way.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::node::Node;

/// How often, and how long at most, the linearizable read is probed.
const PROBE: Duration = Duration::from_secs(1);

/// The last probe's failure, if it failed.
#[derive(Clone, Default)]
pub struct ReadProbe(Arc<Mutex<Option<String>>>);

/// The `/health` route for `node`, fed by [`probe`].
pub fn route(node: Arc<Node>, read: ReadProbe) -> common::metrics::ExtraRoutes {
    Arc::new(move |path| {
        (path == "/health").then(|| {
            let alarm = node
                .sm
                .state
                .read()
                .ok()
                .and_then(|s| s.alarms.iter().next().map(|(_, a)| *a));
            let has_leader = node.raft.metrics().borrow().current_leader.is_some();
            let read_error = read.0.lock().ok().and_then(|e| e.clone());
            let reason = match (alarm, has_leader, read_error) {
                (Some(alarm), _, _) => format!("ALARM {}", crate::server::maintenance::alarm_name(alarm)),
                (None, false, _) => "RAFT NO LEADER".to_string(),
                (None, true, Some(e)) => format!("QGET ERROR:{e}"),
                (None, true, None) => {
                    return (
                        http::StatusCode::OK,
                        "application/json",
                        r#"{"health":"true","reason":""}"#.into(),
                    )
                }
            };
            let body = serde_json::json!({"health": "false", "reason": reason}).to_string();
            (http::StatusCode::SERVICE_UNAVAILABLE, "application/json", body)
        })
    })
}

/// Probes a linearizable read (a read barrier) every second until the
/// member stops, recording whether it completed within a second.
pub async fn probe(node: Weak<Node>, read: ReadProbe) {
    loop {
        tokio::time::sleep(PROBE).await;
        let Some(node) = node.upgrade() else { return };
        let outcome = match tokio::time::timeout(PROBE, node.read_barrier()).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(crate::error::Error::Timeout.to_string()),
        };
        drop(node);
        if let Ok(mut last) = read.0.lock() {
            *last = outcome;
        }
    }
}
