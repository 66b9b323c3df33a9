//! The API server: the Kubernetes REST API over the store.
//!
//! It is the only component that talks to the store, with the layers
//! Kubernetes documents: API layer ([`rest`], [`request_info`],
//! [`discovery`]) → access control ([`authn`]) → registry ([`registry`])
//! → storage ([`storage`]).
//!
//! It serves discovery, OpenAPI and every verb (get, list, watch, create,
//! update, JSON/merge/strategic patch, server-side apply, delete,
//! deletecollection) of every built-in resource and of custom resources,
//! from JSON, YAML or protobuf bodies (and in JSON or protobuf answers),
//! authenticated (certificates, tokens) and authorized (RBAC, the Node
//! authorizer), over REST and the internal gRPC API alike, with lists and
//! watches served from the watch cache. Not yet: pods exec, attach and
//! port-forward; custom resources' printer columns and scale.
//!
//! # Layout
//!
//! - [`config`]: flags, with kube-apiserver's names.
//! - [`rest`]: the one HTTP handler: authenticate, route, serve.
//! - [`grpc`]: the internal gRPC API over the same verbs.
//! - [`request_info`]: what a path names (resource, namespace, name, subresource).
//! - [`discovery`]: `/version`, `/api`, `/apis`, resource lists.
//! - [`authn`]: who is asking: certificates, tokens, impersonation.
//! - [`max_in_flight`]: the in-flight limits (429 beyond them).
//! - [`protobuf`]: protobuf bodies and answers (client-go's typed clients).
//! - [`openapi_protobuf`]: `/openapi/v2` in gnostic's protobuf, as kubectl reads it.
//! - [`watch_cache`], [`watch`]: lists and watches from memory; the watch verb.
//! - [`health`]: `/healthz`, `/livez`, `/readyz` and their checks.
//! - [`limit_ranger`], [`resource_quota`]: LimitRange and ResourceQuota admission.
//! - [`authz`], [`reviews`], [`audit`]: authorization, access and token reviews, the audit log.
//! - [`openapi`]: `/openapi/v2` and `/openapi/v3` from the types' schemas.
//! - [`defaults`], [`validation`]: Kubernetes' defaults and rules (422 with the field).
//! - [`deletion`]: preconditions, graceful deletion, finalizers, propagation.
//! - [`field_validation`]: typed decoding; unknown fields dropped or refused.
//! - [`types`]: the served kinds as Rust types: schemas and typed round trips.
//! - [`metrics`]: kube-apiserver's metric names, served on `/metrics`.
//! - [`verbs`]: get, list, watch, create, update, patch, delete, shared by REST and gRPC.
//! - [`registry`]: metadata rules on create and update.
//! - [`services`], [`allocator`]: Service defaults, ClusterIP and NodePort allocation.
//! - [`server_side_apply`], [`managed_fields`]: apply patches and field ownership.
//! - [`conversion`]: versions sharing storage (HPA v1/v2, the two Event APIs, CRD versions).
//! - [`crd`], [`structural`]: custom resources, served as their CRDs define them.
//! - [`scale`]: the scale subresource of workloads.
//! - [`binding`], [`eviction`]: the pods/binding and pods/eviction subresources.
//! - [`selector`]: label and field selectors.
//! - [`storage`]: objects in the store via the etcd v3 API.
//! - [`status`]: `metav1.Status` errors.
//! - [`table`]: Table output, the columns `kubectl get` prints.
//! - [`strategic_merge`]: strategic merge patch (kubectl apply, patch, edit).

pub mod allocator;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod binding;
pub mod config;
pub mod conversion;
pub mod crd;
pub mod defaults;
pub mod deletion;
pub mod discovery;
pub mod eviction;
pub mod field_validation;
pub mod grpc;
pub mod health;
pub mod json_path;
pub mod limit_ranger;
pub mod managed_fields;
pub mod max_in_flight;
pub mod metrics;
pub mod openapi;
pub mod openapi_protobuf;
pub mod pod_logs;
pub mod priority;
pub mod protobuf;
pub mod registry;
pub mod request_info;
pub mod resource_quota;
pub mod rest;
pub mod reviews;
pub mod scale;
pub mod selector;
pub mod server_side_apply;
pub mod service_account_token_volume;
pub mod services;
mod start;
pub mod status;
pub mod storage;
pub mod strategic_merge;
pub mod structural;
pub mod table;
pub mod types;
pub mod validation;
pub mod verbs;
pub mod warnings;
pub mod watch;
pub mod watch_cache;
pub mod watch_prefix;

pub use start::{run, start, Running, StartError, BUILT_IN_NAMESPACES};
