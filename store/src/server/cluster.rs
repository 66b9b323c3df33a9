//! The Cluster service: membership, through Raft's joint consensus.
//!
//! etcd members map onto openraft nodes: a voting member is a voter, a
//! learner (`member add --learner`) a learner that receives the log without
//! voting until promoted. A member added as a voter counts towards the
//! quorum at once, as in etcd: start it promptly. Changes must be made by
//! the leader; a follower relays them over the peer port.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse,
};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::node::{member_id, Node};
use crate::raft::network::proto::Payload;
use crate::raft::{decode, encode, Member, NodeId};

pub struct ClusterService {
    pub node: Arc<Node>,
}

/// A membership change, as relayed from a follower to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    Add {
        id: NodeId,
        member: Member,
        learner: bool,
    },
    Remove {
        id: NodeId,
    },
    Update {
        id: NodeId,
        peer_urls: Vec<String>,
    },
    Promote {
        id: NodeId,
    },
    /// A member announcing its own name and client URLs once it runs.
    Publish {
        id: NodeId,
        member: Member,
    },
}

/// The members as etcd lists them, voters and learners.
pub fn members(node: &Node) -> Vec<PbMember> {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, m)| PbMember {
            id: *id,
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: m.client_urls.clone(),
            is_learner: !voters.contains(id),
        })
        .collect()
}

fn current(node: &Node, id: NodeId) -> Result<Member, Error> {
    let metrics = node.raft.metrics().borrow().clone();
    metrics
        .membership_config
        .membership()
        .get_node(&id)
        .cloned()
        .ok_or(Error::MemberNotFound)
}

/// Applies `change` on the leader (a follower relays it). Raft makes one
/// membership change at a time; one that meets another in progress waits
/// for it, within the request timeout.
pub async fn apply(node: &Node, change: Change) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + node.limits.request_timeout;
    loop {
        match apply_once(node, &change).await {
            Err(Attempt::Busy) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(Attempt::Busy) => return Err(Error::Timeout),
            Err(Attempt::Failed(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
}

/// As etcd: a learner may become a voter only once it has replicated at
/// least 90% of the leader's log, or the new voter could stall commits.
fn learner_ready(node: &Node, id: NodeId) -> Result<(), Error> {
    let metrics = node.raft.metrics().borrow().clone();
    let leader_last = metrics.last_log_index.unwrap_or(0);
    let matched = metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|l| l.index)
        .unwrap_or(0);
    if (matched as f64) < (leader_last as f64) * 0.9 {
        return Err(Error::LearnerNotReady);
    }
    Ok(())
}

/// Why one attempt at a membership change did not happen.
enum Attempt {
    /// Another change is in progress.
    Busy,
    Failed(Error),
}

async fn apply_once(node: &Node, change: &Change) -> Result<(), Attempt> {
    // A follower relays straight away rather than asking its own Raft,
    // which would refuse (and log the refusal as an error).
    if let (Some(leader_id), Some(leader)) = node.leader() {
        if leader_id != node.id {
            return relay(node, &leader, change).await.map_err(|e| match e {
                Error::Timeout => Attempt::Busy,
                other => Attempt::Failed(other),
            });
        }
    }
    let result = match change {
        Change::Add { id, member, learner } => {
            let added = node.raft.add_learner(*id, member.clone(), false).await;
            match added {
                Ok(_) if !learner => {
                    node.raft
                        .change_membership(ChangeMembers::AddVoterIds([*id].into()), true)
                        .await
                }
                other => other,
            }
        }
        Change::Remove { id } => {
            let voters: BTreeSet<NodeId> = [*id].into();
            let is_voter = node
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == *id);
            if is_voter {
                node.raft
                    .change_membership(ChangeMembers::RemoveVoters(voters), false)
                    .await
            } else {
                node.raft
                    .change_membership(ChangeMembers::RemoveNodes(voters), false)
                    .await
            }
        }
        Change::Update { id, peer_urls } => {
            let mut member = current(node, *id).map_err(Attempt::Failed)?;
            member.peer_urls = peer_urls.clone();
            node.raft
                .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(*id, member)])), true)
                .await
        }
        Change::Promote { id } => {
            learner_ready(node, *id).map_err(Attempt::Failed)?;
            node.raft
                .change_membership(ChangeMembers::AddVoterIds([*id].into()), true)
                .await
        }
        Change::Publish { id, member } => {
            // Only the name and client URLs are the member's to publish;
            // its peer URLs stay as the leader's membership has them (the
            // member may not have seen a `member update` yet).
            let mut member = member.clone();
            if let Ok(known) = current(node, *id) {
                member.peer_urls = known.peer_urls;
            }
            let nodes = BTreeMap::from([(*id, member)]);
            node.raft.change_membership(ChangeMembers::SetNodes(nodes), true).await
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
            Some(leader) if f.leader_id != Some(node.id) => relay(node, &leader, change).await.map_err(Attempt::Failed),
            _ => Err(Attempt::Failed(Error::NoLeader)),
        },
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_)))) => {
            Err(Attempt::Busy)
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(Attempt::Failed(Error::InvalidArgument(e.to_string())))
        }
        Err(RaftError::Fatal(_)) => Err(Attempt::Failed(Error::Stopped)),
    }
}

