//! W3C trace context across gRPC calls.
//!
//! A scheduling decision starts in the scheduler, continues in the API
//! server and ends in the store; to see it as one trace, each call carries
//! the caller's span context in the `traceparent` (and `tracestate`) gRPC
//! metadata, as the W3C Trace Context standard says. The client side adds it
//! with the [`InjectContext`] interceptor; the server side reads it in
//! [`ServerTraceLayer`], which also opens the span every request runs in.

use std::task::{Context as TaskContext, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::instrument::{Instrument, Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes `cx` into `headers` as `traceparent`/`tracestate`.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Reads the caller's context from `headers`; empty when there is none.
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A tonic client interceptor that puts the current span's context into
/// every outgoing request: `Client::with_interceptor(channel, InjectContext)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectContext;

impl tonic::service::Interceptor for InjectContext {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = tracing::Span::current().context();
        inject(&cx, request.metadata_mut().as_mut());
        Ok(request)
    }
}

/// Wraps a client channel so every request carries the current span's
/// context in its headers: for clients whose interceptors are not ours to
/// set (the API server's etcd client), so the store's spans join the API
/// server's trace.
#[derive(Debug, Clone)]
pub struct InjectService<S> {
    inner: S,
}

impl<S> InjectService<S> {
    pub fn new(inner: S) -> Self {
        InjectService { inner }
    }
}

impl<S, B> tower::Service<http::Request<B>> for InjectService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let cx = tracing::Span::current().context();
        inject(&cx, request.headers_mut());
        self.inner.call(request)
    }
}

/// A tower layer for tonic servers: every request runs inside a
/// `grpc.request` span whose parent is the caller's context, so the server
/// side of a call joins the caller's trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> tower::Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace { inner }
    }
}

/// The service [`ServerTraceLayer`] wraps around each server.
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for ServerTrace<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
        );
        let parent = extract(request.headers());
        if let Err(e) = span.set_parent(parent) {
            tracing::trace!(error = %e, "cannot attach the caller's trace context");
        }
        self.inner.call(request).instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

    #[test]
    fn inject_then_extract_keeps_trace_and_span_ids() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sc.clone());
        let mut headers = HeaderMap::new();
        inject(&cx, &mut headers);
        assert_eq!(
            headers.get("traceparent").unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let back = extract(&headers);
        let back = back.span().span_context().clone();
        assert_eq!(back.trace_id(), sc.trace_id());
        assert_eq!(back.span_id(), sc.span_id());
    }

    #[test]
    fn no_header_means_no_parent() {
        let cx = extract(&HeaderMap::new());
        assert!(!cx.span().span_context().is_valid());
    }
}
