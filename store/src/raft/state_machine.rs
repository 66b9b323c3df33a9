//! The replicated state machine: the MVCC keyspace, the lease table and the
//! alarms, changed only by applying committed [`Command`]s in log order.
//!
//! The state lives in memory. Durability comes from the Raft log plus
//! snapshots: a snapshot is the whole state serialised to
//! `<data-dir>/snap/current.snap` (written to a temporary file, synced,
//! renamed), after which openraft purges the log it covers. On restart the
//! member loads the snapshot and openraft re-applies the log entries after
//! it, so the state comes back exactly as acknowledged. A member that has
//! fallen behind the purged log receives the leader's snapshot instead.
//!
//! After each applied batch the new events go to the watch hub, so watchers
//! see every change exactly once, in revision order.

// openraft's StorageError is large, and it is the error these functions
// must return; boxing it would only move the cost.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use etcd_client::proto::{PbDeleteRequest, PbEvent, PbPutRequest, PbTxnRequest};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};

use super::{decode, encode, Command, Member, NodeId, Replies, Reply, StorageError, TypeConfig};
use crate::error::Error;
use crate::mvcc;

/// etcd's NOSPACE alarm type (`etcdserverpb.AlarmType`).
pub const ALARM_NOSPACE: i32 = 1;

/// A batch of watch events from one applied command, all at `revision`.
#[derive(Debug, Clone)]
pub struct EventBatch {
    pub revision: i64,
    pub events: Vec<PbEvent>,
}

/// Everything a member replicates.
pub struct State {
    pub kv: mvcc::Store,
    /// Granted leases: id → TTL in seconds.
    pub leases: BTreeMap<i64, i64>,
    /// Active alarms: (member id, alarm type).
    pub alarms: BTreeSet<(u64, i32)>,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
    /// When each lease expires, as seen by this member. Not replicated: only
    /// the leader acts on it, and a new leader restarts every clock (as etcd
    /// does on promotion), so a leader change never expires a lease early.
    pub lease_deadlines: HashMap<i64, Instant>,
}

impl State {
    fn new() -> Self {
        State {
            kv: mvcc::Store::new(),
            leases: BTreeMap::new(),
            alarms: BTreeSet::new(),
            last_applied: None,
            membership: StoredMembership::default(),
            lease_deadlines: HashMap::new(),
        }
    }

    /// Restarts every lease clock: called when this member becomes leader.
    pub fn refresh_lease_deadlines(&mut self) {
        let now = Instant::now();
        self.lease_deadlines = self
            .leases
            .iter()
            .map(|(id, ttl)| (*id, now + Duration::from_secs((*ttl).max(1) as u64)))
            .collect();
    }
}

/// The serialised form of [`State`] in a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    kv: mvcc::Snapshot,
    leases: Vec<(i64, i64)>,
    alarms: Vec<(u64, i32)>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

/// A serialised state with the log position and membership it covers.
pub type Serialised = (Vec<u8>, Option<LogId<NodeId>>, StoredMembership<NodeId, Member>);

/// Observes each snapshot written to disk: the store's backend commit
/// (`etcd_disk_backend_commit_duration_seconds`), since the keyspace
/// itself lives in memory.
pub type CommitObserver = Arc<dyn Fn(f64) + Send + Sync>;

