//! The etcd v3 API through the etcd-client crate, against one member
//! started in-process (the same `start` the binary calls) on loopback.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, LeaseTimeToLiveOptions,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use store::config::Config;

mod solo;
use solo::{http, Member};

async fn value(client: &mut Client, key: &str) -> Option<String> {
    let resp = client.get(key, None).await.unwrap();
    resp.kvs().first().map(|kv| kv.value_str().unwrap().to_string())
}

fn keys(resp: &etcd_client::GetResponse) -> Vec<String> {
    resp.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_ranges_and_delete() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;

    let first = c.put("a", "1", None).await.unwrap();
    let rev_a = first.header().unwrap().revision();
    let second = c.put("a", "2", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(second.prev_key().unwrap().value_str().unwrap(), "1");
    for (k, v) in [("b", "x"), ("c", "y"), ("ca", "z"), ("d", "w")] {
        c.put(k, v, None).await.unwrap();
    }

    let kv = c.get("a", None).await.unwrap();
    let a = &kv.kvs()[0];
    assert_eq!(
        (a.version(), a.create_revision(), a.mod_revision()),
        (2, rev_a, rev_a + 1)
    );
    // Reading at an older revision sees the older value.
    let old = c.get("a", Some(GetOptions::new().with_revision(rev_a))).await.unwrap();
    assert_eq!(old.kvs()[0].value_str().unwrap(), "1");

    let prefix = c.get("c", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(keys(&prefix), ["c", "ca"]);
    let range = c.get("b", Some(GetOptions::new().with_range("d"))).await.unwrap();
    assert_eq!(keys(&range), ["b", "c", "ca"]);
    let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(&all), ["a", "b", "c", "ca", "d"]);
    let limited = c
        .get("a", Some(GetOptions::new().with_from_key().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(
        (keys(&limited), limited.more(), limited.count()),
        (vec!["a".into(), "b".into()], true, 5)
    );
    let sorted = c
        .get(
            "a",
            Some(
                GetOptions::new()
                    .with_from_key()
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&sorted), ["d", "ca", "c", "b", "a"]);
    let counted = c
        .get("a", Some(GetOptions::new().with_from_key().with_count_only()))
        .await
        .unwrap();
    assert_eq!((counted.count(), counted.kvs().len()), (5, 0));
    let keys_only = c.get("b", Some(GetOptions::new().with_keys_only())).await.unwrap();
    assert!(keys_only.kvs()[0].value().is_empty());

    let deleted = c
        .delete("c", Some(DeleteOptions::new().with_prefix().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), 2);
    assert_eq!(deleted.prev_kvs().len(), 2);
    assert_eq!(value(&mut c, "c").await, None);
    // Deleting nothing does not make a revision.
    let before = c.get("a", None).await.unwrap().header().unwrap().revision();
    let nothing = c.delete("zzz", None).await.unwrap();
    assert_eq!((nothing.deleted(), nothing.header().unwrap().revision()), (0, before));
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_compares_branches_and_nesting() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;
    c.put("k", "v1", None).await.unwrap();

    let txn = Txn::new()
        .when([
            Compare::value("k", CompareOp::Equal, "v1"),
            Compare::version("k", CompareOp::Greater, 0),
        ])
        .and_then([TxnOp::put("k", "v2", None), TxnOp::get("k", None)])
        .or_else([TxnOp::put("failed", "yes", None)]);
    let resp = c.txn(txn).await.unwrap();
    assert!(resp.succeeded());
    match &resp.op_responses()[1] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value_str().unwrap(), "v2", "reads see the txn's own writes"),
        other => panic!("expected a get response, got {other:?}"),
    }

    // A failing compare runs the failure branch, here a nested txn.
    let nested = Txn::new()
        .when([Compare::create_revision("missing", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("inner", "ran", None)]);
    let txn = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "nope")])
        .and_then([TxnOp::put("outer", "wrong", None)])
        .or_else([TxnOp::txn(nested)]);
    let resp = c.txn(txn).await.unwrap();
    assert!(!resp.succeeded());
    assert_eq!(value(&mut c, "inner").await.as_deref(), Some("ran"));
    assert_eq!(value(&mut c, "outer").await, None);

    // Mod revision and lease compares.
    let k = c.get("k", None).await.unwrap().kvs()[0].mod_revision();
    let txn = Txn::new()
        .when([
            Compare::mod_revision("k", CompareOp::Equal, k),
            Compare::lease("k", CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::delete("k", None)]);
    assert!(c.txn(txn).await.unwrap().succeeded());

    // Two writes to one key in a txn are refused, and nothing changes.
    let txn = Txn::new().and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)]);
    let err = c.txn(txn).await.unwrap_err().to_string();
    assert!(err.contains("duplicate key given in txn request"), "{err}");
    assert_eq!(value(&mut c, "dup").await, None);
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_history_follows_live_events_and_reports_compaction() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;
    let start = c.put("w/1", "a", None).await.unwrap().header().unwrap().revision();
    c.put("w/1", "b", None).await.unwrap();
    c.delete("w/1", None).await.unwrap();

    let mut stream = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start)
                    .with_prev_key(),
            ),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let collect = async {
        while seen.len() < 4 {
            let resp = stream.message().await.unwrap().unwrap();
            for e in resp.events() {
                let kv = e.kv().unwrap();
                let prev = e.prev_kv().map(|p| p.value_str().unwrap().to_string());
                seen.push((
                    e.event_type(),
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                    prev,
                ));
            }
            if seen.len() == 3 {
                // History is replayed; now a live event.
                c.put("w/2", "live", None).await.unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .expect("4 watch events within 10s");
    assert_eq!(
        seen,
        vec![
            (EventType::Put, "w/1".into(), "a".into(), None),
            (EventType::Put, "w/1".into(), "b".into(), Some("a".into())),
            (EventType::Delete, "w/1".into(), "".into(), Some("b".into())),
            (EventType::Put, "w/2".into(), "live".into(), None),
        ]
    );
    drop(stream);

    // NOPUT filter: only deletions arrive.
    let mut deletes = c
        .watch(
            "f",
            Some(WatchOptions::new().with_filters([etcd_client::WatchFilterType::NoPut])),
        )
        .await
        .unwrap();
    c.put("f", "1", None).await.unwrap();
    c.delete("f", None).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let resp = deletes.message().await.unwrap().unwrap();
            if let Some(e) = resp.events().first() {
                return e.event_type();
            }
        }
    })
    .await
    .expect("an event within 10s");
    assert_eq!(first, EventType::Delete);

    // A watch from before the compaction point is cancelled with the compact revision.
    let now = c.put("x", "1", None).await.unwrap().header().unwrap().revision();
    c.compact(now, None).await.unwrap();
    let mut stream = c
        .watch("w/", Some(WatchOptions::new().with_start_revision(start)))
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let resp = stream.message().await.unwrap().unwrap();
            if resp.canceled() {
                return resp;
            }
        }
    })
    .await
    .expect("a cancel within 10s");
    assert_eq!(resp.compact_revision(), now);
    let err = c
        .get("w/1", Some(GetOptions::new().with_revision(start)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("required revision has been compacted"), "{err}");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_keys_alive_and_expiry_deletes_them() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;

    let lease = c.lease_grant(2, None).await.unwrap();
    assert_eq!(lease.ttl(), 2);
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let ttl = c
        .lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 2);
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 2, "{}", ttl.ttl());
    assert_eq!(ttl.keys(), [b"leased".to_vec()]);
    let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert!(listed.contains(&lease.id()));

    // Keep-alives hold it past its TTL…
    let (mut keeper, mut answers) = c.lease_keep_alive(lease.id()).await.unwrap();
    for _ in 0..4 {
        keeper.keep_alive().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.message())
            .await
            .expect("keep-alive answer within 5s")
            .unwrap()
            .unwrap();
        assert_eq!(answer.ttl(), 2);
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert_eq!(value(&mut c, "leased").await.as_deref(), Some("v"));

    // …and without them it expires and takes its key along.
    let gone = async {
        while value(&mut c, "leased").await.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("leased key deleted within 10s of expiry");
    let ttl = c.lease_time_to_live(lease.id(), None).await.unwrap();
    assert_eq!(ttl.ttl(), -1, "an expired lease is gone");

    // Revoke deletes at once; unknown leases are refused.
    let lease = c.lease_grant(60, None).await.unwrap();
    c.put("r", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    c.lease_revoke(lease.id()).await.unwrap();
    assert_eq!(value(&mut c, "r").await, None);
    let err = c.lease_revoke(lease.id()).await.unwrap_err().to_string();
    assert!(err.contains("requested lease not found"), "{err}");
    let err = c
        .put("k", "v", Some(PutOptions::new().with_lease(12345)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("requested lease not found"), "{err}");
    assert_eq!(value(&mut c, "k").await, None, "nothing written");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_cluster_and_bad_input() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;
    c.put("m", "1", None).await.unwrap();

    let status = c.status().await.unwrap();
    assert_eq!(status.leader(), status.header().unwrap().member_id());
    assert!(status.raft_index() > 0 && status.db_size() > 0);
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "solo");
    let h1 = c.hash_kv(0).await.unwrap().hash();
    assert_eq!(c.hash_kv(0).await.unwrap().hash(), h1, "hash is stable");
    c.put("m", "2", None).await.unwrap();
    assert_ne!(c.hash_kv(0).await.unwrap().hash(), h1, "hash follows the data");
    let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert!(alarms.alarms().is_empty());
    c.defragment().await.unwrap();

    // Bad input gets etcd's errors and writes nothing.
    let err = c.put("", "v", None).await.unwrap_err().to_string();
    assert!(err.contains("key is not provided"), "{err}");
    let big = vec![b'x'; 70 * 1024];
    let err = c.put("big", big, None).await.unwrap_err().to_string();
    assert!(err.contains("request is too large"), "{err}");
    assert_eq!(value(&mut c, "big").await, None);
    let err = c
        .get("m", Some(GetOptions::new().with_revision(1_000_000)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("future revision"), "{err}");
    // An inverted range is empty, not an error (as in etcd).
    let inverted = c.get("z", Some(GetOptions::new().with_range("a"))).await.unwrap();
    assert!(inverted.kvs().is_empty());
    let err = c
        .put("m", "3", Some(PutOptions::new().with_ignore_value()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("value is provided"), "{err}");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_and_refuses_writes_until_disarmed() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::single("q", dir.path(), &["--quota-backend-bytes", "4096"]);
    let running = store::start(config).await.unwrap();
    let mut c = Client::connect([format!("http://{}", running.client_addrs[0])], None)
        .await
        .unwrap();
    let fill = async {
        for i in 0.. {
            if let Err(e) = c.put(format!("k{i}"), vec![b'v'; 500], None).await {
                return e.to_string();
            }
        }
        unreachable!()
    };
    let err = tokio::time::timeout(Duration::from_secs(20), fill)
        .await
        .expect("quota reached within 20s");
    assert!(err.contains("database space exceeded"), "{err}");
    let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert_eq!(alarms.alarms().len(), 1);
    assert_eq!(alarms.alarms()[0].alarm(), AlarmType::Nospace);
    // Reads and deletes still work; puts do not.
    c.get("k0", None).await.unwrap();
    c.delete("k", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    let err = c.put("small", "v", None).await.unwrap_err().to_string();
    assert!(err.contains("database space exceeded"), "{err}");
    // A txn that only deletes passes (etcd charges puts only), one that
    // puts does not; nor may leases be granted.
    c.txn(Txn::new().and_then([TxnOp::delete("small", None)]))
        .await
        .unwrap();
    let err = c
        .txn(Txn::new().and_then([TxnOp::put("small", "v", None)]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("database space exceeded"), "{err}");
    let err = c.lease_grant(30, None).await.unwrap_err().to_string();
    assert!(err.contains("database space exceeded"), "{err}");
    // Status lists the alarm; /health is unhealthy while it is raised.
    let status = c.status().await.unwrap();
    assert!(
        status.errors().iter().any(|e| e.ends_with("alarm:NOSPACE")),
        "{:?}",
        status.errors()
    );
    let (code, body) = http(running.metrics_addrs[0], "GET", "/health", "").await;
    assert!(code.contains("503"), "{code}");
    assert_eq!(body, r#"{"health":"false","reason":"ALARM NOSPACE"}"#);
    // As with etcd: free space (delete, compact), then disarm.
    let now = c.get("k0", None).await.unwrap().header().unwrap().revision();
    c.compact(now, None).await.unwrap();
    c.defragment().await.unwrap();
    let member = alarms.alarms()[0].member_id();
    let mut options = etcd_client::AlarmOptions::new();
    options.with_member(member);
    c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(options))
        .await
        .unwrap();
    c.put("small", "v", None).await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = || Config::single("r", &data, &["--snapshot-count", "50"]);
    let running = store::start(config()).await.unwrap();
    let mut c = Client::connect([format!("http://{}", running.client_addrs[0])], None)
        .await
        .unwrap();
    // More writes than --snapshot-count, so recovery uses a snapshot and the log after it.
    for i in 0..120 {
        c.put(format!("key{i:03}"), format!("v{i}"), None).await.unwrap();
    }
    let hash = c.hash_kv(0).await.unwrap().hash();
    let revision = c.status().await.unwrap().header().unwrap().revision();
    running.stop().await;

    let running = store::start(config()).await.unwrap();
    let mut c = Client::connect([format!("http://{}", running.client_addrs[0])], None)
        .await
        .unwrap();
    let back = async {
        loop {
            if let Ok(r) = c
                .get("key", Some(GetOptions::new().with_prefix().with_count_only()))
                .await
            {
                if r.count() == 120 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), back)
        .await
        .expect("all 120 keys back within 10s");
    assert_eq!(c.hash_kv(0).await.unwrap().hash(), hash);
    assert_eq!(c.status().await.unwrap().header().unwrap().revision(), revision);
    assert!(data.join("snap/current.snap").exists(), "a snapshot was taken");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_exclusive_and_released_by_unlock_or_lease_end() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut a = member.client().await;
    let mut b = member.client().await;
    let lease_a = a.lease_grant(30, None).await.unwrap().id();
    let lease_b = b.lease_grant(2, None).await.unwrap().id();

    let held = a
        .lock("job", Some(etcd_client::LockOptions::new().with_lease(lease_a)))
        .await
        .unwrap();
    let key_a = held.key().to_vec();
    // b waits while a holds the lock…
    let waiting = tokio::spawn(async move {
        let got = b
            .lock("job", Some(etcd_client::LockOptions::new().with_lease(lease_b)))
            .await
            .unwrap();
        (got.key().to_vec(), b)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "second locker must wait for the first");
    // …and gets it once a unlocks.
    a.unlock(key_a).await.unwrap();
    let (key_b, mut b) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("second locker acquired within 10s of unlock")
        .unwrap();
    assert!(key_b.starts_with(b"job/"));

    // A holder whose lease ends loses the lock without unlocking.
    let c_lease = a.lease_grant(60, None).await.unwrap().id();
    let third = tokio::spawn(async move {
        a.lock("job", Some(etcd_client::LockOptions::new().with_lease(c_lease)))
            .await
            .unwrap();
    });
    let expired = async {
        // b's lease (2 s) is not kept alive.
        third.await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(15), expired)
        .await
        .expect("lock passed on after the holder's lease expired");
    let gone = b.get(key_b, None).await.unwrap();
    assert!(gone.kvs().is_empty(), "the expired holder's key is gone");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elections_have_one_leader_that_can_proclaim_and_resign() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;
    let lease1 = c.lease_grant(30, None).await.unwrap().id();
    let lease2 = c.lease_grant(30, None).await.unwrap().id();

    let err = c.leader("pick").await.unwrap_err().to_string();
    assert!(err.contains("election: no leader"), "{err}");
    let first = c.campaign("pick", "alpha", lease1).await.unwrap();
    let leader = first.leader().unwrap().clone();
    assert_eq!(
        c.leader("pick").await.unwrap().kv().unwrap().value_str().unwrap(),
        "alpha"
    );

    let mut observer = c.observe("pick").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), observer.message())
        .await
        .expect("observe reports the current leader")
        .unwrap()
        .unwrap();
    assert_eq!(seen.kv().unwrap().value_str().unwrap(), "alpha");

    let mut second_client = member.client().await;
    let second = tokio::spawn(async move { second_client.campaign("pick", "beta", lease2).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "only one leader at a time");

    c.proclaim(
        "alpha-2",
        Some(etcd_client::ProclaimOptions::new().with_leader(leader.clone())),
    )
    .await
    .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), observer.message())
        .await
        .expect("observe reports the proclaimed value")
        .unwrap()
        .unwrap();
    assert_eq!(seen.kv().unwrap().value_str().unwrap(), "alpha-2");

    c.resign(Some(etcd_client::ResignOptions::new().with_leader(leader.clone())))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("second candidate leads after the first resigned")
        .unwrap();
    assert_eq!(
        c.leader("pick").await.unwrap().kv().unwrap().value_str().unwrap(),
        "beta"
    );
    // The resigned leader can no longer proclaim.
    let err = c
        .proclaim("stale", Some(etcd_client::ProclaimOptions::new().with_leader(leader)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("election: not leader"), "{err}");
    member.stop().await;
}

/// A minimal HTTP/1.1 request over a fresh connection; returns (status line, body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_gateway_speaks_etcds_json() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let addr = member.addr;
    // key "foo", value "bar", base64-encoded as the gateway wants.
    let (status, body) = http(addr, "POST", "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
    assert!(status.contains("200"), "{status} {body}");
    let put: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        put["header"]["revision"].is_string(),
        "int64 travels as a string: {body}"
    );

    let (_, body) = http(addr, "POST", "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    let range: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(range["kvs"][0]["value"], "YmFy");
    assert_eq!(range["count"], "1");

    let txn = r#"{"compare":[{"target":"VALUE","key":"Zm9v","value":"YmFy"}],
                  "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}"#;
    let (_, body) = http(addr, "POST", "/v3/kv/txn", txn).await;
    let txn: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(txn["succeeded"], true, "{body}");
    let mut c = member.client().await;
    assert_eq!(
        value(&mut c, "foo").await.as_deref(),
        Some("baz"),
        "gateway writes are real writes"
    );

    // Bad input: clear errors, nothing written.
    let (status, body) = http(addr, "POST", "/v3/kv/put", r#"{"key":"#).await;
    assert!(status.contains("400"), "{status}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["code"], 3);
    assert!(err["message"].as_str().unwrap().contains("malformed JSON"), "{body}");
    let (status, body) = http(addr, "POST", "/v3/kv/put", r#"{"key":"not base64!","value":"YQ=="}"#).await;
    assert!(status.contains("400") && body.contains("base64"), "{status} {body}");
    let (status, body) = http(addr, "POST", "/v3/lease/revoke", r#"{"ID":"12345"}"#).await;
    assert!(
        status.contains("404") && body.contains("requested lease not found"),
        "{status} {body}"
    );
    assert_eq!(c.get("foo", None).await.unwrap().kvs()[0].version(), 2);

    // A watch streams one JSON result per line, history first.
    let lines = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let body = r#"{"create_request":{"key":"Zm9v","start_revision":"1"}}"#;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /v3/watch HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reader = tokio::io::BufReader::new(stream);
        let mut results = Vec::new();
        while results.len() < 2 {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line.starts_with("{\"result\"") {
                results.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
            }
        }
        results
    })
    .await
    .expect("two watch results within 10s");
    assert_eq!(lines[0]["result"]["created"], true);
    let events = lines[1]["result"]["events"].as_array().unwrap();
    assert_eq!(events[0]["kv"]["value"], "YmFy", "history replayed from revision 1");
    assert_eq!(events.last().unwrap()["kv"]["value"], "YmF6");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_use_etcds_names() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;
    c.put("m", "1", None).await.unwrap();
    // A stream is counted when it ends (here: the client goes away).
    {
        let mut other = member.client().await;
        let mut stream = other.watch("m", None).await.unwrap();
        stream.message().await.unwrap();
    }
    let addr = member.metrics_addr();
    let (status, body) = http(addr, "GET", "/health", "").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, r#"{"health":"true","reason":""}"#);
    // Gauges refresh every second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    for name in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_debugging_mvcc_keys_total 1",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_failed_total",
        "etcd_server_leader_changes_seen_total 1",
        "etcd_server_proposals_pending",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
        "grpc_server_handling_seconds_bucket",
        r#"grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 1"#,
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    let sample = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no sample {name}:\n{text}"))
    };
    let (committed, applied) = (
        sample("etcd_server_proposals_committed_total "),
        sample("etcd_server_proposals_applied_total "),
    );
    assert!(
        committed >= applied && applied >= 2,
        "committed {committed}, applied {applied}"
    );
    // Status: the committed index, no errors while healthy.
    let status = c.status().await.unwrap();
    assert!(status.raft_index() >= applied, "{status:?}");
    assert!(status.errors().is_empty(), "{:?}", status.errors());
    assert_eq!(status.leader(), status.header().unwrap().member_id());
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    // etcd itself names one gauge `_total`; promtool's lint flags that, and
    // nothing else may be flagged.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let allowed = "etcd_debugging_mvcc_keys_total non-counter metrics should not have \"_total\" suffix";
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(allowed))
        .collect();
    assert!(problems.is_empty(), "promtool found problems:\n{report}");
    member.stop().await;
}

/// The Cluster and Maintenance calls etcdctl tests elsewhere, here through
/// the etcd-client crate: members added, refused promotion, updated and
/// removed; Hash; a streamed Snapshot; MoveLeader's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_maintenance_through_the_client_crate() {
    let member = Member::start(&["--max-request-bytes", "65536"]).await;
    let mut c = member.client().await;
    c.put("m", "1", None).await.unwrap();

    let added = c
        .member_add(
            ["http://127.0.0.1:9"],
            Some(etcd_client::MemberAddOptions::new().with_is_learner()),
        )
        .await
        .unwrap();
    let learner = added.member().expect("the added member").id();
    assert!(added.member().unwrap().is_learner());
    let err = c.member_promote(learner).await.unwrap_err().to_string();
    assert!(err.contains("in sync with leader"), "{err}");
    c.member_update(learner, vec!["http://127.0.0.1:10".to_string()])
        .await
        .unwrap();
    let listed = c.member_list().await.unwrap();
    let moved = listed.members().iter().find(|m| m.id() == learner).expect("listed");
    assert_eq!(moved.peer_urls(), ["http://127.0.0.1:10"]);
    c.member_remove(learner).await.unwrap();
    assert_eq!(c.member_list().await.unwrap().members().len(), 1);
    let err = c.member_remove(learner).await.unwrap_err().to_string();
    assert!(err.contains("member not found"), "{err}");

    let h1 = c.hash().await.unwrap().hash();
    c.put("m", "2", None).await.unwrap();
    assert_ne!(c.hash().await.unwrap().hash(), h1, "Hash follows the data");

    let mut snapshot = c.snapshot().await.unwrap();
    let mut blob = Vec::new();
    while let Some(part) = tokio::time::timeout(Duration::from_secs(10), snapshot.message())
        .await
        .expect("a snapshot part within 10s")
        .unwrap()
    {
        blob.extend_from_slice(part.blob());
        if part.remaining_bytes() == 0 {
            break;
        }
    }
    // Whole 512-byte pages followed by their SHA-256, as etcdctl checks.
    assert!(blob.len() > 32 && (blob.len() - 32) % 512 == 0, "{}", blob.len());

    let me = c.status().await.unwrap().header().unwrap().member_id();
    c.move_leader(me).await.expect("moving to the leader itself is a no-op");
    let err = c.move_leader(me ^ 1).await.unwrap_err().to_string();
    assert!(err.contains("bad leader transferee"), "{err}");
    member.stop().await;
}
