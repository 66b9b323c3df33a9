//! Operating a cluster with etcdctl: learners and promotion, moving the
//! leader, a member catching up from a snapshot, and etcdctl's lock and
//! elect commands (against a 3-member TLS cluster). Real `kubernate-store`
//! processes, real etcdctl 3.4.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The member id (hex, as etcdctl prints it) of member `i`.
fn member_id(c: &Cluster, i: usize) -> String {
    let status = c.must(c.members[i].endpoint(), &["endpoint", "status", "-w", "json"]);
    let id = serde_json::from_str::<Value>(&status).unwrap()[0]["Status"]["header"]["member_id"]
        .as_u64()
        .unwrap();
    format!("{id:x}")
}

#[test]
fn a_learner_is_promoted_and_leadership_moves_to_it() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let all = c.all();
    c.must(&all, &["put", "seed", "1"]);

    let ports = free_ports(3);
    let [client, peer, metrics] = [0, 1, 2].map(|i| format!("http://127.0.0.1:{}", ports[i]));
    let added = c.must(
        &all,
        &["member", "add", "e", "--learner", &format!("--peer-urls={peer}")],
    );
    let id = added.split_whitespace().nth(1).unwrap().to_string();
    let mut initial: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
    initial.push(format!("e={peer}"));
    let mut e = c.member("e", &client, &peer, &metrics, &initial.join(","), "existing");
    // Not running, so it has none of the log: etcd refuses to promote it.
    let early = c.ctl(&all, &["member", "promote", &id]);
    assert!(
        !early.ok
            && early
                .stderr
                .contains("can only promote a learner member which is in sync with leader"),
        "{early:?}"
    );
    e.spawn();
    c.members.push(e);
    wait_for("the learner to receive the data", Duration::from_secs(30), || {
        c.local_get(3, "seed")
    });
    let list = c.must(&all, &["member", "list"]);
    assert!(
        list.lines().any(|l| l.starts_with(&id) && l.ends_with(", true")),
        "e is listed as a learner: {list}"
    );

    // A learner cannot lead; once promoted it can.
    let promoted = c.must(&all, &["member", "promote", &id]);
    // etcdctl pads ids to 16 characters with spaces here.
    let promoted = promoted.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        promoted.contains(&format!("Member {id} promoted in cluster")),
        "{promoted}"
    );
    let list = c.must(&all, &["member", "list"]);
    assert!(
        list.lines().any(|l| l.starts_with(&id) && l.ends_with(", false")),
        "e is a voter: {list}"
    );

    let leader = c.leader();
    assert_ne!(leader, 3, "the new member did not start as leader");
    let moved = c.must(c.members[leader].endpoint(), &["move-leader", &id]);
    assert!(moved.contains(&format!("to {id}")), "{moved}");
    let now = c.leader();
    assert_eq!(c.members[now].name, "e", "leadership moved to e");
    assert_eq!(member_id(&c, now), id);
    c.must(&c.all(), &["put", "after-move", "ok"]);
    assert_eq!(c.local_get(3, "after-move").unwrap(), "ok");
}

