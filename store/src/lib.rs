//! The store: Kubernate's etcd v3 compatible key-value store.
//!
//! It will serve etcd's gRPC API (KV, Watch, Lease, Maintenance, Cluster,
//! Lock, Election) over an MVCC keyspace replicated by Raft, on the client
//! port 2379, the peer port 2380 and the metrics port 2381. Nothing is here
//! yet: the binary says so and exits non-zero.
