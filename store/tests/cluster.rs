#![allow(clippy::unwrap_used)]
//! Multi-member tests: real `kubernate-store` processes driven by the real
//! `etcdctl` 3.4 (`ETCDCTL_API=3`), as etcd's `tests/e2e` does. The harness
//! (members, logs, the one-cluster-at-a-time lock) is in `support`.
//!
//! The flags are etcd's, so `CLUSTER_TEST_STORE_BIN=/usr/bin/etcd` runs the
//! same tests against etcd itself, to check what they expect.

mod support;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{exclusive, free_ports, poll, ready, store_binary, terminate, wait_for, Cluster, Creds};

/// The revision in the header of a `-w json` response.
fn revision(json: &str) -> i64 {
    let v: Value = serde_json::from_str(json).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

#[test]
fn etcdctl_against_a_three_member_tls_cluster() {
    let _one = exclusive();
    let c = Cluster::start(&["a", "b", "c"], true);
    let (all, one) = (c.all(), c.members[1].endpoint().to_string());
    let ok = |args: &[&str]| c.must(&all, args);

    // KV.
    assert_eq!(c.must(&one, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(ok(&["put", "foo2", "baz"]), "OK\n");
    assert_eq!(ok(&["get", "foo"]), "foo\nbar\n");
    assert_eq!(ok(&["get", "--prefix", "foo"]), "foo\nbar\nfoo2\nbaz\n");
    assert_eq!(ok(&["del", "foo2"]), "1\n");
    assert_eq!(ok(&["get", "--prefix", "foo"]), "foo\nbar\n");

    // Txn on stdin: compares, blank line, success ops, blank line, failure ops, blank line.
    let txn = |value: &str| {
        let input = format!("value(\"foo\") = \"{value}\"\n\nput branch success\n\nput branch failure\n\n");
        let out = c.ctl_as(Creds::StoreClient, &all, &["txn"], &input);
        out.result().unwrap()
    };
    assert_eq!(txn("bar"), "SUCCESS\n\nOK\n");
    assert_eq!(ok(&["get", "branch", "--print-value-only"]), "success\n");
    assert_eq!(txn("nope"), "FAILURE\n\nOK\n");
    assert_eq!(ok(&["get", "branch", "--print-value-only"]), "failure\n");

    // Watch from the next revision, so no event is missed however long the
    // watch takes to start.
    let next = revision(&ok(&["get", "foo", "-w", "json"])) + 1;
    let watch_out = c.dir.path().join("watch.out");
    let mut watch = c.etcdctl(Creds::StoreClient, &one, &["watch", "w", &format!("--rev={next}")]);
    let watch_file = File::create(&watch_out).unwrap();
    let mut watch = watch.stdout(watch_file).stderr(Stdio::null()).spawn().unwrap();
    ok(&["put", "w", "1"]);
    ok(&["del", "w"]);
    let events = wait_for("the watch to print a put and a delete", Duration::from_secs(15), || {
        let s = fs::read_to_string(&watch_out).unwrap();
        ready(s.contains("DELETE"), s.clone(), s)
    });
    terminate(&mut watch);
    assert_eq!(events, "PUT\nw\n1\nDELETE\nw\n\n");

    // Leases.
    let granted = ok(&["lease", "grant", "60"]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
    ok(&["put", "leased", "v", &format!("--lease={id}")]);
    let kept = ok(&["lease", "keep-alive", "--once", &id]);
    assert_eq!(kept, format!("lease {id} keepalived with TTL(60)\n"));
    let ttl = ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    assert_eq!(ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ok(&["get", "leased"]), "", "the leased key outlived its lease");

    // Maintenance.
    let status = ok(&["endpoint", "status"]);
    let leaders = status.lines().filter(|l| l.split(", ").nth(4) == Some("true"));
    assert_eq!(
        (status.lines().count(), leaders.count()),
        (3, 1),
        "one leader: {status}"
    );
    let health = c.ctl(&all, &["endpoint", "health"]);
    let healthy = health
        .stderr
        .matches("is healthy: successfully committed proposal")
        .count();
    assert!(health.ok && healthy == 3, "{health:?}");

    let snap = c.dir.path().join("snap.db");
    let saved = c.must(&one, &["snapshot", "save", snap.to_str().unwrap()]);
    assert_eq!(saved, format!("Snapshot saved at {}\n", snap.display()));
    assert!(fs::metadata(&snap).unwrap().len() > 0, "the snapshot is empty");

    let old = revision(&ok(&["put", "k", "v1", "-w", "json"]));
    let new = revision(&ok(&["put", "k", "v2", "-w", "json"]));
    assert_eq!(
        ok(&["compaction", &new.to_string()]),
        format!("compacted revision {new}\n")
    );
    let stale = c.ctl(&all, &["get", "k", &format!("--rev={old}")]);
    assert!(
        !stale.ok && stale.stderr.contains("required revision has been compacted"),
        "{stale:?}"
    );
    assert_eq!(ok(&["get", "k", &format!("--rev={new}"), "--print-value-only"]), "v2\n");

    let defrag = ok(&["defrag"]);
    assert_eq!(
        defrag.matches("Finished defragmenting etcd member[").count(),
        3,
        "{defrag}"
    );
    assert_eq!(ok(&["alarm", "list"]), "");

    // Clients the store must refuse, and nothing they could have written.
    let before = revision(&ok(&["get", "foo", "-w", "json"]));
    let mut refused = vec![
        (Creds::ClusterAdmin, "the cluster CA's admin"),
        (Creds::Anonymous, "no"),
        // Store CA and wrong CN, but also no clientAuth usage: the chain
        // check refuses it first (TLS alert "unsupported certificate").
        (Creds::StoreMember, "store-0's serving"),
    ];
    if !store_binary().ends_with("/etcd") {
        // Store CA and clientAuth, only the CN is wrong: --allowed-client-cn
        // alone refuses it (alert "access denied"; etcd 3.4 has no such flag).
        refused.push((Creds::StorePeer, "store-0's peer"));
    }
    for (creds, who) in refused {
        // A handshake on loopback takes milliseconds; a refusal looks like a timeout.
        let out = c.ctl_as(creds, &one, &["put", "intruder", who, "--command-timeout=3s"], "");
        assert!(!out.ok, "a client with {who} certificate could write: {out:?}");
        let out = c.ctl_as(creds, &one, &["get", "foo", "--command-timeout=3s"], "");
        assert!(
            !out.ok && out.stdout.is_empty(),
            "a client with {who} certificate could read: {out:?}"
        );
    }
    assert_eq!(ok(&["get", "intruder"]), "");
    assert_eq!(revision(&ok(&["get", "foo", "-w", "json"])), before);

    // Membership, last, as every other check stands without it: whoever
    // answers lists all three members with their names and client URLs.
    for m in &c.members {
        let list = c.must(m.endpoint(), &["member", "list"]);
        assert_eq!(list.lines().count(), 3, "{list}");
        for x in &c.members {
            let want = format!(", started, {}, {}, {}, false", x.name, x.peer_url, x.client_url);
            assert!(
                list.contains(&want),
                "`member list` on {} lacks {want:?}:\n{list}",
                m.name
            );
        }
    }
}

/// For Maintenance calls (status, hashkv, defrag) etcdctl dials each
/// endpoint on its own and sends it, scheme included, as the HTTP/2
/// `:authority`; etcd accepts that.
#[test]
#[ignore = "etcdctl 3.4 sends `http://host:port` as the HTTP/2 :authority for per-endpoint \
            maintenance calls (etcd#13192, fixed in etcd 3.5's client); the h2 crate rejects \
            such a malformed authority and has no option to allow it; use host:port endpoints"]
fn maintenance_calls_accept_http_endpoints() {
    let _one = exclusive();
    let c = Cluster::start(&["a"], false);
    let url = c.members[0].client_url.clone();
    assert_eq!(c.must(&url, &["put", "k", "v"]), "OK\n");
    let status = c.must(&url, &["endpoint", "status"]);
    assert!(status.starts_with(&format!("{url}, ")), "{status}");
    let hash = c.must(&url, &["endpoint", "hashkv"]);
    assert!(hash.starts_with(&format!("{url}, ")), "{hash}");
    assert_eq!(
        c.must(&url, &["defrag"]),
        format!("Finished defragmenting etcd member[{url}]\n")
    );
}

/// etcdctl member add and remove on a 3-member TLS cluster: the new member
/// joins with its own certificates and serves data written before it came.
#[test]
fn member_add_and_remove() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], true);
    let all = c.all();
    c.must(&all, &["put", "before-join", "here"]);

    let ports = free_ports(3);
    let [client, peer] = [0, 1].map(|i| format!("https://127.0.0.1:{}", ports[i]));
    let metrics = format!("http://127.0.0.1:{}", ports[2]);
    // etcd refuses membership changes ("unhealthy cluster") for 5 s after it starts.
    let added = wait_for("`member add` to be accepted", Duration::from_secs(30), || {
        c.ctl(&all, &["member", "add", "d", &format!("--peer-urls={peer}")])
            .result()
    });
    // "Member <id> added to cluster <id>", the IDs padded to 16 characters.
    let id = added.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        added.starts_with("Member ") && added.contains(" added to cluster "),
        "{added}"
    );
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{added}");
    let mut initial: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
    initial.push(format!("d={peer}"));
    let mut d = c.member("d", &client, &peer, &metrics, &initial.join(","), "existing");
    d.args.extend(c.tls_flags(3));
    d.spawn();
    c.members.push(d);
    let value = wait_for(
        "d to serve a key written before it joined",
        Duration::from_secs(30),
        || c.local_get(3, "before-join"),
    );
    assert_eq!(value, "here");

    // Checked after the removal, which does not depend on them.
    let want = format!("{id}, started, d, {peer}, {client}, false");
    let listed = poll(Duration::from_secs(10), || {
        let list = c.ctl(&all, &["member", "list"]).result()?;
        ready(list.lines().count() == 4 && list.lines().any(|l| l == want), (), list)
    });
    let d_status = c.must(c.members[3].endpoint(), &["endpoint", "status", "-w", "json"]);
    let d_id = serde_json::from_str::<Value>(&d_status).unwrap()[0]["Status"]["header"]["member_id"].as_u64();

    // etcdctl pads ids with spaces to 16 characters in this message.
    let removed = c
        .must(&all, &["member", "remove", &id])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        removed.starts_with(&format!("Member {id} removed from cluster ")),
        "{removed}"
    );
    let list = c.must(&all, &["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(!list.contains(&id), "{list}");
    c.must(&all, &["put", "after-remove", "ok"]);

    listed.unwrap_or_else(|list| panic!("d was never listed as {want:?}: {list}"));
    let d_id = d_id.map(|x| format!("{x:x}"));
    assert_eq!(
        d_id.as_deref(),
        Some(id.as_str()),
        "d answers as another member: {d_status}"
    );
}

#[test]
fn failover_elects_a_new_leader_and_writes_resume() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    c.must(&c.all(), &["put", "before", "1"]);
    let leader = c.leader();
    c.members[leader].kill();
    let killed = Instant::now();
    let survivors = c.all();
    wait_for("a put through a surviving member", Duration::from_secs(30), || {
        c.ctl(&survivors, &["put", "after-failover", "2", "--command-timeout=1s"])
            .result()
    });
    let name = &c.members[leader].name;
    println!(
        "failover: a put succeeded {:?} after the leader {name} was killed",
        killed.elapsed()
    );
    println!("failover: {} leads now", c.members[c.leader()].name);

    c.members[leader].spawn();
    let caught_up = wait_for("the restarted member to catch up", Duration::from_secs(30), || {
        c.local_get(leader, "after-failover")
    });
    assert_eq!(caught_up, "2");
    assert_eq!(c.local_get(leader, "before").unwrap(), "1");
}

#[test]
fn acknowledged_writes_survive_killing_the_leader() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let leader = c.leader();
    let followers = (0..3).filter(|i| *i != leader).map(|i| c.members[i].client_url.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let connect = |url: String| etcd_client::Client::connect([url], Some(options.clone()));
    let mut clients: Vec<etcd_client::Client> = followers.map(|f| runtime.block_on(connect(f)).unwrap()).collect();

    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let (mut attempts, mut failures) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < 300 {
        assert!(
            Instant::now() < deadline,
            "only {} of 300 writes acknowledged in 120 s",
            acked.len()
        );
        if acked.len() == 100 && c.members[leader].child.is_some() {
            println!(
                "killing the leader {} after 100 acknowledged writes",
                c.members[leader].name
            );
            c.members[leader].kill();
        }
        let (key, value) = (format!("w/{attempts:05}"), format!("v{attempts}"));
        let client = &mut clients[attempts % 2];
        attempts += 1;
        match runtime.block_on(client.put(key.as_str(), value.as_str(), None)) {
            Ok(_) => drop(acked.insert(key, value)),
            Err(_) => {
                failures += 1;
                sleep(Duration::from_millis(20));
            }
        }
    }
    println!(
        "{} writes acknowledged, {failures} failed (outcome unknown)",
        acked.len()
    );
    c.members[leader].spawn();

    let rev = wait_for(
        "all three members to apply the same revision",
        Duration::from_secs(30),
        || {
            let revs: Vec<i64> = c
                .status()?
                .iter()
                .map(|(_, s)| s["header"]["revision"].as_i64().unwrap())
                .collect();
            let first = revs.first().copied().unwrap_or_default();
            ready(revs.len() == 3 && revs.iter().all(|r| *r == first), first, &revs)
        },
    );
    for m in &c.members {
        let out = c.must(m.endpoint(), &["get", "w/", "--prefix", "--consistency=s"]);
        let lines: Vec<&str> = out.lines().collect();
        let seen: BTreeMap<&str, &str> = lines.chunks(2).map(|kv| (kv[0], kv[1])).collect();
        let missing: Vec<&String> = acked.keys().filter(|k| !seen.contains_key(k.as_str())).collect();
        assert!(missing.is_empty(), "{} lost acknowledged writes: {missing:?}", m.name);
        for (k, v) in &acked {
            assert_eq!(seen[k.as_str()], v, "{} has the wrong value for {k}", m.name);
        }
    }
    let hashes = c.must(&c.all(), &["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"]);
    let hashes: Vec<Value> = serde_json::from_str(&hashes).unwrap();
    let hashes: Vec<u64> = hashes.iter().map(|h| h["HashKV"]["hash"].as_u64().unwrap()).collect();
    assert_eq!(hashes.len(), 3);
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "HashKV at revision {rev} differs: {hashes:?}"
    );
}

