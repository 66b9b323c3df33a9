//! The pod's status as the kubelet reports it: phase, conditions, and a
//! status per container (state, last state, ready, started, restart
//! count), computed from what the runtime says and what the sync loop
//! decided (a container waiting out its back-off, say).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use crate::runtime::{ContainerStatus, State};

/// Why a container is not running, when the sync loop knows.
pub type Waiting = BTreeMap<String, (String, String)>;

fn time(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

fn terminated(c: &ContainerStatus) -> Option<Value> {
    match &c.state {
        State::Exited {
            exit_code,
            started_at,
            finished_at,
            reason,
            message,
        } => Some(json!({"terminated": {
            "exitCode": exit_code, "reason": reason, "message": message,
            "startedAt": time(*started_at), "finishedAt": time(*finished_at),
            "containerID": format!("process://{}", c.id),
        }})),
        _ => None,
    }
}

/// The newest attempt of each container, and the one before it.
pub fn attempts<'a>(
    runtime: &'a [ContainerStatus],
    name: &str,
) -> (Option<&'a ContainerStatus>, Option<&'a ContainerStatus>) {
    let mut mine: Vec<&ContainerStatus> = runtime.iter().filter(|c| c.config.name == name).collect();
    mine.sort_by_key(|c| c.config.attempt);
    let latest = mine.pop();
    (latest, mine.pop())
}

/// (ready, started) of a running container, from its probes.
pub type Readiness<'a> = &'a dyn Fn(&Container, &str) -> (bool, bool);

fn container_status(spec: &Container, runtime: &[ContainerStatus], waiting: &Waiting, probes: Readiness<'_>) -> Value {
    let (latest, previous) = attempts(runtime, &spec.name);
    let running = matches!(latest.map(|c| &c.state), Some(State::Running { .. }));
    let state = match (latest, waiting.get(&spec.name)) {
        (Some(c), _) if running => match &c.state {
            State::Running { started_at, .. } => json!({"running": {"startedAt": time(*started_at)}}),
            _ => json!({}),
        },
        (_, Some((reason, message))) => json!({"waiting": {"reason": reason, "message": message}}),
        (Some(c), None) => terminated(c).unwrap_or_else(|| json!({"waiting": {"reason": "ContainerCreating"}})),
        (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    let (ready, started) = match latest {
        Some(c) if running => probes(spec, &c.id),
        _ => (false, false),
    };
    // A container waiting to restart shows its last run as lastState.
    let last = if running || waiting.contains_key(&spec.name) {
        if running {
            previous
        } else {
            latest
        }
    } else {
        previous
    };
    let mut status = json!({
        "name": spec.name,
        "image": spec.image.clone().unwrap_or_default(),
        "imageID": "",
        "ready": ready,
        "started": started,
        "restartCount": latest.map_or(0, |c| c.config.attempt),
        "state": state,
        "lastState": last.and_then(terminated).unwrap_or_else(|| json!({})),
    });
    if let Some(c) = latest {
        status["containerID"] = json!(format!("process://{}", c.id));
    }
    status
}

fn exit_code(c: Option<&ContainerStatus>) -> Option<i32> {
    match c.map(|c| &c.state) {
        Some(State::Exited { exit_code, .. }) => Some(*exit_code),
        _ => None,
    }
}

/// The phase, as Kubernetes defines it.
fn phase(pod: &Pod, runtime: &[ContainerStatus], initialized: bool, init_failed: bool) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "Pending";
    };
    if init_failed {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let (mut running, mut waiting, mut failed) = (0, 0, 0);
    for c in &spec.containers {
        let (latest, _) = attempts(runtime, &c.name);
        match (latest.map(|l| &l.state), exit_code(latest)) {
            (Some(State::Running { .. }), _) => running += 1,
            (_, Some(0)) => {}
            (_, Some(_)) => failed += 1,
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    match policy {
        "Always" => "Running",
        "OnFailure" if failed > 0 => "Running",
        _ if failed > 0 => "Failed",
        _ => "Succeeded",
    }
}

fn condition(old: &Pod, type_: &str, ok: bool, reason: Option<&str>) -> Value {
    let status = if ok { "True" } else { "False" };
    let previous = old
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == status));
    let since = previous
        .and_then(|c| c.last_transition_time.as_ref())
        .map_or_else(|| client::api::timestamp_now().to_string(), |t| t.0.to_string());
    let mut c = json!({"type": type_, "status": status, "lastTransitionTime": since, "lastProbeTime": null});
    if let (false, Some(r)) = (ok, reason) {
        c["reason"] = json!(r);
    }
    c
}

/// Whether every init container has succeeded; and whether one failed
/// for good (restartPolicy Never).
pub fn init_progress(pod: &Pod, runtime: &[ContainerStatus]) -> (bool, bool) {
    let Some(spec) = pod.spec.as_ref() else {
        return (true, false);
    };
    let never = spec.restart_policy.as_deref() == Some("Never");
    for c in spec.init_containers.iter().flatten() {
        match exit_code(attempts(runtime, &c.name).0) {
            Some(0) => continue,
            Some(_) if never => return (false, true),
            _ => return (false, false),
        }
    }
    (true, false)
}

/// The whole status to write.
pub fn pod_status(
    pod: &Pod,
    runtime: &[ContainerStatus],
    waiting: &Waiting,
    probes: Readiness<'_>,
    pod_ip: &str,
    host_ip: &str,
    start_time: &str,
) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let (initialized, init_failed) = init_progress(pod, runtime);
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| container_status(c, runtime, waiting, probes))
        .collect();
    let inits: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, runtime, waiting, probes))
        .collect();
    let phase = phase(pod, runtime, initialized, init_failed);
    let all_ready = containers.iter().all(|c| c["ready"] == json!(true));
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let not_ready = if terminal { "PodCompleted" } else { "ContainersNotReady" };
    let mut status = json!({
        "phase": phase,
        "conditions": [
            condition(pod, "PodScheduled", true, None),
            condition(pod, "Initialized", initialized || terminal, Some("ContainersNotInitialized")),
            condition(pod, "ContainersReady", all_ready && !terminal, Some(not_ready)),
            condition(pod, "Ready", all_ready && !terminal, Some(not_ready)),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "containerStatuses": containers,
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        status["qosClass"] = json!(q);
    }
    status
}
