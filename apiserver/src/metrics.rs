//! The API server's Prometheus metrics, under kube-apiserver's names so
//! its dashboards and alerts work.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    inflight: IntGaugeVec,
    /// etcd_request_duration_seconds{operation,type}: every store call.
    pub store_duration: HistogramVec,
    /// apiserver_storage_objects{resource}: objects stored per resource.
    pub stored_objects: IntGaugeVec,
    /// apiserver_registered_watchers{group,version,kind}: open watches.
    pub watchers: IntGaugeVec,
}

/// One open watch; leaves apiserver_registered_watchers when dropped.
pub struct Watcher(prometheus::IntGauge);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One request in flight; leaves the gauge when dropped.
pub struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// kube-apiserver's `verb` label for a Kubernetes verb.
pub fn verb_label(verb: &str) -> &'static str {
    match verb {
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        // Server-side apply is a patch to RBAC, APPLY to the metrics.
        "apply" => "APPLY",
        "delete" => "DELETE",
        "deletecollection" => "DELETECOLLECTION",
        _ => "UNKNOWN",
    }
}

/// The labels of one request.
pub struct Labels<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// `resource` (one object), `namespace` or `cluster`.
    pub scope: &'a str,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = common::metrics::registry();
        let requests = IntCounterVec::new(
            Opts::new(
                "apiserver_request_total",
                "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            ),
            &["verb", "group", "version", "resource", "subresource", "scope", "component", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_request_duration_seconds",
                "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            )
            .buckets(vec![0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0]),
            &["verb", "group", "version", "resource", "subresource", "scope", "component"],
        )?;
        let inflight = IntGaugeVec::new(
            Opts::new(
                "apiserver_current_inflight_requests",
                "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            ),
            &["request_kind"],
        )?;
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "etcd_request_duration_seconds",
                "Etcd request latency in seconds for each operation and object type.",
            )
            .buckets(vec![
                0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0,
                20.0, 30.0, 45.0, 60.0,
            ]),
            &["operation", "type"],
        )?;
        let stored_objects = IntGaugeVec::new(
            Opts::new(
                "apiserver_storage_objects",
                "Number of stored objects at the time of last check split by kind.",
            ),
            &["resource"],
        )?;
        let watchers = IntGaugeVec::new(
            Opts::new(
                "apiserver_registered_watchers",
                "Number of currently registered watchers for a given resources",
            ),
            &["group", "version", "kind"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(store_duration.clone()))?;
        registry.register(Box::new(stored_objects.clone()))?;
        registry.register(Box::new(watchers.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            inflight,
            store_duration,
            stored_objects,
            watchers,
        })
    }

    /// Counts an open watch of `resource` until the guard is dropped.
    pub fn watcher(&self, resource: &api::resources::ResourceInfo) -> Watcher {
        let gauge = self
            .watchers
            .with_label_values(&[resource.group, resource.version, resource.kind]);
        gauge.inc();
        Watcher(gauge)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self, mutating: bool) -> InFlight {
        let gauge = self
            .inflight
            .with_label_values(&[if mutating { "mutating" } else { "readOnly" }]);
        gauge.inc();
        InFlight(gauge)
    }

    /// Counts one finished request to `info` (REST or gRPC alike).
    pub fn record(&self, verb: &str, info: &crate::request_info::RequestInfo, code: u16, started: std::time::Instant) {
        let scope = match (&info.name, &info.namespace) {
            (Some(_), _) => "resource",
            (None, Some(_)) => "namespace",
            (None, None) => "cluster",
        };
        let labels = Labels {
            verb: verb_label(verb),
            group: info.resource.group,
            version: info.resource.version,
            resource: info.resource.plural,
            subresource: info.subresource.as_deref().unwrap_or_default(),
            scope,
        };
        self.observe(&labels, code, started.elapsed().as_secs_f64());
    }

    pub fn observe(&self, l: &Labels<'_>, code: u16, seconds: f64) {
        let code = code.to_string();
        self.requests
            .with_label_values(&[
                l.verb,
                l.group,
                l.version,
                l.resource,
                l.subresource,
                l.scope,
                "apiserver",
                &code,
            ])
            .inc();
        self.duration
            .with_label_values(&[
                l.verb,
                l.group,
                l.version,
                l.resource,
                l.subresource,
                l.scope,
                "apiserver",
            ])
            .observe(seconds);
    }
}
