//! The gateway's cluster, maintenance, lock and election routes, as etcd
//! 3.4's grpc-gateway maps them. One difference: etcd maps both Hash and
//! HashKV to `/v3/maintenance/hash` (so HashKV is unreachable there); here
//! Hash keeps that path and HashKV has `/v3/maintenance/hashkv`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use etcd_client::proto::*;
use serde_json::Value;
use tonic::Request;

use super::handle;
use super::json::{self, In, Out};
use crate::node::Node;
use crate::server::cluster::ClusterService;
use crate::server::election::ElectionService;
use crate::server::lock::LockService;
use crate::server::maintenance::MaintenanceService;
use crate::server::proto::v3election::election_server::Election as _;
use crate::server::proto::v3election::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use crate::server::proto::v3lock::lock_server::Lock as _;
use crate::server::proto::v3lock::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

/// Adds these routes to the gateway's router.
pub(super) fn add(router: Router<Arc<Node>>) -> Router<Arc<Node>> {
    router
        .route("/v3/cluster/member/add", post(member_add))
        .route("/v3/cluster/member/remove", post(member_remove))
        .route("/v3/cluster/member/update", post(member_update))
        .route("/v3/cluster/member/promote", post(member_promote))
        .route("/v3/maintenance/alarm", post(alarm))
        .route("/v3/maintenance/defragment", post(defragment))
        .route("/v3/maintenance/hash", post(hash))
        .route("/v3/maintenance/hashkv", post(hash_kv))
        .route("/v3/maintenance/transfer-leadership", post(move_leader))
        .route("/v3/lock/lock", post(lock))
        .route("/v3/lock/unlock", post(unlock))
        .route("/v3/election/campaign", post(campaign))
        .route("/v3/election/proclaim", post(proclaim))
        .route("/v3/election/leader", post(leader))
        .route("/v3/election/resign", post(resign))
}

/// `{header}`, the whole answer of several calls.
fn header_only(h: &Option<PbResponseHeader>) -> Value {
    Out::default().value("header", json::header(h)).done()
}

// ---- cluster ----------------------------------------------------------------

async fn member_add(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ClusterService { node };
    handle(
        bytes,
        |i| {
            Ok(PbMemberAddRequest {
                peer_ur_ls: i.strings("peerURLs")?,
                is_learner: i.boolean("isLearner")?,
            })
        },
        |r| async move { svc.member_add(Request::new(r)).await },
        |r: &PbMemberAddResponse| {
            Out::default()
                .value("header", json::header(&r.header))
                .value("member", r.member.as_ref().map(json::member))
                .list("members", r.members.iter().map(json::member).collect())
                .done()
        },
    )
    .await
}

async fn member_remove(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ClusterService { node };
    handle(
        bytes,
        |i| Ok(PbMemberRemoveRequest { id: i.uint("ID")? }),
        |r| async move { svc.member_remove(Request::new(r)).await },
        |r: &PbMemberRemoveResponse| json::members(&r.header, &r.members),
    )
    .await
}

async fn member_update(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ClusterService { node };
    handle(
        bytes,
        |i| {
            Ok(PbMemberUpdateRequest {
                id: i.uint("ID")?,
                peer_ur_ls: i.strings("peerURLs")?,
            })
        },
        |r| async move { svc.member_update(Request::new(r)).await },
        |r: &PbMemberUpdateResponse| json::members(&r.header, &r.members),
    )
    .await
}

async fn member_promote(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ClusterService { node };
    handle(
        bytes,
        |i| Ok(PbMemberPromoteRequest { id: i.uint("ID")? }),
        |r| async move { svc.member_promote(Request::new(r)).await },
        |r: &PbMemberPromoteResponse| json::members(&r.header, &r.members),
    )
    .await
}

// ---- maintenance ------------------------------------------------------------

async fn alarm(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = MaintenanceService { node };
    handle(
        bytes,
        |i| {
            Ok(PbAlarmRequest {
                action: i.enumeration("action", json::ALARM_ACTIONS)?,
                member_id: i.uint("memberID")?,
                alarm: i.enumeration("alarm", json::ALARM_TYPES)?,
            })
        },
        |r| async move { svc.alarm(Request::new(r)).await },
        |r: &PbAlarmResponse| {
            let alarms = r
                .alarms
                .iter()
                .map(|a| {
                    Out::default()
                        .uint("memberID", a.member_id)
                        .enumeration("alarm", a.alarm, json::ALARM_TYPES)
                        .done()
                })
                .collect();
            Out::default()
                .value("header", json::header(&r.header))
                .list("alarms", alarms)
                .done()
        },
    )
    .await
}

