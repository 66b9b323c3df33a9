#![allow(clippy::unwrap_used)]
//! Linearizability of a three-member cluster while members are killed:
//! concurrent etcd clients put, read and compare-and-swap a few keys, the
//! history they saw is recorded, and `support::checker` looks for a single
//! order of the operations, one register per key, that respects real time.
//! The checker's own tests are at the end.

mod support;

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};

use support::checker::{check, explain, Input, Op, Output, Verdict, NEVER};
use support::{exclusive, Cluster};

const KEYS: [&str; 3] = ["lin/a", "lin/b", "lin/c"];
const CLIENTS: usize = 6;
/// How long the clients run; the faults happen inside it.
const RUN: Duration = Duration::from_secs(15);
/// The client's own deadline for one request, and ours above it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const HARD_TIMEOUT: Duration = Duration::from_secs(3);
/// A value read back that no client wrote.
const GARBAGE: u64 = u64::MAX;

/// splitmix64: enough randomness for choosing operations, and replayable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

async fn perform(client: &mut Client, key: &str, input: Input) -> Result<Output, etcd_client::Error> {
    let parse = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(GARBAGE)
    };
    Ok(match input {
        Input::Put(v) => {
            client.put(key, v.to_string(), None).await?;
            Output::Put
        }
        Input::Get => Output::Get(client.get(key, None).await?.kvs().first().map(|kv| parse(kv.value()))),
        Input::Cas { expect, new } => {
            let txn = Txn::new()
                .when([Compare::value(key, CompareOp::Equal, expect.to_string())])
                .and_then([TxnOp::put(key, new.to_string(), None)]);
            Output::Cas(client.txn(txn).await?.succeeded())
        }
    })
}

