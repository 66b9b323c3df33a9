//! Deleting: preconditions, graceful deletion, finalizers and propagation.
//!
//! A delete does not always remove the object at once:
//!
//! - **Graceful deletion.** A pod bound to a node gets a
//!   `deletionTimestamp` (now + grace period, from the request or the pod's
//!   `terminationGracePeriodSeconds`) and stays, so its kubelet can stop
//!   its containers; the kubelet then deletes it with grace period 0. A pod
//!   that never reached a node goes at once.
//! - **Finalizers.** An object with `metadata.finalizers` is only marked
//!   (`deletionTimestamp`); whoever owns a finalizer does its cleanup and
//!   removes it, and the update that removes the last one deletes the
//!   object. While marked, no finalizer can be added.
//! - **Propagation.** `propagationPolicy: Foreground` adds the
//!   `foregroundDeletion` finalizer (the garbage collector deletes the
//!   dependents first), `Orphan` adds `orphan` (it strips their owner
//!   references); `Background`, the default, deletes the owner now and
//!   leaves the dependents to the collector.
//! - **Namespaces** become `Terminating`; the namespace controller empties
//!   them and clears `spec.finalizers` through `namespaces/{name}/finalize`,
//!   after which they go. Nothing new may be created in a terminating
//!   namespace.
//!
//! `dryRun` does all the checks and changes nothing.

use serde_json::{json, Value};

use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;
use crate::storage::StorageError;
use crate::verbs::{self, storage_error};

type Result<T> = std::result::Result<T, ApiError>;

/// How many times a delete retries when the object changes underneath.
const ATTEMPTS: usize = 5;

fn name(info: &RequestInfo) -> &str {
    info.name.as_deref().unwrap_or_default()
}

fn check_preconditions(info: &RequestInfo, options: &Value, current: &Value, revision: i64) -> Result<()> {
    let p = &options["preconditions"];
    let conflict =
        |why: String| ApiError::conflict_because(info.resource.plural, info.resource.group, name(info), &why);
    if let Some(uid) = p["uid"].as_str() {
        let actual = current["metadata"]["uid"].as_str().unwrap_or_default();
        if actual != uid {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
            )));
        }
    }
    if let Some(rv) = p["resourceVersion"].as_str() {
        if rv != revision.to_string() {
            return Err(conflict(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"
            )));
        }
    }
    Ok(())
}

fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

