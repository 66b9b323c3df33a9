//! One store member: its Raft, its state machine, and how it serves a
//! client whether or not it is the leader.
//!
//! Only the leader can append to the Raft log. A write that reaches a
//! follower is forwarded to the leader over the peer port and the answer
//! comes back the same way, so clients may talk to any member, as with
//! etcd. Linearizable reads (the default) use a read index: the serving
//! member learns from the leader, which confirms its leadership with a
//! quorum, the log index that was committed when the read arrived, and
//! waits until its own state machine has applied that far. Serializable
//! reads skip this and read the local state as it is.

use std::time::Duration;

use etcd_client::proto::PbResponseHeader;
use openraft::error::{CheckIsLeaderError, RaftError};

use crate::error::Error;
use crate::proposer::{Proposer, Rejected};
use crate::raft::network::proto::{Payload, ReadIndexRequest};
use crate::raft::network::Dialer;
use crate::raft::state_machine::StateMachine;
use crate::raft::{decode, encode, Command, Member, NodeId, Raft, Reply};

/// Limits a member applies to client requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a proposal or read barrier may take before `request timed out`.
    pub request_timeout: Duration,
    /// The storage quota (`--quota-backend-bytes`); beyond it the NOSPACE alarm is raised.
    pub quota_bytes: i64,
    /// The largest request accepted (`--max-request-bytes`).
    pub max_request_bytes: usize,
    /// How often idle watchers with `progress_notify` hear the revision.
    pub progress_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(7),
            quota_bytes: 2 * 1024 * 1024 * 1024,
            max_request_bytes: 1536 * 1024,
            progress_interval: crate::server::watch::PROGRESS_INTERVAL,
        }
    }
}

/// Why forwarding a proposal failed.
enum Forward {
    /// The leader could not be reached: the proposal was not delivered.
    Unreachable,
    Failed(Error),
}

/// A running member.
pub struct Node {
    pub id: NodeId,
    pub cluster_id: u64,
    /// `--initial-cluster-token`, from which member ids are derived.
    pub cluster_token: String,
    pub name: String,
    pub raft: Raft,
    pub sm: StateMachine,
    pub dialer: Dialer,
    pub limits: Limits,
    /// Batches this member's proposals while it leads.
    pub proposer: Proposer,
    /// Callers waiting for a read barrier (see [`Node::read_barrier`]).
    pub reads: ReadQueue,
    /// The election timer and pre-vote (see `raft::pre_vote`).
    pub elections: crate::raft::pre_vote::Elections,
    /// The Raft log (a handle sharing openraft's): pre-vote's log check and
    /// the committed index (`LogStore::committed`).
    pub log: crate::raft::log_store::LogStore,
    /// `etcd_server_proposals_failed_total`.
    pub failed_proposals: prometheus::IntCounter,
}

/// The queue of callers waiting for the next read-index round.
pub type ReadQueue = tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<Result<u64, Error>>>;

