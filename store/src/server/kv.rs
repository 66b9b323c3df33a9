//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbTxnOpRequest, PbTxnRequest, PbTxnResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use super::{check_size, propose_decoded};
use crate::error::Error;
use crate::node::Node;
use crate::raft::Command;

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

pub struct KvService {
    pub node: Arc<Node>,
}

fn count_ops(req: &PbTxnRequest) -> Result<(), Error> {
    if req.success.len() > MAX_TXN_OPS || req.failure.len() > MAX_TXN_OPS {
        return Err(Error::TooManyOps);
    }
    for op in req.success.iter().chain(req.failure.iter()) {
        if let Some(PbTxnOpRequest::RequestTxn(inner)) = &op.request {
            count_ops(inner)?;
        }
    }
    Ok(())
}

type RangeStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<PbRangeStreamResponse, Status>> + Send>>;

impl KvService {
    async fn read(&self, req: PbRangeRequest) -> Result<PbRangeResponse, Error> {
        if req.key.is_empty() {
            return Err(crate::mvcc::Error::EmptyKey.into());
        }
        if !req.serializable {
            self.node.read_barrier().await?;
        }
        let state = self.node.sm.state.read().map_err(|e| Error::Internal(e.to_string()))?;
        let mut resp = state.kv.range(&req)?;
        resp.header = Some(self.node.header(state.kv.revision()));
        Ok(resp)
    }
}

#[tonic::async_trait]
impl PbKvService for KvService {
    type RangeStreamStream = RangeStream;

    /// etcd 3.6's chunked range; the whole result goes in one chunk.
    async fn range_stream(&self, request: Request<PbRangeRequest>) -> Result<Response<RangeStream>, Status> {
        let resp = self.read(request.into_inner()).await?;
        let chunk = PbRangeStreamResponse {
            range_response: Some(resp),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(chunk)]))))
    }

    async fn range(&self, request: Request<PbRangeRequest>) -> Result<Response<PbRangeResponse>, Status> {
        Ok(Response::new(self.read(request.into_inner()).await?))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let req = request.into_inner();
        check_size(&self.node, &req)?;
        if req.key.is_empty() {
            return Err(Error::from(crate::mvcc::Error::EmptyKey).into());
        }
        self.node.check_quota(req.key.len() + req.value.len()).await?;
        let resp = propose_decoded(
            &self.node,
            Command::Put(req.encode_to_vec()),
            |r: &mut PbPutResponse, h| r.header = Some(h),
        )
        .await?;
        Ok(Response::new(resp))
    }

    async fn delete_range(&self, request: Request<PbDeleteRequest>) -> Result<Response<PbDeleteResponse>, Status> {
        let req = request.into_inner();
        check_size(&self.node, &req)?;
        if req.key.is_empty() {
            return Err(Error::from(crate::mvcc::Error::EmptyKey).into());
        }
        let resp = propose_decoded(
            &self.node,
            Command::DeleteRange(req.encode_to_vec()),
            |r: &mut PbDeleteResponse, h| r.header = Some(h),
        )
        .await?;
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let req = request.into_inner();
        check_size(&self.node, &req)?;
        count_ops(&req)?;
        self.node
            .check_quota(crate::raft::state_machine::txn_put_cost(&req))
            .await?;
        let resp = propose_decoded(
            &self.node,
            Command::Txn(req.encode_to_vec()),
            |r: &mut PbTxnResponse, h| r.header = Some(h),
        )
        .await?;
        Ok(Response::new(resp))
    }

    async fn compact(&self, request: Request<PbCompactionRequest>) -> Result<Response<PbCompactionResponse>, Status> {
        let req = request.into_inner();
        let reply = self.node.propose(Command::Compact(req.revision)).await?;
        reply.outcome?;
        Ok(Response::new(PbCompactionResponse {
            header: Some(self.node.header(reply.revision)),
        }))
    }
}