/// One client's operations until `stop`, as (key, op). Values are unique:
/// the client's number times a million plus a counter. A compare-and-swap
/// expects the last value this client saw for the key.
async fn run_client(id: usize, mut client: Client, seed: u64, start: Instant, stop: Instant) -> Vec<(usize, Op)> {
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut last_seen = [None; KEYS.len()];
    let mut history = Vec::new();
    let now = || start.elapsed().as_nanos() as u64;
    for n in 1.. {
        if Instant::now() >= stop {
            break;
        }
        let key = rng.below(KEYS.len() as u64) as usize;
        let fresh = (id as u64 + 1) * 1_000_000 + n;
        let input = match (rng.below(10), last_seen[key]) {
            (0..=3, _) => Input::Get,
            (4..=6, _) | (_, None) => Input::Put(fresh),
            (_, Some(expect)) => Input::Cas { expect, new: fresh },
        };
        let call = now();
        let answer = tokio::time::timeout(HARD_TIMEOUT, perform(&mut client, KEYS[key], input)).await;
        let output = answer.ok().and_then(Result::ok);
        let ret = if output.is_some() { now() } else { NEVER };
        match (input, output) {
            (Input::Get, Some(Output::Get(v))) => last_seen[key] = v,
            (Input::Put(v), Some(_)) | (Input::Cas { new: v, .. }, Some(Output::Cas(true))) => last_seen[key] = Some(v),
            _ => {}
        }
        // A read without an answer constrains nothing.
        if output.is_some() || input != Input::Get {
            history.push((
                key,
                Op {
                    client: id,
                    input,
                    output,
                    call,
                    ret,
                },
            ));
        }
        if output.is_none() {
            // Fewer unknown outcomes while a member is down.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    history
}

/// The Raft term each running member reports, for the record.
fn terms(c: &Cluster) -> String {
    let status = c.status().unwrap_or_default();
    let terms: Vec<String> = status.iter().map(|(_, s)| s["raftTerm"].to_string()).collect();
    terms.join(", ")
}

/// Sleeps until `at` (not at all if it has passed).
fn sleep_until(at: Instant) {
    sleep(at.saturating_duration_since(Instant::now()));
}

#[test]
fn a_three_member_cluster_stays_linearizable_while_members_are_killed() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let seed = std::env::var("LINEARIZABILITY_SEED").map_or_else(
        |_| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().unwrap(),
    );
    println!("seed {seed} (LINEARIZABILITY_SEED={seed} repeats the choices, not the timing)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(REQUEST_TIMEOUT);
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let url = c.members[i % c.members.len()].client_url.clone();
            let connect = Client::connect([url.clone()], Some(options.clone()));
            let connected = runtime.block_on(async { tokio::time::timeout(HARD_TIMEOUT, connect).await });
            connected
                .unwrap_or_else(|_| panic!("timed out connecting client {i} to {url}"))
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let at = |secs: f64| start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| runtime.spawn(run_client(i, client, seed, start, start + RUN)))
        .collect();

    // The faults: kill -9 the leader, restart it, then a member at random.
    let mut rng = Rng(seed);
    let mut restarted = start;
    let mut outages = Vec::new();
    // The leader stays down longer than a failover takes (some 4 s here).
    for (kill_at, leader, down) in [(2.0, true, 5.0), (9.5, false, 2.5)] {
        sleep_until(at(kill_at));
        let leader_now = c.leader();
        let term = terms(&c);
        let victim = if leader {
            leader_now
        } else {
            rng.below(c.members.len() as u64) as usize
        };
        let role = if victim == leader_now {
            "the leader".to_string()
        } else {
            format!("a follower (the leader is {})", c.members[leader_now].name)
        };
        c.members[victim].kill();
        let killed = start.elapsed();
        let name = c.members[victim].name.clone();
        println!(
            "{:.3}s: killed {role} {name} (terms {term})",
            start.elapsed().as_secs_f64()
        );
        sleep(Duration::from_secs_f64(down));
        c.members[victim].spawn();
        restarted = Instant::now();
        outages.push((name.clone(), killed, restarted - start));
        println!("{:.3}s: restarted {name}", start.elapsed().as_secs_f64());
        c.wait_healthy(victim);
    }

    let mut history: Vec<Vec<Op>> = vec![Vec::new(); KEYS.len()];
    let finished = runtime.block_on(async {
        let all = async {
            let mut ops = Vec::new();
            for task in tasks {
                ops.extend(task.await.unwrap());
            }
            ops
        };
        tokio::time::timeout(RUN + HARD_TIMEOUT * 2, all).await
    });
    println!("terms at the end: {}", terms(&c));
    for (key, op) in finished.expect("timed out waiting for the clients to stop") {
        history[key].push(op);
    }
    // Availability, for the record: nothing here is asserted but recovery.
    let mut done: Vec<u64> = history
        .iter()
        .flatten()
        .map(|op| op.ret)
        .filter(|t| *t != NEVER)
        .collect();
    done.sort_unstable();
    for (name, down, up) in &outages {
        let (down, up) = (down.as_nanos() as u64, up.as_nanos() as u64);
        let during = done.iter().filter(|t| (down..up).contains(*t)).count();
        let first = done.iter().find(|t| **t > down);
        let first = first.map_or("none after".into(), |t| {
            format!("the first {:.3} s after", (t - down) as f64 / 1e9)
        });
        println!("while {name} was down: {during} operations completed; {first} the kill");
    }
    let gap = done.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    println!("longest time with no operation completing: {:.3} s", gap as f64 / 1e9);
    let recovered = restarted.duration_since(start).as_nanos() as u64;
    let after = history
        .iter()
        .flatten()
        .filter(|op| op.ret != NEVER && op.call > recovered);
    assert!(after.count() > 0, "no operation succeeded after the last restart");

    let mut failures = Vec::new();
    for (key, ops) in KEYS.iter().zip(&history) {
        let count = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|op| f(op)).count();
        let unknown = count(&|op| op.output.is_none());
        let gets = count(&|op| op.input == Input::Get);
        let swaps = count(&|op| op.output == Some(Output::Cas(true)));
        let refused = count(&|op| op.output == Some(Output::Cas(false)));
        let puts = count(&|op| matches!(op.input, Input::Put(_)));
        let began = Instant::now();
        let verdict = check(ops);
        let took = began.elapsed();
        let outcome = match verdict {
            Verdict::Linearizable { states } => format!("linearizable ({states} search states)"),
            Verdict::NotLinearizable(stuck) => {
                failures.push(format!("{key} is not linearizable: {}", explain(ops, &stuck)));
                "NOT linearizable".into()
            }
            Verdict::GaveUp { states } => {
                failures.push(format!("{key}: the search gave up after {states} states"));
                "undecided".into()
            }
        };
        println!(
            "{key}: {} operations checked in {took:?} ({gets} gets, {puts} puts, {swaps} swaps, {refused} refused \
             swaps, {unknown} writes of unknown outcome): {outcome}",
            ops.len(),
        );
        assert!(swaps > 0 && gets > 0, "{key}: too few operations to tell anything");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The same history with one read answered by a write not yet invoked
    // must be refused: the checker did look at it.
    let ops = &mut history[0];
    let read = ops
        .iter()
        .position(|op| matches!(op.output, Some(Output::Get(_))))
        .unwrap();
    let later = ops.iter().find_map(|op| match (op.input, op.output) {
        (Input::Put(v), Some(_)) if op.call > ops[read].ret => Some(v),
        _ => None,
    });
    ops[read].output = Some(Output::Get(Some(later.unwrap())));
    assert!(
        matches!(check(ops), Verdict::NotLinearizable(_)),
        "the checker accepts a read from the future in {}",
        KEYS[0]
    );
}

/// Toy histories: (input, output, call, return); `None` output: unknown.
fn toy(ops: &[(Input, Option<Output>, u64, u64)]) -> Vec<Op> {
    let op = |(i, &(input, output, call, ret)): (usize, &_)| Op {
        client: i,
        input,
        output,
        call,
        ret,
    };
    ops.iter().enumerate().map(op).collect()
}

fn linearizable(ops: &[Op]) -> bool {
    match check(ops) {
        Verdict::Linearizable { .. } => true,
        Verdict::NotLinearizable(stuck) => {
            println!("{}", explain(ops, &stuck));
            false
        }
        Verdict::GaveUp { states } => panic!("gave up after {states} states"),
    }
}

use Input::{Cas, Get, Put};

#[test]
fn checker_accepts_a_linearizable_history() {
    let ops = toy(&[
        (Get, Some(Output::Get(None)), 0, 3),
        (Put(1), Some(Output::Put), 1, 10),
        // Overlaps the put, so may follow it.
        (Get, Some(Output::Get(Some(1))), 5, 15),
        (Cas { expect: 1, new: 2 }, Some(Output::Cas(true)), 12, 20),
        // Overlaps the swap, so may precede it.
        (Get, Some(Output::Get(Some(1))), 13, 14),
        (Cas { expect: 1, new: 3 }, Some(Output::Cas(false)), 16, 25),
        (Get, Some(Output::Get(Some(2))), 21, 22),
        // Unknown outcomes: one took effect, one never did.
        (Put(4), None, 23, NEVER),
        (Put(5), None, 24, NEVER),
        (Get, Some(Output::Get(Some(4))), 30, 31),
        (Cas { expect: 4, new: 6 }, None, 32, NEVER),
        (Get, Some(Output::Get(Some(4))), 33, 34),
    ]);
    assert!(linearizable(&ops));
}

#[test]
fn checker_refuses_a_read_of_an_overwritten_value() {
    let ops = toy(&[
        (Put(1), Some(Output::Put), 0, 10),
        (Put(2), Some(Output::Put), 11, 20),
        (Get, Some(Output::Get(Some(1))), 21, 30),
    ]);
    assert!(!linearizable(&ops));
    let Verdict::NotLinearizable(stuck) = check(&ops) else {
        panic!()
    };
    assert_eq!((stuck.order, stuck.blocked), (vec![0, 1], 2));
}

#[test]
fn checker_handles_long_histories() {
    // One client: put(i) then get() -> i, 300 times; then one stale read.
    let mut ops: Vec<_> = (0..300u64)
        .flat_map(|i| [(Put(i), Some(Output::Put)), (Get, Some(Output::Get(Some(i))))])
        .enumerate()
        .map(|(t, (input, output))| (input, output, 2 * t as u64, 2 * t as u64 + 1))
        .collect();
    assert!(linearizable(&toy(&ops)));
    ops[401].1 = Some(Output::Get(Some(199)));
    assert!(!linearizable(&toy(&ops)));
}

#[test]
fn checker_refuses_a_read_going_back_in_time() {
    // Two reads, one after the other, both overlapping a put: once the
    // new value is seen the old one may not be.
    let ops = toy(&[
        (Put(1), Some(Output::Put), 0, 1),
        (Put(2), Some(Output::Put), 2, 10),
        (Get, Some(Output::Get(Some(2))), 3, 4),
        (Get, Some(Output::Get(Some(1))), 5, 6),
    ]);
    assert!(!linearizable(&ops));
}

#[test]
fn checker_refuses_two_swaps_from_one_value() {
    let ops = toy(&[
        (Put(1), Some(Output::Put), 0, 1),
        (Cas { expect: 1, new: 2 }, Some(Output::Cas(true)), 2, 10),
        (Cas { expect: 1, new: 3 }, Some(Output::Cas(true)), 3, 11),
    ]);
    assert!(!linearizable(&ops));
}

#[test]
fn checker_refuses_a_write_seen_before_it_was_invoked() {
    // Unknown outcome or not, a write takes effect after its call.
    let ops = toy(&[(Get, Some(Output::Get(Some(5))), 0, 10), (Put(5), None, 11, NEVER)]);
    assert!(!linearizable(&ops));
}
