//! The Raft log and vote on disk, in a redb database.
//!
//! Raft's safety rests on two promises this module keeps: a vote, once
//! cast, survives a crash (or a member could vote twice in one term), and a
//! log entry reported durable is on disk (or the leader could count a
//! quorum that a crash then erases). redb commits with fsync by default, so
//! each `save_vote` and each `append` is one durable transaction; openraft
//! batches the entries that arrive together into one append, which is one
//! fsync for the batch. Disk work runs on the blocking thread pool, and
//! each call waits for it, so writes stay in order.

// openraft's StorageError is large, and it is the error these functions
// must return; boxing it would only move the cost.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{decode, encode, NodeId, StorageError, TypeConfig};

/// Log entries by index, postcard-encoded.
const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
/// The vote, the last purged log id and the committed log id.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// Observes each fsync'ed append (for `etcd_disk_wal_fsync_duration_seconds`).
pub type FsyncObserver = Arc<dyn Fn(f64) + Send + Sync>;

/// The log store; cheap to clone (clones share the database).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    on_fsync: Option<FsyncObserver>,
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path, on_fsync: Option<FsyncObserver>) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(LogStore {
            db: Arc::new(db),
            on_fsync,
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

    /// Runs a durable (fsync'ed) write transaction on the blocking pool and
    /// waits for its commit.
    async fn write<F>(&self, what: &'static str, f: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    {
        self.write_with(what, true, f).await
    }

    /// As [`Self::write`]; a non-durable commit skips the fsync and becomes
    /// durable with the next durable one.
    async fn write_with<F>(&self, what: &'static str, durable: bool, f: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        let observer = self.on_fsync.clone().filter(|_| durable);
        let result = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut txn = db.begin_write()?;
            if !durable {
                txn.set_durability(redb::Durability::None)?;
            }
            f(&txn)?;
            txn.commit()?;
            if let Some(observe) = observer {
                observe(started.elapsed().as_secs_f64());
            }
            Ok::<_, redb::Error>(())
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageIOError::write(AnyError::error(format!("{what}: {e}"))).into()),
            Err(e) => Err(StorageIOError::write(AnyError::error(format!("{what}: {e}"))).into()),
        }
    }

    fn put_meta(txn: &redb::WriteTransaction, key: &str, bytes: &[u8]) -> Result<(), redb::Error> {
        txn.open_table(META)?.insert(key, bytes)?;
        Ok(())
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
        let txn = self.db.begin_read().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let table = txn.open_table(LOGS).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let iter = table
            .range::<u64>((Bound::Included(start), end))
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let mut entries = Vec::new();
        for item in iter {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            entries.push(decode(bytes.value()).map_err(|e| StorageIOError::read_logs(io_err(e)))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
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
        self.write("save vote", move |txn| Self::put_meta(txn, VOTE, &bytes))
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        let bytes = encode(&committed).map_err(|e| StorageIOError::write(io_err(e)))?;
        self.write("save committed", move |txn| Self::put_meta(txn, COMMITTED, &bytes))
            .await
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
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .write("append", move |txn| {
                let mut table = txn.open_table(LOGS)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
                Ok(())
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.write("truncate", move |txn| {
            let mut table = txn.open_table(LOGS)?;
            table.retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let bytes = encode(&log_id).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        self.write("purge", move |txn| {
            Self::put_meta(txn, LAST_PURGED, &bytes)?;
            let mut table = txn.open_table(LOGS)?;
            table.retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
    }
}
