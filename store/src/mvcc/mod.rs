//! The MVCC keyspace: the deterministic state that Raft applies KV commands to.
//!
//! Every member applies the same commands in the same order, so this module is
//! pure: no clock, no I/O, no randomness. Its answers match etcd v3's byte for
//! byte, because the API server (and `etcdctl`) rely on them.
//!
//! # Revisions
//!
//! The store has one logical clock, the *main revision*. Every write request
//! (a put, a delete that deletes something, a txn with writes) bumps it once;
//! each change inside it gets a *sub-revision* (0, 1, …), so `(main, sub)`
//! orders all changes ever made. Reads and deletes of nothing do not bump it.
//! An empty store is at revision 1, as in etcd. Clients use revisions for
//! optimistic concurrency (`mod_revision` compares) and to resume watches.
//!
//! # History and tombstones
//!
//! Nothing is overwritten: [`Store`] keeps a log from revision to what was
//! written (the `log`, etcd's backend bucket), and per key the revisions at
//! which it changed (the `index`, etcd's `treeIndex`). A delete writes a
//! *tombstone* record, so a read at an older revision still sees the value and
//! a watcher can replay the deletion. Per key, `version` counts puts since the
//! key was (re)created and `create_revision` is where that life began; both
//! restart after a tombstone.
//!
//! # Compaction
//!
//! History grows without bound, so [`Store::compact`] drops what no read at or
//! after the compact revision can see: per key, everything older than the
//! newest change at or below that revision, and that change too if it is a
//! tombstone older than the compact revision. Reads and watches below the
//! compact revision then fail with [`Error::Compacted`] and clients relist.
//!
//! # Layout
//!
//! - `mod.rs`: [`Store`], its index and log, [`Error`], [`in_range`].
//! - `range`: Range (sorting, filters, limits, counts).
//! - `write`: Put, DeleteRange, lease deletes, and the all-or-nothing write batch.
//! - `txn`: Txn request checks, compares and execution.
//! - `compaction`: compaction, watch replay and HashKV.
//! - `snapshot`: the serde snapshot for Raft, and size accounting.

mod compaction;
mod range;
mod snapshot;
mod txn;
mod write;

use std::collections::BTreeMap;
use std::ops::Bound;

use etcd_client::proto::PbKeyValue;

pub use snapshot::{Snapshot, SnapshotEntry};

/// Errors, with etcd's exact messages (the gRPC layer maps them to codes).
/// Serialisable because they travel back with a command's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Error {
    /// The revision asked for is below the compact revision; the client must relist (OutOfRange).
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for is above the current revision (OutOfRange).
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A request or compare has an empty key (InvalidArgument).
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a missing key, or a txn op with no request (InvalidArgument).
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value (InvalidArgument).
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease (InvalidArgument).
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A put names a lease that is not granted (NotFound).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// Two writes of one txn touch the same key (InvalidArgument).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A range's `sort_order` or `sort_target` is not a known enum value (InvalidArgument).
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
}

/// `mvccpb.Event.EventType.PUT`.
pub const EVENT_PUT: i32 = 0;
/// `mvccpb.Event.EventType.DELETE`.
pub const EVENT_DELETE: i32 = 1;

/// Position of one change in history: the write request's main revision and
/// the change's index inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Revision {
    main: i64,
    sub: i64,
}

/// What one change wrote. `mod_revision` is the main revision it is stored at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    version: i64,
    lease: i64,
    /// A deletion; the other fields but `key` are empty.
    tombstone: bool,
}

impl Record {
    fn to_kv(&self, mod_revision: i64) -> PbKeyValue {
        PbKeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

/// An in-memory etcd v3 keyspace with its history.
#[derive(Debug, Clone)]
pub struct Store {
    /// Main revision of the last completed write (1 when empty, as in etcd).
    current: i64,
    /// Main revision of the last compaction (-1 before any, as in etcd).
    compacted: i64,
    /// Key → the revisions at which it changed, oldest first.
    index: BTreeMap<Vec<u8>, Vec<Revision>>,
    /// Revision → what was written there.
    log: BTreeMap<Revision, Record>,
    /// Running total behind [`Store::size_bytes`].
    bytes: i64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            current: 1,
            compacted: -1,
            index: BTreeMap::new(),
            log: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// Latest revision (starts at 1 for an empty store, as in etcd).
    pub fn revision(&self) -> i64 {
        self.current
    }

    /// Revision of the last compaction, -1 if there was none (as etcd reports it).
    pub fn compact_revision(&self) -> i64 {
        self.compacted
    }

    /// Number of live keys (for etcd_debugging_mvcc_keys_total).
    pub fn key_count(&self) -> usize {
        self.index
            .keys()
            .filter(|key| self.get(key, self.current).is_some())
            .count()
    }

    /// Keys currently attached to `lease` (for lease revoke/expiry and TimeToLive keys), in key order.
    pub fn keys_with_lease(&self, lease: i64) -> Vec<Vec<u8>> {
        if lease == 0 {
            return Vec::new();
        }
        self.index
            .keys()
            .filter(|key| {
                self.get(key, self.current)
                    .is_some_and(|(_, record)| record.lease == lease)
            })
            .cloned()
            .collect()
    }

    /// The key's live record at `at` main revision, with its revision; None if absent or deleted then.
    fn get(&self, key: &[u8], at: i64) -> Option<(Revision, &Record)> {
        let revs = self.index.get(key)?;
        let newer = revs.partition_point(|rev| rev.main <= at);
        let rev = *revs.get(newer.checked_sub(1)?)?;
        let record = self.log.get(&rev)?;
        (!record.tombstone).then_some((rev, record))
    }

    /// Keys of the index in etcd's range `[key, range_end)`, in key order (live or not).
    fn index_range<'a>(&'a self, key: &'a [u8], range_end: &'a [u8]) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        let single = range_end.is_empty();
        let upper = match range_end {
            [] => Bound::Included(key),
            [0] => Bound::Unbounded,
            end if end > key => Bound::Excluded(end),
            // An empty interval; BTreeMap::range panics on start > end.
            _ => Bound::Excluded(key),
        };
        self.index
            .range::<[u8], _>((Bound::Included(key), upper))
            .map(|(k, _)| k)
            .filter(move |k| !single || k.as_slice() == key)
    }