/// Serves the read queue: one read-index round for everyone waiting.
pub async fn run_read_rounds(
    node: std::sync::Weak<Node>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<Result<u64, Error>>>,
) {
    while let Some(first) = queue.recv().await {
        let mut waiters = vec![first];
        while let Ok(next) = queue.try_recv() {
            waiters.push(next);
        }
        let Some(node) = node.upgrade() else { return };
        let result = node.barrier_once().await;
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

impl Node {
    /// The etcd response header for an answer at `revision`.
    pub fn header(&self, revision: i64) -> PbResponseHeader {
        let term = self.raft.metrics().borrow().current_term;
        PbResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: term,
        }
    }

    /// The current revision of the local keyspace.
    pub fn revision(&self) -> i64 {
        self.sm.state.read().map(|s| s.kv.revision()).unwrap_or(0)
    }

    /// Replicates `command` through the leader and returns its result once
    /// it is committed and applied.
    pub async fn propose(&self, command: Command) -> Result<Reply, Error> {
        let attempt = async {
            loop {
                let (leader_id, leader) = self.leader();
                match (leader_id, leader) {
                    (Some(id), _) if id == self.id => match self.proposer.propose(command.clone()).await {
                        Ok(reply) => return Ok(reply),
                        // Leadership moved before the entry was appended.
                        Err(Rejected::NotLeader) => tokio::time::sleep(Duration::from_millis(10)).await,
                        Err(Rejected::Failed(e)) => return Err(e),
                    },
                    (Some(_), Some(leader)) => match self.forward(&leader, &command).await {
                        // The leader never saw it: wait for the next one.
                        Err(Forward::Unreachable) => tokio::time::sleep(Duration::from_millis(50)).await,
                        Err(Forward::Failed(e)) => return Err(e),
                        Ok(reply) => return Ok(reply),
                    },
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        let result = match tokio::time::timeout(self.limits.request_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout_error()),
        };
        if result.is_err() {
            self.failed_proposals.inc();
        }
        result
    }

    /// Raises the NOSPACE alarm and refuses a write of `cost` bytes when it
    /// would take the keyspace past the quota. Writes that add nothing
    /// (deletes) always pass, as in etcd, so space can be freed.
    pub async fn check_quota(&self, cost: usize) -> Result<(), Error> {
        let size = self.sm.state.read().map(|s| s.kv.size_bytes()).unwrap_or(0);
        if cost == 0 || size.saturating_add(cost as i64) <= self.limits.quota_bytes {
            return Ok(());
        }
        tracing::warn!(
            size,
            quota = self.limits.quota_bytes,
            "storage quota exceeded; raising NOSPACE"
        );
        let alarm = Command::Alarm {
            activate: true,
            member: self.id,
            alarm: crate::raft::state_machine::ALARM_NOSPACE,
        };
        self.propose(alarm).await?;
        Err(Error::NoSpace)
    }

    /// The highest log index known committed: at least what is applied.
    pub fn committed_index(&self) -> u64 {
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
        self.log
            .committed
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(applied)
    }

    /// The current leader, as this member knows it, and how to reach it.
    pub fn leader(&self) -> (Option<NodeId>, Option<Member>) {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader;
        let node = leader.and_then(|l| metrics.membership_config.membership().get_node(&l).cloned());
        (leader, node)
    }

    fn timeout_error(&self) -> Error {
        if self.raft.metrics().borrow().current_leader.is_none() {
            Error::NoLeader
        } else {
            Error::Timeout
        }
    }

    async fn forward(&self, leader: &Member, command: &Command) -> Result<Reply, Forward> {
        let failed = |e: Error| Forward::Failed(e);
        let mut client = self.dialer.client(leader).map_err(|e| failed(Error::Internal(e)))?;
        let data = encode(command).map_err(|e| failed(Error::Internal(e.to_string())))?;
        let mut request = tonic::Request::new(Payload { data });
        request.set_timeout(self.limits.request_timeout);
        let payload = match client.propose(request).await {
            Ok(p) => p.into_inner(),
            Err(status) => {
                tracing::debug!(leader = %leader, %status, "forwarding to the leader failed");
                // A connection that never opened carried nothing, so trying
                // the next leader cannot apply the command twice.
                let never_sent = status.code() == tonic::Code::Unavailable
                    && (status.message().contains("connect") || status.message().contains("Connection refused"));
                return Err(if never_sent {
                    Forward::Unreachable
                } else {
                    Forward::Failed(Error::NoLeader)
                });
            }
        };
        decode(&payload.data).map_err(|e| failed(Error::Internal(format!("undecodable reply from leader: {e}"))))
    }

    /// Waits until a read on this member is linearizable (see module docs)
    /// and returns the read index. Concurrent callers share one round:
    /// whoever arrives while a round is under way waits for the next one,
    /// which starts after it arrived, as linearizability requires.
    pub async fn read_barrier(&self) -> Result<u64, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reads.send(tx).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// One read-index round: on the leader a quorum heartbeat, elsewhere a
    /// question to the leader and a wait until this member has caught up.
    async fn barrier_once(&self) -> Result<u64, Error> {
        let attempt = async {
            loop {
                match self.raft.ensure_linearizable().await {
                    Ok(read_log_id) => return Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => match f.leader_node {
                        Some(leader) if f.leader_id != Some(self.id) => return self.remote_read_index(&leader).await,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(RaftError::Fatal(_)) => return Err(Error::Stopped),
                }
            }
        };
        match tokio::time::timeout(self.limits.request_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout_error()),
        }
    }

    async fn remote_read_index(&self, leader: &Member) -> Result<u64, Error> {
        let mut client = self.dialer.client(leader).map_err(Error::Internal)?;
        let mut request = tonic::Request::new(ReadIndexRequest {});
        request.set_timeout(self.limits.request_timeout);
        let index = client
            .read_index(request)
            .await
            .map_err(|_| Error::NoLeader)?
            .into_inner()
            .index;
        self.raft
            .wait(Some(self.limits.request_timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|_| Error::Timeout)?;
        Ok(index)
    }
}

/// A member's id: from its peer URLs (sorted) and the cluster token, so
/// `member add` and the member itself compute the same one.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut parts: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    parts.sort_unstable();
    parts.push(token);
    stable_id(&parts)
}

/// A stable 64-bit id from text (member and cluster ids, as etcd derives
/// them from names, peer URLs and the cluster token): the first 8 bytes of
/// its SHA-256.
pub fn stable_id(parts: &[&str]) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    let digest = ctx.finish();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    // etcd never uses 0 as an id.
    u64::from_be_bytes(bytes).max(1)
}