/// Raft term and leader as member `i` reports them (its own status).
fn term_and_leader(c: &Cluster, i: usize) -> Result<(u64, u64), String> {
    let out = c
        .ctl(c.members[i].endpoint(), &["endpoint", "status", "-w", "json"])
        .result()?;
    let all: Vec<Value> = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let s = &all.first().ok_or("no status")?["Status"];
    match (s["raftTerm"].as_u64(), s["leader"].as_u64()) {
        (Some(term), Some(leader)) => Ok((term, leader)),
        _ => Err(format!("no term or leader in {s}")),
    }
}

/// Pre-vote (raft/pre_vote.rs): a member that stops hearing from the others
/// must not raise its term, or the leader would step down when it returns.
/// Member c is reached through a link the test cuts; c can still reach the
/// others (a one-way partition), so without pre-vote it would campaign at
/// a higher term every election timeout.
#[test]
fn a_member_cut_off_does_not_disrupt_the_leader_when_it_returns() {
    if store_binary().ends_with("/etcd") {
        return; // etcd 3.4 needs --pre-vote; this checks ours.
    }
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster {
        dir,
        tls: false,
        members: Vec::new(),
    };
    let ports = free_ports(9);
    let url = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c_advertised = format!("http://{}", relay.local_addr().unwrap());
    let link = support::link::Link::start(relay, format!("127.0.0.1:{}", ports[7]));
    let initial = format!("a={},b={},c={c_advertised}", url(1), url(4));
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let peer = if *name == "c" {
            c_advertised.clone()
        } else {
            url(3 * i + 1)
        };
        let mut m = c.member(name, &url(3 * i), &peer, &url(3 * i + 2), &initial, "new");
        if *name == "c" {
            let at = m.args.iter().position(|a| a == "--listen-peer-urls").unwrap();
            m.args[at + 1] = url(7);
        }
        m.args
            .extend(["--heartbeat-interval=50", "--election-timeout=500"].map(String::from));
        c.members.push(m);
    }
    // c must follow (a leader behind the cut link would still reach the
    // others), so it starts once a and b, a majority, have a leader.
    for i in 0..2 {
        c.members[i].spawn();
    }
    for i in 0..2 {
        c.wait_healthy(i);
    }
    c.members[2].spawn();
    c.wait_healthy(2);
    let leader = c.leader();
    assert_ne!(leader, 2);
    c.must(&c.all(), &["put", "before", "1"]);
    let (term, leader_id) = term_and_leader(&c, leader).unwrap();

    link.cut();
    // Lease (0.5..1 s) plus a random timeout: several rounds in 6 s.
    let cut_at = Instant::now();
    while cut_at.elapsed() < Duration::from_secs(6) {
        let (c_term, _) = term_and_leader(&c, 2).unwrap();
        assert_eq!(c_term, term, "the cut-off member raised its term");
        sleep(Duration::from_millis(500));
    }
    link.restore();
    let endpoint = c.members[2].endpoint().to_string();
    wait_for(
        "the member to hear from the leader again",
        Duration::from_secs(20),
        || {
            let args = ["put", "after", "2"];
            c.ctl(&endpoint, &args).result()
        },
    );
    sleep(Duration::from_secs(2));
    for i in 0..3 {
        assert_eq!(
            term_and_leader(&c, i).unwrap(),
            (term, leader_id),
            "member {} saw an election",
            c.members[i].name
        );
    }
    assert_eq!(c.local_get(2, "after").unwrap(), "2");
}