/// The state machine handed to openraft; cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    pub state: Arc<RwLock<State>>,
    events: broadcast::Sender<Arc<EventBatch>>,
    snapshot_dir: PathBuf,
    on_commit: Option<CommitObserver>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Opens the state machine of a member whose data lives in `data_dir`,
    /// loading the latest snapshot if there is one.
    pub fn open(data_dir: &Path, on_commit: Option<CommitObserver>) -> Result<Self, StorageError> {
        let snapshot_dir = data_dir.join("snap");
        std::fs::create_dir_all(&snapshot_dir).map_err(sm_err)?;
        let (events, _) = broadcast::channel(1024);
        let sm = StateMachine {
            state: Arc::new(RwLock::new(State::new())),
            events,
            snapshot_dir,
            on_commit,
        };
        if let Some(bytes) = sm.read_snapshot_file()? {
            sm.restore(&bytes)?;
        }
        Ok(sm)
    }

    /// Watchers subscribe here for events applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.events.subscribe()
    }

    fn snapshot_path(&self) -> PathBuf {
        self.snapshot_dir.join("current.snap")
    }

    fn read_snapshot_file(&self) -> Result<Option<Vec<u8>>, StorageError> {
        match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(sm_err(e)),
        }
    }

    fn write_snapshot_file(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let tmp = self.snapshot_dir.join("current.snap.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(sm_err)?;
        file.write_all(bytes).map_err(sm_err)?;
        file.sync_all().map_err(sm_err)?;
        std::fs::rename(&tmp, self.snapshot_path()).map_err(sm_err)?;
        std::fs::File::open(&self.snapshot_dir)
            .and_then(|d| d.sync_all())
            .map_err(sm_err)?;
        if let Some(observe) = &self.on_commit {
            observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let file: SnapshotFile = decode(bytes).map_err(sm_err)?;
        let mut state = self.state.write().map_err(sm_err)?;
        state.kv = mvcc::Store::restore(file.kv);
        state.leases = file.leases.into_iter().collect();
        state.alarms = file.alarms.into_iter().collect();
        state.last_applied = file.last_applied;
        state.membership = file.membership;
        state.refresh_lease_deadlines();
        Ok(())
    }

    /// The whole state, encoded as a snapshot holds it.
    pub fn serialise(&self) -> Result<Serialised, StorageError> {
        let state = self.state.read().map_err(sm_err)?;
        let file = SnapshotFile {
            kv: state.kv.snapshot(),
            leases: state.leases.iter().map(|(k, v)| (*k, *v)).collect(),
            alarms: state.alarms.iter().copied().collect(),
            last_applied: state.last_applied,
            membership: state.membership.clone(),
        };
        let bytes = encode(&file).map_err(sm_err)?;
        Ok((bytes, state.last_applied, state.membership.clone()))
    }
}

/// Applies one command to the state; returns the reply and the events.
fn apply_command(state: &mut State, command: &Command) -> (Reply, Vec<PbEvent>) {
    let result = execute(state, command);
    let revision = state.kv.revision();
    match result {
        Ok((bytes, events)) => (
            Reply {
                revision,
                outcome: Ok(bytes),
            },
            events,
        ),
        Err(e) => (
            Reply {
                revision,
                outcome: Err(e),
            },
            Vec::new(),
        ),
    }
}

fn decode_request<T: Message + Default>(bytes: &[u8]) -> Result<T, Error> {
    T::decode(bytes).map_err(|e| Error::Internal(format!("undecodable command: {e}")))
}

fn no_space(state: &State) -> bool {
    state.alarms.iter().any(|(_, alarm)| *alarm == ALARM_NOSPACE)
}

fn execute(state: &mut State, command: &Command) -> Result<(Vec<u8>, Vec<PbEvent>), Error> {
    match command {
        Command::Put(bytes) => {
            if no_space(state) {
                return Err(Error::NoSpace);
            }
            let req: PbPutRequest = decode_request(bytes)?;
            let leases = &state.leases;
            let (resp, events) = state.kv.put(&req, &|id| leases.contains_key(&id))?;
            Ok((resp.encode_to_vec(), events))
        }
        Command::DeleteRange(bytes) => {
            let req: PbDeleteRequest = decode_request(bytes)?;
            let (resp, events) = state.kv.delete_range(&req)?;
            Ok((resp.encode_to_vec(), events))
        }
        Command::Txn(bytes) => {
            let req: PbTxnRequest = decode_request(bytes)?;
            if no_space(state) && txn_put_cost(&req) > 0 {
                return Err(Error::NoSpace);
            }
            let leases = &state.leases;
            let (resp, events) = state.kv.txn(&req, &|id| leases.contains_key(&id))?;
            Ok((resp.encode_to_vec(), events))
        }
        Command::Compact(rev) => {
            state.kv.compact(*rev)?;
            Ok((Vec::new(), Vec::new()))
        }
        Command::LeaseGrant { id, ttl } => {
            if no_space(state) {
                return Err(Error::NoSpace);
            }
            if state.leases.contains_key(id) {
                return Err(Error::LeaseExists);
            }
            state.leases.insert(*id, *ttl);
            let deadline = Instant::now() + Duration::from_secs((*ttl).max(1) as u64);
            state.lease_deadlines.insert(*id, deadline);
            Ok((Vec::new(), Vec::new()))
        }
        Command::LeaseRevoke { id } => {
            if state.leases.remove(id).is_none() {
                return Err(mvcc::Error::LeaseNotFound.into());
            }
            state.lease_deadlines.remove(id);
            let keys = state.kv.keys_with_lease(*id);
            let events = state.kv.delete_keys(&keys);
            Ok((Vec::new(), events))
        }
        Command::Alarm {
            activate,
            member,
            alarm,
        } => {
            if *activate {
                state.alarms.insert((*member, *alarm));
            } else {
                state.alarms.remove(&(*member, *alarm));
            }
            Ok((Vec::new(), Vec::new()))
        }
        // Flattened by `apply` before it gets here.
        Command::Batch(_) => Err(Error::Internal("nested command batch".into())),
    }
}

/// The bytes a txn's puts could add (etcd's quota cost: deletes cost
/// nothing, so a delete-only txn passes the NOSPACE alarm).
pub fn txn_put_cost(req: &PbTxnRequest) -> usize {
    use etcd_client::proto::PbTxnOpRequest as Op;
    req.success
        .iter()
        .chain(req.failure.iter())
        .map(|op| match &op.request {
            Some(Op::RequestPut(put)) => put.key.len() + put.value.len(),
            Some(Op::RequestTxn(inner)) => txn_put_cost(inner),
            _ => 0,
        })
        .sum()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError> {
        let state = self.state.read().map_err(sm_err)?;
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Replies>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut batches = Vec::new();
        {
            let mut state = self.state.write().map_err(sm_err)?;
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                let empty = |state: &State| Reply {
                    revision: state.kv.revision(),
                    outcome: Ok(Vec::new()),
                };
                match entry.payload {
                    EntryPayload::Blank => replies.push(Replies(vec![empty(&state)])),
                    EntryPayload::Normal(command) => {
                        let commands = match command {
                            Command::Batch(commands) => commands,
                            single => vec![single],
                        };
                        let mut entry_replies = Vec::with_capacity(commands.len());
                        for command in &commands {
                            let (reply, events) = apply_command(&mut state, command);
                            if !events.is_empty() {
                                batches.push(Arc::new(EventBatch {
                                    revision: reply.revision,
                                    events,
                                }));
                            }
                            entry_replies.push(reply);
                        }
                        replies.push(Replies(entry_replies));
                    }
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                        replies.push(Replies(vec![empty(&state)]));
                    }
                }
            }
        }
        for batch in batches {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(batch);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        self.restore(&bytes)?;
        {
            let mut state = self.state.write().map_err(sm_err)?;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership.clone();
        }
        self.write_snapshot_file(&bytes)?;
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(bytes) = self.read_snapshot_file()? else {
            return Ok(None);
        };
        let file: SnapshotFile = decode(&bytes).map_err(sm_err)?;
        Ok(Some(Snapshot {
            meta: snapshot_meta(file.last_applied, file.membership),
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

fn snapshot_meta(
    last_log_id: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Member>,
) -> SnapshotMeta<NodeId, Member> {
    let snapshot_id = match last_log_id {
        Some(id) => format!("{}-{}", id.leader_id.term, id.index),
        None => "empty".to_string(),
    };
    SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (bytes, last_applied, membership) = self.serialise()?;
        self.write_snapshot_file(&bytes)?;
        tracing::info!(last_log_id = ?last_applied, bytes = bytes.len(), "snapshot written");
        Ok(Snapshot {
            meta: snapshot_meta(last_applied, membership),
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}
