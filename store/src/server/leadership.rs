//! Moving leadership to another member (etcd's MoveLeader).
//!
//! openraft 0.9 has no leader transfer, so the leader steers an ordinary
//! election: it silences every other voter's election timer, stops its own
//! heartbeats (so the followers' leader lease runs out), and asks the
//! transferee to campaign until it wins; then everything is switched back
//! on. Writes keep the old leader's lease alive, so a transfer under heavy
//! write load may time out, as etcd's may.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::node::Node;
use crate::raft::network::proto::ElectRequest;
use crate::raft::NodeId;

/// How long a transfer may take (etcd allows several election timeouts).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(15);

/// Switches this member's election timer and optionally campaigns now.
pub async fn steer_local(node: &Node, enable_timer: bool, campaign: bool) -> Result<(), Error> {
    node.elections.set_enabled(enable_timer, TRANSFER_TIMEOUT * 2);
    // The transferee campaigns without a pre-vote (etcd's TimeoutNow).
    if campaign {
        node.raft.trigger().elect().await.map_err(|_| Error::Stopped)?;
    }
    Ok(())
}

async fn steer(node: &Node, member: NodeId, enable_timer: bool, campaign: bool) -> Result<(), Error> {
    if member == node.id {
        return steer_local(node, enable_timer, campaign).await;
    }
    let target = {
        let metrics = node.raft.metrics().borrow().clone();
        metrics.membership_config.membership().get_node(&member).cloned()
    }
    .ok_or(Error::MemberNotFound)?;
    let mut client = node.dialer.client(&target).map_err(Error::Internal)?;
    let mut request = tonic::Request::new(ElectRequest { enable_timer, campaign });
    request.set_timeout(Duration::from_secs(2));
    client
        .elect(request)
        .await
        .map_err(|s| Error::Internal(format!("member {member:x} did not answer: {}", s.message())))?;
    Ok(())
}

/// Makes `target` the leader. Must run on the current leader.
pub async fn move_leader(node: &Node, target: NodeId) -> Result<(), Error> {
    let metrics = node.raft.metrics().borrow().clone();
    if metrics.current_leader != Some(node.id) {
        return Err(Error::NotLeader);
    }
    if target == node.id {
        return Ok(());
    }
    let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
    if !voters.contains(&target) {
        return Err(Error::BadLeaderTransferee);
    }
    let others: Vec<NodeId> = voters.iter().copied().filter(|v| *v != target).collect();
    let outcome = async {
        for member in &others {
            steer(node, *member, false, false).await?;
        }
        node.raft.runtime_config().heartbeat(false);
        let deadline = Instant::now() + TRANSFER_TIMEOUT;
        while Instant::now() < deadline {
            if node.raft.metrics().borrow().current_leader == Some(target) {
                return Ok(());
            }
            // The campaign fails while the followers' lease on us lasts;
            // keep asking until it has run out.
            if let Err(e) = steer(node, target, true, true).await {
                tracing::debug!(error = %e, "transferee could not campaign yet");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::LeaderTransferTimeout)
    }
    .await;
    node.raft.runtime_config().heartbeat(true);
    for member in &others {
        if let Err(e) = steer(node, *member, true, false).await {
            tracing::warn!(member = format!("{member:x}"), error = %e, "could not re-enable elections");
        }
    }
    outcome
}
