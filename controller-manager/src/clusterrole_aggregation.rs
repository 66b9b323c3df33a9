//! The ClusterRole aggregation controller: a ClusterRole with an
//! `aggregationRule` gets, as its `rules`, the rules of every other
//! ClusterRole whose labels match one of its selectors — how `admin`,
//! `edit` and `view` grow when a CRD's author ships roles labelled
//! `rbac.authorization.k8s.io/aggregate-to-view: "true"`. Any change to
//! any ClusterRole re-checks every aggregating one; the rules are written
//! only when they differ, in a stable order (by source role name).

use std::sync::Arc;
use std::time::Duration;

use client::{Api, Client, Event, Informer};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::Runner;

pub struct AggregationController {
    client: Client,
    roles: Arc<Informer<ClusterRole>>,
}

pub fn start(ctx: &Context) -> Runner {
    let roles = ctx.factory.informer::<ClusterRole>();
    let queue = ctx.queue("clusterrole-aggregation");
    let q = queue.clone();
    let watched = roles.clone();
    roles.add_handler(move |event| {
        let (Event::Added(_) | Event::Updated { .. } | Event::Deleted(_)) = event;
        // Whichever role changed, the aggregating ones are what to look at.
        for role in watched.indexer().list() {
            if role.aggregation_rule.is_some() {
                q.add(role.metadata.name.clone().unwrap_or_default());
            }
        }
    });
    let controller = Arc::new(AggregationController {
        client: ctx.client.clone(),
        roles,
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| {
        Box::pin(controller::run(
            "clusterrole-aggregation",
            controller,
            queue,
            workers,
            stop,
        ))
    })
}

/// The aggregated rules of `role` among `all`, deduplicated.
pub fn aggregate(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let selectors = role
        .aggregation_rule
        .as_ref()
        .and_then(|a| a.cluster_role_selectors.clone())
        .unwrap_or_default();
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|other| other.metadata.name != role.metadata.name)
        .filter(|other| {
            selectors
                .iter()
                .any(|s| client::label_selector::matches(s, other.metadata.labels.as_ref()).unwrap_or(false))
        })
        .collect();
    sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for source in sources {
        for rule in source.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    rules
}

impl Reconciler for AggregationController {
    async fn reconcile(&self, name: &str) -> client::Result<Option<Duration>> {
        let Some(role) = self.roles.indexer().get(name) else {
            return Ok(None);
        };
        if role.aggregation_rule.is_none() {
            return Ok(None);
        }
        let rules = aggregate(&role, &self.roles.indexer().list());
        if role.rules.clone().unwrap_or_default() == rules {
            return Ok(None);
        }
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        let api: Api<ClusterRole> = Api::all(self.client.clone());
        match api.update(&updated).await {
            Ok(_) => Ok(None),
            // Changed meanwhile: the informer's next event brings it back.
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                ..Default::default()
            }]),
            ..Default::default()
        })
    }

    #[test]
    fn matching_roles_rules_are_gathered_once_in_name_order() {
        let aggregating = ClusterRole {
            metadata: ObjectMeta {
                name: Some("view".into()),
                ..Default::default()
            },
            aggregation_rule: Some(AggregationRule {
                cluster_role_selectors: Some(vec![LabelSelector {
                    match_labels: Some([("agg".to_string(), "view".to_string())].into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        };
        let all = vec![
            role("b-part", &[("agg", "view")], &["list"]),
            role("a-part", &[("agg", "view")], &["get"]),
            role("dup", &[("agg", "view")], &["get"]),
            role("other", &[("agg", "edit")], &["delete"]),
        ];
        let rules = aggregate(&aggregating, &all);
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list"]);
    }
}
