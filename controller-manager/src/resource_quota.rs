//! The resource-quota controller: every ResourceQuota's status says what
//! its namespace uses, counted from the objects themselves.
//!
//! The API server's ResourceQuota admission charges each new object to
//! the quotas' `status.used` before storing it, but nothing there hands a
//! deleted object's share back. This controller does: it recounts a
//! namespace whenever one of its quotas changes or one of its pods is
//! deleted or finishes (the common way compute quota is freed), and every
//! `--resource-quota-sync-period` for everything else (deleted ConfigMaps,
//! Services, …). The
//! arithmetic is `api::quota`'s, the same the admission step uses. A
//! status write carries the quota's resourceVersion, so it loses (and is
//! retried) against a concurrent admission charge instead of erasing it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use client::dynamic::ApiResource;
use client::{Api, Client, Event, Informer, ListParams};
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use serde_json::{json, Value};

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::Runner;

pub struct ResourceQuotaController {
    client: Client,
    quotas: Arc<Informer<ResourceQuota>>,
    /// How often a namespace with quotas is recounted anyway.
    resync: Duration,
}

fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether a quota's limits changed, or its status does not yet show them.
fn hard_changed(old: &ResourceQuota, new: &ResourceQuota) -> bool {
    let hard = |q: &ResourceQuota| q.spec.as_ref().and_then(|s| s.hard.clone());
    let recorded = new.status.as_ref().and_then(|s| s.hard.clone());
    hard(old) != hard(new) || recorded != hard(new)
}

pub fn start(ctx: &Context) -> Runner {
    let quotas = ctx.factory.informer::<ResourceQuota>();
    let pods = ctx.factory.informer::<Pod>();
    let queue = ctx.queue("resourcequota");
    let q = queue.clone();
    quotas.add_handler(move |event| {
        // Not on every status write: the API server's admission charges
        // status.used before the object is stored, and a recount in
        // between would wipe the charge. Only new quotas and changed
        // limits (upstream's rule); the rest waits for the resync.
        let quota = match event {
            Event::Added(quota) => quota,
            Event::Updated { old, new } if hard_changed(old, new) => new,
            _ => return,
        };
        q.add(quota.metadata.namespace.clone().unwrap_or_default());
    });
    let q = queue.clone();
    let watched = quotas.clone();
    pods.add_handler(move |event| {
        let freed = match event {
            Event::Deleted(pod) => Some(pod),
            Event::Updated { old, new } if finished(new) && !finished(old) => Some(new),
            _ => None,
        };
        if let Some(namespace) = freed.and_then(|p| p.metadata.namespace.clone()) {
            if !watched.indexer().list_namespace(&namespace).is_empty() {
                q.add(namespace);
            }
        }
    });
    let reconciler = Arc::new(ResourceQuotaController {
        client: ctx.client.clone(),
        quotas,
        resync: ctx.config.resource_quota_sync_period,
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| Box::pin(controller::run("resourcequota", reconciler, queue, workers, stop)))
}

/// Where the objects a quota resource name counts live, if this build
/// serves them.
fn resource_of(group: &str, plural: &str) -> Option<ApiResource> {
    let version = api::resources::preferred_version(group)?;
    let info = api::resources::find(group, version, plural)?;
    info.namespaced.then(|| ApiResource::from_info(info))
}

/// A quota's status for `objects` (kind and JSON of everything counted).
/// Resources this controller cannot list (custom resources) keep the
/// usage the API server's admission recorded.
fn status_for(quota: &ResourceQuota, objects: &[(String, String, Value)]) -> Value {
    let spec = quota.spec.clone().unwrap_or_default();
    let hard: std::collections::BTreeMap<String, String> = spec
        .hard
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let scopes = spec.scopes.unwrap_or_default();
    let mut used: api::quota::Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    for (group, plural, object) in objects {
        if !api::quota::in_scope(&scopes, plural, object) {
            continue;
        }
        for (k, amount) in api::quota::usage(group, plural, object) {
            if let Some(slot) = used.get_mut(&k) {
                *slot = slot.saturating_add(amount);
            }
        }
    }
    let recorded = quota.status.as_ref().and_then(|s| s.used.clone()).unwrap_or_default();
    let used: serde_json::Map<String, Value> = used
        .iter()
        .map(|(k, m)| {
            let counted = api::quota::tracked_resource(k).is_some_and(|(g, p)| resource_of(&g, &p).is_some());
            let value = match recorded.get(k) {
                Some(q) if !counted => json!(q.0),
                _ => json!(api::quota::format(*m, hard.get(k).map_or("", String::as_str))),
            };
            (k.clone(), value)
        })
        .collect();
    json!({"hard": hard, "used": used})
}

impl Reconciler for ResourceQuotaController {
    async fn reconcile(&self, namespace: &str) -> client::Result<Option<Duration>> {
        let quotas = self.quotas.indexer().list_namespace(namespace);
        if quotas.is_empty() {
            return Ok(None);
        }
        let mut resources = BTreeSet::new();
        for quota in &quotas {
            let hard = quota.spec.as_ref().and_then(|s| s.hard.as_ref());
            for name in hard.into_iter().flatten().map(|(k, _)| k) {
                resources.extend(api::quota::tracked_resource(name));
            }
        }
        let mut objects = Vec::new();
        for (group, plural) in resources {
            let Some(resource) = resource_of(&group, &plural) else {
                continue;
            };
            let api = Api::dynamic(self.client.clone(), resource, Some(namespace));
            let list = api.list(&ListParams::default()).await?;
            for item in list.items {
                let value = serde_json::to_value(&item).unwrap_or(Value::Null);
                objects.push((group.clone(), plural.clone(), value));
            }
        }
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), namespace);
        for quota in quotas {
            if quota.spec.as_ref().is_some_and(|s| s.scope_selector.is_some()) {
                continue; // not enforced (see the API server's admission step)
            }
            let status = status_for(&quota, &objects);
            let current = serde_json::to_value(&quota.status).unwrap_or(Value::Null);
            if current == status {
                continue;
            }
            let mut updated = (*quota).clone();
            updated.status = serde_json::from_value(status).ok();
            api.update_status(&updated).await?;
        }
        Ok(Some(self.resync))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_what_is_in_scope() {
        let quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "n"},
            "spec": {"hard": {"pods": "4", "requests.memory": "1Gi", "count/configmaps": "3"}},
        }))
        .unwrap();
        let pod = |phase: &str| json!({"spec": {"containers": [{"resources": {"requests": {"memory": "256Mi"}}}]}, "status": {"phase": phase}});
        let objects = vec![
            (String::new(), "pods".to_string(), pod("Running")),
            (String::new(), "pods".to_string(), pod("Succeeded")),
            (String::new(), "configmaps".to_string(), json!({})),
        ];
        let status = status_for(&quota, &objects);
        assert_eq!(
            status["used"],
            json!({"pods": "1", "requests.memory": "256Mi", "count/configmaps": "1"})
        );
        assert_eq!(status["hard"]["pods"], "4");
    }
}
