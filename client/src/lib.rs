//! The component-side client library that the scheduler, controller
//! manager, kubelet and kube-proxy are built on.
//!
//! It follows the List-Watch design of Kubernetes' client-go, under the
//! names a reader of Kubernetes will recognise:
//!
//! - [`connection`]: a kubeconfig becomes a mutual-TLS gRPC [`Client`]
//!   with reconnects and a deadline on every call.
//! - [`api`]: typed verbs for k8s-openapi types ([`Api<Pod>`](api::Api)):
//!   get, list, watch, create, update, update_status, patch, delete,
//!   bind, evict.
//! - [`reflector`]: list, then watch from the list's version; resume after
//!   a broken watch, relist after 410 Gone.
//! - [`indexer`]: the thread-safe, indexed local cache.
//! - [`informer`]: reflector + indexer + event handlers; the
//!   [`SharedInformerFactory`] shares one
//!   watch per kind among a process's controllers.
//! - [`workqueue`] and [`rate_limiter`]: de-duplicating work queue with
//!   per-item backoff and an overall rate limit.
//! - [`leader_election`]: one active replica, through a Lease.
//! - [`events`]: Events about objects, repeats folded into counts.
//! - [`backoff`]: exponential backoff with jitter.
//! - [`dynamic`]: objects of kinds known only at run time.
//! - [`label_selector`]: label selectors matched and spelled.
//!
//! `docs/client.md` walks through a complete controller built from these.

pub mod api;
pub mod backoff;
pub mod connection;
pub mod dynamic;
pub mod error;
pub mod events;
pub mod indexer;
pub mod informer;
pub mod label_selector;
pub mod leader_election;
pub mod rate_limiter;
pub mod reflector;
pub mod workqueue;

pub use api::{Api, DeleteParams, ListParams, Patch, WatchEvent};
pub use connection::Client;
pub use error::{Error, Result};
pub use informer::{Event, Informer, SharedInformerFactory};
pub use workqueue::WorkQueue;
