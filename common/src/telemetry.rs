//! Logs and traces, set up the same way in every component.
//!
//! Logs go to standard error through `tracing`, as text for people or JSON
//! for log collectors (`--log-format`), filtered by `RUST_LOG` (default
//! `info`). When the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) variable is set, spans are also
//! exported over OTLP/gRPC to that collector; without it no exporter runs
//! and tracing costs nothing beyond the logs.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variables that turn trace export on, most specific first.
pub const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// The log filter when `RUST_LOG` is unset: our own info, and only
/// warnings from the chatty Raft library.
pub const DEFAULT_FILTER: &str = "info,openraft=warn";

/// Which spans are exported: our own at info and above (a request, a
/// reconcile, a scheduling cycle), none of the transport's or the Raft
/// library's internals, which would be thousands a second and crowd the
/// exporter's queue until it drops the spans that matter.
pub const TRACE_FILTER: &str = "info,openraft=off,h2=off,hyper=off,hyper_util=off,tower=off,tonic=off";

/// Errors while setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the OTLP trace exporter for {endpoint}: {detail}")]
    Exporter { endpoint: String, detail: String },
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The telemetry flags every component accepts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Log format: `text` for people, `json` for log collectors. Filter with RUST_LOG.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "KUBERNATE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Keeps the trace exporter alive; call [`Telemetry::shutdown`] before
/// exiting so buffered spans are sent.
#[must_use = "dropping the guard without shutdown() may lose buffered spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes buffered spans and stops the exporter. The flush blocks, so
    /// it runs on a blocking thread while the runtime keeps the exporter's
    /// connection going.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let done = tokio::task::spawn_blocking(move || provider.shutdown());
            match tokio::time::timeout(Duration::from_secs(10), done).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => eprintln!("trace exporter shutdown: {e}"),
                Ok(Err(e)) => eprintln!("trace exporter shutdown panicked: {e}"),
                Err(_) => eprintln!("trace exporter shutdown timed out"),
            }
        }
    }
}

/// The OTLP endpoint from the environment, if one is set and non-empty.
pub fn endpoint_from_env() -> Option<String> {
    ENDPOINT_VARS
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|v| !v.trim().is_empty())
}

/// Installs the global subscriber for a component named `service_name`:
/// logs as `args` say, and OTLP export when the environment asks for it.
/// Must run inside a Tokio runtime when exporting.
pub fn init(service_name: &str, args: &TelemetryArgs) -> Result<Telemetry, Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match args.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let provider = match endpoint_from_env() {
        Some(endpoint) => Some(otlp_provider(service_name, &endpoint)?),
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| layer(p).with_filter(EnvFilter::new(TRACE_FILTER)));
    tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init()
        .map_err(|e| Error::AlreadyInstalled(e.to_string()))?;
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::info!(service = service_name, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

/// A tracer provider that batches spans and sends them over OTLP/gRPC to
/// `endpoint` (for example `http://127.0.0.1:4317`).
pub fn otlp_provider(service_name: &str, endpoint: &str) -> Result<SdkTracerProvider, Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::Exporter {
            endpoint: endpoint.to_string(),
            detail: e.to_string(),
        })?;
    let resource = Resource::builder().with_service_name(service_name.to_string()).build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of
/// `provider`. Every span is exported, not only those logs would show.
pub fn layer<S>(provider: &SdkTracerProvider) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("kubernate"))
}
