//! The keyspace as a Raft snapshot, and its size for the quota.
//!
//! A snapshot is the revision log plus the two revisions; the per-key index is
//! derived from the log on restore, so it cannot disagree with it. The types
//! are plain structs and Vecs so that any serde format can carry them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::write::record_size;
use super::{Record, Revision, Store};

/// Full state of a [`Store`] for a Raft snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The store's current revision.
    pub revision: i64,
    /// The store's compact revision (-1 if never compacted).
    pub compact_revision: i64,
    /// Every stored change, in revision order.
    pub entries: Vec<SnapshotEntry>,
}

/// One stored change: a put, or a deletion (`tombstone`, with empty value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Main revision, which is also the kv's `mod_revision`.
    pub revision: i64,
    pub sub_revision: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub tombstone: bool,
}

impl Store {
    /// Full state for a Raft snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let entries = self
            .log
            .iter()
            .map(|(rev, record)| SnapshotEntry {
                revision: rev.main,
                sub_revision: rev.sub,
                key: record.key.clone(),
                value: record.value.clone(),
                create_revision: record.create_revision,
                version: record.version,
                lease: record.lease,
                tombstone: record.tombstone,
            })
            .collect();
        Snapshot {
            revision: self.current,
            compact_revision: self.compacted,
            entries,
        }
    }

    /// The store a snapshot was taken of. Entries need not be sorted; a later
    /// entry at the same revision replaces an earlier one.
    pub fn restore(snapshot: Snapshot) -> Self {
        let log: BTreeMap<Revision, Record> = snapshot
            .entries
            .into_iter()
            .map(|e| {
                let rev = Revision {
                    main: e.revision,
                    sub: e.sub_revision,
                };
                let record = Record {
                    key: e.key,
                    value: e.value,
                    create_revision: e.create_revision,
                    version: e.version,
                    lease: e.lease,
                    tombstone: e.tombstone,
                };
                (rev, record)
            })
            .collect();
        let mut index: BTreeMap<Vec<u8>, Vec<Revision>> = BTreeMap::new();
        let mut bytes = 0;
        for (rev, record) in &log {
            index.entry(record.key.clone()).or_default().push(*rev);
            bytes += record_size(record);
        }
        Store {
            current: snapshot.revision,
            compacted: snapshot.compact_revision,
            index,
            log,
            bytes,
        }
    }

    /// Approximate bytes held: keys and values of every stored revision plus a
    /// fixed per-revision overhead, for the quota and dbSize. Unlike etcd's
    /// bolt file it shrinks on compaction (there is nothing to defragment).
    pub fn size_bytes(&self) -> i64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use etcd_client::proto::PbRangeRequest;

    fn busy_store() -> Store {
        let mut store = Store::new();
        put(&mut store, "a", "1");
        put_with_lease(&mut store, "b", "1", 4);
        put(&mut store, "a", "2");
        delete(&mut store, "b");
        put(&mut store, "c", "1");
        put(&mut store, "a", "3");
        store.compact(3).unwrap();
        put(&mut store, "d", "1");
        store
    }

    #[test]
    fn restore_gives_an_equal_store() {
        let store = busy_store();
        let restored = Store::restore(store.snapshot());
        assert_eq!(restored.hash_kv(0), store.hash_kv(0));
        assert_eq!(restored.revision(), store.revision());
        assert_eq!(restored.compact_revision(), 3);
        assert_eq!(restored.size_bytes(), store.size_bytes());
        assert_eq!(restored.key_count(), store.key_count());
        assert_eq!(restored.snapshot(), store.snapshot());
        assert_eq!(restored.index, store.index);
        for rev in [3, 5, 7, 8] {
            let req = PbRangeRequest {
                revision: rev,
                ..range_req("\0", "\0")
            };
            assert_eq!(restored.range(&req), store.range(&req), "range at {rev}");
        }
        assert_eq!(
            restored.events_since(3, b"\0", b"\0", true),
            store.events_since(3, b"\0", b"\0", true)
        );
    }

    #[test]
    fn restored_store_keeps_writing_like_the_original() {
        let mut store = busy_store();
        let mut restored = Store::restore(store.snapshot());
        put(&mut store, "a", "4");
        put(&mut restored, "a", "4");
        assert_eq!(get(&restored, "a"), get(&store, "a"));
        assert_eq!(get(&restored, "a").unwrap().version, 4);
        assert_eq!(restored.hash_kv(0), store.hash_kv(0));
    }

    #[test]
    fn restore_of_an_empty_snapshot_is_an_empty_store() {
        let store = Store::restore(Store::new().snapshot());
        assert_eq!(
            (store.revision(), store.compact_revision(), store.size_bytes()),
            (1, -1, 0)
        );
    }

    #[test]
    fn size_counts_every_stored_revision() {
        let mut store = Store::new();
        put(&mut store, "ab", "123");
        assert_eq!(store.size_bytes(), 5 + 64);
        put(&mut store, "ab", "1");
        delete(&mut store, "ab");
        assert_eq!(store.size_bytes(), (5 + 64) + (3 + 64) + (2 + 64));
    }
}
