//! The Lock service (`etcdctl lock`): a distributed mutex on ordered keys
//! (see [`super::concurrency`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::concurrency::{contender_key, create_key, wait_for_turn};
use super::proto::v3lock::lock_server::Lock;
use super::proto::v3lock::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::error::Error;
use crate::node::Node;
use crate::raft::Command;

pub struct LockService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let req = request.into_inner();
        super::check_size(&self.node, &req)?;
        if req.name.is_empty() {
            return Err(Error::from(crate::mvcc::Error::EmptyKey).into());
        }
        let key = contender_key(&req.name, req.lease);
        let revision = create_key(&self.node, &key, req.lease, b"").await?;
        wait_for_turn(&self.node, &req.name, &key, revision).await?;
        Ok(Response::new(LockResponse {
            header: Some(self.node.header(self.node.revision())),
            key,
        }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let key = request.into_inner().key;
        let delete = etcd_client::proto::PbDeleteRequest {
            key,
            ..Default::default()
        };
        let reply = self
            .node
            .propose(Command::DeleteRange(prost::Message::encode_to_vec(&delete)))
            .await?;
        reply.outcome?;
        Ok(Response::new(UnlockResponse {
            header: Some(self.node.header(reply.revision)),
        }))
    }
}
