//! The etcd v3 gRPC services, served on the client port.
//!
//! Each file implements one etcd service trait from etcd-client's generated
//! server code, turning a call into a read of the local state (after the
//! read barrier, for linearizable reads) or a [`Command`](crate::raft::Command)
//! proposed through Raft. Errors leave through `crate::error`, so clients
//! see etcd's codes and messages.

pub mod cluster;
pub mod concurrency;
pub mod election;
pub mod kv;
pub mod leadership;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

/// etcd's Lock and Election protocols, generated here (etcd-client only
/// generates their clients) around etcd-client's message types.
pub mod proto {
    #![allow(clippy::all, rust_2018_idioms)]
    pub mod v3lock {
        tonic::include_proto!("v3lockpb");
    }
    pub mod v3election {
        tonic::include_proto!("v3electionpb");
    }
}

use prost::Message;

use crate::error::Error;
use crate::node::Node;
use crate::raft::{Command, Reply};

/// Proposes `command` and decodes the etcd response it produced, with its
/// header filled in.
pub(crate) async fn propose_decoded<T: Message + Default>(
    node: &Node,
    command: Command,
    set_header: impl FnOnce(&mut T, etcd_client::proto::PbResponseHeader),
) -> Result<T, Error> {
    let reply: Reply = node.propose(command).await?;
    let bytes = reply.outcome?;
    let mut response = T::decode(bytes.as_slice()).map_err(|e| Error::Internal(format!("undecodable reply: {e}")))?;
    set_header(&mut response, node.header(reply.revision));
    Ok(response)
}

/// Refuses requests over `--max-request-bytes`, as etcd does.
pub(crate) fn check_size(node: &Node, request: &impl Message) -> Result<(), Error> {
    if request.encoded_len() > node.limits.max_request_bytes {
        return Err(Error::RequestTooLarge);
    }
    Ok(())
}
