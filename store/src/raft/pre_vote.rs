//! Pre-vote: a member campaigns only when a majority would vote for it.
//!
//! In plain Raft a member that is cut off from the others (a partition, a
//! stalled disk) starts an election at every election timeout, each time
//! with a higher term. Nobody answers, so it wins nothing; but when it can
//! talk again, the leader learns of that higher term from its replies and
//! steps down: an election for nothing, and writes stall while it runs.
//! etcd prevents this with pre-vote (Raft thesis §9.6): before raising its
//! term a member asks the others whether they *would* vote for it, and
//! they say no while they still hear from a leader. openraft 0.9 has no
//! pre-vote (its leader lease makes followers refuse the real vote, but
//! the term is raised anyway), so the election timer lives here: openraft's
//! own is off (`enable_elect: false`), and [`run`] campaigns through
//! `Raft::trigger().elect()` only after winning a pre-vote round.
//!
//! Timing follows openraft's: a follower that heard from a leader waits
//! the leader lease (the maximum election timeout) plus a random election
//! timeout before it asks; a member grants a pre-vote only if it has not
//! heard from a leader for a lease and the candidate's log is at least as
//! up to date as its own, the same tests the real vote will apply.

use std::collections::BTreeSet;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::LogId;
use serde::{Deserialize, Serialize};

use super::NodeId;
use crate::node::Node;
use crate::raft::network::proto::Payload;

/// How often the election timer looks at the clock.
const TICK: Duration = Duration::from_millis(50);

/// A candidate's question to a voter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    /// The candidate's last log id: a voter with a newer log says no.
    pub last_log: Option<LogId<NodeId>>,
}

/// A member's election timer and its side of pre-vote.
pub struct Elections {
    /// When this member last heard from a leader it follows (or led).
    last_contact: Mutex<Instant>,
    /// Off until then while a leadership transfer steers the election
    /// (MoveLeader); a deadline, so a transfer whose leader dies before it
    /// switches the timer back on cannot leave it off for good.
    paused_until: Mutex<Option<Instant>>,
    /// openraft's leader lease: followers refuse votes within it.
    lease: Duration,
    /// The election timeout range; each wait is drawn from it.
    timeout: (Duration, Duration),
}

impl Elections {
    pub fn new(election_timeout_min: Duration, election_timeout_max: Duration) -> Self {
        Elections {
            last_contact: Mutex::new(Instant::now()),
            paused_until: Mutex::new(None),
            lease: election_timeout_max,
            timeout: (election_timeout_min, election_timeout_max),
        }
    }

    /// A leader's message was accepted (or a vote granted): wait again.
    pub fn heard_from_leader(&self) {
        if let Ok(mut at) = self.last_contact.lock() {
            *at = Instant::now();
        }
    }

    /// Switches the timer (a leadership transfer turns it off meanwhile,
    /// for at most `for_at_most`).
    pub fn set_enabled(&self, enabled: bool, for_at_most: Duration) {
        if let Ok(mut until) = self.paused_until.lock() {
            *until = (!enabled).then(|| Instant::now() + for_at_most);
        }
        self.heard_from_leader();
    }

    fn paused(&self) -> bool {
        self.paused_until
            .lock()
            .map(|until| until.is_some_and(|at| Instant::now() < at))
            .unwrap_or(false)
    }

    fn since_contact(&self) -> Duration {
        self.last_contact.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    /// After a campaign: the next may follow one election timeout later.
    fn campaigned(&self) {
        if let Ok(mut at) = self.last_contact.lock() {
            *at = Instant::now().checked_sub(self.lease).unwrap_or_else(Instant::now);
        }
    }

    fn random_timeout(&self) -> Duration {
        let (min, max) = self.timeout;
        if max <= min {
            return min;
        }
        rand::Rng::gen_range(&mut rand::thread_rng(), min..max)
    }

    /// Whether this member would vote for the candidate of `request`.
    pub async fn would_vote(&self, node: &Node, request: &PreVoteRequest) -> bool {
        let leading = node.raft.metrics().borrow().current_leader == Some(node.id);
        if leading || self.since_contact() < self.lease {
            return false;
        }
        match last_log_id(node).await {
            Some(mine) => request.last_log >= mine,
            None => false,
        }
    }
}

/// This member's last log id (`None` inside when the log is empty; the
/// outer `None` when the log cannot be read).
async fn last_log_id(node: &Node) -> Option<Option<LogId<NodeId>>> {
    let mut log = node.log.clone();
    match openraft::storage::RaftLogStorage::get_log_state(&mut log).await {
        Ok(state) => Some(state.last_log_id),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the Raft log for a pre-vote");
            None
        }
    }
}

/// The election timer: until the member stops, campaign when the leader
/// has been silent long enough and a pre-vote round is won.
pub async fn run(node: Weak<Node>) {
    let mut wait = match node.upgrade() {
        Some(node) => node.elections.random_timeout(),
        None => return,
    };
    loop {
        tokio::time::sleep(TICK).await;
        let Some(node) = node.upgrade() else { return };
        let metrics = node.raft.metrics().borrow().clone();
        if metrics.running_state.is_err() {
            return;
        }
        let elections = &node.elections;
        if metrics.current_leader == Some(node.id) {
            elections.heard_from_leader();
            continue;
        }
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        if !voters.contains(&node.id) || elections.paused() {
            continue;
        }
        // A sole voter has nobody to disturb: it leads at once, as openraft would.
        let alone = voters.len() == 1;
        let due = if alone { Duration::ZERO } else { elections.lease + wait };
        if elections.since_contact() < due {
            continue;
        }
        if alone || pre_vote(&node, &voters).await {
            tracing::info!(term = metrics.current_term, "won the pre-vote; campaigning");
            if node.raft.trigger().elect().await.is_err() {
                return;
            }
        } else {
            tracing::debug!("lost the pre-vote; the cluster still has a leader or a newer log");
        }
        elections.campaigned();
        wait = elections.random_timeout();
    }
}

/// One pre-vote round: asks every other voter at once; true when this
/// member and those that said yes are a majority of every configuration
/// (both, during a joint membership change), as a real vote must be.
async fn pre_vote(node: &Node, voters: &[NodeId]) -> bool {
    let Some(last_log) = last_log_id(node).await else {
        return false;
    };
    let request = PreVoteRequest {
        candidate: node.id,
        last_log,
    };
    let Ok(data) = super::encode(&request) else {
        return false;
    };
    let membership = node.raft.metrics().borrow().membership_config.clone();
    let mut asks = tokio::task::JoinSet::new();
    for voter in voters.iter().copied().filter(|v| *v != node.id) {
        let Some(member) = membership.membership().get_node(&voter) else {
            continue;
        };
        let Ok(mut client) = node.dialer.client(member) else {
            continue;
        };
        let mut ask = tonic::Request::new(Payload { data: data.clone() });
        ask.set_timeout(node.elections.timeout.0);
        asks.spawn(async move {
            let yes = match client.pre_vote(ask).await {
                Ok(answer) => super::decode::<bool>(&answer.into_inner().data).unwrap_or(false),
                Err(_) => false,
            };
            (voter, yes)
        });
    }
    let mut granted = BTreeSet::from([node.id]);
    while let Some(answer) = asks.join_next().await {
        if let Ok((voter, true)) = answer {
            granted.insert(voter);
        }
    }
    membership
        .membership()
        .get_joint_config()
        .iter()
        .all(|config| config.iter().filter(|v| granted.contains(v)).count() * 2 > config.len())
}
