//! The scheduler: assigns every unscheduled pod to a node, the way
//! kube-scheduler does.
//!
//! - [`queue`]: the scheduling queue (active, backoff, unschedulable).
//! - [`cache`]: nodes and their pods, with pods assumed onto a node while
//!   their binding is in flight.
//! - [`framework`]: profiles of filter and score plugins, and what they
//!   see of a node ([`framework::NodeInfo`]).
//! - [`plugins`]: NodeName, NodeUnschedulable, NodeResourcesFit,
//!   NodePorts, TaintToleration, NodeAffinity, PodTopologySpread,
//!   InterPodAffinity, NodeResourcesBalancedAllocation, ImageLocality.
//! - [`schedule_one`]: one decision: filter (in parallel, stopping at
//!   `percentageOfNodesToScore`), score, select.
//! - [`preemption`]: evicting lower-priority pods when nothing fits.
//! - [`scheduler`]: the loop, binding, events and conditions.
//! - [`config`]: flags and the KubeSchedulerConfiguration file.

pub mod cache;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod schedule_one;
pub mod scheduler;

use std::time::Duration;

use client::leader_election::{LeaderElectionConfig, LeaderElector, Outcome};
use client::{Client, SharedInformerFactory};
use tokio_util::sync::CancellationToken;

use crate::config::{Flags, Settings};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error("{0}")]
    Config(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("the caches did not sync within {0:?}")]
    NotSynced(Duration),
    #[error("leadership lost")]
    LostLeadership,
}

const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

async fn schedule(
    client: Client,
    settings: &Settings,
    metrics: metrics::Metrics,
    stop: CancellationToken,
) -> Result<(), Error> {
    let factory = SharedInformerFactory::new(client.clone());
    let scheduler = scheduler::Scheduler::new(client, settings, &factory, metrics);
    factory.start(&stop);
    if !factory.wait_for_sync(SYNC_TIMEOUT).await {
        return Err(Error::NotSynced(SYNC_TIMEOUT));
    }
    scheduler.run(stop).await;
    Ok(())
}

/// Runs the scheduler until `stop`.
pub async fn run(flags: Flags, stop: CancellationToken) -> Result<(), Error> {
    let text = match &flags.config {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?)
        }
        None => None,
    };
    let settings = Settings::from_file(text.as_deref(), &flags).map_err(Error::Config)?;
    let mut resolved = common::kubeconfig::Kubeconfig::load_resolved(&flags.kubeconfig)
        .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?;
    if let Some(server) = &flags.master {
        resolved.server = server.clone();
    }
    let client = Client::from_resolved(&resolved)?;
    let registry = common::metrics::registry();
    let metrics = metrics::Metrics::register(&registry)?;
    let listener = tokio::net::TcpListener::bind(flags.metrics_bind_address)
        .await
        .map_err(|e| Error::Listen(flags.metrics_bind_address, e))?;
    tokio::spawn(common::metrics::serve(listener, registry.clone(), stop.clone()));

    if !settings.leader_elect {
        return schedule(client, &settings, metrics, stop).await;
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let identity = format!("{host}_{}", std::process::id());
    let election = LeaderElectionConfig {
        retry_period: Duration::from_secs_f64(flags.leader_elect_retry_period_seconds.max(0.1)),
        ..LeaderElectionConfig::new(&settings.lease_namespace, &settings.lease_name, &identity)
    };
    let elector = LeaderElector::new(client.clone(), election).with_metrics(&registry)?;
    let settings = std::sync::Arc::new(settings);
    let outcome = elector
        .run(stop, move |leading| async move {
            if let Err(e) = schedule(client, &settings, metrics, leading).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        })
        .await;
    match outcome {
        Outcome::Lost => Err(Error::LostLeadership),
        Outcome::Stopped | Outcome::WorkDone => Ok(()),
    }
}
