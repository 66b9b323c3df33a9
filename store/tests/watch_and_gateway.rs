//! Watch details and more of etcd's JSON gateway, through etcd-client
//! against one member started in-process (as in `etcd_api.rs`), asserting
//! what etcd 3.4 does:
//!
//! - NODELETE / NOPUT filters over a prefix, range deletes included;
//! - several watchers on one gRPC stream: own ids, own events, etcd's
//!   refusal of a watch id in use, cancelling one silences it alone;
//! - fragmenting: a replay over `--max-request-bytes` comes in pieces under
//!   the limit, all but the last marked `fragment` (etcd-client does not
//!   reassemble them, unlike Go's clientv3, so the test does);
//! - progress notifications on a quiet key, also while other keys change
//!   (etcd restarts a watcher's timer only when it sent that watcher events);
//! - progress requests: no event at or below the answer's revision after it;
//! - the gateway's deleterange, lease grant / put with lease / timetolive,
//!   and its error JSON.
//!
//! Every wait is bounded ([`WAIT`]); watches start at an explicit revision,
//! so no test depends on when the server registers a watcher.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use etcd_client::{
    Client, DeleteOptions, EventType, GetOptions, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use prost::Message as _;
use serde_json::json;

mod solo;
use solo::{post as http, Member, WAIT};

/// The store's current revision.
async fn revision(c: &mut Client) -> i64 {
    let resp = c.get("\0", None).await.expect("a range read");
    resp.header().expect("a response header").revision()
}

/// The next response on `stream`, within [`WAIT`].
async fn next(stream: &mut WatchStream, what: &str) -> WatchResponse {
    match tokio::time::timeout(WAIT, stream.message()).await {
        Err(_) => panic!("no watch response within {WAIT:?} while waiting for {what}"),
        Ok(Err(e)) => panic!("watch stream failed while waiting for {what}: {e}"),
        Ok(Ok(None)) => panic!("watch stream ended while waiting for {what}"),
        Ok(Ok(Some(resp))) => resp,
    }
}

/// Waits for a `created` answer; returns its watch id.
async fn created(stream: &mut WatchStream, what: &str) -> i64 {
    let resp = next(stream, what).await;
    assert!(
        resp.created() && !resp.canceled(),
        "expected {what} to be created: {resp:?}"
    );
    resp.watch_id()
}

/// One event as received.
#[derive(Debug, Clone)]
struct Seen {
    id: i64,
    kind: EventType,
    key: String,
    value: String,
    prev: Option<String>,
    rev: i64,
}

fn seen(resp: &WatchResponse) -> Vec<Seen> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let one = |e: &etcd_client::Event| {
        let kv = e.kv().expect("an event carries its key-value");
        Seen {
            id: resp.watch_id(),
            kind: e.event_type(),
            key: text(kv.key()),
            value: text(kv.value()),
            prev: e.prev_kv().map(|p| text(p.value())),
            rev: kv.mod_revision(),
        }
    };
    resp.events().iter().map(one).collect()
}

/// (type, key, value, previous value) of each event.
fn view(events: &[Seen]) -> Vec<(EventType, &str, &str, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.kind, e.key.as_str(), e.value.as_str(), e.prev.as_deref()))
        .collect()
}

/// Events from `stream` until `done` holds of them all, within [`WAIT`].
async fn events_until(stream: &mut WatchStream, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    let mut all = Vec::new();
    let collect = async {
        while !done(&all) {
            let resp = next(stream, what).await;
            assert!(!resp.canceled(), "unexpected cancel while waiting for {what}: {resp:?}");
            all.extend(seen(&resp));
        }
    };
    let finished = tokio::time::timeout(WAIT, collect).await;
    finished.unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}; saw {all:?}"));
    all
}

