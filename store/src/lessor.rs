//! Lease clocks: who keeps time for leases, and expiry.
//!
//! The lease table (id and TTL) is replicated; the clocks are not. Only the
//! leader keeps the authoritative deadline of each lease: keep-alives that
//! reach a follower are relayed to it, and its expiry loop proposes a
//! revoke when a deadline passes, so the deletion of a lease's keys goes
//! through Raft like any other write. When a member becomes leader it
//! restarts every clock with the full TTL, as etcd does, so a leader change
//! never expires a lease early (it may extend it by up to one TTL).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::node::Node;
use crate::raft::network::proto::{LeaseAnswer, LeaseQuery};
use crate::raft::Command;

/// The smallest TTL granted: 1.5 election timeouts, rounded up, as in etcd.
pub const MIN_TTL: i64 = 2;
/// etcd's `MaxLeaseTTL`.
pub const MAX_TTL: i64 = 9_000_000_000;
/// How often the leader looks for expired leases.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// The TTL actually granted for a requested one.
pub fn effective_ttl(requested: i64) -> Result<i64, Error> {
    if requested > MAX_TTL {
        return Err(Error::LeaseTtlTooLarge);
    }
    Ok(requested.max(MIN_TTL))
}

fn is_leader(node: &Node) -> bool {
    node.raft.metrics().borrow().current_leader == Some(node.id)
}

/// Renews (`renew`) or reads a lease's clock on this member. Only
/// meaningful on the leader.
pub fn local_query(node: &Node, id: i64, renew: bool) -> Result<LeaseAnswer, Error> {
    let mut state = node.sm.state.write().map_err(|e| Error::Internal(e.to_string()))?;
    let Some(ttl) = state.leases.get(&id).copied() else {
        return Ok(LeaseAnswer {
            remaining: -1,
            granted_ttl: 0,
        });
    };
    let now = Instant::now();
    if renew {
        state.lease_deadlines.insert(id, now + Duration::from_secs(ttl as u64));
    }
    let deadline = state.lease_deadlines.get(&id).copied().unwrap_or(now);
    let remaining = deadline.saturating_duration_since(now).as_secs_f64().ceil() as i64;
    Ok(LeaseAnswer {
        remaining,
        granted_ttl: ttl,
    })
}

/// Renews or reads a lease's clock on the leader, wherever this member is.
pub async fn query(node: &Node, id: i64, renew: bool) -> Result<LeaseAnswer, Error> {
    let deadline = Instant::now() + node.limits.request_timeout;
    loop {
        if is_leader(node) {
            return local_query(node, id, renew);
        }
        let leader = {
            let metrics = node.raft.metrics().borrow().clone();
            metrics
                .current_leader
                .and_then(|l| metrics.membership_config.membership().get_node(&l).cloned())
        };
        if let Some(leader) = leader {
            let mut client = node.dialer.client(&leader).map_err(Error::Internal)?;
            let mut request = tonic::Request::new(LeaseQuery { id, renew });
            request.set_timeout(node.limits.request_timeout);
            match client.lease(request).await {
                Ok(answer) => return Ok(answer.into_inner()),
                Err(status) => tracing::debug!(%status, "lease query to the leader failed"),
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NoLeader);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader's expiry loop; runs on every member and acts while it leads.
pub async fn run_expiry(node: Arc<Node>, shutdown: CancellationToken) {
    let mut was_leader = false;
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leader = is_leader(&node);
        if leader && !was_leader {
            if let Ok(mut state) = node.sm.state.write() {
                state.refresh_lease_deadlines();
            }
        }
        was_leader = leader;
        if !leader {
            continue;
        }
        let now = Instant::now();
        let expired: Vec<i64> = match node.sm.state.read() {
            Ok(state) => state
                .lease_deadlines
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => continue,
        };
        for id in expired {
            tracing::info!(lease = format!("{id:016x}"), "lease expired; revoking");
            match node.propose(Command::LeaseRevoke { id }).await {
                Ok(_) | Err(Error::Keyspace(crate::mvcc::Error::LeaseNotFound)) => {}
                Err(e) => tracing::warn!(lease = id, error = %e, "revoking an expired lease failed"),
            }
        }
    }
}
