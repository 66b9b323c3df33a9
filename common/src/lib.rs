//! Plumbing shared by every Kubernate binary.
//!
//! Each component needs the same few things before it can do its own work:
//! load its certificates and speak mutual TLS, serve or dial gRPC over that
//! TLS, read a kubeconfig, log and trace in a way operators can collect,
//! expose Prometheus metrics, and stop cleanly on SIGTERM. Keeping them here
//! means every component behaves the same way at its edges.
//!
//! # Layout
//!
//! - [`tls`]: rustls server and client configurations for mutual TLS, loaded
//!   from PEM files.
//! - [`grpc`]: a tonic server over those TLS configs (with the peer's
//!   certificates on every request) and a tonic channel that dials with them.
//! - [`serve`]: one port answering gRPC (HTTP/2) and HTTP/1.1 alike, over
//!   TLS or not: the API server's REST + gRPC port, the store's gRPC +
//!   JSON gateway.
//! - [`kubeconfig`]: the standard kubeconfig file, read and written.
//! - [`telemetry`]: structured logs (text or JSON, `RUST_LOG` filtering) and
//!   OTLP trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`trace_context`]: W3C trace context carried through gRPC metadata.
//! - [`metrics`]: a Prometheus registry and the `/metrics` HTTP endpoint.
//! - [`shutdown`]: one cancellation token cancelled by SIGTERM or SIGINT, and
//!   draining tasks under a grace period.
//! - [`unimplemented`]: what a component binary does before it exists.

pub mod flags;
pub mod grpc;
pub mod image_store;
pub mod kubeconfig;
pub mod metrics;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace_context;
pub mod unimplemented;
