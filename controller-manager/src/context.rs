//! What every controller is started with: the API client, the shared
//! informers, the flags, and the metrics registry for its workqueue.

use std::sync::Arc;

use client::events::EventRecorder;
use client::workqueue::Metrics;
use client::{Client, SharedInformerFactory, WorkQueue};
use prometheus::Registry;

use crate::config::Config;

pub struct Context {
    pub client: Client,
    pub factory: Arc<SharedInformerFactory>,
    pub config: Arc<Config>,
    pub registry: Registry,
    /// The cluster CA (PEM) that pods are told to trust.
    pub root_ca: Arc<String>,
    queue_metrics: Metrics,
}

impl Context {
    pub fn new(
        client: Client,
        config: Arc<Config>,
        registry: Registry,
        root_ca: String,
    ) -> prometheus::Result<Context> {
        let queue_metrics = Metrics::register(&registry)?;
        Ok(Context {
            factory: Arc::new(SharedInformerFactory::new(client.clone())),
            client,
            config,
            registry,
            root_ca: Arc::new(root_ca),
            queue_metrics,
        })
    }

    /// A workqueue reporting `workqueue_*{name}`.
    pub fn queue(&self, name: &str) -> WorkQueue<String> {
        WorkQueue::with_metrics(name, &self.queue_metrics)
    }

    /// Events under the controller's name as source component.
    pub fn recorder(&self, controller: &str) -> EventRecorder {
        EventRecorder::new(self.client.clone(), &format!("{controller}-controller"))
    }
}
