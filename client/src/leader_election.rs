//! Leader election on a coordination.k8s.io Lease, as client-go does it.
//!
//! Several replicas of a controller manager or scheduler run; one leads
//! and the others wait. The leader writes the Lease's `renewTime` every
//! retry period. A candidate takes the Lease only when it has seen the
//! Lease record unchanged for a whole lease duration (by its own clock, so
//! clock skew between machines does not matter), and writes it with
//! compare-and-swap, so of two candidates only one wins.
//!
//! Safety comes from the order of the durations: a leader that cannot
//! renew for `renew_deadline` stops its work, and `renew_deadline` is
//! shorter than `lease_duration`, the time anyone else must wait before
//! taking over. A leader that sees someone else holding the Lease stops at
//! once. On a clean stop the leader releases the Lease so a successor need
//! not wait.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use prometheus::{GaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::api::{timestamp_now, Api};
use crate::connection::Client;
use crate::error::Result;

/// Where the Lease is and how the election is timed; client-go's defaults.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's name (usually hostname plus a unique suffix).
    pub identity: String,
    /// How long others wait, after the last change they saw, before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// How a [`LeaderElector::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped from outside (the Lease was released if held).
    Stopped,
    /// The work finished by itself (the Lease was released).
    WorkDone,
    /// Leadership was lost: renewals failed for the renew deadline, or
    /// another candidate holds the Lease. The work has been told to stop.
    Lost,
}

enum Attempt {
    Held,
    /// Someone else holds a valid lease.
    Taken(String),
    Failed,
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The Lease spec last seen and when it was first seen so.
    observed: Mutex<Option<(LeaseSpec, Instant)>>,
    status: Option<GaugeVec>,
}

fn now() -> MicroTime {
    MicroTime(timestamp_now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(None),
            status: None,
        }
    }

    /// Reports leader_election_master_status{name} (1 while leading) in `registry`.
    pub fn with_metrics(mut self, registry: &Registry) -> prometheus::Result<LeaderElector> {
        let gauge = GaugeVec::new(
            Opts::new(
                "leader_election_master_status",
                "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
            ),
            &["name"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        gauge.with_label_values(&[&self.config.name]).set(0.0);
        self.status = Some(gauge);
        Ok(self)
    }

    fn set_status(&self, leading: bool) {
        if let Some(g) = &self.status {
            g.with_label_values(&[&self.config.name])
                .set(if leading { 1.0 } else { 0.0 });
        }
    }

    /// Campaigns until elected, then runs `work` with a token that is
    /// cancelled the moment leadership is lost or `stop` is cancelled.
    pub async fn run<F, Fut>(&self, stop: CancellationToken, work: F) -> Outcome
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let c = &self.config;
        loop {
            if let Attempt::Held = self.try_acquire_or_renew().await {
                break;
            }
            // client-go's jitter: wait between 1 and 2.2 retry periods.
            let wait = c.retry_period.mul_f64(1.0 + 1.2 * fastrand::f64());
            tokio::select! {
                _ = stop.cancelled() => return Outcome::Stopped,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(lease = %c.name, identity = %c.identity, "became leader");
        self.set_status(true);
        let leading = stop.child_token();
        // Should this future be dropped (its task aborted), the work is
        // told to stop as well.
        let _stop_work_on_drop = leading.clone().drop_guard();
        let mut task = tokio::spawn(work(leading.clone()));
        let mut renewed = Instant::now();
        let outcome = loop {
            tokio::select! {
                // Stop first: cancelling it also ends the work.
                biased;
                _ = stop.cancelled() => break Outcome::Stopped,
                _ = &mut task => break Outcome::WorkDone,
                _ = tokio::time::sleep(c.retry_period) => {}
            }
            match self.try_acquire_or_renew().await {
                Attempt::Held => renewed = Instant::now(),
                Attempt::Taken(holder) => {
                    tracing::warn!(lease = %c.name, %holder, "lease taken by another candidate; stopping");
                    break Outcome::Lost;
                }
                Attempt::Failed if renewed.elapsed() >= c.renew_deadline => {
                    tracing::warn!(lease = %c.name, "could not renew within the renew deadline; stopping");
                    break Outcome::Lost;
                }
                Attempt::Failed => {}
            }
        };
        leading.cancel();
        self.set_status(false);
        if outcome != Outcome::Lost {
            self.release().await;
        }
        outcome
    }

    /// One round: create the Lease, renew it, or take it over if it expired.
    async fn try_acquire_or_renew(&self) -> Attempt {
        let c = &self.config;
        let lease = match self.api.get_opt(&c.name).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::debug!(lease = %c.name, error = %e, "cannot read the lease");
                return Attempt::Failed;
            }
        };
        let Some(mut lease) = lease else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(c.name.clone()),
                    namespace: Some(c.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(c.identity.clone()),
                    lease_duration_seconds: Some(seconds(c.lease_duration)),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&fresh).await {
                Ok(created) => {
                    self.observe(created.spec.unwrap_or_default());
                    Attempt::Held
                }
                Err(_) => Attempt::Failed,
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let seen_since = self.observe(spec.clone());
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == c.identity;
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(c.lease_duration);
        if !mine && !holder.is_empty() && seen_since.elapsed() < duration {
            return Attempt::Taken(holder);
        }
        let mut next = LeaseSpec {
            holder_identity: Some(c.identity.clone()),
            lease_duration_seconds: Some(seconds(c.lease_duration)),
            renew_time: Some(now()),
            ..spec.clone()
        };
        if !mine {
            next.acquire_time = Some(now());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next);
        match self.api.update(&lease).await {
            Ok(written) => {
                self.observe(written.spec.unwrap_or_default());
                Attempt::Held
            }
            Err(e) => {
                tracing::debug!(lease = %c.name, error = %e, "cannot write the lease");
                Attempt::Failed
            }
        }
    }

    /// Records the spec seen; returns since when it has looked this way.
    fn observe(&self, spec: LeaseSpec) -> Instant {
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match &*observed {
            Some((seen, since)) if *seen == spec => *since,
            _ => {
                let since = Instant::now();
                *observed = Some((spec, since));
                since
            }
        }
    }

    /// Gives the Lease up (holder cleared, 1 s duration) if still ours.
    async fn release(&self) {
        let c = &self.config;
        let Ok(Some(mut lease)) = self.api.get_opt(&c.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(&c.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        lease.spec = Some(spec);
        if let Err(e) = self.api.update(&lease).await {
            tracing::warn!(lease = %c.name, error = %e, "could not release the lease");
        }
    }

    /// The Lease's current holder, if any.
    pub async fn holder(&self) -> Result<Option<String>> {
        let lease = self.api.get_opt(&self.config.name).await?;
        Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    }
}