#[test]
fn a_member_that_missed_the_purged_log_catches_up_from_a_snapshot() {
    let _one = exclusive();
    // Snapshots every 100 entries; 1000 entries are kept after each, so
    // more than ~1100 missed entries can only come back as a snapshot.
    let mut c = Cluster::start_with(&["a", "b", "c"], false, &["--snapshot-count", "100"]);
    let leader = c.leader();
    let lagging = (leader + 1) % 3;
    let writer = (leader + 2) % 3;
    c.members[lagging].kill();

    // Sequential puts: one log entry each.
    let endpoint = format!("http://{}", c.members[writer].endpoint());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await.unwrap();
        let write = async {
            for i in 0..1500 {
                client.put(format!("k{i:04}"), format!("v{i}"), None).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(120), write)
            .await
            .expect("1500 puts within 120 s");
    });

    c.members[lagging].spawn();
    let value = wait_for("the restarted member to catch up", Duration::from_secs(60), || {
        c.local_get(lagging, "k1499")
    });
    assert_eq!(value, "v1499");
    let log = std::fs::read_to_string(&c.members[lagging].log).unwrap();
    assert!(
        log.contains("installed snapshot from leader"),
        "the member caught up through a snapshot"
    );
    // Every member holds the same keyspace.
    let hashes = wait_for("the members' hashes to agree", Duration::from_secs(30), || {
        let out = c.ctl(&c.all(), &["endpoint", "hashkv", "-w", "json"]).result()?;
        let all: Vec<Value> = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let hashes: Vec<u64> = all.iter().map(|s| s["HashKV"]["hash"].as_u64().unwrap_or(0)).collect();
        ready(
            hashes.len() == 3 && hashes.iter().all(|h| *h == hashes[0]),
            hashes.clone(),
            hashes,
        )
    });
    assert_ne!(hashes[0], 0);
}

/// etcdctl's lock and elect against a 3-member TLS cluster, each command
/// talking to a different member.
#[test]
fn etcdctl_lock_and_elect() {
    let _one = exclusive();
    let c = Cluster::start(&["a", "b", "c"], true);
    let ep = |i: usize| c.members[i].endpoint().to_string();

    // `lock NAME command` runs the command while holding the lock.
    let held = c.must(&ep(0), &["lock", "job", "echo", "holding-the-lock"]);
    assert!(held.contains("holding-the-lock"), "{held}");

    // `elect NAME VALUE` campaigns and stays leader until killed;
    // `elect -l NAME` observes the leader and its value.
    let mut candidate = c
        .etcdctl(Creds::StoreClient, &ep(1), &["elect", "pick", "alpha"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = c.dir.path().join("observed.out");
    let mut observer = c
        .etcdctl(Creds::StoreClient, &ep(2), &["elect", "-l", "pick"])
        .stdout(std::fs::File::create(&seen).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let observed = wait_for("`elect -l` to see the leader", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&seen).map_err(|e| e.to_string())?;
        ready(text.contains("alpha"), text.clone(), text)
    });
    assert!(
        observed.lines().next().unwrap_or_default().starts_with("pick/"),
        "{observed}"
    );
    terminate(&mut observer);
    terminate(&mut candidate);
}

/// `member update` moves a member's peer URLs; the member, restarted on
/// them, keeps its id (kept in its data directory, as etcd keeps it in its
/// WAL) and goes on replicating.
#[test]
fn a_member_moved_by_member_update_keeps_its_id_after_a_restart() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let all = c.all();
    let leader = c.leader();
    let f = (leader + 1) % 3;
    let id = member_id(&c, f);
    let moved = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let updated = c.must(&all, &["member", "update", &id, &format!("--peer-urls={moved}")]);
    // etcdctl pads ids to 16 characters with spaces here.
    let updated = updated.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(updated.contains(&format!("Member {id} updated")), "{updated}");

    c.members[f].kill();
    // Let the leader's replication to the member fail for a while: it must
    // then reach the member at its new URL, not keep retrying the old one.
    std::thread::sleep(Duration::from_secs(1));
    let old = c.members[f].peer_url.clone();
    for arg in c.members[f].args.iter_mut() {
        if *arg == old {
            *arg = moved.clone();
        }
    }
    c.members[f].peer_url = moved.clone();
    c.members[f].spawn();
    c.wait_healthy(f);
    assert_eq!(member_id(&c, f), id, "the member kept its id");
    let list = c.must(&c.all(), &["member", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains(&moved) && !l.contains(&old)),
        "{list}"
    );
    c.must(c.members[leader].endpoint(), &["put", "after-move", "1"]);
    let seen = wait_for("the moved member to replicate", Duration::from_secs(30), || {
        c.local_get(f, "after-move")
    });
    assert_eq!(seen, "1");
}