    /// Live keys in `[key, range_end)` at main revision `at`, in key order.
    fn live_range<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
        at: i64,
    ) -> impl Iterator<Item = (Revision, &'a Record)> + 'a {
        self.index_range(key, range_end).filter_map(move |k| self.get(k, at))
    }
}

/// Helper for etcd's range_end rules: empty = single key; "\0" = every key >= key; else [key, range_end).
pub fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

#[cfg(test)]
pub(super) mod testutil {
    //! Request builders shared by the tests of every submodule.

    use etcd_client::proto::{PbDeleteRequest, PbEvent, PbKeyValue, PbPutRequest, PbRangeRequest};

    use super::Store;

    pub fn no_lease(_: i64) -> bool {
        false
    }

    pub fn any_lease(_: i64) -> bool {
        true
    }

    pub fn put_req(key: &str, value: &str) -> PbPutRequest {
        PbPutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    pub fn range_req(key: &str, range_end: &str) -> PbRangeRequest {
        PbRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        }
    }

    pub fn delete_req(key: &str, range_end: &str) -> PbDeleteRequest {
        PbDeleteRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        }
    }

    /// Puts `key = value` with no lease and returns the put's events.
    pub fn put(store: &mut Store, key: &str, value: &str) -> Vec<PbEvent> {
        store.put(&put_req(key, value), &no_lease).expect("put").1
    }

    pub fn put_with_lease(store: &mut Store, key: &str, value: &str, lease: i64) {
        let req = PbPutRequest {
            lease,
            ..put_req(key, value)
        };
        store.put(&req, &any_lease).expect("put with lease");
    }

    pub fn delete(store: &mut Store, key: &str) {
        store.delete_range(&delete_req(key, "")).expect("delete");
    }

    /// The key's kv at the latest revision, if live.
    pub fn get(store: &Store, key: &str) -> Option<PbKeyValue> {
        store.range(&range_req(key, "")).expect("range").kvs.into_iter().next()
    }

    /// Keys of the kvs, as strings, in response order.
    pub fn keys(kvs: &[PbKeyValue]) -> Vec<String> {
        kvs.iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn in_range_follows_etcd_range_end_rules() {
        assert!(in_range(b"a", b"a", b""));
        assert!(!in_range(b"ab", b"a", b""));
        assert!(in_range(b"zzz", b"b", b"\0"));
        assert!(!in_range(b"a", b"b", b"\0"));
        assert!(in_range(b"b", b"b", b"c"));
        assert!(in_range(b"bzz", b"b", b"c"));
        assert!(!in_range(b"c", b"b", b"c"));
        assert!(!in_range(b"a", b"b", b"c"));
    }

    #[test]
    fn empty_store_is_at_revision_one_and_never_compacted() {
        let store = Store::new();
        assert_eq!(store.revision(), 1);
        assert_eq!(store.compact_revision(), -1);
        assert_eq!(store.key_count(), 0);
    }

    #[test]
    fn key_count_counts_live_keys_only() {
        let mut store = Store::new();
        put(&mut store, "a", "1");
        put(&mut store, "a", "2");
        put(&mut store, "b", "1");
        delete(&mut store, "b");
        assert_eq!(store.key_count(), 1);
    }

    #[test]
    fn keys_with_lease_follows_the_latest_put_of_each_key() {
        let mut store = Store::new();
        put_with_lease(&mut store, "b", "1", 7);
        put_with_lease(&mut store, "a", "1", 7);
        put_with_lease(&mut store, "c", "1", 7);
        put_with_lease(&mut store, "d", "1", 8);
        put(&mut store, "c", "2"); // detaches c
        delete(&mut store, "b");
        assert_eq!(store.keys_with_lease(7), vec![b"a".to_vec()]);
        assert_eq!(store.keys_with_lease(8), vec![b"d".to_vec()]);
        assert!(store.keys_with_lease(0).is_empty());
    }

    #[test]
    fn index_range_handles_inverted_and_open_ranges() {
        let mut store = Store::new();
        for key in ["a", "b", "c"] {
            put(&mut store, key, "v");
        }
        let keys = |k: &[u8], e: &[u8]| store.index_range(k, e).cloned().collect::<Vec<_>>();
        assert_eq!(keys(b"b", b"\0"), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(keys(b"c", b"a"), Vec::<Vec<u8>>::new());
        assert_eq!(keys(b"b", b"b"), Vec::<Vec<u8>>::new());
        assert_eq!(keys(b"b", b""), vec![b"b".to_vec()]);
        assert_eq!(keys(b"bb", b""), Vec::<Vec<u8>>::new());
    }
}
