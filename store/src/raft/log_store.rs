//! The Raft log and vote on disk, in a redb database behind a write-ahead
//! file, with group commit.
//!
//! Raft's safety rests on two promises this module keeps: a vote, once
//! cast, survives a crash (or a member could vote twice in one term), and a
//! log entry reported durable is on disk (or the leader could count a
//! quorum that a crash then erases).
//!
//! Every write goes to one writer thread, in order. It takes whatever has
//! queued up since its last commit, appends it to the write-ahead file
//! ([`super::wal`]) and syncs that once, then commits it to redb without a
//! sync: a group commit, so under load one `fdatasync` covers many
//! entries, and a cheap one. redb itself syncs at checkpoints, when the
//! write-ahead file is full; opening the store replays what the file holds
//! beyond redb's last checkpoint. `append` returns as soon as its entries
//! are queued (they are readable at once from an in-memory overlay) and
//! reports durability through openraft's callback as soon as the
//! write-ahead file is synced (before redb is told), so openraft keeps
//! accepting proposals while the disk works. Votes and truncations wait
//! for their commit before returning.

// openraft's StorageError is large, and it is the error these functions
// must return; boxing it would only move the cost.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::wal::Wal;
use super::{decode, encode, NodeId, StorageError, TypeConfig};

/// Log entries by index, postcard-encoded.
const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
/// The vote, the last purged log id and the committed log id.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";
/// The write-ahead file's current epoch (see `wal.rs`), postcard u64.
const WAL_EPOCH: &str = "wal_epoch";

/// The write-ahead file's size; a checkpoint follows when it is full.
const WAL_CAPACITY: u64 = 64 * 1024 * 1024;

/// At most this many queued writes go into one transaction.
const MAX_BATCH: usize = 4096;

/// Observes each fsync'ed commit (for `etcd_disk_wal_fsync_duration_seconds`).
pub type FsyncObserver = Arc<dyn Fn(f64) + Send + Sync>;

/// Entries queued for the writer, by index: readers see them before the
/// commit lands.
type Pending = Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>;

