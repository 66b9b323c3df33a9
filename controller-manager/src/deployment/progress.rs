//! A Deployment's status and conditions.
//!
//! `Available` says whether at least `replicas - maxUnavailable` pods are
//! available. `Progressing` tells the rollout's story: a new ReplicaSet
//! was created or found, it is progressing (its `lastUpdateTime` moves on
//! every step), it has successfully progressed, or no step happened
//! within `progressDeadlineSeconds` (`ProgressDeadlineExceeded`, which
//! makes `kubectl rollout status` fail). Paused Deployments say so.

use std::time::Duration;

use client::{Api, Patch};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use serde_json::json;

use super::replica_sets::{available_replicas, desired_replicas, ready_replicas, status_replicas};
use super::surge_and_unavailable;
use super::sync::Rollout;
use crate::controller_utils::{now, now_seconds};

pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

/// The status the ReplicaSets add up to (conditions carried over).
pub fn calculate(r: &Rollout<'_>) -> DeploymentStatus {
    let all = r.all();
    let available: i32 = all.iter().map(|rs| available_replicas(rs)).sum();
    let current = r.d.status.clone().unwrap_or_default();
    DeploymentStatus {
        observed_generation: r.d.metadata.generation,
        replicas: Some(all.iter().map(|rs| status_replicas(rs)).sum()),
        updated_replicas: Some(r.new_rs.as_ref().map_or(0, status_replicas)),
        ready_replicas: Some(all.iter().map(|rs| ready_replicas(rs)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((desired_replicas(&r.d) - available).max(0)),
        terminating_replicas: None,
        collision_count: current.collision_count,
        conditions: current.conditions,
    }
}

/// The rollout is done: every pod updated and available, nothing extra.
pub fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = desired_replicas(d);
    status.updated_replicas == Some(desired)
        && status.replicas == Some(desired)
        && status.available_replicas == Some(desired)
        && status.observed_generation >= d.metadata.generation
}

fn progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_replicas = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
    new.updated_replicas > old.updated_replicas
        || old_replicas(new) < old_replicas(old)
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

fn find<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// Sets a condition; an unchanged status and reason keep the existing one
/// unless `touch` (a progress step) moves its lastUpdateTime.
fn set(status: &mut DeploymentStatus, type_: &str, value: &str, reason: &str, message: String, touch: bool) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let mut transition = Some(now());
    if let Some(i) = existing {
        let c = &conditions[i];
        if c.status == value && (c.reason.as_deref() == Some(reason) && !touch) {
            return;
        }
        if c.status == value {
            transition = c.last_transition_time.clone();
        }
        conditions.remove(i);
    }
    conditions.push(DeploymentCondition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(now()),
        last_transition_time: transition,
    });
}

fn deadline_seconds(d: &Deployment) -> i64 {
    i64::from(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600))
}

/// Seconds left before the Progressing condition times out (negative:
/// it has).
fn time_left(d: &Deployment, status: &DeploymentStatus) -> Option<i64> {
    let c = find(status, "Progressing")?;
    match c.reason.as_deref() {
        Some(TIMED_OUT) => Some(-1),
        Some(NEW_RS_AVAILABLE) => None,
        _ => {
            let from = c.last_update_time.as_ref()?.0.as_second();
            Some(from + deadline_seconds(d) - now_seconds())
        }
    }
}

/// Computes and writes the status; the duration says when to look again
/// for the progress deadline.
pub async fn sync_status(r: &mut Rollout<'_>) -> client::Result<Option<Duration>> {
    let mut status = calculate(r);
    let d = &r.d;
    let desired = desired_replicas(d);
    let (_, max_unavailable) = surge_and_unavailable(d);
    if status.available_replicas.unwrap_or(0) >= desired - max_unavailable {
        let message = "Deployment has minimum availability.".to_string();
        set(
            &mut status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            message,
            false,
        );
    } else {
        let message = "Deployment does not have minimum availability.".to_string();
        set(
            &mut status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            message,
            false,
        );
    }

    let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    let current_reason = find(&status, "Progressing").and_then(|c| c.reason.clone());
    let rs_name = r
        .new_rs
        .as_ref()
        .and_then(|rs| rs.metadata.name.clone())
        .unwrap_or_default();
    let mut requeue = None;
    if paused {
        // A rollout that already timed out stays timed out while paused.
        if current_reason.as_deref() != Some(TIMED_OUT) {
            set(
                &mut status,
                "Progressing",
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                false,
            );
        }
    } else {
        if current_reason.as_deref() == Some(PAUSED) {
            set(
                &mut status,
                "Progressing",
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                false,
            );
        }
        let already_complete = current_reason.as_deref() == Some(NEW_RS_AVAILABLE)
            && status.replicas == status.updated_replicas
            && r.note.as_ref().is_none_or(|(reason, _)| *reason != NEW_RS_CREATED);
        let old = d.status.clone().unwrap_or_default();
        if complete(d, &status) {
            let message = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
            set(&mut status, "Progressing", "True", NEW_RS_AVAILABLE, message, false);
        } else if already_complete {
            // Done earlier; a later resize does not restart the story.
        } else if let Some((reason, message)) = r.note.clone().filter(|(reason, _)| *reason == NEW_RS_CREATED) {
            set(&mut status, "Progressing", "True", reason, message, false);
        } else if progressed(&old, &status) {
            let message = format!("ReplicaSet \"{rs_name}\" is progressing.");
            set(&mut status, "Progressing", "True", RS_UPDATED, message, true);
        } else if let (None, Some((reason, message))) = (find(&status, "Progressing"), r.note.clone()) {
            set(&mut status, "Progressing", "True", reason, message, false);
        } else if time_left(d, &status).is_some_and(|left| left < 0) {
            let message = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
            set(&mut status, "Progressing", "False", TIMED_OUT, message, false);
        }
        if !complete(d, &status) {
            requeue = time_left(d, &status)
                .filter(|left| *left >= 0)
                .map(|left| Duration::from_secs(u64::try_from(left).unwrap_or(0) + 1));
        }
    }

    if d.status.as_ref() != Some(&status) {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(r.ctrl.client.clone(), r.namespace());
        let body = serde_json::to_value(&status).map_err(|e| client::Error::decode("DeploymentStatus", e))?;
        api.patch_status(name, &Patch::Merge(json!({ "status": body }))).await?;
    }
    Ok(requeue)
}