async fn relay(node: &Node, leader: &Member, change: &Change) -> Result<(), Error> {
    let mut client = node.dialer.client(leader).map_err(Error::Internal)?;
    let data = encode(change).map_err(|e| Error::Internal(e.to_string()))?;
    let mut request = tonic::Request::new(Payload { data });
    request.set_timeout(node.limits.request_timeout);
    let reply = client
        .change_membership(request)
        .await
        .map_err(|_| Error::NoLeader)?
        .into_inner();
    let result: Result<(), Error> = decode(&reply.data).map_err(|e| Error::Internal(e.to_string()))?;
    result
}

/// Announces this member's name and client URLs in the membership, as an
/// etcd member publishes its attributes after it starts (a member added
/// with `member add` is known only by its peer URLs until then).
pub async fn publish(node: std::sync::Arc<Node>, me: Member, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        let known = current(&node, node.id).ok();
        // Peer URLs are the cluster's to change (`member update`), not the
        // flags': only the name and client URLs are this member's to say.
        let me = match &known {
            Some(k) => Member {
                peer_urls: k.peer_urls.clone(),
                ..me.clone()
            },
            None => me.clone(),
        };
        if known.as_ref() == Some(&me) {
            return;
        }
        let leader = node.raft.metrics().borrow().current_leader;
        if known.is_some() && leader.is_some() {
            match apply(
                &node,
                Change::Publish {
                    id: node.id,
                    member: me.clone(),
                },
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(name = %me.name, "published member attributes");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "publishing member attributes failed; retrying"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(&self, request: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        let req = request.into_inner();
        if req.peer_ur_ls.is_empty() {
            return Err(Error::InvalidArgument("member peer URLs are not provided".into()).into());
        }
        let existing = members(&self.node);
        if existing
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| req.peer_ur_ls.contains(u)))
        {
            return Err(Error::PeerUrlExists.into());
        }
        let id = member_id(&req.peer_ur_ls, &self.node.cluster_token);
        let member = Member {
            name: String::new(),
            peer_urls: req.peer_ur_ls.clone(),
            client_urls: Vec::new(),
        };
        apply(
            &self.node,
            Change::Add {
                id,
                member,
                learner: req.is_learner,
            },
        )
        .await?;
        Ok(Response::new(PbMemberAddResponse {
            header: Some(self.node.header(self.node.revision())),
            member: Some(PbMember {
                id,
                name: String::new(),
                peer_ur_ls: req.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: members(&self.node),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        current(&self.node, id)?;
        apply(&self.node, Change::Remove { id }).await?;
        Ok(Response::new(PbMemberRemoveResponse {
            header: Some(self.node.header(self.node.revision())),
            members: members(&self.node),
        }))
    }

    async fn member_update(
        &self,
        request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        let req = request.into_inner();
        current(&self.node, req.id)?;
        apply(
            &self.node,
            Change::Update {
                id: req.id,
                peer_urls: req.peer_ur_ls,
            },
        )
        .await?;
        Ok(Response::new(PbMemberUpdateResponse {
            header: Some(self.node.header(self.node.revision())),
            members: members(&self.node),
        }))
    }

    async fn member_list(
        &self,
        request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.node.read_barrier().await?;
        }
        Ok(Response::new(PbMemberListResponse {
            header: Some(self.node.header(self.node.revision())),
            members: members(&self.node),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let member = members(&self.node)
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(Error::MemberNotFound)?;
        if !member.is_learner {
            return Err(Error::MemberNotLearner.into());
        }
        apply(&self.node, Change::Promote { id }).await?;
        Ok(Response::new(PbMemberPromoteResponse {
            header: Some(self.node.header(self.node.revision())),
            members: members(&self.node),
        }))
    }
}
