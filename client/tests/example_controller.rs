//! The example controller in `client/examples` (the one docs/client.md
//! walks through) runs as a real process against a real API server and
//! does its job.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};

use client::{Api, Patch};
use k8s_openapi::api::core::v1::ConfigMap;
use support::*;
use testkit::{ChildGuard, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_controller_keeps_the_annotation_up_to_date() {
    let cluster = Cluster::start("kubernate").await;
    let example = env!("CARGO_BIN_EXE_data-keys-controller");
    let log = std::fs::File::create(cluster.dir.path().join("controller.log")).unwrap();
    let _controller = ChildGuard(
        Command::new(example)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["--server", &cluster.server])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let api: Api<ConfigMap> = Api::namespaced(connect(&cluster), "default");
    let mut cm = configmap("settings", "1");
    cm.data.as_mut().unwrap().insert("color".into(), "blue".into());
    api.create(&cm).await.unwrap();
    let annotation = |c: &ConfigMap| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("example.kubernate.io/data-keys").cloned())
    };
    eventually("the controller annotates the configmap", || async {
        annotation(&api.get("settings").await.unwrap()).as_deref() == Some("color,v")
    })
    .await;
    api.patch(
        "settings",
        &Patch::Merge(serde_json::json!({"data": {"size": "L", "v": null}})),
    )
    .await
    .unwrap();
    eventually("the annotation follows the data", || async {
        annotation(&api.get("settings").await.unwrap()).as_deref() == Some("color,size")
    })
    .await;
    let events = cluster
        .must(&["get", "events", "-o", "jsonpath={.items[*].reason}"])
        .await;
    assert!(events.contains("DataKeysUpdated"), "{events}");
    let holder = cluster
        .must(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "data-keys-controller",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .await;
    assert!(holder.starts_with("data-keys-"), "{holder}");
    cluster.stop().await;
}