/// Whatever `stream` delivers within `window`, when nothing more is due.
async fn late(stream: &mut WatchStream, window: Duration) -> Vec<WatchResponse> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Ok(Some(resp)) = stream.message().await {
            got.push(resp);
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodelete_and_noput_filters_split_a_prefixs_history() {
    let member = Member::start(&[]).await;
    let mut c = member.client().await;
    let from = revision(&mut c).await + 1;
    let options = |filter: WatchFilterType| {
        let o = WatchOptions::new().with_prefix().with_start_revision(from);
        Some(o.with_prev_key().with_filters([filter]))
    };
    let mut puts_only = c
        .watch("nd/", options(WatchFilterType::NoDelete))
        .await
        .expect("a NODELETE watch");
    let mut deletes_only = c
        .watch("nd/", options(WatchFilterType::NoPut))
        .await
        .expect("a NOPUT watch");
    created(&mut puts_only, "the NODELETE watcher").await;
    created(&mut deletes_only, "the NOPUT watcher").await;

    c.put("nd/1", "a", None).await.expect("put nd/1");
    c.put("nd/2", "b", None).await.expect("put nd/2");
    let wiped = c
        .delete("nd/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete nd/*");
    assert_eq!(wiped.deleted(), 2);
    let wiped_at = wiped.header().expect("a response header").revision();
    c.put("nd/3", "c", None).await.expect("put nd/3");
    c.delete("nd/3", None).await.expect("delete nd/3");
    c.put("nd/end", "x", None).await.expect("put nd/end");
    c.delete("nd/end", None).await.expect("delete nd/end");

    let end = |s: &[Seen]| s.iter().any(|e| e.key == "nd/end");
    let puts = events_until(&mut puts_only, "the put of nd/end", end).await;
    let deletes = events_until(&mut deletes_only, "the delete of nd/end", end).await;
    // Both have seen the last write: a filtered event sent late would be here by now.
    for (stream, name) in [(&mut puts_only, "NODELETE"), (&mut deletes_only, "NOPUT")] {
        let extra = late(stream, Duration::from_millis(300)).await;
        assert!(
            extra.iter().all(|r| r.events().is_empty()),
            "{name} watcher got more: {extra:?}"
        );
    }

    use EventType::{Delete, Put};
    let puts_seen = [
        (Put, "nd/1", "a", None),
        (Put, "nd/2", "b", None),
        (Put, "nd/3", "c", None),
        (Put, "nd/end", "x", None),
    ];
    assert_eq!(view(&puts), puts_seen, "NODELETE: every put, no delete");
    let deletes_seen = [
        (Delete, "nd/1", "", Some("a")),
        (Delete, "nd/2", "", Some("b")),
        (Delete, "nd/3", "", Some("c")),
        (Delete, "nd/end", "", Some("x")),
    ];
    assert_eq!(
        view(&deletes),
        deletes_seen,
        "NOPUT: every delete with its previous value, no put"
    );
    assert_eq!(
        (deletes[0].rev, deletes[1].rev),
        (wiped_at, wiped_at),
        "one range delete, one revision"
    );
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_sharing_a_stream_keep_their_own_events_and_cancel_alone() {
    let member = Member::start(&[]).await;
    let mut c = member.client().await;
    let from = revision(&mut c).await + 1;
    let at = || Some(WatchOptions::new().with_start_revision(from));
    let mut stream = c.watch("multi/a", at()).await.expect("the first watch");
    let a = created(&mut stream, "the watcher of multi/a").await;
    stream
        .watch("multi/b", at())
        .await
        .expect("a second watch on the same stream");
    let b = created(&mut stream, "the watcher of multi/b").await;
    assert_ne!(a, b, "each watcher has its own id");

    // An id in use is refused: created and canceled at once, with watch id -1
    // and mvcc's ErrWatcherDuplicateID; the existing watcher is untouched.
    let taken = a.max(b); // non-zero: 0 would ask for a fresh id
    let dup = WatchOptions::new().with_watch_id(taken);
    stream
        .watch("multi/dup", Some(dup))
        .await
        .expect("a create request with a taken id");
    let refused = next(&mut stream, "the answer to a duplicate watch id").await;
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert_eq!(
        (refused.watch_id(), refused.cancel_reason()),
        (-1, "mvcc: duplicate watch ID provided on the WatchStream")
    );

    for key in ["multi/a", "multi/b", "multi/c"] {
        c.put(key, "1", None).await.expect("put");
    }
    let mut first = events_until(&mut stream, "an event for each watcher", |s| s.len() >= 2).await;
    first.extend(
        late(&mut stream, Duration::from_millis(300))
            .await
            .iter()
            .flat_map(seen),
    );
    first.sort_by_key(|e| e.id);
    let routed: Vec<(i64, &str, &str)> = first.iter().map(|e| (e.id, e.key.as_str(), e.value.as_str())).collect();
    let mut want = [(a, "multi/a", "1"), (b, "multi/b", "1")];
    want.sort();
    assert_eq!(routed, want, "each watcher hears only its own key, under its own id");

    stream.cancel(a).await.expect("a cancel request");
    let cancelled = next(&mut stream, "the answer to the cancel").await;
    assert!(
        cancelled.canceled() && !cancelled.created() && cancelled.events().is_empty(),
        "{cancelled:?}"
    );
    assert_eq!(cancelled.watch_id(), a);
    c.put("multi/a", "2", None).await.expect("put multi/a");
    c.put("multi/b", "2", None).await.expect("put multi/b");
    let mut after = events_until(&mut stream, "multi/b's second event", |s| {
        s.iter().any(|e| e.key == "multi/b")
    })
    .await;
    let tail = late(&mut stream, Duration::from_millis(500)).await;
    assert!(
        tail.iter().all(|r| r.watch_id() != a),
        "the cancelled watcher spoke again: {tail:?}"
    );
    after.extend(tail.iter().flat_map(seen));
    let heard: Vec<(i64, &str, &str)> = after.iter().map(|e| (e.id, e.key.as_str(), e.value.as_str())).collect();
    assert_eq!(heard, [(b, "multi/b", "2")], "only the remaining watcher hears more");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_replay_arrives_in_pieces_under_the_request_limit() {
    const LIMIT: usize = 1024 * 1024;
    const KEYS: usize = 40;
    const SIZE: usize = 100 * 1024;
    let member = Member::start(&["--max-request-bytes", "1048576"]).await;
    let mut c = member.client().await;
    let from = revision(&mut c).await + 1;
    let fill = |i: usize| b'a' + (i % 26) as u8;
    for i in 0..KEYS {
        let key = format!("frag/{i:02}");
        c.put(key.as_str(), vec![fill(i); SIZE], None)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    let last = revision(&mut c).await;
    assert_eq!(last, from + KEYS as i64 - 1);

    // ~4 MiB of history in one replay: etcd splits it, each piece < LIMIT.
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(from)
        .with_fragment();
    let mut stream = c.watch("frag/", Some(options)).await.expect("a fragmenting watch");
    let id = created(&mut stream, "the fragmenting watcher").await;
    let mut parts: Vec<WatchResponse> = Vec::new();
    let collect = async {
        while parts.last().is_none_or(|p: &WatchResponse| p.0.fragment) {
            parts.push(next(&mut stream, "the next fragment").await);
        }
    };
    tokio::time::timeout(WAIT, collect)
        .await
        .expect("the whole fragmented replay within 10s");
    let extra = late(&mut stream, Duration::from_millis(300)).await;
    let after: usize = extra.iter().map(|r| r.events().len()).sum();
    assert_eq!(after, 0, "events after the last fragment");

    assert!(
        parts.len() > KEYS * SIZE / LIMIT,
        "only {} responses for ~4 MiB",
        parts.len()
    );
    let header = parts[0].header().map(|h| h.revision());
    assert!(
        header >= Some(last),
        "header {header:?} below the last event's revision {last}"
    );
    for (i, p) in parts.iter().enumerate() {
        let size = p.0.encoded_len();
        let count = p.events().len();
        assert_eq!(p.watch_id(), id);
        assert!(count > 0, "response {i} of {} is empty", parts.len());
        assert_eq!(
            p.0.fragment,
            i + 1 < parts.len(),
            "response {i}: only the last one is not a fragment"
        );
        assert!(
            count == 1 || size < LIMIT,
            "response {i}: {count} events in {size} bytes, over {LIMIT}"
        );
        assert_eq!(
            p.header().map(|h| h.revision()),
            header,
            "every fragment carries the one header"
        );
    }
    let events: Vec<&etcd_client::Event> = parts.iter().flat_map(|p| p.events()).collect();
    assert_eq!(events.len(), KEYS, "every event exactly once");
    for (i, e) in events.iter().enumerate() {
        let kv = e.kv().expect("an event carries its key-value");
        assert_eq!(
            (e.event_type(), kv.key()),
            (EventType::Put, format!("frag/{i:02}").as_bytes())
        );
        assert_eq!(kv.mod_revision(), from + i as i64);
        let intact = kv.value().len() == SIZE && kv.value().iter().all(|&v| v == fill(i));
        assert!(
            intact,
            "frag/{i:02} arrived with {} bytes, not its value",
            kv.value().len()
        );
    }
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_reach_a_quiet_watcher_even_while_other_keys_change() {
    let member = Member::start(&["--experimental-watch-progress-notify-interval", "1s"]).await;
    let mut c = member.client().await;
    let options = WatchOptions::new().with_progress_notify();
    let mut stream = c.watch("quiet", Some(options)).await.expect("a progress-notify watch");
    let id = created(&mut stream, "the progress-notify watcher").await;
    let is_notification = |r: &WatchResponse| {
        r.watch_id() == id && r.events().is_empty() && !r.created() && !r.canceled() && !r.0.fragment
    };

    // Nothing is written: the notification names the current revision.
    let idle = next(&mut stream, "a progress notification (interval 1s)").await;
    assert!(is_notification(&idle), "{idle:?}");
    let idle_rev = idle.header().expect("a response header").revision();
    assert_eq!(idle_rev, revision(&mut c).await);

    // Other keys change every 50 ms; events for them are not events for
    // this watcher, so its notifications keep coming.
    let mut writer_client = c.clone();
    let writer = tokio::spawn(async move {
        for i in 0u64.. {
            writer_client
                .put(format!("busy/{i}"), "x", None)
                .await
                .expect("a background put");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let start = revision(&mut c).await;
    let mut notes = Vec::new();
    let collect = async {
        while notes.len() < 3 {
            let resp = next(&mut stream, "a progress notification while other keys change").await;
            assert!(is_notification(&resp), "only notifications for the quiet key: {resp:?}");
            notes.push(resp.header().expect("a response header").revision());
        }
    };
    let got = tokio::time::timeout(WAIT, collect).await;
    assert!(!writer.is_finished(), "the background writer stopped");
    writer.abort();
    got.expect("three progress notifications within 10s while other keys are written every 50 ms");
    let end = revision(&mut c).await;
    assert!(end - start >= 10, "the writer wrote only {} times", end - start);
    assert!(notes[0] >= idle_rev, "{notes:?} after {idle_rev}");
    assert!(
        notes.windows(2).all(|w| w[0] < w[1]),
        "each names a newer revision: {notes:?}"
    );
    assert!(notes.iter().all(|&r| r <= end), "{notes:?} beyond the revision {end}");
    member.stop().await;
}

/// The revision of a spawned put, within [`WAIT`].
async fn settle(put: tokio::task::JoinHandle<Result<i64, etcd_client::Error>>) -> i64 {
    let answered = tokio::time::timeout(WAIT, put)
        .await
        .expect("a put answered within 10s");
    answered.expect("the put task").expect("a put")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_requests_are_answered_after_every_event_they_cover() {
    const PUTS: usize = 200;
    let member = Member::start(&[]).await;
    let mut c = member.client().await;
    let from = revision(&mut c).await + 1;
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream = c.watch("burst/", Some(options)).await.expect("a watch on burst/");
    let id = created(&mut stream, "the burst watcher").await;

    let mut handles = (0..PUTS)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let put = c.put(format!("burst/{i:03}"), "v", None).await;
                put.map(|r| r.header().map_or(0, |h| h.revision()))
            })
        })
        .collect::<Vec<_>>()
        .into_iter();
    // Ask once with half the burst acknowledged and half in flight, once after all of it.
    let mut half = 0;
    for handle in handles.by_ref().take(PUTS / 2) {
        half = half.max(settle(handle).await);
    }
    stream.request_progress().await.expect("a progress request");
    let mut all = half;
    for handle in handles {
        all = all.max(settle(handle).await);
    }
    stream.request_progress().await.expect("a second progress request");

    // In arrival order: Ok(event revision) or Err(progress revision).
    let mut log: Vec<Result<i64, i64>> = Vec::new();
    let collect = async {
        while log.iter().filter(|x| x.is_ok()).count() < PUTS || log.iter().filter(|x| x.is_err()).count() < 2 {
            let resp = next(&mut stream, "the burst's events and both progress answers").await;
            let rev = resp.header().expect("a response header").revision();
            if resp.events().is_empty() {
                assert!(!resp.created() && !resp.canceled(), "{resp:?}");
                assert_eq!(resp.watch_id(), -1, "a progress answer belongs to no watcher: {resp:?}");
                log.push(Err(rev));
            } else {
                assert_eq!(resp.watch_id(), id);
                log.extend(seen(&resp).iter().map(|e| Ok(e.rev)));
            }
        }
    };
    tokio::time::timeout(WAIT, collect)
        .await
        .expect("200 events and two progress answers within 10s");

    let mut events: Vec<i64> = log.iter().filter_map(|x| x.as_ref().ok().copied()).collect();
    events.sort_unstable();
    assert_eq!(events, (from..from + PUTS as i64).collect::<Vec<_>>(), "each put once");
    let answers: Vec<i64> = log.iter().filter_map(|x| x.as_ref().err().copied()).collect();
    assert!(
        answers[0] >= half && answers[1] >= all,
        "answers {answers:?} for puts up to {half}, {all}"
    );
    for (at, entry) in log.iter().enumerate() {
        let Err(progress) = entry else { continue };
        let before = log[..at].iter().filter_map(|x| x.as_ref().ok()).max();
        assert!(
            before.is_none_or(|r| r <= progress),
            "answer {progress} after event {before:?}"
        );
        let overtaken = log[at + 1..]
            .iter()
            .filter_map(|x| x.as_ref().ok())
            .find(|&r| r <= progress);
        assert_eq!(
            overtaken, None,
            "event at or below {progress} after the progress answer"
        );
    }
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_gateway_deletes_ranges_and_grants_leases() {
    let member = Member::start(&[]).await;
    let addr = member.addr;
    let mut c = member.client().await;
    let b64 = |s: &str| B64.encode(s);
    for (k, v) in [("gw/a", "1"), ("gw/b", "2"), ("gx", "3")] {
        c.put(k, v, None).await.expect("put");
    }

    // deleterange over [gw/, gw0) with the previous key-values.
    let request = json!({"key": b64("gw/"), "range_end": b64("gw0"), "prev_kv": true}).to_string();
    let (status, deleted) = http(addr, "/v3/kv/deleterange", &request).await;
    assert!(status.contains("200"), "{status} {deleted}");
    assert_eq!(deleted["deleted"], "2", "int64 as a string: {deleted}");
    assert!(deleted["header"]["revision"].is_string(), "{deleted}");
    let prev: Vec<(&str, &str)> = deleted["prev_kvs"]
        .as_array()
        .unwrap_or_else(|| panic!("prev_kvs listed: {deleted}"))
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or_default(),
                kv["value"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let (ka, kb, va, vb) = (b64("gw/a"), b64("gw/b"), b64("1"), b64("2"));
    assert_eq!(prev, [(ka.as_str(), va.as_str()), (kb.as_str(), vb.as_str())]);
    let rest = c
        .get("g", Some(GetOptions::new().with_prefix()))
        .await
        .expect("a range read");
    let rest: Vec<&[u8]> = rest.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(rest, [b"gx".as_slice()], "the range is gone, the rest stays");

    // Malformed JSON: grpc-gateway's InvalidArgument, HTTP 400, nothing deleted.
    let (status, err) = http(addr, "/v3/kv/deleterange", r#"{"key":"Z3g=","#).await;
    assert!(status.contains("400"), "{status} {err}");
    assert_eq!(err["code"], 3, "{err}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty() && err["error"] == message,
        "error repeats the message: {err}"
    );
    let fields = err
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        fields
            .iter()
            .all(|k| ["error", "code", "message", "details"].contains(&k.as_str())),
        "{err}"
    );
    let kept = c.get("gx", None).await.expect("a range read");
    assert_eq!(kept.kvs().len(), 1, "a refused request deletes nothing");

    // A lease through the gateway, a key on it, and its time to live.
    let (status, grant) = http(addr, "/v3/lease/grant", r#"{"TTL": 30}"#).await;
    assert!(status.contains("200"), "{status} {grant}");
    assert_eq!(grant["TTL"], "30", "{grant}");
    let id: i64 = grant["ID"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("ID as a decimal string: {grant}"));
    assert_ne!(id, 0);
    let request = json!({"key": b64("gw/leased"), "value": b64("v"), "lease": id.to_string()}).to_string();
    let (status, put) = http(addr, "/v3/kv/put", &request).await;
    assert!(status.contains("200"), "{status} {put}");
    let stored = c.get("gw/leased", None).await.expect("a range read");
    assert_eq!(
        stored.kvs().first().map(|kv| kv.lease()),
        Some(id),
        "the key holds the lease"
    );
    let request = json!({"ID": id.to_string(), "keys": true}).to_string();
    let (status, ttl) = http(addr, "/v3/lease/timetolive", &request).await;
    assert!(status.contains("200"), "{status} {ttl}");
    assert_eq!(
        (&ttl["ID"], &ttl["grantedTTL"]),
        (&json!(id.to_string()), &json!("30")),
        "{ttl}"
    );
    let remaining: i64 = ttl["TTL"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default();
    assert!((1..=30).contains(&remaining), "TTL {remaining}: {ttl}");
    assert_eq!(ttl["keys"], json!([b64("gw/leased")]), "{ttl}");
    member.stop().await;
}
