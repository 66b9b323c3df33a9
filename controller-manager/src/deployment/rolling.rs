//! The RollingUpdate strategy: grow the new ReplicaSet within maxSurge,
//! shrink the old ones within maxUnavailable, one step per sync; every
//! ReplicaSet status change brings the next sync.

use std::time::Duration;

use super::replica_sets::{available_replicas, desired_replicas, spec_replicas};
use super::sync::{Rollout, Which};
use super::{progress, surge_and_unavailable};

impl Rollout<'_> {
    pub async fn rolling(&mut self) -> client::Result<Option<Duration>> {
        self.sync_revision(true).await?;
        if self.reconcile_new().await? || self.reconcile_old().await? {
            return self.finish().await;
        }
        if progress::complete(&self.d, &progress::calculate(self)) {
            self.cleanup().await?;
        }
        self.finish().await
    }

    /// Scales the new ReplicaSet toward `replicas` as far as maxSurge allows.
    async fn reconcile_new(&mut self) -> client::Result<bool> {
        let Some(new) = &self.new_rs else {
            return Ok(false);
        };
        let (current, desired) = (spec_replicas(new), desired_replicas(&self.d));
        let target = if current > desired {
            desired
        } else {
            let (surge, _) = surge_and_unavailable(&self.d);
            self.new_rs_replicas(current, surge)
        };
        if target == current {
            return Ok(false);
        }
        self.scale_rs(Which::New, target).await?;
        Ok(true)
    }

    /// Scales old ReplicaSets down: first their unavailable pods, then
    /// available ones while `replicas - maxUnavailable` stay available.
    async fn reconcile_old(&mut self) -> client::Result<bool> {
        let old_total: i32 = self.old.iter().map(spec_replicas).sum();
        if old_total == 0 {
            return Ok(false);
        }
        let all_total: i32 = self.all().into_iter().map(spec_replicas).sum();
        let (_, max_unavailable) = surge_and_unavailable(&self.d);
        let min_available = desired_replicas(&self.d) - max_unavailable;
        let new_unavailable = self
            .new_rs
            .as_ref()
            .map_or(0, |rs| spec_replicas(rs) - still_available(rs));
        let max_scaled_down = all_total - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.scale_down_unhealthy(max_scaled_down).await?;
        let scaled = self.scale_down_available(min_available).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Old pods that are not available cost no availability to remove.
    async fn scale_down_unhealthy(&mut self, max: i32) -> client::Result<i32> {
        let mut total = 0;
        for i in 0..self.old.len() {
            if total >= max {
                break;
            }
            let replicas = spec_replicas(&self.old[i]);
            let unhealthy = replicas - still_available(&self.old[i]);
            if replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max - total).min(unhealthy);
            self.scale_rs(Which::Old(i), replicas - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// Removes available old pods, oldest ReplicaSet first, down to
    /// `min_available` available pods overall.
    async fn scale_down_available(&mut self, min_available: i32) -> client::Result<i32> {
        let available: i32 = self.all().into_iter().map(still_available).sum();
        if available <= min_available {
            return Ok(0);
        }
        let budget = available - min_available;
        let mut total = 0;
        for i in 0..self.old.len() {
            if total >= budget {
                break;
            }
            let replicas = spec_replicas(&self.old[i]);
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(budget - total);
            self.scale_rs(Which::Old(i), replicas - down).await?;
            total += down;
        }
        Ok(total)
    }
}

/// The available pods a ReplicaSet will keep: its status may still count
/// pods that a just-lowered `spec.replicas` is about to remove, and
/// counting those would scale the old ReplicaSets down past
/// `maxUnavailable`.
fn still_available(rs: &k8s_openapi::api::apps::v1::ReplicaSet) -> i32 {
    available_replicas(rs).min(spec_replicas(rs))
}
