//! Range: read a key or a key range at a revision, as etcd's `txn.Range` does.
//!
//! etcd's quirks are kept on purpose, since clients depend on them: `count` is
//! the number of keys in the range before `limit` and the revision filters;
//! `limit` is applied before sorting when the order is "default" (including
//! `sort_order` NONE with a non-KEY target, which is then sorted ASCEND); and
//! `keys_only` without a VALUE sort is served from the index (etcd 3.7), so it
//! has no value and no lease.

use std::cmp::Ordering;

use etcd_client::proto::{PbKeyValue, PbRangeRequest, PbRangeResponse};

use super::write::header;
use super::{Error, Store};

/// `RangeRequest.SortOrder` values.
pub(super) const SORT_NONE: i32 = 0;
pub(super) const SORT_ASCEND: i32 = 1;
pub(super) const SORT_DESCEND: i32 = 2;

/// `RangeRequest.SortTarget` values.
pub(super) const SORT_BY_KEY: i32 = 0;
pub(super) const SORT_BY_VERSION: i32 = 1;
pub(super) const SORT_BY_CREATE: i32 = 2;
pub(super) const SORT_BY_MOD: i32 = 3;
pub(super) const SORT_BY_VALUE: i32 = 4;

impl Store {
    /// Range at `req.revision` (0 = latest), as etcd's Range RPC. Response
    /// header left None (its revision is `revision()`).
    pub fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, Error> {
        check_range_request(req)?;
        let resp = self.range_at(req, self.current)?;
        Ok(PbRangeResponse { header: None, ..resp })
    }

    /// etcd's `executeRange` against a view whose latest revision is `current`;
    /// the header carries `current`, as nested txn responses do.
    pub(super) fn range_at(&self, req: &PbRangeRequest, current: i64) -> Result<PbRangeResponse, Error> {
        if req.revision > current {
            return Err(Error::FutureRevision);
        }
        let at = if req.revision <= 0 { current } else { req.revision };
        if at < self.compacted {
            return Err(Error::Compacted);
        }
        let mut resp = PbRangeResponse {
            header: Some(header(current)),
            ..Default::default()
        };
        let live = self.live_range(&req.key, &req.range_end, at);
        if req.count_only {
            resp.count = live.count() as i64;
            return Ok(resp);
        }

        let limit = fetch_limit(req);
        let from_index = req.keys_only && req.sort_target != SORT_BY_VALUE;
        let mut kvs = Vec::new();
        for (rev, record) in live {
            resp.count += 1;
            if limit <= 0 || (kvs.len() as i64) < limit {
                let mut kv = record.to_kv(rev.main);
                if from_index {
                    kv.lease = 0;
                }
                kvs.push(kv);
            }
        }
        filter(&mut kvs, req);
        sort(&mut kvs, req);
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            resp.more = true;
        }
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        resp.kvs = kvs;
        Ok(resp)
    }
}

