//! Compaction, and the two readers of raw history: watch replay and HashKV.
//!
//! Compaction is physical and synchronous (etcd schedules it in the
//! background; here apply is already serialized by Raft, and the keyspace is
//! in memory). Like etcd it keeps, per key, the newest change at or below the
//! compact revision, dropping it too if it is a tombstone *below* that
//! revision: a tombstone exactly at it stays, so a watch may still start at
//! the compact revision and see every event of it, as etcd allows.

use etcd_client::proto::{PbEvent, PbKeyValue};

use super::write::record_size;
use super::{in_range, Error, Record, Revision, Store, EVENT_DELETE, EVENT_PUT};

impl Store {
    /// Physical compaction: history older than `rev` is dropped, keeping for
    /// each key the newest version at or below `rev` unless it is a deletion
    /// below `rev`. Compacted when `rev` <= the compact revision,
    /// FutureRevision when `rev` > the current revision.
    pub fn compact(&mut self, rev: i64) -> Result<(), Error> {
        if rev <= self.compacted {
            return Err(Error::Compacted);
        }
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        self.compacted = rev;
        let Store { index, log, bytes, .. } = self;
        index.retain(|_, revs| {
            let newer = revs.partition_point(|r| r.main <= rev);
            let mut keep_from = newer.saturating_sub(1);
            if let Some(newest) = revs.get(keep_from) {
                if newest.main < rev && log.get(newest).is_none_or(|record| record.tombstone) {
                    keep_from = newer;
                }
            }
            for dropped in revs.drain(..keep_from) {
                if let Some(record) = log.remove(&dropped) {
                    *bytes -= record_size(&record);
                }
            }
            !revs.is_empty()
        });
        Ok(())
    }

