//! A linearizability checker for histories of one register (one key):
//! Wing & Gong's search with Lowe's memoisation, as in Porcupine and
//! Knossos. `linearizability.rs` records the histories and tests this.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

/// Completion time of an operation whose outcome is unknown.
pub const NEVER: u64 = u64::MAX;
/// States the search may visit per key before it gives up.
pub const STATE_BUDGET: usize = 500_000;

/// What an operation asked of its key's register.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input {
    Put(u64),
    Get,
    /// A txn: if the value is `expect`, put `new`.
    Cas {
        expect: u64,
        new: u64,
    },
}

/// What it answered (`None` in [`Op::output`]: no answer, outcome unknown).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    Put,
    Get(Option<u64>),
    Cas(bool),
}

/// One operation on one register, with nanoseconds since the run began.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub input: Input,
    pub output: Option<Output>,
    pub call: u64,
    pub ret: u64,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ns: u64| format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
        let ret = if self.ret == NEVER { "?".into() } else { secs(self.ret) };
        let shown = |v: &Option<u64>| v.map_or("(none)".into(), |v| v.to_string());
        write!(f, "client {} [{} .. {ret}] ", self.client, secs(self.call))?;
        match self.input {
            Input::Put(v) => write!(f, "put({v})")?,
            Input::Get => write!(f, "get()")?,
            Input::Cas { expect, new } => write!(f, "cas({expect} -> {new})")?,
        }
        match self.output {
            None => write!(f, " -> unknown outcome"),
            Some(Output::Put) => write!(f, " -> ok"),
            Some(Output::Get(v)) => write!(f, " -> {}", shown(&v)),
            Some(Output::Cas(swapped)) => write!(f, " -> {}", if swapped { "swapped" } else { "not swapped" }),
        }
    }
}

/// The register after `op` from `state`, or `None` if `op` could not have
/// answered what it did. An unknown outcome matches whatever happened.
pub fn step(state: Option<u64>, op: &Op) -> Option<Option<u64>> {
    match op.input {
        Input::Put(v) => Some(Some(v)),
        Input::Get => match op.output {
            Some(Output::Get(seen)) => (seen == state).then_some(state),
            _ => Some(state),
        },
        Input::Cas { expect, new } => {
            let swapped = state == Some(expect);
            let after = if swapped { Some(new) } else { state };
            match op.output {
                Some(Output::Cas(answered)) => (answered == swapped).then_some(after),
                _ => Some(after),
            }
        }
    }
}

/// Where the search got furthest before no order worked.
pub struct Stuck {
    /// The longest order found, as indices into the history.
    pub order: Vec<usize>,
    /// The register after it.
    pub state: Option<u64>,
    /// The operations that could have come next: all invoked before
    /// `blocked` returned, none fits; `blocked` is the last of them.
    pub candidates: Vec<usize>,
    pub blocked: usize,
}

pub enum Verdict {
    Linearizable { states: usize },
    NotLinearizable(Stuck),
    GaveUp { states: usize },
}

const NIL: usize = usize::MAX;

/// Checks one register's history, starting from an absent key. Each call
/// and each return is an entry in a list ordered by time (calls first on
/// ties, which only makes more orders possible); an operation whose outcome
/// is unknown returns after everything. The search linearizes the first
/// call whose step fits and whose (set of linearized operations, register)
/// was never seen, and backtracks when it meets the return of an operation
/// not yet linearized. Linearizing an unknown operation last is always
/// possible and changes nothing, so "never" needs no case of its own.
pub fn check(ops: &[Op]) -> Verdict {
    // Nodes: 0 is the head; 1 + 2i is op i's call, 2 + 2i its return.
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, 1 + 2 * i));
        events.push((op.ret, true, 2 + 2 * i));
    }
    events.sort_unstable();
    let (mut next, mut prev) = (vec![NIL; 1 + 2 * ops.len()], vec![NIL; 1 + 2 * ops.len()]);
    let mut last = 0;
    for &(_, _, node) in &events {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = next[x];
        if next[x] != NIL {
            prev[next[x]] = prev[x];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = x;
        if next[x] != NIL {
            prev[next[x]] = x;
        }
    };

    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state = None;
    let mut stuck: Option<Stuck> = None;
    let mut node = next[0];
    while next[0] != NIL {
        if seen.len() > STATE_BUDGET {
            return Verdict::GaveUp { states: seen.len() };
        }
        let op = (node - 1) / 2;
        if node % 2 == 1 {
            if let Some(after) = step(state, &ops[op]) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), after)) {
                    stack.push((op, state));
                    state = after;
                    unlink(&mut next, &mut prev, node);
                    unlink(&mut next, &mut prev, node + 1);
                    node = next[0];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            node = next[node];
        } else {
            // `op` returned before it could be placed: undo the last choice.
            if stuck.as_ref().is_none_or(|s| stack.len() > s.order.len()) {
                let mut candidates = Vec::new();
                let mut n = next[0];
                while n != node {
                    if n % 2 == 1 {
                        candidates.push((n - 1) / 2);
                    }
                    n = next[n];
                }
                let order = stack.iter().map(|(op, _)| *op).collect();
                stuck = Some(Stuck {
                    order,
                    state,
                    candidates,
                    blocked: op,
                });
            }
            let Some((undone, before)) = stack.pop() else {
                return Verdict::NotLinearizable(stuck.unwrap());
            };
            state = before;
            linearized[undone / 64] &= !(1 << (undone % 64));
            relink(&mut next, &mut prev, 2 + 2 * undone);
            relink(&mut next, &mut prev, 1 + 2 * undone);
            node = next[1 + 2 * undone];
        }
    }
    Verdict::Linearizable { states: seen.len() }
}

/// What to print when `ops` is not linearizable: the end of the longest
/// order found, and the operations none of which could come next.
pub fn explain(ops: &[Op], stuck: &Stuck) -> String {
    let mut out = format!("the longest valid order has {} operations", stuck.order.len());
    out += if stuck.order.is_empty() { "\n" } else { "; it ends:\n" };
    for &i in &stuck.order[stuck.order.len().saturating_sub(6)..] {
        out += &format!("    #{i} {}\n", ops[i]);
    }
    let value = stuck.state.map_or("absent".into(), |v| v.to_string());
    out += &format!(
        "leaving the value {value}. None of these fits next, yet #{} had returned:\n",
        stuck.blocked
    );
    for &i in &stuck.candidates {
        out += &format!("    #{i} {}\n", ops[i]);
    }
    // Where the values they expect came from.
    let expected = stuck
        .candidates
        .iter()
        .filter_map(|&i| match (ops[i].input, ops[i].output) {
            (Input::Get, Some(Output::Get(Some(v)))) | (Input::Cas { expect: v, .. }, _) => Some(v),
            _ => None,
        });
    for v in expected.collect::<BTreeSet<u64>>() {
        let writer = ops
            .iter()
            .position(|op| matches!(op.input, Input::Put(w) | Input::Cas { new: w, .. } if w == v));
        let writer = writer.map_or("no operation".into(), |w| format!("#{w} {}", ops[w]));
        out += &format!("{v} was written by {writer}\n");
    }
    out
}
