//! The recipe behind locks and elections: ordered keys under a prefix.
//!
//! A contender creates `<prefix>/<lease in hex>` attached to its lease (or
//! finds the one it made before). Contenders are ordered by their keys'
//! create revisions; the one with the lowest holds the lock or leads the
//! election, and every other one waits until all keys created before its
//! own are gone (released, resigned, or deleted because their lease
//! ended). This is etcd's `concurrency` package, run inside the server.

use etcd_client::proto::{
    PbCompare, PbCompareTarget, PbKeyValue, PbPutRequest, PbRangeRequest, PbTargetUnion, PbTxnOpRequest,
    PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use prost::Message;
use tokio::sync::broadcast::error::RecvError;

use crate::error::Error;
use crate::mvcc::EVENT_DELETE;
use crate::node::Node;
use crate::raft::Command;

/// `Compare.CompareResult.EQUAL`.
const EQUAL: i32 = 0;

/// The end of the range holding every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key a contender with `lease` uses under `name`.
pub fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = name.to_vec();
    key.push(b'/');
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// Creates the contender key with `value` if it does not exist; returns
/// its create revision.
pub async fn create_key(node: &Node, key: &[u8], lease: i64, value: &[u8]) -> Result<i64, Error> {
    let compare = PbCompare {
        result: EQUAL,
        target: PbCompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(PbTargetUnion::CreateRevision(0)),
    };
    let put = PbTxnRequestOp {
        request: Some(PbTxnOpRequest::RequestPut(PbPutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    };
    let get = PbTxnRequestOp {
        request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    };
    let txn = PbTxnRequest {
        compare: vec![compare],
        success: vec![put],
        failure: vec![get],
    };
    let reply = node.propose(Command::Txn(txn.encode_to_vec())).await?;
    let bytes = reply.outcome?;
    let resp = PbTxnResponse::decode(bytes.as_slice()).map_err(|e| Error::Internal(e.to_string()))?;
    if resp.succeeded {
        return Ok(reply.revision);
    }
    resp.responses
        .first()
        .and_then(|r| match &r.response {
            Some(PbTxnOpResponse::ResponseRange(range)) => range.kvs.first().map(|kv| kv.create_revision),
            _ => None,
        })
        .ok_or_else(|| Error::Internal("contender key vanished".into()))
}

/// The key under `name` with the lowest create revision: the holder.
pub fn holder(node: &Node, name: &[u8]) -> Result<Option<PbKeyValue>, Error> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let state = node.sm.state.read().map_err(|e| Error::Internal(e.to_string()))?;
    let resp = state.kv.range(&PbRangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        sort_order: 1,  // ASCEND
        sort_target: 2, // CREATE
        limit: 1,
        ..Default::default()
    })?;
    Ok(resp.kvs.into_iter().next())
}

/// Waits until no key under `name` was created before `revision` and the
/// contender's own key still exists.
pub async fn wait_for_turn(node: &Node, name: &[u8], own_key: &[u8], revision: i64) -> Result<(), Error> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let end = prefix_end(&prefix);
    node.read_barrier().await?;
    loop {
        let mut events = node.sm.subscribe();
        {
            let state = node.sm.state.read().map_err(|e| Error::Internal(e.to_string()))?;
            let own = state.kv.range(&PbRangeRequest {
                key: own_key.to_vec(),
                count_only: true,
                ..Default::default()
            })?;
            if own.count == 0 {
                return Err(Error::InvalidArgument(
                    "the contender's key was deleted (its lease ended?)".into(),
                ));
            }
            // Not count_only: etcd's count ignores the create-revision filter.
            let earlier = state.kv.range(&PbRangeRequest {
                key: prefix.clone(),
                range_end: end.clone(),
                max_create_revision: revision - 1,
                keys_only: true,
                limit: 1,
                ..Default::default()
            })?;
            if earlier.kvs.is_empty() {
                return Ok(());
            }
        }
        // Wait for a deletion under the prefix, then look again.
        loop {
            match events.recv().await {
                Ok(batch) => {
                    let relevant = batch.events.iter().any(|e| {
                        e.r#type == EVENT_DELETE
                            && e.kv
                                .as_ref()
                                .is_some_and(|kv| crate::mvcc::in_range(&kv.key, &prefix, &end))
                    });
                    if relevant {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Err(Error::Stopped),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(contender_key(b"job", 0x1f), b"job/1f");
    }
}
