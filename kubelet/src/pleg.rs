//! The pod lifecycle event generator (PLEG): every second it relists the
//! runtime's containers and wakes the worker of every pod whose containers
//! changed state (started, exited, vanished), so the sync loop reacts to a
//! container exiting without polling each pod. It also finds containers of
//! pods the kubelet no longer has, so housekeeping removes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::runtime::{Runtime, State};
use crate::Kubelet;

pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

fn fingerprint(state: &State) -> String {
    match state {
        State::Created => "created".into(),
        State::Running { pid, .. } => format!("running:{pid}"),
        State::Exited {
            exit_code, finished_at, ..
        } => format!("exited:{exit_code}:{finished_at}"),
    }
}

pub async fn run<R: Runtime>(kubelet: Arc<Kubelet<R>>, stop: CancellationToken) {
    let mut last: HashMap<String, (String, String)> = HashMap::new();
    loop {
        let started = Instant::now();
        // One listing per relist serves both the diff and the metrics.
        let containers = kubelet.runtime.list_containers();
        let now: HashMap<String, (String, String)> = containers
            .iter()
            .map(|c| (c.id.clone(), (c.config.pod_uid.clone(), fingerprint(&c.state))))
            .collect();
        let mut changed: Vec<String> = now
            .iter()
            .filter(|(id, (_, f))| last.get(*id).map(|(_, g)| g) != Some(f))
            .map(|(_, (uid, _))| uid.clone())
            .collect();
        changed.extend(
            last.iter()
                .filter(|(id, _)| !now.contains_key(*id))
                .map(|(_, (uid, _))| uid.clone()),
        );
        changed.sort();
        changed.dedup();
        for uid in changed {
            kubelet.workers.dispatch(&kubelet, &uid);
        }
        kubelet.metrics.update_running(&containers);
        kubelet.metrics.relist_duration.observe(started.elapsed().as_secs_f64());
        last = now;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RELIST_PERIOD) => {}
        }
    }
}
