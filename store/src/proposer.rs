//! Proposal batching: many client writes, one Raft log entry.
//!
//! openraft (0.9) waits for each log append to be durable before it takes
//! the next one, so a log entry per client write would cost an fsync per
//! write. Instead, the leader's writes queue here; while one entry is being
//! replicated, everything that arrives waits, and then goes into the next
//! entry together (a [`Command::Batch`]). The state machine applies the
//! commands of a batch in order, each on its own, so clients see exactly
//! the results they would have seen one by one.

use tokio::sync::{mpsc, oneshot};

use openraft::error::ClientWriteError;

use crate::error::Error;
use crate::raft::{Command, Raft, Reply};

/// At most this many commands go into one entry.
const MAX_BATCH: usize = 256;
/// ...and at most about this many bytes.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Why a queued command was not applied.
#[derive(Debug)]
pub enum Rejected {
    /// This member is not the leader (any more): the command was not
    /// appended, so it may be sent to the leader.
    NotLeader,
    Failed(Error),
}

type Waiter = oneshot::Sender<Result<Reply, Rejected>>;

/// The queue in front of the leader's Raft log.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<(Command, Waiter)>,
}

impl Proposer {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Proposer { queue }
    }

    /// Queues `command` and waits for its own reply.
    pub async fn propose(&self, command: Command) -> Result<Reply, Rejected> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((command, tx))
            .map_err(|_| Rejected::Failed(Error::Stopped))?;
        rx.await.map_err(|_| Rejected::Failed(Error::Stopped))?
    }
}

fn size(command: &Command) -> usize {
    match command {
        Command::Put(b) | Command::DeleteRange(b) | Command::Txn(b) => b.len(),
        Command::Batch(commands) => commands.iter().map(size).sum(),
        _ => 16,
    }
}

/// How many entries may be replicating at once. While they are, new
/// writes gather into the next batch. Measured with
/// `kubernate-store-bench` (16 clients): one in flight gave the best
/// throughput for a single member (fuller batches, fewer fsyncs) and the
/// same as two or three for three members, so one it is.
const IN_FLIGHT: usize = 1;

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Command, Waiter)>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = size(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += size(&next.0);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (commands, waiters): (Vec<Command>, Vec<Waiter>) = batch.into_iter().unzip();
        let entry = if commands.len() == 1 {
            commands.into_iter().next().unwrap_or(Command::Batch(Vec::new()))
        } else {
            Command::Batch(commands)
        };
        // Submitting in this loop keeps the log in arrival order; the
        // answer is awaited elsewhere so the next batch can follow at once.
        let answer = match raft.client_write_ff(entry).await {
            Ok(answer) => answer,
            Err(_) => {
                reject(waiters, || Rejected::Failed(Error::Stopped));
                continue;
            }
        };
        tokio::spawn(async move {
            let _slot = slot;
            match answer.await {
                Ok(Ok(response)) => {
                    let replies = response.data.0;
                    if replies.len() != waiters.len() {
                        tracing::error!(
                            replies = replies.len(),
                            waiters = waiters.len(),
                            "batch reply count mismatch"
                        );
                    }
                    let mut replies = replies.into_iter();
                    for waiter in waiters {
                        let reply = replies
                            .next()
                            .ok_or_else(|| Rejected::Failed(Error::Internal("missing reply in batch".into())));
                        let _ = waiter.send(reply);
                    }
                }
                Ok(Err(ClientWriteError::ForwardToLeader(_))) => reject(waiters, || Rejected::NotLeader),
                Ok(Err(ClientWriteError::ChangeMembershipError(e))) => {
                    reject(waiters, || Rejected::Failed(Error::Internal(e.to_string())))
                }
                Err(_) => reject(waiters, || Rejected::Failed(Error::Stopped)),
            }
        });
    }
}

fn reject(waiters: Vec<Waiter>, why: impl Fn() -> Rejected) {
    for waiter in waiters {
        let _ = waiter.send(Err(why()));
    }
}
