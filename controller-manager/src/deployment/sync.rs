//! One sync of one Deployment: which path it takes, the new ReplicaSet's
//! creation and revision, resizing without a rollout, and history cleanup.

use std::time::Duration;

use client::{Api, DeleteParams};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::replica_sets::{self as rsets, spec_replicas};
use super::{progress, surge_and_unavailable, DeploymentController};

/// What one sync works on; ReplicaSets are replaced by what the API
/// returns after each write, so later steps see earlier ones.
pub(super) struct Rollout<'a> {
    pub ctrl: &'a DeploymentController,
    pub d: Deployment,
    pub api: Api<ReplicaSet>,
    pub new_rs: Option<ReplicaSet>,
    pub old: Vec<ReplicaSet>,
    /// A Progressing reason and message from this sync (a new
    /// ReplicaSet created, say), for the status.
    pub note: Option<(&'static str, String)>,
}

impl<'a> Rollout<'a> {
    pub fn new(ctrl: &'a DeploymentController, d: Deployment, all: Vec<ReplicaSet>) -> Rollout<'a> {
        let api = ctrl.replicaset_api(d.metadata.namespace.as_deref().unwrap_or_default());
        let (new_rs, old) = rsets::split(&d, all);
        Rollout {
            ctrl,
            d,
            api,
            new_rs,
            old,
            note: None,
        }
    }

    fn spec(&self) -> k8s_openapi::api::apps::v1::DeploymentSpec {
        self.d.spec.clone().unwrap_or_default()
    }

    pub fn all(&self) -> Vec<&ReplicaSet> {
        self.new_rs.iter().chain(self.old.iter()).collect()
    }

    pub async fn run(&mut self) -> client::Result<Option<Duration>> {
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.finish().await;
        }
        let spec = self.spec();
        if spec.paused == Some(true) || self.is_scaling_event() {
            self.sync_revision(false).await?;
            self.scale().await?;
            if spec.paused == Some(true) {
                self.cleanup().await?;
            }
            return self.finish().await;
        }
        if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            self.recreate().await
        } else {
            self.rolling().await
        }
    }

    /// Writes the status and conditions; how long until the deadline check.
    pub async fn finish(&mut self) -> client::Result<Option<Duration>> {
        progress::sync_status(self).await
    }

    /// A resize: some active ReplicaSet was sized for another `replicas`.
    fn is_scaling_event(&self) -> bool {
        let desired = rsets::desired_replicas(&self.d);
        self.all()
            .into_iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .any(|rs| rsets::desired_annotation(rs).is_some_and(|a| a != desired))
    }

    fn max_old_revision(&self) -> i64 {
        self.old
            .iter()
            .map(|rs| rsets::revision(&rs.metadata))
            .max()
            .unwrap_or(0)
    }

    /// Makes sure the new ReplicaSet (created if `create` and missing)
    /// carries the newest revision, and the Deployment that revision.
    pub async fn sync_revision(&mut self, create: bool) -> client::Result<()> {
        let revision = self.max_old_revision() + 1;
        match self.new_rs.take() {
            Some(rs) => {
                let min_ready = self.spec().min_ready_seconds;
                let stale = rsets::revision(&rs.metadata) < revision
                    || rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
                let revision = revision.max(rsets::revision(&rs.metadata));
                let rs = if stale {
                    rsets::set_revision(&self.api, &rs, &self.d, revision).await?
                } else {
                    rs
                };
                self.new_rs = Some(rs);
                if self.note.is_none() {
                    let name = self
                        .new_rs
                        .as_ref()
                        .and_then(|r| r.metadata.name.clone())
                        .unwrap_or_default();
                    self.note = Some((progress::FOUND_NEW_RS, format!("Found new replica set \"{name}\"")));
                }
            }
            None if create => self.create_new(revision).await?,
            None => return Ok(()),
        }
        self.set_deployment_revision().await
    }

    async fn set_deployment_revision(&mut self) -> client::Result<()> {
        let Some(rs) = &self.new_rs else {
            return Ok(());
        };
        let revision = rsets::revision(&rs.metadata);
        if rsets::revision(&self.d.metadata) == revision {
            return Ok(());
        }
        let name = self.d.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.ctrl.client.clone(), self.namespace());
        let patch = serde_json::json!({"metadata": {"annotations": {rsets::REVISION: revision.to_string()}}});
        let updated = api.patch(name, &client::Patch::Merge(patch)).await?;
        self.d.metadata = updated.metadata;
        Ok(())
    }

    pub fn namespace(&self) -> &str {
        self.d.metadata.namespace.as_deref().unwrap_or_default()
    }

    async fn create_new(&mut self, revision: i64) -> client::Result<()> {
        let (surge, _) = surge_and_unavailable(&self.d);
        let replicas = self.new_rs_replicas(0, surge);
        let rs = rsets::new_replica_set(&self.d, revision, replicas, surge);
        match self.api.create(&rs).await {
            Ok(created) => {
                let name = created.metadata.name.clone().unwrap_or_default();
                let message = format!("Scaled up replica set {name} from 0 to {replicas}");
                self.ctrl.event(&self.d, "Normal", "ScalingReplicaSet", &message).await;
                self.note = Some((progress::NEW_RS_CREATED, format!("Created new replica set \"{name}\"")));
                self.new_rs = Some(created);
                Ok(())
            }
            Err(e) if e.is_already_exists() => {
                // Someone else's object has the name, or ours from a sync whose
                // result the cache has not shown yet.
                let name = rs.metadata.name.clone().unwrap_or_default();
                let existing = self.api.get(&name).await?;
                let ours = crate::controller_utils::controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let template = &self.spec().template;
                if ours && rsets::runs_template(&existing, template) {
                    self.new_rs = Some(existing);
                    return Ok(());
                }
                self.bump_collision_count().await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn bump_collision_count(&mut self) -> client::Result<()> {
        let count = self.d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0) + 1;
        let name = self.d.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.ctrl.client.clone(), self.namespace());
        let patch = serde_json::json!({"status": {"collisionCount": count}});
        api.patch_status(name, &client::Patch::Merge(patch)).await?;
        Ok(())
    }

    /// The new ReplicaSet's size under maxSurge: grow toward `replicas`
    /// while the sum over all ReplicaSets stays within `replicas + surge`.
    pub fn new_rs_replicas(&self, current: i32, surge: i32) -> i32 {
        let desired = rsets::desired_replicas(&self.d);
        if self.spec().strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            return desired;
        }
        let total: i32 = self.all().iter().map(|rs| spec_replicas(rs)).sum();
        let max_total = desired + surge;
        if total >= max_total {
            return current;
        }
        current + (max_total - total).min(desired - current).max(0)
    }

    /// Sets a ReplicaSet's size, with an event; the ReplicaSet is replaced
    /// by the written one.
    pub async fn scale_rs(&mut self, which: Which, replicas: i32) -> client::Result<()> {
        let (surge, _) = surge_and_unavailable(&self.d);
        let rs = match which {
            Which::New => self.new_rs.as_ref(),
            Which::Old(i) => self.old.get(i),
        };
        let Some(rs) = rs else { return Ok(()) };
        let from = spec_replicas(rs);
        let same_annotations = rsets::desired_annotation(rs) == Some(rsets::desired_replicas(&self.d))
            && rsets::max_annotation(rs) == Some(rsets::desired_replicas(&self.d) + surge);
        if from == replicas && same_annotations {
            return Ok(());
        }
        let updated = rsets::scale(&self.api, rs, replicas, &self.d, surge).await?;
        if from != replicas {
            let direction = if replicas > from { "up" } else { "down" };
            let name = updated.metadata.name.clone().unwrap_or_default();
            let message = format!("Scaled {direction} replica set {name} from {from} to {replicas}");
            self.ctrl.event(&self.d, "Normal", "ScalingReplicaSet", &message).await;
        }
        match which {
            Which::New => self.new_rs = Some(updated),
            Which::Old(i) => self.old[i] = updated,
        }
        Ok(())
    }

    /// A resize without a rollout: everything to the one active
    /// ReplicaSet, old ones to zero once the new one is saturated, or in
    /// proportion across several.
    pub async fn scale(&mut self) -> client::Result<()> {
        let desired = rsets::desired_replicas(&self.d);
        let active: Vec<Which> = self
            .indexed()
            .into_iter()
            .filter(|(_, rs)| spec_replicas(rs) > 0)
            .map(|(w, _)| w)
            .collect();
        if active.len() <= 1 {
            let target = active
                .first()
                .copied()
                .or(self.new_rs.as_ref().map(|_| Which::New))
                .or_else(|| self.latest_old().map(Which::Old));
            if let Some(which) = target {
                self.scale_rs(which, desired).await?;
            }
            return Ok(());
        }
        let saturated = self.new_rs.as_ref().is_some_and(|rs| {
            spec_replicas(rs) == desired
                && rsets::desired_annotation(rs) == Some(desired)
                && rsets::available_replicas(rs) == desired
        });
        if saturated {
            for i in 0..self.old.len() {
                self.scale_rs(Which::Old(i), 0).await?;
            }
            return Ok(());
        }
        self.scale_proportionally(&active).await
    }

    /// Spreads a change of size over the active ReplicaSets in proportion
    /// to their current sizes; the rounding remainder goes to the largest.
    async fn scale_proportionally(&mut self, active: &[Which]) -> client::Result<()> {
        let (surge, _) = surge_and_unavailable(&self.d);
        let desired = rsets::desired_replicas(&self.d);
        let allowed = if desired == 0 { 0 } else { desired + surge };
        let sizes: Vec<i32> = active
            .iter()
            .map(|w| spec_replicas(self.get(*w).unwrap_or(&ReplicaSet::default())))
            .collect();
        let total: i32 = sizes.iter().sum();
        if total == 0 {
            return Ok(());
        }
        // Even with nothing to add, every ReplicaSet is written so that its
        // desired-replicas annotation follows the Deployment's size.
        let mut targets: Vec<i32> = sizes
            .iter()
            .map(|s| i32::try_from(i64::from(*s) * i64::from(allowed) / i64::from(total)).unwrap_or(*s))
            .collect();
        let leftover = allowed - targets.iter().sum::<i32>();
        if let Some(largest) = (0..targets.len()).max_by_key(|i| sizes[*i]) {
            targets[largest] = (targets[largest] + leftover).max(0);
        }
        for (which, target) in active.iter().zip(targets) {
            self.scale_rs(*which, target).await?;
        }
        Ok(())
    }

    fn indexed(&self) -> Vec<(Which, &ReplicaSet)> {
        let new = self.new_rs.iter().map(|rs| (Which::New, rs));
        new.chain(self.old.iter().enumerate().map(|(i, rs)| (Which::Old(i), rs)))
            .collect()
    }

    fn get(&self, which: Which) -> Option<&ReplicaSet> {
        match which {
            Which::New => self.new_rs.as_ref(),
            Which::Old(i) => self.old.get(i),
        }
    }

    fn latest_old(&self) -> Option<usize> {
        (0..self.old.len()).max_by_key(|i| rsets::revision(&self.old[*i].metadata))
    }

    /// Deletes the oldest fully scaled-down ReplicaSets beyond
    /// `revisionHistoryLimit` (10 by default).
    pub async fn cleanup(&mut self) -> client::Result<()> {
        let limit = usize::try_from(self.spec().revision_history_limit.unwrap_or(10).max(0)).unwrap_or(10);
        let mut candidates: Vec<&ReplicaSet> = self
            .old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        if candidates.len() <= limit {
            return Ok(());
        }
        let excess = candidates.len() - limit;
        candidates.sort_by_key(|rs| rsets::revision(&rs.metadata));
        let deletable: Vec<(String, Option<String>)> = candidates
            .into_iter()
            .filter(|rs| {
                spec_replicas(rs) == 0
                    && rsets::status_replicas(rs) == 0
                    && rs.status.as_ref().and_then(|s| s.observed_generation) >= rs.metadata.generation
            })
            .take(excess)
            .map(|rs| (rs.metadata.name.clone().unwrap_or_default(), rs.metadata.uid.clone()))
            .collect();
        for (name, uid) in deletable {
            let params = DeleteParams {
                uid,
                ..Default::default()
            };
            match self.api.delete(&name, &params).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Names a ReplicaSet of the sync: the new one, or the i-th old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    New,
    Old(usize),
}
