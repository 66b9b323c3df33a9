//! The store: Kubernate's etcd v3 compatible key-value store.
//!
//! Any etcd v3 client (etcdctl, the etcd-client crate, the API server)
//! works against it unchanged: it serves etcd's gRPC API on the client port
//! (2379), speaks Raft with the other members on the peer port (2380), and
//! exposes etcd's metrics and `/health` on the metrics port (2381).
//!
//! A request travels: gRPC service ([`server`]) → the member ([`node`]),
//! which proposes writes through Raft ([`raft`]) and, for linearizable
//! reads, waits on a read index → the state machine applies committed
//! commands to the MVCC keyspace ([`mvcc`]) → watchers hear the events.
//!
//! # Layout
//!
//! - [`config`]: flags, with etcd's names.
//! - [`mvcc`]: the multi-version keyspace: revisions, history, compaction.
//! - [`raft`]: openraft wiring: the log on disk (behind a write-ahead
//!   file), the state machine and snapshots, the peer transport, pre-vote.
//! - [`node`]: one member; forwarding to the leader; read index.
//! - [`proposer`]: batching the leader's proposals into log entries.
//! - [`lessor`]: lease clocks and expiry on the leader.
//! - [`server`]: the etcd services (KV, Watch, Lease, Maintenance, Cluster,
//!   Lock, Election).
//! - [`gateway`]: etcd's JSON gateway over the same services.
//! - [`metrics`]: etcd's metric names; [`health`]: `/health` as etcd answers it.
//! - [`error`]: etcd's error codes and messages.

pub mod config;
pub mod error;
pub mod gateway;
pub mod health;
pub mod lessor;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod proposer;
pub mod raft;
pub mod server;
mod start;

pub use start::{run, start, Running, StartError};
