//! The JSON gateway's cluster, maintenance, lock and election routes,
//! against one member started in-process (as in `etcd_api.rs`), asserting
//! etcd 3.4's answers and errors. Every wait is bounded ([`WAIT`]).

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

mod solo;
use solo::{post as http, Member, WAIT};

/// `POST path` that must answer 200; its JSON.
async fn ok(addr: SocketAddr, path: &str, body: &str) -> Value {
    let (status, answer) = http(addr, path, body).await;
    assert!(status.contains(" 200 "), "{path}: {status} {answer}");
    answer
}

/// Asserts etcd's error shape with the HTTP status, gRPC code and message.
fn assert_error((status, err): &(String, Value), http_status: u16, code: i64, message: &str) {
    assert!(status.contains(&format!(" {http_status} ")), "{status} {err}");
    assert_eq!(err["code"], code, "{err}");
    let text = err["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "wanted {message:?}: {err}");
    assert_eq!(err["error"], err["message"], "{err}");
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

/// A base64 string field, decoded.
fn unb64(v: &Value) -> Vec<u8> {
    let text = v.as_str().unwrap_or_else(|| panic!("a base64 string: {v}"));
    B64.decode(text).unwrap_or_else(|e| panic!("valid base64 ({e}): {v}"))
}

/// A fresh 30 s lease, granted through the gateway.
async fn lease(addr: SocketAddr) -> String {
    let grant = ok(addr, "/v3/lease/grant", r#"{"TTL": 30}"#).await;
    grant["ID"]
        .as_str()
        .unwrap_or_else(|| panic!("a lease ID string: {grant}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_alarm_hash_defragment_and_transfer() {
    let member = Member::start(&[]).await;
    let addr = member.addr;

    let alarms = ok(addr, "/v3/maintenance/alarm", r#"{"action": "GET", "alarm": "NONE"}"#).await;
    assert!(alarms["header"]["revision"].is_string(), "{alarms}");
    assert!(
        alarms["alarms"].as_array().is_none_or(Vec::is_empty),
        "no alarms raised: {alarms}"
    );

    ok(
        addr,
        "/v3/kv/put",
        &json!({"key": b64("h"), "value": b64("1")}).to_string(),
    )
    .await;
    let hash = ok(addr, "/v3/maintenance/hash", "{}").await;
    let whole = hash["hash"]
        .as_u64()
        .unwrap_or_else(|| panic!("a numeric hash: {hash}"));
    let hash_kv = ok(addr, "/v3/maintenance/hashkv", r#"{"revision": "0"}"#).await;
    assert_eq!(
        hash_kv["hash"].as_u64(),
        Some(whole),
        "both hash the whole history: {hash_kv}"
    );
    assert_eq!(hash_kv["hash_revision"], hash_kv["header"]["revision"], "{hash_kv}");

    let defrag = ok(addr, "/v3/maintenance/defragment", "{}").await;
    assert!(defrag["header"]["member_id"].is_string(), "{defrag}");

    let moved = http(addr, "/v3/maintenance/transfer-leadership", r#"{"targetID": "12345"}"#).await;
    assert_error(&moved, 400, 9, "etcdserver: bad leader transferee");

    // Malformed JSON and an unknown enum name: InvalidArgument, HTTP 400.
    let bad = http(addr, "/v3/maintenance/alarm", r#"{"action":"#).await;
    assert_error(&bad, 400, 3, "malformed JSON");
    let bad = http(addr, "/v3/maintenance/alarm", r#"{"action": "SNOOZE"}"#).await;
    assert_error(&bad, 400, 3, "SNOOZE");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_unlock_over_the_gateway() {
    let member = Member::start(&[]).await;
    let addr = member.addr;
    let (first_lease, second_lease) = (lease(addr).await, lease(addr).await);

    let request = json!({"name": b64("gw-lock"), "lease": first_lease}).to_string();
    let held = ok(addr, "/v3/lock/lock", &request).await;
    let key = unb64(&held["key"]);
    assert!(key.starts_with(b"gw-lock/"), "the key is under the name: {held}");

    // A second contender waits while the lock is held…
    let request = json!({"name": b64("gw-lock"), "lease": second_lease}).to_string();
    let second = tokio::spawn(async move { http(addr, "/v3/lock/lock", &request).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the lock has one holder at a time");

    // …and gets it promptly once the holder unlocks.
    let unlocked = ok(addr, "/v3/lock/unlock", &json!({"key": held["key"]}).to_string()).await;
    assert!(unlocked["header"]["revision"].is_string(), "{unlocked}");
    let (status, next) = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second lock succeeds within 5s of the unlock")
        .expect("the second lock's task");
    assert!(status.contains(" 200 "), "{status} {next}");
    let next_key = unb64(&next["key"]);
    assert!(next_key.starts_with(b"gw-lock/") && next_key != key, "{next}");
    ok(addr, "/v3/lock/unlock", &json!({"key": next["key"]}).to_string()).await;
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_proclaim_leader_and_resign() {
    let member = Member::start(&[]).await;
    let addr = member.addr;
    let id = lease(addr).await;
    let name = json!({"name": b64("gw-pick")}).to_string();

    let request = json!({"name": b64("gw-pick"), "lease": id, "value": b64("alpha")}).to_string();
    let campaign = ok(addr, "/v3/election/campaign", &request).await;
    let leader = &campaign["leader"];
    assert_eq!(leader["name"], b64("gw-pick"), "{campaign}");
    assert!(unb64(&leader["key"]).starts_with(b"gw-pick/"), "{campaign}");
    assert!(leader["rev"].is_string(), "int64 as a string: {campaign}");
    assert_eq!(leader["lease"], id.as_str(), "{campaign}");

    let current = ok(addr, "/v3/election/leader", &name).await;
    assert_eq!(current["kv"]["value"], b64("alpha"), "{current}");
    assert_eq!(current["kv"]["key"], leader["key"], "{current}");

    let request = json!({"leader": leader, "value": b64("alpha-2")}).to_string();
    ok(addr, "/v3/election/proclaim", &request).await;
    let current = ok(addr, "/v3/election/leader", &name).await;
    assert_eq!(current["kv"]["value"], b64("alpha-2"), "{current}");

    ok(addr, "/v3/election/resign", &json!({"leader": leader}).to_string()).await;
    let none = http(addr, "/v3/election/leader", &name).await;
    assert_error(&none, 400, 9, "election: no leader");
    // The resigned leader can no longer proclaim.
    let request = json!({"leader": leader, "value": b64("stale")}).to_string();
    let stale = http(addr, "/v3/election/proclaim", &request).await;
    assert_error(&stale, 400, 9, "election: not leader");
    member.stop().await;
}

/// The member list once `done` holds for it.
async fn members_until(addr: SocketAddr, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let poll = async {
        loop {
            let list = ok(addr, "/v3/cluster/member/list", "{}").await;
            let members = list["members"].as_array().cloned().unwrap_or_default();
            if done(&members) {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .unwrap_or_else(|_| panic!("{what} within 10s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_listed_refused_promotion_and_removed() {
    let member = Member::start(&[]).await;
    let addr = member.addr;

    let request = json!({"peerURLs": ["http://127.0.0.1:9"], "isLearner": true}).to_string();
    let added = ok(addr, "/v3/cluster/member/add", &request).await;
    assert_eq!(added["member"]["isLearner"], true, "{added}");
    assert_eq!(added["member"]["peerURLs"], json!(["http://127.0.0.1:9"]), "{added}");
    let id = added["member"]["ID"]
        .as_str()
        .unwrap_or_else(|| panic!("the new member's ID as a string: {added}"))
        .to_string();
    assert!(id.parse::<u64>().is_ok(), "a uint64 ID: {added}");

    let is_new = |m: &Value| m["ID"] == id.as_str();
    let listed = members_until(addr, "the learner is listed", |ms| ms.iter().any(is_new)).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let learner = listed.iter().find(|m| is_new(m)).expect("the learner is listed");
    assert_eq!(learner["isLearner"], true, "{learner}");
    assert_eq!(learner["peerURLs"], json!(["http://127.0.0.1:9"]), "{learner}");

    // Never started, so it has none of the log.
    let promoted = http(addr, "/v3/cluster/member/promote", &json!({"ID": id}).to_string()).await;
    assert_error(
        &promoted,
        400,
        9,
        "can only promote a learner member which is in sync with leader",
    );

    let removed = ok(addr, "/v3/cluster/member/remove", &json!({"ID": id}).to_string()).await;
    assert!(removed["header"]["revision"].is_string(), "{removed}");
    let left = members_until(addr, "the learner is gone", |ms| !ms.iter().any(is_new)).await;
    assert_eq!(left.len(), 1, "{left:?}");

    let request = json!({"ID": "12345", "peerURLs": ["http://127.0.0.1:10"]}).to_string();
    let unknown = http(addr, "/v3/cluster/member/update", &request).await;
    assert_error(&unknown, 404, 5, "etcdserver: member not found");

    // A wrong type is refused before anything changes.
    let bad = http(addr, "/v3/cluster/member/add", r#"{"peerURLs": "http://127.0.0.1:11"}"#).await;
    assert_error(&bad, 400, 3, "peerURLs");
    let bad = http(addr, "/v3/cluster/member/remove", r#"{"ID": true}"#).await;
    assert_error(&bad, 400, 3, "\"ID\"");
    members_until(addr, "one member", |ms| ms.len() == 1).await;
    member.stop().await;
}