    /// Watch history replay: every event with revision >= `start_rev` for keys
    /// in etcd's range `[key, range_end)`, in revision order, each with
    /// `prev_kv` filled when asked and still in history. Compacted when
    /// `start_rev` < the compact revision (a watch may start at it, as in etcd).
    /// Scans the log from `start_rev`.
    pub fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        prev_kv: bool,
    ) -> Result<Vec<PbEvent>, Error> {
        if start_rev < self.compacted {
            return Err(Error::Compacted);
        }
        let events = self
            .log
            .range(
                Revision {
                    main: start_rev,
                    sub: 0,
                }..,
            )
            .filter(|(_, record)| in_range(&record.key, key, range_end))
            .map(|(rev, record)| {
                let mut event = event(*rev, record);
                if prev_kv && rev.main > self.compacted {
                    event.prev_kv = self.get(&record.key, rev.main - 1).map(|(r, prev)| prev.to_kv(r.main));
                }
                event
            })
            .collect();
        Ok(events)
    }

    /// Hash of all key-value history up to `rev` (0 = latest) for HashKV, with
    /// the compact revision; identical histories give identical hashes, and
    /// later writes do not change the hash at `rev`. Checks as etcd's
    /// `hashByRev`: Compacted when 0 < `rev` < compact revision, FutureRevision
    /// when `rev` > current.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64), Error> {
        if rev > 0 && rev < self.compacted {
            return Err(Error::Compacted);
        }
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        let at = if rev == 0 { self.current } else { rev };
        let mut hasher = crc32fast::Hasher::new();
        for (r, record) in self.log.range(
            ..Revision {
                main: at.saturating_add(1),
                sub: 0,
            },
        ) {
            hasher.update(&r.main.to_be_bytes());
            hasher.update(&r.sub.to_be_bytes());
            hasher.update(&[u8::from(record.tombstone)]);
            for bytes in [&record.key, &record.value] {
                hasher.update(&(bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
            for number in [record.create_revision, record.version, record.lease] {
                hasher.update(&number.to_be_bytes());
            }
        }
        Ok((hasher.finalize(), self.compacted))
    }
}

/// The watch event for the change stored at `rev`; a DELETE's kv has only the
/// key and the deletion's revision, as etcd sends it.
fn event(rev: Revision, record: &Record) -> PbEvent {
    if record.tombstone {
        let kv = PbKeyValue {
            key: record.key.clone(),
            mod_revision: rev.main,
            ..Default::default()
        };
        PbEvent {
            r#type: EVENT_DELETE,
            kv: Some(kv),
            prev_kv: None,
        }
    } else {
        PbEvent {
            r#type: EVENT_PUT,
            kv: Some(record.to_kv(rev.main)),
            prev_kv: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use etcd_client::proto::PbRangeRequest;

    fn at(rev: i64) -> PbRangeRequest {
        PbRangeRequest {
            revision: rev,
            ..range_req("a", "\0")
        }
    }

    #[test]
    fn compact_checks_the_revision() {
        let mut store = Store::new();
        put(&mut store, "a", "1");
        assert_eq!(store.compact(3), Err(Error::FutureRevision));
        store.compact(2).unwrap();
        assert_eq!(store.compact_revision(), 2);
        assert_eq!(store.compact(2), Err(Error::Compacted));
        assert_eq!(store.compact(1), Err(Error::Compacted));
    }

    #[test]
    fn compact_keeps_what_reads_at_or_after_it_see() {
        let mut store = Store::new();
        put(&mut store, "a", "1"); // 2
        put(&mut store, "a", "2"); // 3
        put(&mut store, "b", "1"); // 4
        put(&mut store, "a", "3"); // 5
        store.compact(4).unwrap();
        assert_eq!(store.range(&at(3)), Err(Error::Compacted));
        let old = store.range(&at(4)).unwrap();
        assert_eq!(keys(&old.kvs), ["a", "b"]);
        assert_eq!(
            (
                old.kvs[0].value.as_slice(),
                old.kvs[0].version,
                old.kvs[0].create_revision
            ),
            (&b"2"[..], 2, 2)
        );
        assert_eq!(get(&store, "a").unwrap().value, b"3");
        assert_eq!(store.log.len(), 3);
    }

    #[test]
    fn compact_drops_deleted_keys_and_their_bytes() {
        let mut store = Store::new();
        put(&mut store, "a", "1"); // 2
        put(&mut store, "b", "1"); // 3
        delete(&mut store, "a"); // 4
        put(&mut store, "c", "1"); // 5
        let before = store.size_bytes();
        store.compact(5).unwrap();
        assert!(!store.index.contains_key(b"a".as_slice()));
        assert!(store.size_bytes() < before);
        assert_eq!(store.size_bytes(), Store::restore(store.snapshot()).size_bytes());
        assert_eq!(keys(&store.range(&at(5)).unwrap().kvs), ["b", "c"]);
        assert_eq!(store.key_count(), 2);
    }

    #[test]
    fn compact_keeps_a_tombstone_at_the_compact_revision_for_watches() {
        let mut store = Store::new();
        put(&mut store, "a", "1"); // 2
        delete(&mut store, "a"); // 3
        store.compact(3).unwrap();
        let events = store.events_since(3, b"a", b"", true).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].r#type, EVENT_DELETE);
        assert_eq!(events[0].prev_kv, None, "prev is below the compact revision");
        put(&mut store, "b", "1"); // 4
        store.compact(4).unwrap();
        assert!(!store.index.contains_key(b"a".as_slice()));
    }

    #[test]
    fn events_since_replays_in_revision_order_within_the_range() {
        let mut store = Store::new();
        put(&mut store, "a", "1"); // 2
        put(&mut store, "b", "1"); // 3
        put(&mut store, "a", "2"); // 4
        delete(&mut store, "a"); // 5
        put(&mut store, "c", "1"); // 6
        let events = store.events_since(3, b"a", b"c", false).unwrap();
        let summary: Vec<(i32, String, i64)> = events
            .iter()
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (e.r#type, String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (EVENT_PUT, "b".into(), 3),
                (EVENT_PUT, "a".into(), 4),
                (EVENT_DELETE, "a".into(), 5)
            ]
        );
        assert!(events.iter().all(|e| e.prev_kv.is_none()));
        let delete_kv = events[2].kv.as_ref().unwrap();
        assert_eq!(
            *delete_kv,
            PbKeyValue {
                key: b"a".to_vec(),
                mod_revision: 5,
                ..Default::default()
            }
        );
        assert_eq!(store.events_since(2, b"\0", b"\0", false).unwrap().len(), 5);
        assert_eq!(store.events_since(6, b"c", b"", false).unwrap().len(), 1);
        assert!(store.events_since(7, b"\0", b"\0", false).unwrap().is_empty());
    }

    #[test]
    fn events_since_fills_prev_kv() {
        let mut store = Store::new();
        put(&mut store, "a", "1"); // 2
        put(&mut store, "a", "2"); // 3
        delete(&mut store, "a"); // 4
        let events = store.events_since(2, b"a", b"", true).unwrap();
        assert_eq!(events[0].prev_kv, None);
        assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"1");
        let prev = events[2].prev_kv.as_ref().unwrap();
        assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"2"[..], 3));
    }

    #[test]
    fn events_since_matches_live_events() {
        let mut store = Store::new();
        let mut live = put(&mut store, "a", "1");
        live.extend(put(&mut store, "a", "2"));
        live.extend(store.delete_keys(&[b"a".to_vec()]));
        assert_eq!(store.events_since(0, b"a", b"", true).unwrap(), live);
    }

    #[test]
    fn events_since_below_the_compact_revision_fails() {
        let mut store = Store::new();
        put(&mut store, "a", "1"); // 2
        put(&mut store, "a", "2"); // 3
        store.compact(3).unwrap();
        assert_eq!(store.events_since(2, b"a", b"", false), Err(Error::Compacted));
        let events = store.events_since(3, b"a", b"", true).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].prev_kv, None);
    }

    #[test]
    fn hash_kv_depends_only_on_history_up_to_rev() {
        let build = |last: &str| {
            let mut store = Store::new();
            put(&mut store, "a", "1");
            delete(&mut store, "a");
            put(&mut store, "b", last);
            store
        };
        let (one, two) = (build("x"), build("x"));
        assert_eq!(one.hash_kv(0), two.hash_kv(0));
        assert_eq!(one.hash_kv(0).unwrap().1, -1);
        let other = build("y");
        assert_ne!(one.hash_kv(0), other.hash_kv(0));
        assert_eq!(one.hash_kv(3), other.hash_kv(3));
        assert_ne!(one.hash_kv(2), one.hash_kv(3));
        assert_eq!(one.hash_kv(5), Err(Error::FutureRevision));
    }

    #[test]
    fn hash_kv_after_compaction() {
        let mut store = Store::new();
        put(&mut store, "a", "1");
        put(&mut store, "a", "2");
        put(&mut store, "a", "3");
        store.compact(3).unwrap();
        assert_eq!(store.hash_kv(2), Err(Error::Compacted));
        assert_eq!(store.hash_kv(3).unwrap().1, 3);
        assert_eq!(store.hash_kv(0).unwrap(), store.hash_kv(4).unwrap());
    }
}