/// The request checks of etcd's `checkRangeRequest` (v3rpc).
pub(super) fn check_range_request(req: &PbRangeRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if !(SORT_NONE..=SORT_DESCEND).contains(&req.sort_order)
        || !(SORT_BY_KEY..=SORT_BY_VALUE).contains(&req.sort_target)
    {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

/// How many kvs to read from the index (etcd's `rangeLimit`): all when they are
/// re-sorted or filtered, else one more than asked so `more` can be told.
fn fetch_limit(req: &PbRangeRequest) -> i64 {
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    if !is_default_ordering(req.sort_target, req.sort_order) || filtered {
        return 0;
    }
    if req.limit > 0 && req.limit < i64::MAX {
        req.limit + 1
    } else {
        req.limit
    }
}

/// Orders the index already returns: ascending by key.
fn is_default_ordering(target: i32, order: i32) -> bool {
    order == SORT_NONE || (target == SORT_BY_KEY && order == SORT_ASCEND)
}

/// etcd's `filterRangeResults`: zero means no bound.
fn filter(kvs: &mut Vec<PbKeyValue>, req: &PbRangeRequest) {
    kvs.retain(|kv| {
        (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
    });
}

/// etcd's `sortRangeResults`; the sort is stable, so ties stay in key order.
fn sort(kvs: &mut [PbKeyValue], req: &PbRangeRequest) {
    let mut order = req.sort_order;
    if req.sort_target != SORT_BY_KEY && order == SORT_NONE {
        order = SORT_ASCEND;
    }
    if is_default_ordering(req.sort_target, order) {
        return;
    }
    let target = req.sort_target;
    let by_target = |a: &PbKeyValue, b: &PbKeyValue| -> Ordering {
        match target {
            SORT_BY_VERSION => a.version.cmp(&b.version),
            SORT_BY_CREATE => a.create_revision.cmp(&b.create_revision),
            SORT_BY_MOD => a.mod_revision.cmp(&b.mod_revision),
            SORT_BY_VALUE => a.value.cmp(&b.value),
            _ => a.key.cmp(&b.key),
        }
    };
    match order {
        SORT_ASCEND => kvs.sort_by(by_target),
        SORT_DESCEND => kvs.sort_by(|a, b| by_target(b, a)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// a=1 (rev 2), b=22 (3), c=3 (4), then a=4 (5, version 2).
    fn abc() -> Store {
        let mut store = Store::new();
        put(&mut store, "a", "1");
        put(&mut store, "b", "22");
        put(&mut store, "c", "3");
        put(&mut store, "a", "4");
        store
    }

    fn sorted(store: &Store, order: i32, target: i32, limit: i64) -> Vec<String> {
        let req = PbRangeRequest {
            sort_order: order,
            sort_target: target,
            limit,
            ..range_req("a", "\0")
        };
        keys(&store.range(&req).unwrap().kvs)
    }

    #[test]
    fn single_key_and_missing_key() {
        let store = abc();
        let resp = store.range(&range_req("b", "")).unwrap();
        assert_eq!(
            (keys(&resp.kvs), resp.count, resp.more, resp.header),
            (vec!["b".into()], 1, false, None)
        );
        assert_eq!(resp.kvs[0].value, b"22");
        let resp = store.range(&range_req("bb", "")).unwrap();
        assert_eq!((resp.kvs.len(), resp.count), (0, 0));
    }

    #[test]
    fn prefix_and_open_ranges() {
        let mut store = abc();
        put(&mut store, "ab", "x");
        assert_eq!(keys(&store.range(&range_req("a", "b")).unwrap().kvs), ["a", "ab"]);
        assert_eq!(keys(&store.range(&range_req("b", "\0")).unwrap().kvs), ["b", "c"]);
        assert_eq!(
            keys(&store.range(&range_req("\0", "\0")).unwrap().kvs),
            ["a", "ab", "b", "c"]
        );
        assert!(store.range(&range_req("c", "a")).unwrap().kvs.is_empty());
    }

    #[test]
    fn limit_sets_more_and_count_is_the_total() {
        let store = abc();
        let req = PbRangeRequest {
            limit: 2,
            ..range_req("a", "\0")
        };
        let resp = store.range(&req).unwrap();
        assert_eq!(
            (keys(&resp.kvs), resp.more, resp.count),
            (vec!["a".into(), "b".into()], true, 3)
        );
        let resp = store
            .range(&PbRangeRequest {
                limit: 1,
                ..req.clone()
            })
            .unwrap();
        assert_eq!((keys(&resp.kvs), resp.more, resp.count), (vec!["a".into()], true, 3));
        let resp = store.range(&PbRangeRequest { limit: 3, ..req }).unwrap();
        assert_eq!((resp.kvs.len(), resp.more, resp.count), (3, false, 3));
    }

    #[test]
    fn reads_at_an_old_revision_see_old_values_and_deleted_keys() {
        let mut store = abc();
        delete(&mut store, "b");
        let at = |rev| PbRangeRequest {
            revision: rev,
            ..range_req("a", "\0")
        };
        let resp = store.range(&at(4)).unwrap();
        assert_eq!(keys(&resp.kvs), ["a", "b", "c"]);
        assert_eq!(resp.kvs[0].value, b"1");
        assert_eq!(keys(&store.range(&at(2)).unwrap().kvs), ["a"]);
        assert!(store.range(&at(1)).unwrap().kvs.is_empty());
        assert_eq!(keys(&store.range(&at(-3)).unwrap().kvs), ["a", "c"]);
        assert_eq!(store.range(&at(7)), Err(Error::FutureRevision));
    }

    #[test]
    fn reads_below_the_compact_revision_fail() {
        let mut store = abc();
        store.compact(4).unwrap();
        let at = |rev| PbRangeRequest {
            revision: rev,
            ..range_req("a", "\0")
        };
        assert_eq!(store.range(&at(3)), Err(Error::Compacted));
        let resp = store.range(&at(4)).unwrap();
        assert_eq!(keys(&resp.kvs), ["a", "b", "c"]);
        assert_eq!(resp.kvs[0].value, b"1");
    }

    #[test]
    fn sorts_by_each_target_both_ways() {
        let store = abc();
        assert_eq!(sorted(&store, SORT_DESCEND, SORT_BY_KEY, 0), ["c", "b", "a"]);
        assert_eq!(sorted(&store, SORT_ASCEND, SORT_BY_KEY, 0), ["a", "b", "c"]);
        assert_eq!(sorted(&store, SORT_DESCEND, SORT_BY_VERSION, 0), ["a", "b", "c"]);
        assert_eq!(sorted(&store, SORT_ASCEND, SORT_BY_VERSION, 0), ["b", "c", "a"]);
        assert_eq!(sorted(&store, SORT_ASCEND, SORT_BY_CREATE, 0), ["a", "b", "c"]);
        assert_eq!(sorted(&store, SORT_DESCEND, SORT_BY_CREATE, 0), ["c", "b", "a"]);
        assert_eq!(sorted(&store, SORT_ASCEND, SORT_BY_MOD, 0), ["b", "c", "a"]);
        assert_eq!(sorted(&store, SORT_DESCEND, SORT_BY_MOD, 0), ["a", "c", "b"]);
        assert_eq!(sorted(&store, SORT_ASCEND, SORT_BY_VALUE, 0), ["b", "c", "a"]);
        assert_eq!(sorted(&store, SORT_DESCEND, SORT_BY_VALUE, 0), ["a", "c", "b"]);
    }

    #[test]
    fn sort_order_none_with_other_target_means_ascend() {
        let store = abc();
        assert_eq!(sorted(&store, SORT_NONE, SORT_BY_MOD, 0), ["b", "c", "a"]);
        assert_eq!(sorted(&store, SORT_NONE, SORT_BY_VALUE, 0), ["b", "c", "a"]);
    }

    #[test]
    fn sorted_ranges_sort_everything_before_the_limit() {
        let store = abc();
        let req = PbRangeRequest {
            sort_order: SORT_DESCEND,
            sort_target: SORT_BY_KEY,
            limit: 1,
            ..range_req("a", "\0")
        };
        let resp = store.range(&req).unwrap();
        assert_eq!((keys(&resp.kvs), resp.more, resp.count), (vec!["c".into()], true, 3));
    }

    #[test]
    fn sort_order_none_limits_before_sorting_as_etcd_does() {
        // etcd treats NONE as default ordering when choosing how much to read,
        // so only the first `limit + 1` keys by key are sorted.
        let mut store = abc();
        put(&mut store, "d", "0");
        assert_eq!(sorted(&store, SORT_NONE, SORT_BY_VALUE, 2), ["b", "c"]);
        assert_eq!(sorted(&store, SORT_ASCEND, SORT_BY_VALUE, 2), ["d", "b"]);
    }

    #[test]
    fn keys_only_drops_values_and_index_only_reads_drop_leases() {
        let mut store = Store::new();
        put_with_lease(&mut store, "a", "1", 9);
        let req = PbRangeRequest {
            keys_only: true,
            ..range_req("a", "")
        };
        let kv = store.range(&req).unwrap().kvs.remove(0);
        assert_eq!(
            (kv.key, kv.value, kv.lease, kv.version, kv.mod_revision),
            (b"a".to_vec(), vec![], 0, 1, 2)
        );
        let req = PbRangeRequest {
            keys_only: true,
            sort_target: SORT_BY_VALUE,
            ..range_req("a", "")
        };
        let kv = store.range(&req).unwrap().kvs.remove(0);
        assert_eq!((kv.value, kv.lease), (vec![], 9));
    }

    #[test]
    fn count_only_counts_without_kvs_or_filters() {
        let store = abc();
        let req = PbRangeRequest {
            count_only: true,
            min_mod_revision: 5,
            limit: 1,
            ..range_req("a", "\0")
        };
        let resp = store.range(&req).unwrap();
        assert_eq!((resp.kvs.len(), resp.count, resp.more), (0, 3, false));
        let req = PbRangeRequest {
            count_only: true,
            revision: 2,
            ..range_req("a", "\0")
        };
        assert_eq!(store.range(&req).unwrap().count, 1);
    }

    #[test]
    fn revision_filters_prune_kvs_but_not_count() {
        let store = abc();
        let req = |f: fn(&mut PbRangeRequest)| {
            let mut req = range_req("a", "\0");
            f(&mut req);
            store.range(&req).unwrap()
        };
        let resp = req(|r| r.min_mod_revision = 4);
        assert_eq!((keys(&resp.kvs), resp.count), (vec!["a".into(), "c".into()], 3));
        assert_eq!(keys(&req(|r| r.max_mod_revision = 3).kvs), ["b"]);
        assert_eq!(keys(&req(|r| r.min_create_revision = 3).kvs), ["b", "c"]);
        assert_eq!(keys(&req(|r| r.max_create_revision = 3).kvs), ["a", "b"]);
        let resp = req(|r| {
            r.min_create_revision = 3;
            r.limit = 1;
        });
        assert_eq!((keys(&resp.kvs), resp.more, resp.count), (vec!["b".into()], true, 3));
    }

    #[test]
    fn request_checks() {
        let store = abc();
        assert_eq!(store.range(&range_req("", "")), Err(Error::EmptyKey));
        let bad_order = PbRangeRequest {
            sort_order: 3,
            ..range_req("a", "")
        };
        assert_eq!(store.range(&bad_order), Err(Error::InvalidSortOption));
        let bad_target = PbRangeRequest {
            sort_target: 5,
            ..range_req("a", "")
        };
        assert_eq!(store.range(&bad_target), Err(Error::InvalidSortOption));
        let negative = PbRangeRequest {
            sort_target: -1,
            ..range_req("a", "")
        };
        assert_eq!(store.range(&negative), Err(Error::InvalidSortOption));
    }
}
