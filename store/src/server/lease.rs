//! The Lease service: Grant, Revoke, KeepAlive, TimeToLive, Leases.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::proto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse, PbLeaseLeasesRequest,
    PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse, PbLeaseService, PbLeaseStatus,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::lessor;
use crate::node::Node;
use crate::raft::Command;

pub struct LeaseService {
    pub node: Arc<Node>,
    counter: AtomicU64,
}

impl LeaseService {
    pub fn new(node: Arc<Node>) -> Self {
        LeaseService {
            node,
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh lease id when the client lets the server choose: member id,
    /// time and a counter, positive as etcd's are.
    fn new_id(&self) -> i64 {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = ((self.node.id & 0x7fff) << 48) | ((millis & 0xffff_ffff) << 16) | (count & 0xffff);
        (id as i64).max(1)
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let req = request.into_inner();
        let ttl = lessor::effective_ttl(req.ttl)?;
        let id = if req.id == 0 { self.new_id() } else { req.id };
        if id < 0 {
            return Err(Error::InvalidArgument("lease ID must be positive".into()).into());
        }
        // etcd's quota cost of a lease: its id and TTL.
        self.node.check_quota(16).await?;
        let reply = self.node.propose(Command::LeaseGrant { id, ttl }).await?;
        reply.outcome?;
        Ok(Response::new(PbLeaseGrantResponse {
            header: Some(self.node.header(reply.revision)),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let reply = self.node.propose(Command::LeaseRevoke { id }).await?;
        reply.outcome?;
        Ok(Response::new(PbLeaseRevokeResponse {
            header: Some(self.node.header(reply.revision)),
        }))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = incoming.next().await {
                let reply = match lessor::query(&node, req.id, true).await {
                    // etcd answers an unknown lease with TTL 0 rather than an error.
                    Ok(answer) => Ok(PbLeaseKeepAliveResponse {
                        header: Some(node.header(node.revision())),
                        id: req.id,
                        ttl: if answer.remaining < 0 { 0 } else { answer.granted_ttl },
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let answer = lessor::query(&self.node, req.id, false).await?;
        let keys = if req.keys && answer.remaining >= 0 {
            self.node
                .sm
                .state
                .read()
                .map(|s| s.kv.keys_with_lease(req.id))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: Some(self.node.header(self.node.revision())),
            id: req.id,
            ttl: answer.remaining,
            granted_ttl: answer.granted_ttl,
            keys,
        }))
    }

    async fn lease_leases(&self, _: Request<PbLeaseLeasesRequest>) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        self.node.read_barrier().await?;
        let leases = self
            .node
            .sm
            .state
            .read()
            .map(|s| s.leases.keys().map(|id| PbLeaseStatus { id: *id }).collect())
            .unwrap_or_default();
        Ok(Response::new(PbLeaseLeasesResponse {
            header: Some(self.node.header(self.node.revision())),
            leases,
        }))
    }
}