fn rfc3339_in(seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        + time::Duration::seconds(seconds);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a delete does to an object that is not simply removed.
enum Plan {
    Remove,
    /// Keep it, marked (and with these finalizers).
    Mark(Value),
}

fn plan(info: &RequestInfo, options: &Value, current: &Value) -> Result<Plan> {
    let (group, plural) = (info.resource.group, info.resource.plural);
    let mut object = current.clone();
    let meta_deleting = current["metadata"]["deletionTimestamp"].is_string();
    let mut pending = finalizers(current);
    match options["propagationPolicy"].as_str() {
        None | Some("Background") => {}
        Some(policy @ ("Foreground" | "Orphan")) => {
            let finalizer = if policy == "Foreground" {
                "foregroundDeletion"
            } else {
                "orphan"
            };
            if !pending.iter().any(|f| f == finalizer) {
                pending.push(finalizer.to_string());
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Orphan, Foreground, Background"
            )))
        }
    }
    if group.is_empty() && plural == "namespaces" {
        let spec_finalizers = current["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if spec_finalizers || !pending.is_empty() {
            if !meta_deleting {
                object["metadata"]["deletionTimestamp"] = json!(crate::registry::now());
                object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            object["metadata"]["finalizers"] = json!(pending);
            object["status"]["phase"] = json!("Terminating");
            return Ok(Plan::Mark(object));
        }
        return Ok(Plan::Remove);
    }
    // Graceful deletion: pods on a node get time to stop.
    let grace = match options["gracePeriodSeconds"].as_i64() {
        Some(g) => g.max(0),
        None => current["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30),
    };
    let bound = current["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let finished = matches!(current["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if group.is_empty() && plural == "pods" && bound && !finished && grace > 0 {
        let current_grace = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
        // A later delete may shorten the grace period, never lengthen it.
        if current_grace.is_none_or(|g| grace < g) {
            object["metadata"]["deletionTimestamp"] = json!(rfc3339_in(grace));
            object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        }
        if !pending.is_empty() {
            object["metadata"]["finalizers"] = json!(pending);
        }
        return Ok(Plan::Mark(object));
    }
    if !pending.is_empty() {
        if !meta_deleting || current["metadata"]["deletionGracePeriodSeconds"].as_i64() != Some(0) {
            object["metadata"]["deletionTimestamp"] = json!(crate::registry::now());
            object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        object["metadata"]["finalizers"] = json!(pending);
        return Ok(Plan::Mark(object));
    }
    Ok(Plan::Remove)
}

/// Deletes (or marks for deletion) one object; returns it as it now is,
/// or as it was last.
/// Namespaces Kubernetes never lets go (NamespaceLifecycle's immortal ones).
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub async fn delete(app: &App, info: &RequestInfo, options: Option<&Value>, dry_run: bool) -> Result<Value> {
    if (info.resource.group, info.resource.plural) == ("", "namespaces") && IMMORTAL_NAMESPACES.contains(&name(info)) {
        return Err(ApiError::forbidden_because(format!(
            "namespaces \"{}\" is forbidden: this namespace may not be deleted",
            name(info)
        )));
    }
    let empty = json!({});
    let options = options.unwrap_or(&empty);
    let dry_run = dry_run
        || options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    for _ in 0..ATTEMPTS {
        let (current, revision) = verbs::read(app, info).await?;
        check_preconditions(info, options, &current, revision)?;
        match plan(info, options, &current)? {
            Plan::Mark(marked) if dry_run => return Ok(marked),
            Plan::Remove if dry_run => return Ok(current),
            Plan::Mark(marked) if marked == current => return Ok(current),
            Plan::Mark(marked) => match verbs::write(app, info, marked.clone(), revision).await {
                Ok(written) => return Ok(crate::registry::with_version(marked, written)),
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(storage_error(info, name(info), e)),
            },
            Plan::Remove => match remove(app, info, revision).await {
                Err(e) if e.code == 409 => continue,
                other => return other,
            },
        }
    }
    Err(ApiError::conflict(
        info.resource.plural,
        info.resource.group,
        name(info),
    ))
}

/// Removes the object at `revision` from storage and frees what it held.
pub async fn remove(app: &App, info: &RequestInfo, revision: i64) -> Result<Value> {
    let deleted = app
        .storage
        .delete(info.key().as_bytes(), Some(revision))
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    let deleted = verbs::parse_stored_value(info, &deleted)?;
    verbs::released(app, info, &deleted).await;
    Ok(deleted)
}

/// The update rules for an object being deleted: no new finalizers; and
/// whether the update finishes the deletion (the last finalizer gone and
/// no grace period running).
pub fn after_update(existing: &Value, updated: &Value, info: &RequestInfo) -> Result<bool> {
    if !existing["metadata"]["deletionTimestamp"].is_string() {
        return Ok(false);
    }
    let before = finalizers(existing);
    let added: Vec<String> = finalizers(updated)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if !added.is_empty() {
        return Err(ApiError::invalid(
            info.resource.kind,
            name(info),
            "metadata.finalizers",
            &format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
        ));
    }
    let namespace_held = info.resource.group.is_empty()
        && info.resource.plural == "namespaces"
        && updated["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    let grace_running = updated["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) > 0;
    Ok(finalizers(updated).is_empty() && !namespace_held && !grace_running)
}

/// Refuses creating in a namespace that is being deleted.
pub fn check_not_terminating(namespace: &Value, name: &str) -> Result<()> {
    if namespace["metadata"]["deletionTimestamp"].is_string() || namespace["status"]["phase"] == "Terminating" {
        return Err(ApiError::forbidden_because(format!(
            "unable to create new content in namespace {name} because it is being terminated"
        )));
    }
    Ok(())
}
