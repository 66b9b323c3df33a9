//! The Maintenance service: Status, Alarm, Hash, HashKV, Snapshot,
//! Defragment.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbAlarmMember, PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest,
    PbStatusResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::node::Node;
use crate::raft::state_machine::ALARM_NOSPACE;
use crate::raft::Command;

/// The etcd API version this store speaks.
pub const ETCD_VERSION: &str = "3.5.0";
/// `AlarmRequest.AlarmAction`.
const ALARM_GET: i32 = 0;
const ALARM_ACTIVATE: i32 = 1;
const ALARM_DEACTIVATE: i32 = 2;
/// Bytes per snapshot chunk.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

pub fn alarm_name(alarm: i32) -> &'static str {
    match alarm {
        ALARM_NOSPACE => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<PbSnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    type SnapshotStream = SnapshotStream;

    async fn alarm(&self, request: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        let req = request.into_inner();
        let mut revision = self.node.revision();
        match req.action {
            ALARM_GET => {}
            ALARM_ACTIVATE | ALARM_DEACTIVATE => {
                let reply = self
                    .node
                    .propose(Command::Alarm {
                        activate: req.action == ALARM_ACTIVATE,
                        member: req.member_id,
                        alarm: req.alarm,
                    })
                    .await?;
                reply.outcome?;
                revision = reply.revision;
            }
            other => return Err(Error::InvalidArgument(format!("unknown alarm action {other}")).into()),
        }
        let alarms = self
            .node
            .sm
            .state
            .read()
            .map(|s| {
                s.alarms
                    .iter()
                    .filter(|(_, a)| req.action != ALARM_GET || req.alarm == 0 || *a == req.alarm)
                    .map(|(member_id, alarm)| PbAlarmMember {
                        member_id: *member_id,
                        alarm: *alarm,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(PbAlarmResponse {
            header: Some(self.node.header(revision)),
            alarms,
        }))
    }

    async fn status(&self, _: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        let metrics = self.node.raft.metrics().borrow().clone();
        let (db_size, mut errors) = self
            .node
            .sm
            .state
            .read()
            .map(|s| {
                let errors: Vec<String> = s
                    .alarms
                    .iter()
                    .map(|(m, a)| format!("memberID:{m} alarm:{}", alarm_name(*a)))
                    .collect();
                (s.kv.size_bytes(), errors)
            })
            .unwrap_or_default();
        if metrics.current_leader.is_none() {
            // etcd lists the missing leader first among a status's errors.
            errors.insert(0, Error::NoLeader.to_string());
        }
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.node.id);
        Ok(Response::new(PbStatusResponse {
            header: Some(self.node.header(self.node.revision())),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: self.node.committed_index(),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            errors,
            db_size_in_use: db_size,
            is_learner,
            storage_version: String::new(),
            db_size_quota: self.node.limits.quota_bytes,
            downgrade_info: None,
        }))
    }

    async fn defragment(&self, _: Request<PbDefragmentRequest>) -> Result<Response<PbDefragmentResponse>, Status> {
        // The keyspace lives in memory; what can be reclaimed is the Raft
        // log, which a snapshot lets openraft purge.
        self.node
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Response::new(PbDefragmentResponse {
            header: Some(self.node.header(self.node.revision())),
        }))
    }

    async fn hash(&self, _: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        let state = self.node.sm.state.read().map_err(|e| Error::Internal(e.to_string()))?;
        let (hash, _) = state.kv.hash_kv(0).map_err(Error::from)?;
        Ok(Response::new(PbHashResponse {
            header: Some(self.node.header(state.kv.revision())),
            hash,
        }))
    }

    async fn hash_kv(&self, request: Request<PbHashKvRequest>) -> Result<Response<PbHashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let state = self.node.sm.state.read().map_err(|e| Error::Internal(e.to_string()))?;
        let (hash, compact_revision) = state.kv.hash_kv(rev).map_err(Error::from)?;
        let current = state.kv.revision();
        Ok(Response::new(PbHashKvResponse {
            header: Some(self.node.header(current)),
            hash,
            compact_revision,
            hash_revision: if rev == 0 { current } else { rev },
        }))
    }

    async fn snapshot(&self, _: Request<PbSnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        // Encoded in memory, not through openraft's snapshot builder: that
        // one replaces the member's own snapshot file, which is openraft's.
        let (mut blob, _, _) = self.node.sm.serialise().map_err(|e| Error::Internal(e.to_string()))?;
        // etcdctl expects a database of whole 512-byte pages followed by
        // the SHA-256 of those pages, as etcd's bolt file is; pad with zeros
        // (the state decoder ignores what follows the state).
        blob.resize(blob.len().div_ceil(512) * 512, 0);
        let digest = ring::digest::digest(&ring::digest::SHA256, &blob);
        blob.extend_from_slice(digest.as_ref());
        let header = self.node.header(self.node.revision());
        let total = blob.len();
        let chunks: Vec<Result<PbSnapshotResponse, Status>> = blob
            .chunks(SNAPSHOT_CHUNK)
            .enumerate()
            .map(|(i, chunk)| {
                let sent = (i * SNAPSHOT_CHUNK + chunk.len()) as u64;
                Ok(PbSnapshotResponse {
                    header: Some(header),
                    remaining_bytes: total as u64 - sent,
                    blob: chunk.to_vec(),
                    version: ETCD_VERSION.to_string(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        super::leadership::move_leader(&self.node, target).await?;
        Ok(Response::new(PbMoveLeaderResponse {
            header: Some(self.node.header(self.node.revision())),
        }))
    }

    async fn downgrade(&self, _: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(Error::Unimplemented("cluster downgrade is not supported".into()).into())
    }
}
