//! The Recreate strategy: every old pod is gone before a new one starts.

use std::time::Duration;

use super::progress;
use super::replica_sets::{desired_replicas, spec_replicas};
use super::sync::{Rollout, Which};

impl Rollout<'_> {
    pub async fn recreate(&mut self) -> client::Result<Option<Duration>> {
        self.sync_revision(false).await?;
        if self.old.iter().any(|rs| spec_replicas(rs) > 0) {
            for i in 0..self.old.len() {
                self.scale_rs(Which::Old(i), 0).await?;
            }
            return self.finish().await;
        }
        // The pod handler brings the next sync when the last old pod goes.
        if self.ctrl.pods_running(&self.old) {
            return self.finish().await;
        }
        if self.new_rs.is_none() {
            self.sync_revision(true).await?;
        }
        self.scale_rs(Which::New, desired_replicas(&self.d)).await?;
        if progress::complete(&self.d, &progress::calculate(self)) {
            self.cleanup().await?;
        }
        self.finish().await
    }
}
