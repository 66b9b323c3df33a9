//! The Election service (`etcdctl elect`): leader election on ordered keys
//! (see [`super::concurrency`]); the leader's key holds its value.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbCompare, PbCompareTarget, PbDeleteRequest, PbPutRequest, PbTargetUnion, PbTxnOpRequest, PbTxnRequest,
    PbTxnRequestOp, PbTxnResponse,
};
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use super::concurrency::{contender_key, create_key, holder, prefix_end, wait_for_turn};
use super::proto::v3election::election_server::Election;
use super::proto::v3election::*;
use crate::error::Error;
use crate::node::Node;
use crate::raft::Command;

pub struct ElectionService {
    pub node: Arc<Node>,
}

/// `Compare.CompareResult.EQUAL`.
const EQUAL: i32 = 0;

/// A txn that runs `op` only while `leader` still holds its key.
async fn if_leader(node: &Node, leader: &LeaderKey, op: PbTxnOpRequest) -> Result<(bool, i64), Error> {
    let txn = PbTxnRequest {
        compare: vec![PbCompare {
            result: EQUAL,
            target: PbCompareTarget::Create as i32,
            key: leader.key.clone(),
            range_end: Vec::new(),
            target_union: Some(PbTargetUnion::CreateRevision(leader.rev)),
        }],
        success: vec![PbTxnRequestOp { request: Some(op) }],
        failure: Vec::new(),
    };
    let reply = node.propose(Command::Txn(txn.encode_to_vec())).await?;
    let bytes = reply.outcome?;
    let resp = PbTxnResponse::decode(bytes.as_slice()).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((resp.succeeded, reply.revision))
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = ObserveStream;

    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let req = request.into_inner();
        super::check_size(&self.node, &req)?;
        if req.name.is_empty() {
            return Err(Error::from(crate::mvcc::Error::EmptyKey).into());
        }
        let key = contender_key(&req.name, req.lease);
        let rev = create_key(&self.node, &key, req.lease, &req.value).await?;
        let leader = LeaderKey {
            name: req.name.clone(),
            key: key.clone(),
            rev,
            lease: req.lease,
        };
        // A contender campaigning again with a new value updates it.
        let current = holder_value(&self.node, &key)?;
        if current.as_deref() != Some(req.value.as_slice()) {
            let put = PbTxnOpRequest::RequestPut(PbPutRequest {
                key: key.clone(),
                value: req.value.clone(),
                ignore_lease: true,
                ..Default::default()
            });
            if_leader(&self.node, &leader, put).await?;
        }
        wait_for_turn(&self.node, &req.name, &key, rev).await?;
        Ok(Response::new(CampaignResponse {
            header: Some(self.node.header(self.node.revision())),
            leader: Some(leader),
        }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let req = request.into_inner();
        super::check_size(&self.node, &req)?;
        let leader = req.leader.ok_or(Error::ElectionNotLeader)?;
        let put = PbTxnOpRequest::RequestPut(PbPutRequest {
            key: leader.key.clone(),
            value: req.value,
            ignore_lease: true,
            ..Default::default()
        });
        let (held, revision) = if_leader(&self.node, &leader, put).await?;
        if !held {
            return Err(Error::ElectionNotLeader.into());
        }
        Ok(Response::new(ProclaimResponse {
            header: Some(self.node.header(revision)),
        }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let name = request.into_inner().name;
        self.node.read_barrier().await?;
        let kv = holder(&self.node, &name)?.ok_or(Error::ElectionNoLeader)?;
        Ok(Response::new(LeaderResponse {
            header: Some(self.node.header(self.node.revision())),
            kv: Some(kv),
        }))
    }

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        let name = request.into_inner().name;
        self.node.read_barrier().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            let mut prefix = name.clone();
            prefix.push(b'/');
            let end = prefix_end(&prefix);
            let mut events = node.sm.subscribe();
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                match holder(&node, &name) {
                    Ok(Some(kv)) => {
                        let seen = (kv.key.clone(), kv.mod_revision);
                        if last.as_ref() != Some(&seen) {
                            last = Some(seen);
                            let resp = LeaderResponse {
                                header: Some(node.header(node.revision())),
                                kv: Some(kv),
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => last = None,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                }
                // Wait for a change under the election's prefix.
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        batch = events.recv() => match batch {
                            Ok(batch) => {
                                let touched = batch.events.iter().any(|e| {
                                    e.kv.as_ref().is_some_and(|kv| crate::mvcc::in_range(&kv.key, &prefix, &end))
                                });
                                if touched {
                                    break;
                                }
                            }
                            Err(RecvError::Lagged(_)) => break,
                            Err(RecvError::Closed) => return,
                        },
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let leader = request.into_inner().leader.ok_or(Error::ElectionNotLeader)?;
        let delete = PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
            key: leader.key.clone(),
            ..Default::default()
        });
        let (_, revision) = if_leader(&self.node, &leader, delete).await?;
        Ok(Response::new(ResignResponse {
            header: Some(self.node.header(revision)),
        }))
    }
}

/// The current value of `key`, if it exists.
fn holder_value(node: &Node, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let state = node.sm.state.read().map_err(|e| Error::Internal(e.to_string()))?;
    let resp = state.kv.range(&etcd_client::proto::PbRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    })?;
    Ok(resp.kvs.into_iter().next().map(|kv| kv.value))
}
