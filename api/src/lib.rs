//! The shapes of the Kubernetes API as Kubernate serves it.
//!
//! The object types themselves are Kubernetes' own, from `k8s-openapi`
//! (pinned to Kubernetes 1.35), so the JSON Kubernate reads and writes is
//! exactly what kubectl and client-go expect. On top of them this crate
//! holds what every component needs to agree on: which resources exist and
//! how they are named ([`resources`]), and the internal gRPC protocol the
//! components use to reach the API server ([`proto`]).
//!
//! # Layout
//!
//! - [`resources`]: the table of served resources (group, version, kind,
//!   plural, short names, scope, verbs, subresources) behind discovery,
//!   routing, RBAC names and storage keys.
//! - [`proto`]: the generic `Resources` gRPC service mirroring the REST verbs,
//!   generated from `proto/kubernate/resource/v1/resource.proto`.
//! - [`k8s`]: the Kubernetes types (a re-export of `k8s-openapi`).

pub mod resources;

/// The Kubernetes API types, from `k8s-openapi` at Kubernetes 1.35.
pub use k8s_openapi as k8s;

/// The internal gRPC protocol: one generic service mirroring the REST verbs,
/// objects carried as Kubernetes JSON.
pub mod proto {
    #![allow(clippy::all, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("kubernate.resource.v1");
}