/// Lease expiry is the leader's job and survives a leader change: a new
/// leader restarts the lease's clock (as etcd does) and revokes it when it
/// runs out, deleting the attached key through Raft on every member.
#[test]
fn a_lease_expires_after_its_leader_is_killed() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let all = c.all();
    let granted = c.must(&all, &["lease", "grant", "3"]);
    // "lease 694d7c8f8a5c3a04 granted with TTL(3s)"
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    c.must(&all, &["put", "leased", "v", &format!("--lease={id}")]);
    let leader = c.leader();
    c.members[leader].kill();
    let survivors = c.all();
    let killed = Instant::now();
    wait_for(
        "the leased key to be deleted by the new leader",
        Duration::from_secs(30),
        || {
            let out = c.ctl(&survivors, &["get", "leased", "--print-value-only"]).result()?;
            ready(out.trim().is_empty(), (), out)
        },
    );
    println!(
        "lease expiry: the key went {:?} after the leader was killed",
        killed.elapsed()
    );
    let ttl = c.must(&survivors, &["lease", "timetolive", &id]);
    assert!(ttl.contains("already expired"), "{ttl}");
    for i in (0..3).filter(|i| *i != leader) {
        let local = c.ctl(
            c.members[i].endpoint(),
            &["get", "leased", "--consistency=s", "--print-value-only"],
        );
        assert!(local.ok && local.stdout.trim().is_empty(), "{local:?}");
    }
}

