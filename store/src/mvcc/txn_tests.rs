//! Txn compares and the helpers the txn tests share.

use etcd_client::proto::PbRangeResponse;

use super::super::testutil::*;
use super::*;

fn op(request: PbTxnOpRequest) -> PbTxnRequestOp {
    PbTxnRequestOp { request: Some(request) }
}

fn put_op(key: &str, value: &str) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestPut(put_req(key, value)))
}

fn range_op(key: &str, range_end: &str) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestRange(range_req(key, range_end)))
}

fn delete_op(key: &str, range_end: &str) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestDeleteRange(delete_req(key, range_end)))
}

fn txn_op(req: PbTxnRequest) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestTxn(req))
}

fn cmp(key: &str, target: PbCompareTarget, result: i32, union: PbTargetUnion) -> PbCompare {
    PbCompare {
        result,
        target: target as i32,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

fn when(compare: Vec<PbCompare>, success: Vec<PbTxnRequestOp>, failure: Vec<PbTxnRequestOp>) -> PbTxnRequest {
    PbTxnRequest {
        compare,
        success,
        failure,
    }
}

fn run(store: &mut Store, req: &PbTxnRequest) -> PbTxnResponse {
    store.txn(req, &no_lease).expect("txn").0
}

/// Whether the txn with this single compare succeeds.
fn holds(store: &mut Store, compare: PbCompare) -> bool {
    run(store, &when(vec![compare], vec![], vec![])).succeeded
}

fn range_response(resp: &PbResponseOp) -> &PbRangeResponse {
    match &resp.response {
        Some(PbTxnOpResponse::ResponseRange(r)) => r,
        other => panic!("not a range response: {other:?}"),
    }
}

/// a=1 at 2 (lease 0), b=2 at 3.
fn ab() -> Store {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    store
}

#[test]
fn compares_choose_the_branch() {
    let mut store = ab();
    let value_is = |v: &str| {
        cmp(
            "a",
            PbCompareTarget::Value,
            COMPARE_EQUAL,
            PbTargetUnion::Value(v.into()),
        )
    };
    let resp = run(
        &mut store,
        &when(
            vec![value_is("1")],
            vec![put_op("x", "then")],
            vec![put_op("x", "else")],
        ),
    );
    assert!(resp.succeeded);
    assert_eq!(resp.header, None);
    assert_eq!(get(&store, "x").unwrap().value, b"then");
    let resp = run(
        &mut store,
        &when(
            vec![value_is("9")],
            vec![put_op("x", "then")],
            vec![put_op("x", "else")],
        ),
    );
    assert!(!resp.succeeded);
    assert_eq!(get(&store, "x").unwrap().value, b"else");
}

#[test]
fn all_compares_must_hold() {
    let mut store = ab();
    let ok = cmp("a", PbCompareTarget::Version, COMPARE_EQUAL, PbTargetUnion::Version(1));
    let bad = cmp("b", PbCompareTarget::Version, COMPARE_EQUAL, PbTargetUnion::Version(2));
    assert!(run(&mut store, &when(vec![ok.clone(), ok.clone()], vec![], vec![])).succeeded);
    assert!(!run(&mut store, &when(vec![ok, bad], vec![], vec![])).succeeded);
}

#[test]
fn compare_results_on_every_target() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put_with_lease(&mut store, "a", "5", 7); // 3: create 2, mod 3, version 2, lease 7
    let cases: Vec<(PbCompareTarget, PbTargetUnion, PbTargetUnion, PbTargetUnion)> = vec![
        (
            PbCompareTarget::Value,
            PbTargetUnion::Value("5".into()),
            PbTargetUnion::Value("4".into()),
            PbTargetUnion::Value("6".into()),
        ),
        (
            PbCompareTarget::Version,
            PbTargetUnion::Version(2),
            PbTargetUnion::Version(1),
            PbTargetUnion::Version(3),
        ),
        (
            PbCompareTarget::Create,
            PbTargetUnion::CreateRevision(2),
            PbTargetUnion::CreateRevision(1),
            PbTargetUnion::CreateRevision(3),
        ),
        (
            PbCompareTarget::Mod,
            PbTargetUnion::ModRevision(3),
            PbTargetUnion::ModRevision(2),
            PbTargetUnion::ModRevision(4),
        ),
        (
            PbCompareTarget::Lease,
            PbTargetUnion::Lease(7),
            PbTargetUnion::Lease(6),
            PbTargetUnion::Lease(8),
        ),
    ];
    for (target, equal, below, above) in cases {
        let check =
            |store: &mut Store, result, union: &PbTargetUnion| holds(store, cmp("a", target, result, union.clone()));
        assert!(check(&mut store, COMPARE_EQUAL, &equal), "{target:?} equal");
        assert!(!check(&mut store, COMPARE_EQUAL, &below), "{target:?} equal");
        assert!(check(&mut store, COMPARE_NOT_EQUAL, &below), "{target:?} not equal");
        assert!(!check(&mut store, COMPARE_NOT_EQUAL, &equal), "{target:?} not equal");
        assert!(check(&mut store, COMPARE_GREATER, &below), "{target:?} greater");
        assert!(!check(&mut store, COMPARE_GREATER, &equal), "{target:?} greater");
        assert!(check(&mut store, COMPARE_LESS, &above), "{target:?} less");
        assert!(!check(&mut store, COMPARE_LESS, &equal), "{target:?} less");
    }
}

#[test]
fn compares_on_a_missing_key_see_zeros_but_value_always_fails() {
    let mut store = ab();
    assert!(holds(
        &mut store,
        cmp(
            "z",
            PbCompareTarget::Create,
            COMPARE_EQUAL,
            PbTargetUnion::CreateRevision(0)
        )
    ));
    assert!(holds(
        &mut store,
        cmp("z", PbCompareTarget::Version, COMPARE_EQUAL, PbTargetUnion::Version(0))
    ));
    assert!(holds(
        &mut store,
        cmp("z", PbCompareTarget::Mod, COMPARE_LESS, PbTargetUnion::ModRevision(1))
    ));
    assert!(!holds(
        &mut store,
        cmp("z", PbCompareTarget::Value, COMPARE_EQUAL, PbTargetUnion::Value(vec![]))
    ));
    assert!(!holds(
        &mut store,
        cmp(
            "z",
            PbCompareTarget::Value,
            COMPARE_NOT_EQUAL,
            PbTargetUnion::Value("x".into())
        )
    ));
}

#[test]
fn a_target_union_of_another_kind_compares_as_zero() {
    let mut store = ab();
    assert!(holds(
        &mut store,
        cmp("a", PbCompareTarget::Mod, COMPARE_GREATER, PbTargetUnion::Version(99))
    ));
    assert!(holds(
        &mut store,
        cmp("a", PbCompareTarget::Value, COMPARE_GREATER, PbTargetUnion::Version(1))
    ));
}

#[test]
fn range_compares_need_every_key_to_pass() {
    let mut store = ab();
    let mut over = |end: &str, result, rev| {
        let c = PbCompare {
            range_end: end.into(),
            ..cmp("a", PbCompareTarget::Mod, result, PbTargetUnion::ModRevision(rev))
        };
        holds(&mut store, c)
    };
    assert!(over("c", COMPARE_GREATER, 1));
    assert!(!over("c", COMPARE_GREATER, 2));
    assert!(over("b", COMPARE_GREATER, 1));
    assert!(!over("b", COMPARE_GREATER, 2));
    assert!(over("\0", COMPARE_LESS, 4));
    assert!(!over("\0", COMPARE_LESS, 3));
}

#[test]
fn range_compare_on_an_empty_range_compares_zero() {
    let mut store = ab();
    let c = PbCompare {
        range_end: "y".into(),
        ..cmp(
            "x",
            PbCompareTarget::Create,
            COMPARE_EQUAL,
            PbTargetUnion::CreateRevision(0),
        )
    };
    assert!(holds(&mut store, c));
}

#[path = "txn_exec_tests.rs"]
mod exec;
