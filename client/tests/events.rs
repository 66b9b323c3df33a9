//! The event recorder against a real API server: repeats fold into one
//! Event with a count; a different message is a new Event.

#![allow(clippy::unwrap_used)]

mod support;

use client::events::EventRecorder;
use client::{Api, ListParams};
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use support::*;
use testkit::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_events_are_counted_not_duplicated() {
    let cluster = Cluster::start("kubernate").await;
    let client = connect(&cluster);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let subject = cms.create(&configmap("subject", "1")).await.unwrap();
    let recorder = EventRecorder::new(client.clone(), "demo-controller").with_host("node-1");
    for _ in 0..3 {
        recorder
            .record(&subject, "Warning", "FailedSync", "could not sync: boom")
            .await
            .unwrap();
    }
    recorder.record(&subject, "Normal", "Synced", "synced").await.unwrap();

    let events: Api<Event> = Api::namespaced(client, "default");
    let mut list = events.list(&ListParams::default()).await.unwrap().items;
    list.sort_by_key(|e| e.reason.clone());
    assert_eq!(list.len(), 2, "{list:?}");
    let failed = &list[0];
    assert_eq!(failed.reason.as_deref(), Some("FailedSync"));
    assert_eq!(failed.count, Some(3));
    assert!(failed.last_timestamp >= failed.first_timestamp);
    assert_eq!(failed.involved_object.name.as_deref(), Some("subject"));
    assert_eq!(failed.involved_object.uid, subject.metadata.uid);
    assert_eq!(
        failed.source.as_ref().unwrap().component.as_deref(),
        Some("demo-controller")
    );
    assert_eq!(list[1].count, Some(1));

    // kubectl shows it as a person would read it.
    let columns = "custom-columns=REASON:.reason,COUNT:.count,MESSAGE:.message";
    let shown = cluster.must(&["get", "events", "-n", "default", "-o", columns]).await;
    assert!(shown.contains("FailedSync   3       could not sync: boom"), "{shown}");
    cluster.stop().await;
}
