//! The scheduler's metrics, under kube-scheduler's names.

use prometheus::{Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub attempts: CounterVec,
    pub attempt_duration: HistogramVec,
    pub pending: GaugeVec,
    pub preemption_attempts: Counter,
    pub preemption_victims: Histogram,
    pub sli_duration: HistogramVec,
    pub extension_point: HistogramVec,
    pub cache_nodes: Gauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let latency = prometheus::exponential_buckets(0.001, 2.0, 15)?;
        let m = Metrics {
            attempts: CounterVec::new(
                Opts::new("scheduler_schedule_attempts_total", "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem."),
                &["result", "profile"],
            )?,
            attempt_duration: HistogramVec::new(
                HistogramOpts::new("scheduler_scheduling_attempt_duration_seconds", "Scheduling attempt latency in seconds (scheduling algorithm + binding)")
                    .buckets(latency.clone()),
                &["result", "profile"],
            )?,
            pending: GaugeVec::new(
                Opts::new("scheduler_pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods."),
                &["queue"],
            )?,
            preemption_attempts: Counter::new("scheduler_preemption_attempts_total", "Total preemption attempts in the cluster till now")?,
            preemption_victims: Histogram::with_opts(
                HistogramOpts::new("scheduler_preemption_victims", "Number of selected preemption victims")
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 7)?),
            )?,
            sli_duration: HistogramVec::new(
                HistogramOpts::new("scheduler_pod_scheduling_sli_duration_seconds", "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.")
                    .buckets(prometheus::exponential_buckets(0.01, 2.0, 20)?),
                &["attempts"],
            )?,
            extension_point: HistogramVec::new(
                HistogramOpts::new("scheduler_framework_extension_point_duration_seconds", "Latency for running all plugins of a specific extension point.")
                    .buckets(prometheus::exponential_buckets(0.0001, 2.0, 12)?),
                &["extension_point", "status", "profile"],
            )?,
            cache_nodes: Gauge::new("scheduler_cache_size_nodes", "Number of nodes in the scheduler cache.")?,
        };
        registry.register(Box::new(m.attempts.clone()))?;
        registry.register(Box::new(m.attempt_duration.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.preemption_attempts.clone()))?;
        registry.register(Box::new(m.preemption_victims.clone()))?;
        registry.register(Box::new(m.sli_duration.clone()))?;
        registry.register(Box::new(m.extension_point.clone()))?;
        registry.register(Box::new(m.cache_nodes.clone()))?;
        for q in ["active", "backoff", "unschedulable", "gated"] {
            m.pending.with_label_values(&[q]).set(0.0);
        }
        Ok(m)
    }
}