/// Five members bootstrap together and keep serving with two of them down.
#[test]
fn five_members_bootstrap_and_survive_two_failures() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c", "d", "e"], false);
    c.must(&c.all(), &["put", "five", "1"]);
    let members = c.must(&c.all(), &["member", "list"]);
    assert_eq!(members.lines().count(), 5, "{members}");
    let leader = c.leader();
    // Kill the leader and one follower: three of five remain, a majority.
    let follower = (leader + 1) % 5;
    c.members[leader].kill();
    c.members[follower].kill();
    let survivors = c.all();
    wait_for("a put through the three survivors", Duration::from_secs(30), || {
        c.ctl(&survivors, &["put", "after", "2", "--command-timeout=1s"])
            .result()
    });
    for i in (0..5).filter(|i| *i != leader && *i != follower) {
        let seen = wait_for("every survivor to apply the put", Duration::from_secs(30), || {
            c.local_get(i, "after")
        });
        assert_eq!(seen, "2");
    }
}

/// `GET /health` on member `i`'s metrics port: (status line, body).
fn health(c: &Cluster, i: usize) -> Result<(String, String), String> {
    use std::io::{Read, Write};
    let args = &c.members[i].args;
    let at = args
        .iter()
        .position(|a| a == "--listen-metrics-urls")
        .ok_or("no metrics URL")?;
    let addr = args[at + 1].trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.trim().to_string(),
    ))
}

/// A leader that lost its followers still names itself leader, but cannot
/// serve a linearizable read: `/health` says so, as etcd's "QGET" check.
#[test]
fn health_fails_when_a_quorum_read_cannot_complete() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let leader = c.leader();
    let (status, body) = wait_for("the leader to be healthy", Duration::from_secs(10), || {
        let (status, body) = health(&c, leader)?;
        ready(status.contains("200"), (status.clone(), body.clone()), (status, body))
    });
    assert_eq!(body, r#"{"health":"true","reason":""}"#, "{status}");
    for i in (0..3).filter(|i| *i != leader) {
        c.members[i].kill();
    }
    let body = wait_for("the lone leader to be unhealthy", Duration::from_secs(20), || {
        let (status, body) = health(&c, leader)?;
        ready(status.contains("503"), body.clone(), (status, body))
    });
    // It still names itself leader: the read is what fails.
    assert!(body.contains("QGET ERROR"), "{body}");
}
