//! The ResourceQuota admission step: a new object is charged against
//! every quota of its namespace that counts it, and refused with 403
//! Forbidden when that would exceed a quota's `spec.hard`.
//!
//! What an object uses comes from `api::quota` (shared with the
//! controller manager's resource-quota controller). The charge is
//! recorded in the quota's `status.used` with a compare-and-swap write
//! before the object is stored, so concurrent creates, even through
//! several API servers, cannot both take the last unit: the loser's write
//! conflicts, and it re-reads the quota and checks again. A quota whose
//! status does not yet cover its `spec.hard` (just created, or just
//! edited) is first counted from the namespace's objects. Deleted
//! objects are handed back by the controller, which recounts.
//!
//! Quotas with a `scopeSelector` are not enforced here (documented
//! limit); `scopes` (Terminating, NotTerminating, BestEffort,
//! NotBestEffort) are. A quota that limits pods' cpu or memory also
//! requires every container to state that request or limit.

use std::collections::{BTreeMap, HashSet};

use api::quota::{self, Usage};
use serde_json::{json, Value};

use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;
use crate::storage::StorageError;

type Result<T> = std::result::Result<T, ApiError>;

/// Rounds of re-reading quotas after conflicting writes.
const ATTEMPTS: usize = 16;

fn quotas_info(namespace: &str, name: Option<String>) -> Result<RequestInfo> {
    let resource = api::resources::find("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::internal("no resourcequotas resource"))?;
    Ok(RequestInfo {
        resource,
        namespace: Some(namespace.to_string()),
        name,
        subresource: None,
    })
}

fn hard_of(q: &Value) -> BTreeMap<String, String> {
    q["spec"]["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn scopes_of(q: &Value) -> Vec<String> {
    q["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The recorded usage, if it covers every resource the quota limits.
fn recorded(q: &Value, hard: &BTreeMap<String, String>) -> Option<Usage> {
    let used = q["status"]["used"].as_object()?;
    hard.keys()
        .map(|k| Some((k.clone(), used.get(k)?.as_str().and_then(quota::milli)?)))
        .collect()
}

/// A quota's usage counted from the namespace's objects (for a quota
/// whose status is not complete yet).
pub async fn count(app: &App, namespace: &str, hard: &BTreeMap<String, String>, scopes: &[String]) -> Result<Usage> {
    let mut used: Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    let mut counted = HashSet::new();
    for name in hard.keys() {
        let Some((group, plural)) = quota::tracked_resource(name) else {
            continue;
        };
        if !counted.insert((group.clone(), plural.clone())) {
            continue;
        }
        let resource = api::resources::preferred_version(&group)
            .and_then(|v| api::resources::find(&group, v, &plural))
            .or_else(|| {
                crate::crd::all()
                    .into_iter()
                    .find(|r| r.group == group && r.plural == plural)
            });
        let Some(resource) = resource.filter(|r| r.namespaced) else {
            continue;
        };
        for object in crate::verbs::list_in(app, resource, namespace).await? {
            if !quota::in_scope(scopes, &plural, &object) {
                continue;
            }
            for (k, amount) in quota::usage(&group, &plural, &object) {
                if let Some(slot) = used.get_mut(&k) {
                    *slot = slot.saturating_add(amount);
                }
            }
        }
    }
    Ok(used)
}

/// `pods=1,requests.cpu=500m`, as kube-apiserver lists resources.
fn listing(amounts: &[(String, i64)], hard: &BTreeMap<String, String>) -> String {
    amounts
        .iter()
        .map(|(k, m)| format!("{k}={}", quota::format(*m, hard.get(k).map_or("", String::as_str))))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks one quota against `usage`; its status with the charge added.
/// The object being admitted: its resource, the new value and, for an
/// update, the old one.
pub struct Admitted<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub kind_name: String,
    pub object: &'a Value,
    pub old: Option<&'a Value>,
}

/// What `admitted` newly uses under quota `q` (an update is charged only
/// what grew, or everything when it moved into the quota's scope).
fn usage_under(q: &Value, admitted: &Admitted<'_>) -> Usage {
    let scopes = scopes_of(q);
    let (group, plural) = (admitted.group, admitted.plural);
    if !quota::in_scope(&scopes, plural, admitted.object) {
        return Usage::new();
    }
    let now = quota::usage(group, plural, admitted.object);
    let before = match admitted.old {
        Some(old) if quota::in_scope(&scopes, plural, old) => quota::usage(group, plural, old),
        _ => Usage::new(),
    };
    now.into_iter()
        .filter_map(|(k, m)| {
            let grown = m.saturating_sub(before.get(&k).copied().unwrap_or(0));
            (grown > 0).then_some((k, grown))
        })
        .collect()
}

async fn charge(app: &App, namespace: &str, q: &Value, admitted: &Admitted<'_>) -> Result<Option<Value>> {
    let (kind_name, plural, object) = (&admitted.kind_name, admitted.plural, admitted.object);
    let name = q["metadata"]["name"].as_str().unwrap_or_default();
    let hard = hard_of(q);
    if q["spec"]["scopeSelector"].is_object() {
        return Ok(None);
    }
    let usage = &usage_under(q, admitted);
    if usage.is_empty() {
        return Ok(None);
    }
    if plural == "pods" && admitted.old.is_none() {
        let missing = quota::unstated(object, &hard);
        if !missing.is_empty() {
            let what: Vec<String> = missing
                .iter()
                .map(|(k, containers)| format!("{k} for: {}", containers.join(",")))
                .collect();
            return Err(ApiError::forbidden_because(format!(
                "{kind_name} is forbidden: failed quota: {name}: must specify {}",
                what.join("; ")
            )));
        }
    }
    let charged: Vec<(String, i64)> = hard
        .keys()
        .filter_map(|k| usage.get(k).map(|m| (k.clone(), *m)))
        .collect();
    if charged.is_empty() {
        return Ok(None);
    }
    let used = match recorded(q, &hard) {
        Some(used) => used,
        None => count(app, namespace, &hard, &scopes_of(q)).await?,
    };
    let exceeded: Vec<&String> = charged
        .iter()
        .filter(|(k, m)| {
            let limit = hard.get(k).and_then(|h| quota::milli(h)).unwrap_or(0);
            used.get(k).copied().unwrap_or(0).saturating_add(*m) > limit
        })
        .map(|(k, _)| k)
        .collect();
    if !exceeded.is_empty() {
        let pick = |amounts: &dyn Fn(&String) -> i64| -> Vec<(String, i64)> {
            exceeded.iter().map(|k| ((*k).clone(), amounts(k))).collect()
        };
        let requested = pick(&|k| usage.get(k).copied().unwrap_or(0));
        let current = pick(&|k| used.get(k).copied().unwrap_or(0));
        let limited = pick(&|k| hard.get(k).and_then(|h| quota::milli(h)).unwrap_or(0));
        return Err(ApiError::forbidden_because(format!(
            "{kind_name} is forbidden: exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            listing(&requested, &hard),
            listing(&current, &hard),
            listing(&limited, &hard)
        )));
    }
    let mut new_used = used;
    for (k, m) in &charged {
        let slot = new_used.entry(k.clone()).or_insert(0);
        *slot = slot.saturating_add(*m);
    }
    let mut updated = q.clone();
    updated["status"] = json!({
        "hard": q["spec"]["hard"],
        "used": new_used
            .iter()
            .map(|(k, m)| (k.clone(), json!(quota::format(*m, hard.get(k).map_or("", String::as_str)))))
            .collect::<serde_json::Map<_, _>>(),
    });
    Ok(Some(updated))
}

/// Charges `admitted` (a new object, or an update's growth) against its
/// namespace's quotas; with `dry_run`, only checks. Every quota is
/// checked before any charge is written, so a refusal leaves none behind.
pub async fn admit(app: &App, namespace: Option<&str>, admitted: &Admitted<'_>, dry_run: bool) -> Result<()> {
    let Some(namespace) = namespace else {
        return Ok(());
    };
    let list_info = quotas_info(namespace, None)?;
    let mut done: HashSet<Vec<u8>> = HashSet::new();
    for attempt in 0..ATTEMPTS {
        // The quotas as the watch cache has them (no store call for the
        // many namespaces without quotas); after a conflict, straight from
        // the store. The charge is a compare-and-swap on the version read.
        let quotas = crate::verbs::stored_under(app, &list_info, attempt > 0).await?;
        let mut charges = Vec::new();
        for stored in quotas.iter() {
            if done.contains(&stored.key) {
                continue;
            }
            let q = crate::verbs::parse_stored_value(&list_info, stored)?;
            match charge(app, namespace, &q, admitted).await? {
                Some(updated) => charges.push((stored.clone(), q, updated)),
                None => {
                    done.insert(stored.key.clone());
                }
            }
        }
        if dry_run {
            return Ok(());
        }
        let mut conflicted = false;
        for (stored, q, updated) in charges {
            let quota_name = q["metadata"]["name"].as_str().map(str::to_string);
            let one = quotas_info(namespace, quota_name)?;
            match crate::verbs::write(app, &one, updated, stored.revision).await {
                Ok(_) => {
                    done.insert(stored.key.clone());
                }
                Err(StorageError::Conflict) => {
                    conflicted = true;
                    break;
                }
                Err(e) => return Err(crate::verbs::storage_error(&one, "", e)),
            }
        }
        if !conflicted {
            return Ok(());
        }
    }
    Err(ApiError::conflict_because(
        "resourcequotas",
        "",
        namespace,
        "too many concurrent changes to the namespace's quotas; try again",
    ))
}