async fn defragment(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = MaintenanceService { node };
    handle(
        bytes,
        |_| Ok(PbDefragmentRequest {}),
        |r| async move { svc.defragment(Request::new(r)).await },
        |r: &PbDefragmentResponse| header_only(&r.header),
    )
    .await
}

async fn hash(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = MaintenanceService { node };
    handle(
        bytes,
        |_| Ok(PbHashRequest {}),
        |r| async move { svc.hash(Request::new(r)).await },
        |r: &PbHashResponse| {
            Out::default()
                .value("header", json::header(&r.header))
                .uint32("hash", r.hash)
                .done()
        },
    )
    .await
}

async fn hash_kv(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = MaintenanceService { node };
    handle(
        bytes,
        |i| {
            Ok(PbHashKvRequest {
                revision: i.int("revision")?,
            })
        },
        |r| async move { svc.hash_kv(Request::new(r)).await },
        |r: &PbHashKvResponse| {
            Out::default()
                .value("header", json::header(&r.header))
                .uint32("hash", r.hash)
                .int("compact_revision", r.compact_revision)
                .int("hash_revision", r.hash_revision)
                .done()
        },
    )
    .await
}

async fn move_leader(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = MaintenanceService { node };
    handle(
        bytes,
        |i| {
            Ok(PbMoveLeaderRequest {
                target_id: i.uint("targetID")?,
            })
        },
        |r| async move { svc.move_leader(Request::new(r)).await },
        |r: &PbMoveLeaderResponse| header_only(&r.header),
    )
    .await
}

// ---- lock -------------------------------------------------------------------

async fn lock(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = LockService { node };
    handle(
        bytes,
        |i| {
            Ok(LockRequest {
                name: i.bytes("name")?,
                lease: i.int("lease")?,
            })
        },
        |r| async move { svc.lock(Request::new(r)).await },
        |r: &LockResponse| {
            Out::default()
                .value("header", json::header(&r.header))
                .bytes("key", &r.key)
                .done()
        },
    )
    .await
}

async fn unlock(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = LockService { node };
    handle(
        bytes,
        |i| Ok(UnlockRequest { key: i.bytes("key")? }),
        |r| async move { svc.unlock(Request::new(r)).await },
        |r: &UnlockResponse| header_only(&r.header),
    )
    .await
}

// ---- election ---------------------------------------------------------------

/// The `leader` field of proclaim and resign.
fn read_leader(i: &In<'_>) -> Result<Option<LeaderKey>, String> {
    let Some(l) = i.message("leader")? else {
        return Ok(None);
    };
    Ok(Some(LeaderKey {
        name: l.bytes("name")?,
        key: l.bytes("key")?,
        rev: l.int("rev")?,
        lease: l.int("lease")?,
    }))
}

fn leader_key(l: &LeaderKey) -> Value {
    Out::default()
        .bytes("name", &l.name)
        .bytes("key", &l.key)
        .int("rev", l.rev)
        .int("lease", l.lease)
        .done()
}

async fn campaign(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ElectionService { node };
    handle(
        bytes,
        |i| {
            Ok(CampaignRequest {
                name: i.bytes("name")?,
                lease: i.int("lease")?,
                value: i.bytes("value")?,
            })
        },
        |r| async move { svc.campaign(Request::new(r)).await },
        |r: &CampaignResponse| {
            Out::default()
                .value("header", json::header(&r.header))
                .value("leader", r.leader.as_ref().map(leader_key))
                .done()
        },
    )
    .await
}

async fn proclaim(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ElectionService { node };
    handle(
        bytes,
        |i| {
            Ok(ProclaimRequest {
                leader: read_leader(i)?,
                value: i.bytes("value")?,
            })
        },
        |r| async move { svc.proclaim(Request::new(r)).await },
        |r: &ProclaimResponse| header_only(&r.header),
    )
    .await
}

async fn leader(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ElectionService { node };
    handle(
        bytes,
        |i| Ok(LeaderRequest { name: i.bytes("name")? }),
        |r| async move { svc.leader(Request::new(r)).await },
        |r: &LeaderResponse| {
            Out::default()
                .value("header", json::header(&r.header))
                .value("kv", r.kv.as_ref().map(json::kv))
                .done()
        },
    )
    .await
}

async fn resign(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ElectionService { node };
    handle(
        bytes,
        |i| {
            Ok(ResignRequest {
                leader: read_leader(i)?,
            })
        },
        |r| async move { svc.resign(Request::new(r)).await },
        |r: &ResignResponse| header_only(&r.header),
    )
    .await
}
