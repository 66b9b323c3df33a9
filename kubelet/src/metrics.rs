//! The kubelet's metrics, under upstream's names.

use std::collections::HashSet;

use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, Opts, Registry};

use crate::runtime::{ContainerStatus, State};

#[derive(Clone)]
pub struct Metrics {
    pub running_pods: Gauge,
    pub running_containers: GaugeVec,
    pub pod_start_duration: Histogram,
    pub worker_duration: Histogram,
    pub relist_duration: Histogram,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            running_pods: Gauge::new("kubelet_running_pods", "Number of pods that have a running pod sandbox")?,
            running_containers: GaugeVec::new(
                Opts::new("kubelet_running_containers", "Number of containers currently running"),
                &["container_state"],
            )?,
            pod_start_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pod_start_duration_seconds",
                    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
                )
                .buckets(vec![
                    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0,
                ]),
            )?,
            worker_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pod_worker_duration_seconds",
                    "Duration in seconds to sync a single pod.",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.5, 10)?),
            )?,
            relist_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pleg_relist_duration_seconds",
                    "Duration in seconds for relisting pods in PLEG.",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.5, 10)?),
            )?,
        };
        registry.register(Box::new(m.running_pods.clone()))?;
        registry.register(Box::new(m.running_containers.clone()))?;
        registry.register(Box::new(m.pod_start_duration.clone()))?;
        registry.register(Box::new(m.worker_duration.clone()))?;
        registry.register(Box::new(m.relist_duration.clone()))?;
        Ok(m)
    }

    pub fn update_running(&self, containers: &[ContainerStatus]) {
        let mut states = [("created", 0.0), ("running", 0.0), ("exited", 0.0)];
        let mut pods = HashSet::new();
        for c in containers {
            let i = match c.state {
                State::Created => 0,
                State::Running { .. } => {
                    pods.insert(c.config.pod_uid.as_str());
                    1
                }
                State::Exited { .. } => 2,
            };
            states[i].1 += 1.0;
        }
        for (state, n) in states {
            self.running_containers.with_label_values(&[state]).set(n);
        }
        self.running_pods.set(pods.len() as f64);
    }
}
