//! The controller manager: the control loops that move actual state
//! toward desired state, in one process behind one leader election.
//!
//! Every controller has the same anatomy (see [`controller`]): shared
//! informers from the client library feed event handlers that put object
//! keys on the controller's own workqueue; workers take one key at a time,
//! read the object and everything related from the informers' caches, and
//! make the few API calls that close the gap. Each controller lives in a
//! file named after it:
//!
//! | `--controllers` name | file | keeps true |
//! |---|---|---|
//! | `replicaset`, `replicationcontroller` | [`replicaset`] | `spec.replicas` pods exist |
//! | `deployment` | [`deployment`] | ReplicaSets roll out the template |
//! | `garbagecollector` | [`garbage_collector`] | objects whose owners are gone are gone |
//! | `namespace` | [`namespace`] | a deleted namespace is emptied, then removed |
//! | `serviceaccount` | [`serviceaccount`] | every namespace has a `default` ServiceAccount |
//! | `root-ca-cert-publisher` | [`root_ca_publisher`] | every namespace has `kube-root-ca.crt` |
//! | `endpoint` | [`endpoints`] | Services' Endpoints list their ready pods |
//! | `endpointslice` | [`endpointslice`] | … and so do their EndpointSlices |
//! | `nodelifecycle` | [`node_lifecycle`] | silent nodes are tainted and emptied |
//! | `podgc` | [`pod_gc`] | finished and orphaned pods do not pile up |
//! | `clusterrole-aggregation` | [`clusterrole_aggregation`] | aggregating ClusterRoles hold their parts' rules |
//! | `resourcequota` | [`resource_quota`] | quotas' `status.used` counts what their namespace holds |
//! | `disruption` | [`disruption`] | budgets say how many of their pods may be evicted |
//!
//! Shared pieces: [`expectations`] (do not act on a stale cache),
//! [`controller_ref_manager`] (adopt and release pods),
//! [`controller_utils`] (pod readiness, owner references, deletion order).

pub mod clusterrole_aggregation;
pub mod config;
pub mod context;
pub mod controller;
pub mod controller_ref_manager;
pub mod controller_utils;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbage_collector;
pub mod namespace;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod replicaset;
pub mod resource_quota;
pub mod resources;
pub mod root_ca_publisher;
pub mod service_pods;
pub mod serviceaccount;
pub mod taints;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use client::leader_election::{LeaderElectionConfig, LeaderElector, Outcome};
use client::Client;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::context::Context;

/// A started controller: given the token that ends leadership, the future
/// that runs its workers.
pub type Runner = Box<dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Registers a controller's informers and handlers with the context.
pub type StartFn = fn(&Context) -> Runner;

/// Every controller, by its `--controllers` name.
pub const CONTROLLERS: &[(&str, StartFn)] = &[
    ("replicaset", replicaset::start::<ReplicaSet>),
    ("replicationcontroller", replicaset::start::<ReplicationController>),
    ("deployment", deployment::start),
    ("garbagecollector", garbage_collector::start),
    ("namespace", namespace::start),
    ("serviceaccount", serviceaccount::start),
    ("root-ca-cert-publisher", root_ca_publisher::start),
    ("endpoint", endpoints::start),
    ("endpointslice", endpointslice::start),
    ("nodelifecycle", node_lifecycle::start),
    ("podgc", pod_gc::start),
    ("clusterrole-aggregation", clusterrole_aggregation::start),
    ("resourcequota", resource_quota::start),
    ("disruption", disruption::start),
];

/// The index of pods (and other dependents) by owner uid.
pub const OWNER_INDEX: &str = "owner-uid";

/// How long the caches get to fill before the controllers give up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("unknown controller {0:?} in --controllers (known: {1})")]
    UnknownController(String, String),
    #[error("the caches did not sync within {0:?}")]
    NotSynced(Duration),
    #[error("leadership lost")]
    LostLeadership,
}

fn check_controller_names(config: &Config) -> Result<(), Error> {
    for entry in &config.controllers {
        let name = entry.strip_prefix('-').unwrap_or(entry);
        if name != "*" && !CONTROLLERS.iter().any(|(n, _)| *n == name) {
            let known: Vec<&str> = CONTROLLERS.iter().map(|(n, _)| *n).collect();
            return Err(Error::UnknownController(name.to_string(), known.join(", ")));
        }
    }
    Ok(())
}

/// Starts every enabled controller and runs them until `leading` ends.
async fn run_controllers(ctx: Context, leading: CancellationToken) -> Result<(), Error> {
    let mut runners = Vec::new();
    for (name, start) in CONTROLLERS {
        if ctx.config.enabled(name) {
            tracing::info!(controller = name, "starting");
            runners.push(start(&ctx));
        }
    }
    ctx.factory.start(&leading);
    if !ctx.factory.wait_for_sync(SYNC_TIMEOUT).await {
        return Err(Error::NotSynced(SYNC_TIMEOUT));
    }
    tracing::info!("caches synced; controllers running");
    let mut tasks = tokio::task::JoinSet::new();
    for runner in runners {
        tasks.spawn(runner(leading.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Runs the controller manager until `stop`.
pub async fn run(config: Config, stop: CancellationToken) -> Result<(), Error> {
    check_controller_names(&config)?;
    let mut resolved = common::kubeconfig::Kubeconfig::load_resolved(&config.kubeconfig)
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    if let Some(server) = &config.master {
        resolved.server = server.clone();
    }
    let client = Client::from_resolved(&resolved)?;
    let registry = common::metrics::registry();
    let listener = tokio::net::TcpListener::bind(config.metrics_bind_address)
        .await
        .map_err(|e| Error::Listen(config.metrics_bind_address, e))?;
    tracing::info!(address = %listener.local_addr().unwrap_or(config.metrics_bind_address), "serving /metrics");
    tokio::spawn(common::metrics::serve(listener, registry.clone(), stop.clone()));

    let root_ca = match &config.root_ca_file {
        Some(path) => std::fs::read(path).map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?,
        None => resolved.ca_pem.clone(),
    };
    let root_ca = String::from_utf8(root_ca).map_err(|_| Error::Kubeconfig("the root CA is not PEM text".into()))?;
    let config = Arc::new(config);
    let ctx = Context::new(client.clone(), config.clone(), registry.clone(), root_ca)?;
    if !config.leader_elect {
        return run_controllers(ctx, stop).await;
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let identity = format!("{host}_{}", std::process::id());
    let election = LeaderElectionConfig {
        lease_duration: config.leader_elect_lease_duration,
        renew_deadline: config.leader_elect_renew_deadline,
        retry_period: config.leader_elect_retry_period,
        ..LeaderElectionConfig::new(
            &config.leader_elect_resource_namespace,
            &config.leader_elect_resource_name,
            &identity,
        )
    };
    let elector = LeaderElector::new(client, election).with_metrics(&registry)?;
    let outcome = elector
        .run(stop, move |leading| async move {
            if let Err(e) = run_controllers(ctx, leading).await {
                tracing::error!(error = %e, "controllers stopped");
            }
        })
        .await;
    match outcome {
        Outcome::Lost => Err(Error::LostLeadership),
        Outcome::Stopped | Outcome::WorkDone => Ok(()),
    }
}
