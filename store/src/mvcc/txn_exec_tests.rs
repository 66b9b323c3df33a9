//! Txn execution: revisions, reads of own writes, nested txns, duplicate keys, all-or-nothing.

use etcd_client::proto::PbRangeRequest;

use super::super::super::testutil::*;
use super::super::super::{Revision, EVENT_DELETE, EVENT_PUT};
use super::super::*;
use super::*;

#[test]
fn a_write_txn_bumps_the_revision_once_with_sub_revisions() {
    let mut store = ab();
    let (resp, events) = store
        .txn(
            &when(
                vec![],
                vec![put_op("x", "1"), delete_op("a", ""), put_op("y", "1")],
                vec![],
            ),
            &no_lease,
        )
        .unwrap();
    assert_eq!(store.revision(), 4);
    assert_eq!(resp.responses.len(), 3);
    let types: Vec<i32> = events.iter().map(|e| e.r#type).collect();
    assert_eq!(types, [EVENT_PUT, EVENT_DELETE, EVENT_PUT]);
    assert!(events.iter().all(|e| e.kv.as_ref().unwrap().mod_revision == 4));
    let subs: Vec<i64> = store
        .log
        .range(Revision { main: 4, sub: 0 }..)
        .map(|(r, _)| r.sub)
        .collect();
    assert_eq!(subs, [0, 1, 2]);
    assert_eq!(get(&store, "y").unwrap().create_revision, 4);
}

#[test]
fn read_only_txns_and_deletes_of_nothing_do_not_bump() {
    let mut store = ab();
    let resp = run(&mut store, &when(vec![], vec![range_op("a", "")], vec![]));
    assert_eq!(store.revision(), 3);
    assert_eq!(range_response(&resp.responses[0]).kvs.len(), 1);
    let (_, events) = store
        .txn(&when(vec![], vec![delete_op("zz", "")], vec![]), &no_lease)
        .unwrap();
    assert!(events.is_empty());
    assert_eq!(store.revision(), 3);
    run(&mut store, &when(vec![], vec![], vec![]));
    assert_eq!(store.revision(), 3);
}

#[test]
fn reads_inside_a_txn_see_its_earlier_writes() {
    let mut store = ab();
    let resp = run(
        &mut store,
        &when(
            vec![],
            vec![
                range_op("a", ""),
                put_op("a", "new"),
                range_op("a", "c"),
                delete_op("b", ""),
                range_op("\0", "\0"),
            ],
            vec![],
        ),
    );
    let before = range_response(&resp.responses[0]);
    assert_eq!(
        (before.kvs[0].value.as_slice(), before.header.as_ref().unwrap().revision),
        (&b"1"[..], 3)
    );
    let after = range_response(&resp.responses[2]);
    assert_eq!(after.kvs[0].value, b"new");
    assert_eq!((after.count, after.header.as_ref().unwrap().revision), (2, 4));
    assert_eq!(keys(&range_response(&resp.responses[4]).kvs), ["a"]);
}

#[test]
fn op_responses_match_their_requests() {
    let mut store = ab();
    let put_prev = op(PbTxnOpRequest::RequestPut(PbPutRequest {
        prev_kv: true,
        ..put_req("a", "2")
    }));
    let del_prev = op(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
        prev_kv: true,
        ..delete_req("b", "")
    }));
    let resp = run(
        &mut store,
        &when(vec![], vec![put_prev, del_prev, delete_op("q", "")], vec![]),
    );
    match &resp.responses[0].response {
        Some(PbTxnOpResponse::ResponsePut(p)) => {
            assert_eq!(p.prev_kv.as_ref().unwrap().value, b"1");
            assert_eq!(p.header.as_ref().unwrap().revision, 4);
        }
        other => panic!("{other:?}"),
    }
    match &resp.responses[1].response {
        Some(PbTxnOpResponse::ResponseDeleteRange(d)) => {
            assert_eq!((d.deleted, keys(&d.prev_kvs)), (1, vec!["b".into()]))
        }
        other => panic!("{other:?}"),
    }
    match &resp.responses[2].response {
        Some(PbTxnOpResponse::ResponseDeleteRange(d)) => {
            assert_eq!((d.deleted, d.header.as_ref().unwrap().revision), (0, 4))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nested_txns_choose_their_branch_on_the_state_before_the_txn() {
    let mut store = ab();
    let a_is_1 = cmp(
        "a",
        PbCompareTarget::Value,
        COMPARE_EQUAL,
        PbTargetUnion::Value("1".into()),
    );
    let inner = when(
        vec![a_is_1.clone()],
        vec![put_op("inner", "then"), range_op("a", "")],
        vec![put_op("inner", "else")],
    );
    let outer = when(vec![a_is_1], vec![put_op("a", "2"), txn_op(inner)], vec![]);
    let (resp, events) = store.txn(&outer, &no_lease).unwrap();
    assert!(resp.succeeded);
    assert_eq!(get(&store, "inner").unwrap().value, b"then");
    assert_eq!(events.len(), 2);
    assert_eq!(store.revision(), 4);
    let Some(PbTxnOpResponse::ResponseTxn(nested)) = &resp.responses[1].response else {
        panic!("not a txn response")
    };
    assert!(nested.succeeded);
    assert_eq!(nested.header.as_ref().map(|h| h.revision), Some(0));
    assert_eq!(range_response(&nested.responses[1]).kvs[0].value, b"2");
}

#[test]
fn nested_failure_branch_runs_when_its_compares_fail() {
    let mut store = ab();
    let never = cmp(
        "a",
        PbCompareTarget::Version,
        COMPARE_GREATER,
        PbTargetUnion::Version(5),
    );
    let inner = when(
        vec![never],
        vec![put_op("x", "then")],
        vec![
            put_op("x", "else"),
            txn_op(when(vec![], vec![put_op("y", "deep")], vec![])),
        ],
    );
    let resp = run(&mut store, &when(vec![], vec![txn_op(inner)], vec![]));
    let Some(PbTxnOpResponse::ResponseTxn(nested)) = &resp.responses[0].response else {
        panic!("not a txn response")
    };
    assert!(!nested.succeeded);
    assert_eq!(get(&store, "x").unwrap().value, b"else");
    assert_eq!(get(&store, "y").unwrap().value, b"deep");
    assert_eq!(
        get(&store, "y").unwrap().mod_revision,
        get(&store, "x").unwrap().mod_revision
    );
}

#[test]
fn duplicate_writes_are_rejected_before_anything_changes() {
    let mut store = ab();
    let dup = |success: Vec<PbTxnRequestOp>| when(vec![], success, vec![]);
    let cases = [
        dup(vec![put_op("x", "1"), put_op("x", "2")]),
        dup(vec![put_op("a", "1"), delete_op("a", "")]),
        dup(vec![delete_op("a", "c"), put_op("b", "1")]),
        dup(vec![
            put_op("x", "1"),
            txn_op(when(vec![], vec![put_op("x", "2")], vec![])),
        ]),
        dup(vec![
            delete_op("x", ""),
            txn_op(when(vec![], vec![], vec![put_op("x", "2")])),
        ]),
        dup(vec![
            txn_op(when(vec![], vec![delete_op("x", "")], vec![])),
            txn_op(when(vec![], vec![put_op("x", "2")], vec![])),
        ]),
        when(vec![], vec![], vec![put_op("x", "1"), put_op("x", "2")]),
    ];
    for req in cases {
        assert_eq!(store.txn(&req, &no_lease), Err(Error::DuplicateKey), "{req:?}");
    }
    assert_eq!(store.revision(), 3);
}

#[test]
fn writes_etcd_does_not_count_as_duplicates() {
    let mut store = ab();
    let allowed = [
        when(vec![], vec![put_op("x", "1")], vec![put_op("x", "2")]),
        when(vec![], vec![delete_op("a", "c"), delete_op("a", "")], vec![]),
        when(
            vec![],
            vec![txn_op(when(vec![], vec![put_op("x", "1")], vec![put_op("x", "2")]))],
            vec![],
        ),
        when(
            vec![],
            vec![
                delete_op("a", ""),
                txn_op(when(vec![], vec![delete_op("a", "")], vec![])),
            ],
            vec![],
        ),
        // etcd's affine intervals do not treat "\0" as open-ended here.
        when(vec![], vec![delete_op("a", "\0"), put_op("b", "1")], vec![]),
    ];
    for req in allowed {
        assert!(store.txn(&req, &no_lease).is_ok(), "{req:?}");
    }
}

#[test]
fn a_failing_op_leaves_the_store_unchanged() {
    let mut store = ab();
    let before = store.snapshot();
    let lease = op(PbTxnOpRequest::RequestPut(PbPutRequest {
        lease: 9,
        ..put_req("y", "1")
    }));
    let ignore = op(PbTxnOpRequest::RequestPut(PbPutRequest {
        key: b"zz".to_vec(),
        ignore_value: true,
        ..Default::default()
    }));
    let future = op(PbTxnOpRequest::RequestRange(PbRangeRequest {
        revision: 4,
        ..range_req("a", "")
    }));
    let nested_bad = txn_op(when(vec![], vec![put_op("q", "1"), lease.clone()], vec![]));
    let cases = [
        (vec![put_op("x", "1"), lease], Error::LeaseNotFound),
        (vec![put_op("x", "1"), ignore], Error::KeyNotFound),
        (vec![put_op("x", "1"), future], Error::FutureRevision),
        (vec![put_op("x", "1"), nested_bad], Error::LeaseNotFound),
    ];
    for (success, err) in cases {
        assert_eq!(store.txn(&when(vec![], success, vec![]), &no_lease), Err(err));
        assert_eq!(store.snapshot(), before);
    }
}

#[test]
fn ops_on_the_branch_not_taken_are_not_state_checked() {
    let mut store = ab();
    let lease = op(PbTxnOpRequest::RequestPut(PbPutRequest {
        lease: 9,
        ..put_req("y", "1")
    }));
    let resp = run(&mut store, &when(vec![], vec![put_op("x", "1")], vec![lease]));
    assert!(resp.succeeded);
}

#[test]
fn ranges_in_a_txn_check_revisions_against_the_state_before_it() {
    let mut store = ab();
    store.compact(2).unwrap();
    let at = |rev| {
        op(PbTxnOpRequest::RequestRange(PbRangeRequest {
            revision: rev,
            ..range_req("a", "")
        }))
    };
    assert_eq!(
        store.txn(&when(vec![], vec![at(1)], vec![]), &no_lease),
        Err(Error::Compacted)
    );
    assert_eq!(
        store.txn(&when(vec![], vec![put_op("x", "1"), at(4)], vec![]), &no_lease),
        Err(Error::FutureRevision)
    );
    let resp = run(&mut store, &when(vec![], vec![at(2)], vec![]));
    assert_eq!(range_response(&resp.responses[0]).kvs.len(), 1);
}

#[test]
fn request_checks_reach_nested_ops_and_both_branches() {
    let mut store = ab();
    let empty_compare = when(
        vec![cmp(
            "",
            PbCompareTarget::Version,
            COMPARE_EQUAL,
            PbTargetUnion::Version(0),
        )],
        vec![],
        vec![],
    );
    assert_eq!(store.txn(&empty_compare, &no_lease), Err(Error::EmptyKey));
    let empty_op = when(vec![], vec![], vec![PbTxnRequestOp { request: None }]);
    assert_eq!(store.txn(&empty_op, &no_lease), Err(Error::KeyNotFound));
    let nested = when(
        vec![],
        vec![txn_op(when(vec![], vec![], vec![delete_op("", "")]))],
        vec![],
    );
    assert_eq!(store.txn(&nested, &no_lease), Err(Error::EmptyKey));
    let value = op(PbTxnOpRequest::RequestPut(PbPutRequest {
        ignore_value: true,
        ..put_req("a", "1")
    }));
    assert_eq!(
        store.txn(&when(vec![], vec![], vec![value]), &no_lease),
        Err(Error::ValueProvided)
    );
    let sort = op(PbTxnOpRequest::RequestRange(PbRangeRequest {
        sort_order: 9,
        ..range_req("a", "")
    }));
    assert_eq!(
        store.txn(&when(vec![], vec![sort], vec![]), &no_lease),
        Err(Error::InvalidSortOption)
    );
    assert_eq!(store.revision(), 3);
}

#[test]
fn txn_put_with_ignore_flags_and_leases() {
    let mut store = Store::new();
    put_with_lease(&mut store, "a", "1", 5);
    let keep = op(PbTxnOpRequest::RequestPut(PbPutRequest {
        key: b"a".to_vec(),
        ignore_value: true,
        ignore_lease: true,
        ..Default::default()
    }));
    store.txn(&when(vec![], vec![keep], vec![]), &no_lease).unwrap();
    let kv = get(&store, "a").unwrap();
    assert_eq!((kv.value, kv.lease, kv.version), (b"1".to_vec(), 5, 2));
    let leased = op(PbTxnOpRequest::RequestPut(PbPutRequest {
        lease: 6,
        ..put_req("b", "1")
    }));
    store.txn(&when(vec![], vec![leased], vec![]), &|id| id == 6).unwrap();
    assert_eq!(store.keys_with_lease(6), vec![b"b".to_vec()]);
}
