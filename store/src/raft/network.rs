//! Raft messages between members, over gRPC on the peer port.
//!
//! openraft asks for a [`RaftNetworkFactory`] that yields one connection per
//! peer; each call here encodes openraft's request with postcard, sends it
//! as an opaque payload on the `Peer` service (`proto/peer.proto`) and
//! decodes the peer's `Result`. The receiving side is [`PeerService`], which
//! hands the message to its own Raft and also serves `Propose` (a follower
//! forwarding a client write to the leader) and `ReadIndex` (a follower
//! asking the leader how far it must apply before a linearizable read).
//! The peer port is mutual TLS when certificates are configured.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tonic::transport::Channel;

use super::{decode, encode, Command, Member, NodeId, TypeConfig};

/// The generated peer protocol.
pub mod proto {
    #![allow(clippy::all, rust_2018_idioms)]
    tonic::include_proto!("kubernate.store.peer.v1");
}

use proto::peer_client::PeerClient;
use proto::{ElectRequest, ElectResponse, LeaseAnswer, LeaseQuery, Payload, ReadIndexRequest, ReadIndexResponse};

/// How peers are dialled: TLS settings when the peer port is secure.
///
/// Requests a member sends on behalf of its clients (forwarded writes,
/// read-index questions, lease renewals) share one HTTP/2 connection per
/// peer URL, kept in `channels`: opening a connection per request cost
/// more CPU than the request itself. openraft's replication stream gets
/// connections of its own, so heartbeats never queue behind client load.
#[derive(Clone, Default)]
pub struct Dialer {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `etcd_network_peer_round_trip_time_seconds`, observed per heartbeat.
    pub rtt: Option<prometheus::HistogramVec>,
    /// One multiplexed channel per peer URL (tonic reconnects it as needed).
    pub channels: Arc<std::sync::Mutex<std::collections::HashMap<String, Channel>>>,
}

impl Dialer {
    /// A lazily connecting channel to a peer URL (`https://` needs TLS).
    pub fn channel(&self, url: &str) -> Result<Channel, String> {
        match (&self.tls, url.starts_with("https://")) {
            (Some(tls), true) => common::grpc::channel(url, tls.clone()).map_err(|e| e.to_string()),
            (None, false) => tonic::transport::Endpoint::from_shared(url.to_string())
                .map(|e| e.connect_timeout(Duration::from_secs(3)).connect_lazy())
                .map_err(|e| format!("invalid peer URL {url:?}: {e}")),
            (None, true) => Err(format!(
                "peer URL {url} is https but no peer certificates are configured"
            )),
            (Some(_), false) => Err(format!("peer URL {url} is plain http but the peer port requires TLS")),
        }
    }

    /// A client for `member`'s peer service on the shared connection.
    pub fn client(&self, member: &Member) -> Result<PeerClient<Channel>, String> {
        let url = peer_url(member)?;
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| "peer channel cache poisoned".to_string())?;
        let channel = match channels.get(url) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.channel(url)?;
                channels.insert(url.to_string(), channel.clone());
                channel
            }
        };
        Ok(peer_client(channel))
    }

    /// A client for the peer at `url` on a connection of its own.
    fn dedicated_client(&self, url: &str) -> Result<PeerClient<Channel>, String> {
        Ok(peer_client(self.channel(url)?))
    }
}

fn peer_url(member: &Member) -> Result<&str, String> {
    member
        .peer_urls
        .first()
        .map(String::as_str)
        .ok_or_else(|| format!("member {} has no peer URL", member.name))
}

fn peer_client(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

impl RaftNetworkFactory<TypeConfig> for Dialer {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Connection {
        // openraft makes new connections whenever the membership changes,
        // so a member moved by `member update` is dialled at its new URL.
        Connection {
            target,
            client: peer_url(node).and_then(|url| self.dedicated_client(url)),
            rtt: self.rtt.clone(),
        }
    }
}

/// One peer, as openraft sees it.
pub struct Connection {
    target: NodeId,
    client: Result<PeerClient<Channel>, String>,
    rtt: Option<prometheus::HistogramVec>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl Connection {
    async fn call<Req, Resp, E>(&mut self, method: Method, request: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: for<'de> serde::Deserialize<'de>,
        E: std::error::Error + for<'de> serde::Deserialize<'de>,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Transport(e.clone())))),
        };
        let data = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = tonic::Request::new(Payload { data });
        req.set_timeout(option.hard_ttl());
        let started = std::time::Instant::now();
        let reply = match method {
            Method::AppendEntries => client.append_entries(req).await,
            Method::Vote => client.vote(req).await,
            Method::InstallSnapshot => client.install_snapshot(req).await,
        };
        let payload = reply
            .map_err(|status| RPCError::Unreachable(Unreachable::new(&Transport(status.to_string()))))?
            .into_inner();
        if let (Some(rtt), Method::AppendEntries) = (&self.rtt, method) {
            rtt.with_label_values(&[&format!("{:x}", self.target)])
                .observe(started.elapsed().as_secs_f64());
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Vote, &rpc, &option).await
    }
}

