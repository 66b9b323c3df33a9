//! The disruption controller: every PodDisruptionBudget's status says how
//! many of its pods may be disrupted right now.
//!
//! The API server's eviction subresource (what `kubectl drain` calls)
//! spends `status.disruptionsAllowed` and refuses with 429 at zero, so
//! without this controller no running pod under a budget could ever be
//! evicted. For each budget it counts the pods its selector picks in its
//! namespace (`expectedPods`), the ready ones among them not being
//! deleted and not evicted in the last two minutes (`currentHealthy`;
//! an eviction is recorded in `disruptedPods` until the pod is gone),
//! works out `desiredHealthy` from `minAvailable` or `maxUnavailable`
//! (a percentage of the selected pods, rounded up), and sets
//! `disruptionsAllowed = currentHealthy - desiredHealthy` (at least 0),
//! the `DisruptionAllowed` condition and `observedGeneration`.
//!
//! Upstream takes the expected count for percentages and
//! `maxUnavailable` from the pods' controllers' scale; here it is the
//! number of selected pods, which is the same once a workload is rolled
//! out (documented deviation).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::indexer::key_of;
use client::{Api, Client, Event, Informer};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::controller_utils::is_pod_ready;
use crate::Runner;

/// How long an eviction counts against a budget if its pod lingers.
const DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);

pub struct DisruptionController {
    client: Client,
    budgets: Arc<Informer<PodDisruptionBudget>>,
    pods: Arc<Informer<Pod>>,
}

/// Budgets in `namespace` whose selector picks `pod`.
fn budgets_of(budgets: &Informer<PodDisruptionBudget>, pod: &Pod) -> Vec<String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    budgets
        .indexer()
        .list_namespace(&namespace)
        .iter()
        .filter(|b| selects(b, pod))
        .map(|b| key_of(b.as_ref()))
        .collect()
}

fn selects(budget: &PodDisruptionBudget, pod: &Pod) -> bool {
    // A budget without a selector selects nothing (policy/v1).
    let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    client::label_selector::matches(selector, pod.metadata.labels.as_ref()).unwrap_or(false)
}

pub fn start(ctx: &Context) -> Runner {
    let budgets = ctx.factory.informer::<PodDisruptionBudget>();
    let pods = ctx.factory.informer::<Pod>();
    let queue = ctx.queue("disruption");
    let q = queue.clone();
    budgets.add_handler(move |event| {
        let (Event::Added(b) | Event::Updated { new: b, .. } | Event::Deleted(b)) = event;
        q.add(key_of(b.as_ref()));
    });
    let q = queue.clone();
    let watched = budgets.clone();
    pods.add_handler(move |event| {
        let pods: Vec<&Arc<Pod>> = match event {
            Event::Added(p) | Event::Deleted(p) => vec![p],
            Event::Updated { old, new } => vec![old, new],
        };
        for pod in pods {
            for key in budgets_of(&watched, pod) {
                q.add(key);
            }
        }
    });
    let reconciler = Arc::new(DisruptionController {
        client: ctx.client.clone(),
        budgets,
        pods,
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| Box::pin(controller::run("disruption", reconciler, queue, workers, stop)))
}

/// An int-or-percent of `total`, percentages rounded up.
fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some(((percent * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// The status a budget should have, given its pods and `now`.
fn status_for(budget: &PodDisruptionBudget, pods: &[Arc<Pod>], now: k8s_openapi::jiff::Timestamp) -> Value {
    let spec = budget.spec.clone().unwrap_or_default();
    let selected: Vec<&Arc<Pod>> = pods.iter().filter(|p| selects(budget, p)).collect();
    let names: Vec<&str> = selected.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
    // Evictions still in flight: their pods are going, not healthy.
    let previous = budget
        .status
        .as_ref()
        .map(|s| s.disrupted_pods.clone().unwrap_or_default());
    let mut disrupted = BTreeMap::new();
    for (pod, at) in previous.into_iter().flatten() {
        let fresh = now.duration_since(at.0).as_secs() < DISRUPTION_TIMEOUT.as_secs() as i64;
        if fresh {
            disrupted.insert(pod, at);
        }
    }
    // A pod evicted a moment ago and already gone is still expected: until
    // its replacement exists the budget must not loosen (maxUnavailable=1
    // for a StatefulSet that recreates pods one by one).
    let gone = disrupted.keys().filter(|p| !names.contains(&p.as_str())).count();
    let expected = (selected.len() + gone) as i32;
    let healthy = selected
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .filter(|p| is_pod_ready(p))
        .count() as i32;
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (Some(min), _) => scaled(min, expected).unwrap_or(expected),
        (None, Some(max)) => expected - scaled(max, expected).unwrap_or(0),
        (None, None) => expected,
    }
    .max(0);
    let allowed = (healthy - desired).max(0);
    let generation = budget.metadata.generation.unwrap_or(0);
    let (condition, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let old_condition = budget
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let since = match old_condition {
        Some(c) if c.status == condition => json!(c.last_transition_time),
        _ => json!(now),
    };
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": condition,
            "reason": reason,
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }],
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = json!(disrupted);
    }
    status
}

impl Reconciler for DisruptionController {
    async fn reconcile(&self, key: &str) -> client::Result<Option<Duration>> {
        let Some(budget) = self.budgets.indexer().get(key) else {
            return Ok(None);
        };
        let namespace = budget.metadata.namespace.clone().unwrap_or_default();
        let pods = self.pods.indexer().list_namespace(&namespace);
        let status = status_for(&budget, &pods, client::api::timestamp_now());
        let current = serde_json::to_value(&budget.status).unwrap_or(Value::Null);
        // Recheck when the oldest recorded eviction expires.
        let requeue = status.get("disruptedPods").map(|_| DISRUPTION_TIMEOUT);
        if current == status {
            return Ok(requeue);
        }
        let mut updated = (*budget).clone();
        updated.status = serde_json::from_value(status).ok();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &namespace);
        api.update_status(&updated).await?;
        Ok(requeue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "n", "labels": {"app": "web"}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn budget(spec: Value) -> PodDisruptionBudget {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        serde_json::from_value(json!({"metadata": {"name": "b", "namespace": "n", "generation": 2}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn allowed_disruptions_follow_the_budget() {
        let pods = vec![pod("a", true), pod("b", true), pod("c", false)];
        let now = client::api::timestamp_now();
        let s = status_for(&budget(json!({"minAvailable": 1})), &pods, now);
        assert_eq!(
            (
                s["expectedPods"].as_i64(),
                s["currentHealthy"].as_i64(),
                s["disruptionsAllowed"].as_i64()
            ),
            (Some(3), Some(2), Some(1))
        );
        assert_eq!(s["observedGeneration"], 2);
        let s = status_for(&budget(json!({"maxUnavailable": "50%"})), &pods, now);
        // 50 % of 3 rounds up to 2 unavailable: 1 must stay healthy.
        assert_eq!(
            (s["desiredHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()),
            (Some(1), Some(1))
        );
        let s = status_for(&budget(json!({"minAvailable": "100%"})), &pods, now);
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        // One pod evicted and gone: still expected, so maxUnavailable=1
        // allows nothing more until it is back.
        let mut b = budget(json!({"maxUnavailable": 1}));
        b.status = serde_json::from_value(json!({"disruptedPods": {"gone": now}})).unwrap();
        let two = vec![pod("a", true), pod("b", true)];
        let s = status_for(&b, &two, now);
        assert_eq!(
            (s["expectedPods"].as_i64(), s["disruptionsAllowed"].as_i64()),
            (Some(3), Some(0))
        );
    }
}
