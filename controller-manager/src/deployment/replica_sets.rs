//! A Deployment's ReplicaSets: which one is new (its template is the
//! Deployment's), which are old, their revisions, and the writes that
//! create and scale them.
//!
//! The new ReplicaSet is named `<deployment>-<hash>`, where the hash is
//! taken over the pod template (and `status.collisionCount`, bumped when
//! a name is taken by something else), and it carries the hash as the
//! `pod-template-hash` label on itself, its selector and its pods, so that
//! the pods of different revisions never match each other's selectors.
//! Revisions are numbered in the `deployment.kubernetes.io/revision`
//! annotation; `kubectl rollout history` and `rollout undo` read them.

use std::collections::BTreeMap;

use client::{Api, Patch};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::controller_utils::controller_ref;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

pub fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

pub fn desired_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn annotation_i32(rs: &ReplicaSet, name: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(name)?.parse().ok()
}

/// The ReplicaSet's `desired-replicas` annotation: the Deployment's size
/// when the ReplicaSet was last scaled by it.
pub fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, DESIRED_REPLICAS)
}

pub fn max_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, MAX_REPLICAS)
}

/// FNV-1a, 32 bits: the hash upstream names its ReplicaSets with.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The `pod-template-hash` of a template: its hash in decimal, each digit
/// spelled with consonants and digits that cannot form words.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    fnv1a(&bytes)
        .to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// Whether the ReplicaSet runs the Deployment's current template (its own
/// `pod-template-hash` label aside).
pub fn runs_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(mut theirs) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return false;
    };
    let mut ours = template.clone();
    for t in [&mut theirs, &mut ours] {
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH);
        }
    }
    serde_json::to_value(&theirs).ok() == serde_json::to_value(&ours).ok()
}

/// Splits the claimed ReplicaSets into the new one (the oldest that runs
/// the template) and the old ones.
pub fn split(d: &Deployment, mut all: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    let Some(template) = d.spec.as_ref().map(|s| &s.template) else {
        return (None, all);
    };
    all.sort_by_key(|rs| {
        (
            rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            rs.metadata.name.clone(),
        )
    });
    let position = all.iter().position(|rs| runs_template(rs, template));
    let new = position.map(|i| all.remove(i));
    (new, all)
}

/// The annotations a Deployment hands down to its ReplicaSet.
fn inherited_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The new ReplicaSet for the Deployment's template, not yet created.
pub fn new_replica_set(d: &Deployment, revision: i64, replicas: i32, max_surge: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let mut template = spec.template;
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut selector = spec.selector;
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut annotations = inherited_annotations(d);
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), desired_replicas(d).to_string());
    annotations.insert(MAX_REPLICAS.into(), (desired_replicas(d) + max_surge).to_string());
    let name = d.metadata.name.as_deref().unwrap_or_default();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: d.metadata.namespace.clone(),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// Sets a ReplicaSet's size and the Deployment-size annotations; returns
/// the ReplicaSet as written.
pub async fn scale(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    replicas: i32,
    d: &Deployment,
    max_surge: i32,
) -> client::Result<ReplicaSet> {
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS: desired_replicas(d).to_string(),
            MAX_REPLICAS: (desired_replicas(d) + max_surge).to_string(),
        }},
        "spec": {"replicas": replicas},
    });
    api.patch(name, &Patch::Merge(patch)).await
}

/// Marks an existing ReplicaSet as the given revision, and hands down the
/// Deployment's annotations and minReadySeconds, as when it was created.
pub async fn set_revision(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    d: &Deployment,
    revision: i64,
) -> client::Result<ReplicaSet> {
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    let mut annotations: serde_json::Map<String, serde_json::Value> = inherited_annotations(d)
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string().into());
    let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
    let patch = json!({"metadata": {"annotations": annotations}, "spec": {"minReadySeconds": min_ready}});
    api.patch(name, &Patch::Merge(patch)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_changes_with_template_and_collisions() {
        let mut t = PodTemplateSpec::default();
        let a = template_hash(&t, None);
        assert_eq!(a, template_hash(&t, None));
        assert!(a.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
        assert_ne!(a, template_hash(&t, Some(1)));
        t.metadata = Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        });
        assert_ne!(a, template_hash(&t, None));
    }
}