/// The peer service: Raft messages in, answers out.
pub struct PeerService {
    pub node: std::sync::Arc<crate::node::Node>,
}

fn bad_payload(e: postcard::Error) -> tonic::Status {
    tonic::Status::invalid_argument(format!("undecodable peer message: {e}"))
}

fn encoded<T: serde::Serialize>(value: &T) -> Result<tonic::Response<Payload>, tonic::Status> {
    let data = encode(value).map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(Payload { data }))
}

#[tonic::async_trait]
impl proto::peer_server::Peer for PeerService {
    async fn append_entries(&self, req: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad_payload)?;
        let result = self.node.raft.append_entries(rpc).await;
        // Anything but "my vote is higher" means we follow this leader.
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.node.elections.heard_from_leader();
        }
        encoded(&result)
    }

    async fn vote(&self, req: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = decode(&req.into_inner().data).map_err(bad_payload)?;
        let result = self.node.raft.vote(rpc).await;
        // Having voted, give the candidate its election timeout (as etcd).
        if matches!(&result, Ok(r) if r.vote_granted) {
            self.node.elections.heard_from_leader();
        }
        encoded(&result)
    }

    async fn install_snapshot(&self, req: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad_payload)?;
        let sender = rpc.vote;
        let result = self.node.raft.install_snapshot(rpc).await;
        // An outdated leader is answered too, with our higher vote.
        if matches!(&result, Ok(r) if r.vote == sender) {
            self.node.elections.heard_from_leader();
        }
        encoded(&result)
    }

    async fn pre_vote(&self, req: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, tonic::Status> {
        let ask: super::pre_vote::PreVoteRequest = decode(&req.into_inner().data).map_err(bad_payload)?;
        let granted = self.node.elections.would_vote(&self.node, &ask).await;
        tracing::debug!(candidate = format!("{:x}", ask.candidate), granted, "pre-vote");
        encoded(&granted)
    }

    async fn propose(&self, req: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, tonic::Status> {
        let command: Command = decode(&req.into_inner().data).map_err(bad_payload)?;
        match self.node.propose(command).await {
            Ok(reply) => encoded(&reply),
            Err(e) => Err(tonic::Status::unavailable(format!("not applied: {e}"))),
        }
    }

    async fn read_index(
        &self,
        _: tonic::Request<ReadIndexRequest>,
    ) -> Result<tonic::Response<ReadIndexResponse>, tonic::Status> {
        match self.node.read_barrier().await {
            Ok(index) => Ok(tonic::Response::new(ReadIndexResponse { index })),
            Err(e) => Err(tonic::Status::unavailable(format!("cannot confirm leadership: {e}"))),
        }
    }

    async fn lease(&self, req: tonic::Request<LeaseQuery>) -> Result<tonic::Response<LeaseAnswer>, tonic::Status> {
        let q = req.into_inner();
        Ok(tonic::Response::new(crate::lessor::local_query(
            &self.node, q.id, q.renew,
        )?))
    }

    async fn change_membership(&self, req: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, tonic::Status> {
        let change: crate::server::cluster::Change = decode(&req.into_inner().data).map_err(bad_payload)?;
        encoded(&crate::server::cluster::apply(&self.node, change).await)
    }

    async fn elect(&self, req: tonic::Request<ElectRequest>) -> Result<tonic::Response<ElectResponse>, tonic::Status> {
        let req = req.into_inner();
        crate::server::leadership::steer_local(&self.node, req.enable_timer, req.campaign).await?;
        Ok(tonic::Response::new(ElectResponse {}))
    }
}