/// One queued write.
enum Op {
    Append {
        entries: Vec<(LogId<NodeId>, Vec<u8>)>,
        /// Taken when the entries are durable.
        done: Option<LogFlushed<TypeConfig>>,
    },
    Meta {
        key: &'static str,
        bytes: Vec<u8>,
        durable: bool,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    Purge {
        upto: u64,
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// A change as the write-ahead file records it and redb applies it.
#[derive(serde::Serialize, serde::Deserialize)]
enum Change<'a> {
    Append(#[serde(borrow)] Vec<(u64, &'a [u8])>),
    Meta(&'a str, &'a [u8]),
    Truncate(u64),
    Purge(u64, &'a [u8]),
}

impl Op {
    fn change(&self) -> Change<'_> {
        match self {
            Op::Append { entries, .. } => {
                Change::Append(entries.iter().map(|(id, b)| (id.index, b.as_slice())).collect())
            }
            Op::Meta { key, bytes, .. } => Change::Meta(key, bytes),
            Op::Truncate { from, .. } => Change::Truncate(*from),
            Op::Purge { upto, bytes, .. } => Change::Purge(*upto, bytes),
        }
    }

    fn durable(&self) -> bool {
        match self {
            Op::Append { .. } | Op::Truncate { .. } => true,
            Op::Meta { durable, .. } => *durable,
            // In the write-ahead file like any change the appends after it
            // depend on: a purge lost while later appends survive would
            // leave a hole in the log.
            Op::Purge { .. } => true,
        }
    }
}

/// The log store; cheap to clone (clones share the database and writer).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    pending: Pending,
    writer: Arc<Writer>,
    /// The highest committed log index openraft has told this store of
    /// (etcd's `raftIndex` in Status and the committed-proposals counter).
    pub committed: Arc<std::sync::atomic::AtomicU64>,
}

/// The queue to the writer thread. When the last clone of the store goes,
/// the queue closes and the thread is joined, so the database is closed
/// (and can be reopened) by the time the drop returns.
struct Writer {
    queue: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// Opens (or creates) the log database at `path` and starts its writer.
    /// Opens (or creates) the log database at `path` and its write-ahead
    /// file beside it (`.wal`), replays what the file holds beyond the last
    /// checkpoint, and starts the writer.
    pub fn open(path: &Path, on_fsync: Option<FsyncObserver>) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        let epoch: u64 = {
            let meta = txn.open_table(META)?;
            let stored = meta.get(WAL_EPOCH)?.map(|v| decode::<u64>(v.value()));
            match stored {
                None => 0,
                Some(Ok(epoch)) => epoch,
                Some(Err(e)) => return Err(redb::Error::Io(std::io::Error::other(format!("bad WAL epoch: {e}")))),
            }
        };
        txn.commit()?;
        let (mut wal, records) = Wal::open(&path.with_extension("wal"), WAL_CAPACITY, epoch)?;
        // Replay, and always move to a fresh epoch: whatever the file holds
        // beyond this point (a torn tail) can then never be read as valid.
        let txn = db.begin_write()?;
        for record in &records {
            let change: Change<'_> = postcard::from_bytes(record)
                .map_err(|e| redb::Error::Io(std::io::Error::other(format!("undecodable WAL record: {e}"))))?;
            apply(&txn, change)?;
        }
        checkpoint_epoch(&txn, epoch + 1)?;
        txn.commit()?;
        wal.restart(epoch + 1);
        if !records.is_empty() {
            tracing::info!(records = records.len(), "replayed the Raft log's write-ahead file");
        }
        let db = Arc::new(db);
        let pending = Pending::default();
        let (sender, queue) = mpsc::channel();
        let (wdb, wpending) = (db.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(&wdb, &mut wal, &wpending, &queue, on_fsync.as_deref()))
            .map_err(redb::Error::Io)?;
        let writer = Arc::new(Writer {
            queue: Some(sender),
            thread: Some(thread),
        });
        Ok(LogStore {
            db,
            pending,
            writer,
            committed: Arc::default(),
        })
    }

    fn read_meta<T: for<'de> serde::Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| StorageIOError::read(io_err(e)))?;
        let table = txn.open_table(META).map_err(|e| StorageIOError::read(io_err(e)))?;
        let Some(value) = table.get(key).map_err(|e| StorageIOError::read(io_err(e)))? else {
            return Ok(None);
        };
        let decoded = decode(value.value()).map_err(|e| StorageIOError::read(io_err(e)))?;
        Ok(Some(decoded))
    }

    fn send(&self, op: Op) -> Result<(), StorageError> {
        let stopped = || write_err("the log writer has stopped");
        let queue = self.writer.queue.as_ref().ok_or_else(stopped)?;
        queue.send(op).map_err(|_| stopped())
    }

