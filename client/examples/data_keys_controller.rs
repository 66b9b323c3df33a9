//! A complete controller, small enough to copy: it keeps the annotation
//! `example.kubernate.io/data-keys` of every ConfigMap equal to the sorted
//! list of its data keys.
//!
//! It has every part a real controller has (see docs/client.md):
//! a shared informer feeding a workqueue, workers that reconcile one key at
//! a time from the cache, retries with backoff, Events, and leader election
//! so that only one replica acts.
//!
//! Run it against a cluster:
//!
//! ```text
//! cargo run -p client --bin data-keys-controller -- --kubeconfig DIR/admin.kubeconfig
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::events::EventRecorder;
use client::indexer::key_of;
use client::leader_election::{LeaderElectionConfig, LeaderElector};
use client::{Api, Client, Event, Informer, Patch, SharedInformerFactory, WorkQueue};
use k8s_openapi::api::core::v1::ConfigMap;
use tokio_util::sync::CancellationToken;

const ANNOTATION: &str = "example.kubernate.io/data-keys";
const WORKERS: usize = 2;
/// After this many failed attempts a key is dropped until its next change.
const MAX_RETRIES: u32 = 5;

/// What the controller needs at hand while reconciling.
struct Controller {
    client: Client,
    configmaps: Arc<Informer<ConfigMap>>,
    queue: WorkQueue<String>,
    events: EventRecorder,
}

impl Controller {
    /// Brings one ConfigMap to the desired state. Reads come from the
    /// informer's cache; only the write goes to the API server.
    async fn reconcile(&self, key: &str) -> client::Result<()> {
        let Some(cm) = self.configmaps.indexer().get(key) else {
            return Ok(()); // Deleted meanwhile: nothing to do.
        };
        let keys: Vec<&str> = cm.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
        let desired = keys.join(",");
        let annotations: BTreeMap<String, String> = cm.metadata.annotations.clone().unwrap_or_default();
        if annotations.get(ANNOTATION) == Some(&desired) {
            return Ok(()); // Already right: reconciling is idempotent.
        }
        let namespace = cm.metadata.namespace.as_deref().unwrap_or("default");
        let name = cm.metadata.name.as_deref().unwrap_or_default();
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: desired}}});
        api.patch(name, &Patch::Merge(patch)).await?;
        let message = format!("data keys are now {desired:?}");
        if let Err(e) = self
            .events
            .record(cm.as_ref(), "Normal", "DataKeysUpdated", &message)
            .await
        {
            tracing::warn!(error = %e, "could not record an event");
        }
        Ok(())
    }

    /// A worker: takes keys until the queue shuts down.
    async fn work(self: Arc<Self>) {
        while let Some(key) = self.queue.get().await {
            match self.reconcile(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) if self.queue.num_requeues(&key) < MAX_RETRIES => {
                    tracing::warn!(%key, error = %e, "reconcile failed; will retry");
                    self.queue.add_rate_limited(key.clone());
                }
                Err(e) => {
                    tracing::error!(%key, error = %e, "reconcile failed too often; dropping");
                    self.queue.forget(&key);
                }
            }
            self.queue.done(&key);
        }
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs (RUST_LOG filters them) and, if OTEL_EXPORTER_OTLP_ENDPOINT is set, traces.
    let telemetry = common::telemetry::init("data-keys-controller", &Default::default())?;
    let path = arg("--kubeconfig").ok_or("usage: data_keys_controller --kubeconfig FILE [--server URL]")?;
    let mut config = common::kubeconfig::Kubeconfig::load_resolved(std::path::Path::new(&path))?;
    if let Some(server) = arg("--server") {
        config.server = server;
    }
    let client = Client::from_resolved(&config)?;

    // Informer → handler → queue: the handler only enqueues the key.
    let factory = Arc::new(SharedInformerFactory::new(client.clone()));
    let configmaps = factory.informer::<ConfigMap>();
    let queue = WorkQueue::new("data-keys");
    let enqueue = queue.clone();
    configmaps.add_handler(move |event| match event {
        Event::Added(cm) | Event::Updated { new: cm, .. } => enqueue.add(key_of(cm.as_ref())),
        Event::Deleted(_) => {}
    });
    let controller = Arc::new(Controller {
        client: client.clone(),
        configmaps,
        queue: queue.clone(),
        events: EventRecorder::new(client.clone(), "data-keys-controller"),
    });

    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });

    // Only the elected replica runs the informers and workers.
    let identity = format!("data-keys-{}", std::process::id());
    let election = LeaderElectionConfig::new("kube-system", "data-keys-controller", &identity);
    let outcome = LeaderElector::new(client, election)
        .run(stop, move |leading: CancellationToken| async move {
            factory.start(&leading);
            if !factory.wait_for_sync(Duration::from_secs(60)).await {
                tracing::error!("caches did not sync");
                return;
            }
            tracing::info!("caches synced; starting workers");
            for _ in 0..WORKERS {
                tokio::spawn(controller.clone().work());
            }
            leading.cancelled().await;
            queue.shutdown_with_drain().await;
        })
        .await;
    tracing::info!(?outcome, "stopped");
    telemetry.shutdown().await;
    Ok(())
}
