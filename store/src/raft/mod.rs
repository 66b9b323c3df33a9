//! Consensus: the store's commands replicated by Raft (openraft).
//!
//! Every change to the keyspace is a [`Command`] appended to the Raft log.
//! Once a quorum of members has made the entry durable (fsync), the entry
//! is committed and each member applies it to its own copy of the state
//! machine in log order, so all members hold the same keyspace at the same
//! log index. openraft provides the protocol (elections with randomized
//! timeouts, log replication, joint-consensus membership changes, learners,
//! snapshots for lagging members); this module provides what it asks of an
//! application:
//!
//! - [`log_store`]: the Raft log and vote, on disk (redb, group commit);
//! - [`wal`]: the log store's write-ahead file (one cheap sync per group);
//! - [`state_machine`]: applying commands to the MVCC keyspace and leases,
//!   and building and installing snapshots;
//! - [`network`]: sending Raft messages to peers over gRPC, and the peer
//!   service that receives them;
//! - [`pre_vote`]: the election timer, which campaigns only after a
//!   majority said it would vote (openraft 0.9 has no pre-vote).

pub mod log_store;
pub mod network;
pub mod pre_vote;
pub mod state_machine;
pub mod wal;

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A member's identity in Raft (etcd calls it the member ID).
pub type NodeId = u64;

/// What Raft knows about a member: how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's `--name`.
    pub name: String,
    /// Where peers reach it (`--initial-advertise-peer-urls`).
    pub peer_urls: Vec<String>,
    /// Where clients reach it (`--advertise-client-urls`).
    pub client_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.peer_urls.join(","))
    }
}

/// One replicated change. Requests keep etcd's protobuf encoding, so what
/// is applied is exactly what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// An encoded `etcdserverpb.PutRequest`.
    Put(Vec<u8>),
    /// An encoded `etcdserverpb.DeleteRangeRequest`.
    DeleteRange(Vec<u8>),
    /// An encoded `etcdserverpb.TxnRequest`.
    Txn(Vec<u8>),
    /// Drop history before this revision.
    Compact(i64),
    /// Grant a lease; the leader chose `id` when the client asked for 0.
    LeaseGrant { id: i64, ttl: i64 },
    /// Revoke a lease and delete its keys (client revoke or expiry).
    LeaseRevoke { id: i64 },
    /// Raise (`activate`) or clear an alarm of a member.
    Alarm { activate: bool, member: u64, alarm: i32 },
    /// Several client commands in one log entry, applied in order, each
    /// on its own (see `proposer`).
    Batch(Vec<Command>),
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Put(b) => write!(f, "put({} bytes)", b.len()),
            Command::DeleteRange(b) => write!(f, "delete_range({} bytes)", b.len()),
            Command::Txn(b) => write!(f, "txn({} bytes)", b.len()),
            Command::Compact(r) => write!(f, "compact({r})"),
            Command::LeaseGrant { id, ttl } => write!(f, "lease_grant({id:x}, {ttl}s)"),
            Command::LeaseRevoke { id } => write!(f, "lease_revoke({id:x})"),
            Command::Alarm {
                activate,
                member,
                alarm,
            } => write!(f, "alarm({activate}, {member:x}, {alarm})"),
            Command::Batch(commands) => write!(f, "batch({})", commands.len()),
        }
    }
}

/// The result of applying a command: the encoded etcd response (its header
/// revision already set), or the error etcd would return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub revision: i64,
    pub outcome: Result<Vec<u8>, Error>,
}

/// The replies of one log entry: one per command (several for a batch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replies(pub Vec<Reply>);

openraft::declare_raft_types!(
    /// The store's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = Replies,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of this member.
pub type Raft = openraft::Raft<TypeConfig>;
/// openraft's storage error for this configuration.
pub type StorageError = openraft::StorageError<NodeId>;

/// Encodes a value for the log, a snapshot or a peer message.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes what [`encode`] produced.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
