//! Put, DeleteRange, lease deletes and the write batch.

use super::super::testutil::*;
use super::*;

#[test]
fn put_creates_then_increments_version() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let kv = get(&store, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    assert_eq!(store.revision(), 2);
    put(&mut store, "a", "2");
    let kv = get(&store, "a").unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.value),
        (2, 3, 2, b"2".to_vec())
    );
    assert_eq!(store.revision(), 3);
}

#[test]
fn put_after_delete_starts_a_new_life() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    delete(&mut store, "a");
    put(&mut store, "a", "3");
    let kv = get(&store, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn put_returns_prev_kv_only_when_asked_and_present() {
    let mut store = Store::new();
    let req = PbPutRequest {
        prev_kv: true,
        ..put_req("a", "1")
    };
    let (resp, _) = store.put(&req, &no_lease).unwrap();
    assert_eq!(resp.prev_kv, None);
    assert_eq!(resp.header, None);
    let (resp, _) = store
        .put(
            &PbPutRequest {
                value: b"2".to_vec(),
                ..req.clone()
            },
            &no_lease,
        )
        .unwrap();
    let prev = resp.prev_kv.unwrap();
    assert_eq!((prev.value, prev.mod_revision, prev.version), (b"1".to_vec(), 2, 1));
    let (resp, _) = store.put(&put_req("a", "3"), &no_lease).unwrap();
    assert_eq!(resp.prev_kv, None);
}

#[test]
fn put_event_carries_kv_and_prev_kv() {
    let mut store = Store::new();
    let events = put(&mut store, "a", "1");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].r#type, EVENT_PUT);
    assert_eq!(events[0].kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[0].prev_kv, None);
    let events = put(&mut store, "a", "2");
    assert_eq!(events[0].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[0].kv.as_ref().unwrap().mod_revision, 3);
}

#[test]
fn ignore_value_keeps_value_and_ignore_lease_keeps_lease() {
    let mut store = Store::new();
    put_with_lease(&mut store, "a", "1", 5);
    let req = PbPutRequest {
        key: b"a".to_vec(),
        ignore_value: true,
        lease: 6,
        ..Default::default()
    };
    store.put(&req, &any_lease).unwrap();
    let kv = get(&store, "a").unwrap();
    assert_eq!((kv.value, kv.lease, kv.version), (b"1".to_vec(), 6, 2));
    let req = PbPutRequest {
        ignore_lease: true,
        ..put_req("a", "2")
    };
    store.put(&req, &any_lease).unwrap();
    let kv = get(&store, "a").unwrap();
    assert_eq!((kv.value, kv.lease), (b"2".to_vec(), 6));
}

#[test]
fn put_checks_fail_without_changing_anything() {
    let mut store = Store::new();
    let ignore_value = PbPutRequest {
        key: b"a".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(store.put(&ignore_value, &no_lease), Err(Error::KeyNotFound));
    let ignore_lease = PbPutRequest {
        ignore_lease: true,
        ..put_req("a", "1")
    };
    assert_eq!(store.put(&ignore_lease, &no_lease), Err(Error::KeyNotFound));
    assert_eq!(store.put(&put_req("", "1"), &no_lease), Err(Error::EmptyKey));
    let value_given = PbPutRequest {
        ignore_value: true,
        ..put_req("a", "1")
    };
    assert_eq!(store.put(&value_given, &no_lease), Err(Error::ValueProvided));
    let lease_given = PbPutRequest {
        ignore_lease: true,
        lease: 3,
        ..put_req("a", "1")
    };
    assert_eq!(store.put(&lease_given, &any_lease), Err(Error::LeaseProvided));
    let no_such_lease = PbPutRequest {
        lease: 3,
        ..put_req("a", "1")
    };
    assert_eq!(store.put(&no_such_lease, &no_lease), Err(Error::LeaseNotFound));
    assert_eq!(store.revision(), 1);
    assert_eq!(store.size_bytes(), 0);
    assert_eq!(get(&store, "a"), None);
}

#[test]
fn put_with_granted_lease_attaches_it() {
    let mut store = Store::new();
    let req = PbPutRequest {
        lease: 3,
        ..put_req("a", "1")
    };
    store.put(&req, &|id| id == 3).unwrap();
    assert_eq!(get(&store, "a").unwrap().lease, 3);
}

#[test]
fn delete_range_deletes_live_keys_at_one_revision() {
    let mut store = Store::new();
    for key in ["a", "b", "c", "d"] {
        put(&mut store, key, "v");
    }
    delete(&mut store, "c");
    let req = PbDeleteRequest {
        prev_kv: true,
        ..delete_req("b", "\0")
    };
    let (resp, events) = store.delete_range(&req).unwrap();
    assert_eq!(resp.deleted, 2);
    assert_eq!(keys(&resp.prev_kvs), ["b", "d"]);
    assert_eq!(resp.header, None);
    assert_eq!(store.revision(), 7);
    assert_eq!(events.len(), 2);
    for (event, key) in events.iter().zip(["b", "d"]) {
        assert_eq!(event.r#type, EVENT_DELETE);
        let expected = PbKeyValue {
            key: key.into(),
            mod_revision: 7,
            ..Default::default()
        };
        assert_eq!(event.kv.as_ref(), Some(&expected));
        assert_eq!(event.prev_kv.as_ref().unwrap().key, key.as_bytes());
    }
    assert_eq!(get(&store, "a").unwrap().value, b"v");
}

#[test]
fn delete_range_without_prev_kv_returns_none_and_respects_range_end() {
    let mut store = Store::new();
    for key in ["a", "ab", "b"] {
        put(&mut store, key, "v");
    }
    let (resp, _) = store.delete_range(&delete_req("a", "b")).unwrap();
    assert_eq!(resp.deleted, 2);
    assert!(resp.prev_kvs.is_empty());
    assert!(get(&store, "b").is_some());
    let (resp, _) = store.delete_range(&delete_req("b", "")).unwrap();
    assert_eq!(resp.deleted, 1);
}

#[test]
fn delete_of_nothing_does_not_bump_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "v");
    let (resp, events) = store.delete_range(&delete_req("b", "")).unwrap();
    assert_eq!((resp.deleted, events.len(), store.revision()), (0, 0, 2));
    assert_eq!(store.delete_range(&delete_req("", "")), Err(Error::EmptyKey));
}

#[test]
fn delete_keys_deletes_existing_keys_in_key_order_at_one_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "v");
    put(&mut store, "b", "v");
    let events = store.delete_keys(&[b"b".to_vec(), b"x".to_vec(), b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kv.as_ref().unwrap().key, b"a");
    assert_eq!(events[1].kv.as_ref().unwrap().key, b"b");
    assert_eq!(store.revision(), 4);
    assert!(store.delete_keys(&[b"a".to_vec()]).is_empty());
    assert_eq!(store.revision(), 4);
}

#[test]
fn rollback_restores_the_previous_state() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let before = store.snapshot();
    let mut batch = Batch::default();
    store.apply_put(&mut batch, &put_req("a", "2")).unwrap();
    store.apply_put(&mut batch, &put_req("b", "2")).unwrap();
    store.apply_delete(&mut batch, &delete_req("a", ""));
    assert_eq!(store.read_revision(&batch), 3);
    store.rollback(batch);
    assert_eq!(store.snapshot(), before);
    assert_eq!(store.size_bytes(), Store::restore(before).size_bytes());
}