    /// Queues `op` (built around a completion channel) and waits for it.
    async fn send_and_wait(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Op,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(op(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_err(e)),
            Err(_) => Err(write_err("the log writer has stopped")),
        }
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let table = txn.open_table(LOGS).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let last = table.last().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        match last {
            None => Ok(None),
            Some((_, bytes)) => {
                let entry: Entry<TypeConfig> =
                    decode(bytes.value()).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                Ok(Some(entry.log_id))
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry<TypeConfig>>> {
        // A panic while holding the lock cannot leave the map half-changed.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread: group-commits whatever is queued, in order.
fn run_writer(
    db: &Database,
    wal: &mut Wal,
    pending: &Pending,
    queue: &mpsc::Receiver<Op>,
    on_fsync: Option<&(dyn Fn(f64) + Send + Sync)>,
) {
    // After a failed write nothing more is written (a checkpoint would
    // start a new epoch and hide the records of the failed group, which
    // may have been acknowledged): every later write fails the same way,
    // and the next start replays the file.
    let mut failed: Option<String> = None;
    while let Ok(first) = queue.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        if let Some(error) = &failed {
            finish(ops, Err(error.clone()));
            continue;
        }
        let durable = ops.iter().any(Op::durable);
        let started = Instant::now();
        let logged = if durable {
            log_group(db, wal, &ops)
        } else {
            Ok(Logged::Pending)
        };
        if durable && logged.is_ok() {
            if let Some(observe) = on_fsync {
                observe(started.elapsed().as_secs_f64());
            }
        }
        if let Ok(Logged::InWal) = logged {
            // Durable now: openraft may count these entries at once. They
            // stay readable from the overlay until redb has them.
            for op in ops.iter_mut() {
                if let Op::Append { done, .. } = op {
                    if let Some(done) = done.take() {
                        done.log_io_completed(Ok(()));
                    }
                }
            }
        }
        let result = match logged {
            Ok(Logged::InWal | Logged::Pending) => commit(db, &ops, redb::Durability::None, None),
            Ok(Logged::Checkpointed) => Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|e| format!("the Raft log could not be written: {e}"));
        if let Err(e) = &result {
            tracing::error!(error = %e, "the Raft log writer stops writing");
            failed = Some(e.clone());
        }
        if result.is_ok() {
            // What is on disk no longer needs its in-memory copy (unless a
            // truncation has since replaced it with a different entry).
            let mut overlay = pending.lock().unwrap_or_else(|p| p.into_inner());
            for op in &ops {
                if let Op::Append { entries, .. } = op {
                    for (log_id, _) in entries {
                        if overlay.get(&log_id.index).map(|e| e.log_id) == Some(*log_id) {
                            overlay.remove(&log_id.index);
                        }
                    }
                }
            }
        }
        finish(ops, result);
    }
}

/// Answers everyone waiting on `ops` with `result`.
fn finish(ops: Vec<Op>, result: Result<(), String>) {
    for op in ops {
        let outcome = result.clone();
        match op {
            Op::Append { done: Some(done), .. } => done.log_io_completed(outcome.map_err(std::io::Error::other)),
            Op::Append { done: None, .. } => {}
            Op::Meta { done: Some(done), .. } | Op::Truncate { done, .. } | Op::Purge { done, .. } => {
                let _ = done.send(outcome);
            }
            Op::Meta { done: None, .. } => {}
        }
    }
}

/// Where a group's changes stand once [`log_group`] is done.
enum Logged {
    /// Durable in the write-ahead file; redb still to be told (unsynced).
    InWal,
    /// Committed to redb durably by a checkpoint: nothing left to do.
    Checkpointed,
    /// Nothing durable in the group: redb still to be told (unsynced).
    Pending,
}

/// Makes one group's durable changes durable: into the write-ahead file,
/// synced. A group too large for the file is made durable by a
/// checkpoint instead; one that finds the file full checkpoints first.
fn log_group(db: &Database, wal: &mut Wal, ops: &[Op]) -> Result<Logged, redb::Error> {
    let mut records = Vec::new();
    for op in ops.iter().filter(|op| op.durable()) {
        records.push(encode(&op.change()).map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?);
    }
    let size: u64 = records.iter().map(|r| r.len() as u64).sum();
    if size > wal.capacity() / 2 {
        checkpoint(db, wal, ops)?;
        return Ok(Logged::Checkpointed);
    }
    if !wal.fits(records.iter().map(Vec::len)) {
        checkpoint(db, wal, &[])?;
    }
    wal.append(&records)?;
    wal.sync()?;
    Ok(Logged::InWal)
}

/// Commits `ops` to redb durably, which makes every earlier unsynced
/// commit durable too, and starts the write-ahead file's next epoch.
fn checkpoint(db: &Database, wal: &mut Wal, ops: &[Op]) -> Result<(), redb::Error> {
    let epoch = wal.epoch() + 1;
    commit(db, ops, redb::Durability::Immediate, Some(epoch))?;
    wal.restart(epoch);
    Ok(())
}

fn commit(db: &Database, ops: &[Op], durability: redb::Durability, epoch: Option<u64>) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    for op in ops {
        apply(&txn, op.change())?;
    }
    if let Some(epoch) = epoch {
        checkpoint_epoch(&txn, epoch)?;
    }
    txn.commit()?;
    Ok(())
}

fn checkpoint_epoch(txn: &redb::WriteTransaction, epoch: u64) -> Result<(), redb::Error> {
    let bytes = encode(&epoch).map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
    txn.open_table(META)?.insert(WAL_EPOCH, bytes.as_slice())?;
    Ok(())
}

fn apply(txn: &redb::WriteTransaction, change: Change<'_>) -> Result<(), redb::Error> {
    match change {
        Change::Append(entries) => {
            let mut logs = txn.open_table(LOGS)?;
            for (index, bytes) in entries {
                logs.insert(index, bytes)?;
            }
        }
        Change::Meta(key, bytes) => {
            txn.open_table(META)?.insert(key, bytes)?;
        }
        Change::Truncate(from) => {
            txn.open_table(LOGS)?.retain_in(from.., |_, _| false)?;
        }
        Change::Purge(upto, bytes) => {
            txn.open_table(META)?.insert(LAST_PURGED, bytes)?;
            txn.open_table(LOGS)?.retain_in(..=upto, |_, _| false)?;
        }
    }
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        // The overlay first: an entry leaves it only after it is on disk,
        // so reading the disk second cannot miss it.
        let overlay: BTreeMap<u64, Entry<TypeConfig>> = self
            .pending()
            .range((Bound::Included(start), end))
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let txn = self.db.begin_read().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let table = txn.open_table(LOGS).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let iter = table
            .range::<u64>((Bound::Included(start), end))
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let mut entries = BTreeMap::new();
        for item in iter {
            let (index, bytes) = item.map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            let entry: Entry<TypeConfig> = decode(bytes.value()).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            entries.insert(index.value(), entry);
        }
        entries.extend(overlay);
        Ok(entries.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let queued = self.pending().values().next_back().map(|e| e.log_id);
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(LAST_PURGED)?;
        let last_log_id = queued.or(self.last_entry_id()?).or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        self.send_and_wait(|done| Op::Meta {
            key: VOTE,
            bytes,
            durable: true,
            done: Some(done),
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE)
    }

    /// The committed id only lets a restarted member re-apply its log
    /// before hearing from a leader, so it rides along with the next
    /// durable commit instead of costing an fsync. Losing it is safe.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        if let Some(id) = &committed {
            self.committed.fetch_max(id.index, std::sync::atomic::Ordering::Relaxed);
        }
        let bytes = encode(&committed).map_err(|e| StorageIOError::write(io_err(e)))?;
        self.send(Op::Meta {
            key: COMMITTED,
            bytes,
            durable: false,
            done: None,
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.read_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let mut overlay = self.pending();
            for entry in entries {
                let bytes = encode(&entry).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
                encoded.push((entry.log_id, bytes));
                overlay.insert(entry.log_id.index, entry);
            }
        }
        self.send(Op::Append {
            entries: encoded,
            done: Some(callback),
        })
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.pending().retain(|index, _| *index < log_id.index);
        self.send_and_wait(|done| Op::Truncate {
            from: log_id.index,
            done,
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let bytes = encode(&log_id).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        self.send_and_wait(|done| Op::Purge {
            upto: log_id.index,
            bytes,
            done,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    #[tokio::test]
    async fn a_vote_and_a_truncation_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let vote = Vote::new_committed(3, 42);
        {
            let mut store = LogStore::open(&path, None).expect("open");
            store.save_vote(&vote).await.expect("save vote");
            store
                .truncate(LogId::new(CommittedLeaderId::new(3, 42), 1))
                .await
                .expect("truncate");
        }
        assert!(
            path.with_extension("wal").exists(),
            "the write-ahead file is beside the database"
        );
        let mut store = LogStore::open(&path, None).expect("reopen");
        assert_eq!(store.read_vote().await.expect("read vote"), Some(vote));
        // Reopening moved to a new epoch, durably.
        let epoch: Option<u64> = store.read_meta(WAL_EPOCH).expect("epoch");
        assert_eq!(epoch, Some(2));
        drop(store);
        let store = LogStore::open(&path, None).expect("reopen again");
        let epoch: Option<u64> = store.read_meta(WAL_EPOCH).expect("epoch");
        assert_eq!(epoch, Some(3));
    }
}
