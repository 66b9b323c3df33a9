//! The pods/eviction subresource: a delete that respects
//! PodDisruptionBudgets.
//!
//! `kubectl drain` and the scheduler's preemption evict rather than delete,
//! so that a budget such as "at least two replicas of this service stay up"
//! holds. An eviction checks every budget in the pod's namespace whose
//! selector matches the pod; if one allows no more disruptions the answer
//! is 429 TooManyRequests and the pod stays. Otherwise the budget's
//! `status.disruptionsAllowed` is spent (a compare-and-swap write, so two
//! concurrent evictions cannot both spend the last one) and the pod is
//! deleted. Pods that are not running (pending or finished) disrupt
//! nothing and are deleted without a budget check, as upstream does.

use serde_json::{json, Value};

use crate::binding::success;
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::selector::Selector;
use crate::status::ApiError;
use crate::storage::StorageError;
use crate::verbs::{self, storage_error};

const ATTEMPTS: usize = 5;

/// Evicts a pod; with `dry_run` (the query's or the eviction's
/// deleteOptions'), only checks that it could be.
pub async fn evict(app: &App, info: &RequestInfo, eviction: Value, dry_run: bool) -> Result<Value, ApiError> {
    let pod_info = crate::binding::pod_of(info, &eviction, "eviction")?;
    let (pod, _) = verbs::read(app, &pod_info).await?;
    let options = eviction.get("deleteOptions").cloned();
    let dry_run = dry_run
        || options
            .as_ref()
            .and_then(|o| o["dryRun"].as_array())
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let running = !matches!(
        pod["status"]["phase"].as_str(),
        Some("Pending" | "Succeeded" | "Failed")
    );
    // A pod already being deleted disrupts nothing more.
    let terminating = !pod["metadata"]["deletionTimestamp"].is_null();
    if running && !terminating {
        spend_budget(app, info, &pod, dry_run).await?;
    }
    if !dry_run {
        verbs::delete(app, &pod_info, options.as_ref()).await?;
    }
    Ok(success(201))
}

/// Spends one allowed disruption of every budget covering `pod`, or
/// refuses with 429 when one has none left.
async fn spend_budget(app: &App, info: &RequestInfo, pod: &Value, dry_run: bool) -> Result<(), ApiError> {
    let pdbs = RequestInfo {
        resource: api::resources::find("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not in the resource table"))?,
        namespace: info.namespace.clone(),
        name: None,
        subresource: None,
    };
    let list = verbs::list(app, &pdbs, &verbs::Query::from_pairs(&[])).await?;
    let mut covering = Vec::new();
    for pdb in list["items"].as_array().into_iter().flatten() {
        let selector = Selector::from_label_selector(&pdb["spec"]["selector"])?;
        // A budget without a selector selects nothing (policy/v1).
        if !pdb["spec"]["selector"].is_null() && selector.matches_labels(pod) {
            covering.push(pdb);
        }
    }
    // As upstream: spending one budget and then finding another spent
    // would take a disruption for nothing.
    if covering.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    for pdb in covering {
        let name = pdb["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let named = RequestInfo {
            name: Some(name.clone()),
            ..pdbs.clone()
        };
        let mut spent = false;
        for _ in 0..ATTEMPTS {
            let (mut current, revision) = verbs::read(app, &named).await?;
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
            let observed = current["status"]["observedGeneration"].as_i64().unwrap_or(-1);
            if observed < generation {
                return Err(ApiError::too_many_requests(format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. \
                     The disruption budget {name} is still being processed by the server."
                )));
            }
            let allowed = current["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
            if allowed < 1 {
                return Err(ApiError::too_many_requests(format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. \
                     The disruption budget {name} needs {} healthy pods and has {} currently",
                    current["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                    current["status"]["currentHealthy"].as_i64().unwrap_or(0),
                )));
            }
            if dry_run {
                spent = true;
                break;
            }
            current["status"]["disruptionsAllowed"] = json!(allowed - 1);
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            current["status"]["disruptedPods"][pod_name] = json!(crate::registry::now());
            match verbs::write(app, &named, current, revision).await {
                Ok(_) => {
                    spent = true;
                    break;
                }
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(storage_error(&named, &name, e)),
            }
        }
        if !spent {
            return Err(ApiError::conflict("poddisruptionbudgets", "policy", &name));
        }
    }
    Ok(())
}
