//! Helm 4 against the API server: install, upgrade with a changed value,
//! rollback and uninstall of the chart in tests/charts/demo. Helm 4 writes
//! every chart object with server-side apply and keeps its releases in
//! Secrets written with protobuf, so this exercises both. Helm comes from
//! scripts/install-helm.sh (run by .ci/run).

#![allow(clippy::unwrap_used)]

use std::process::Stdio;

use testkit::Cluster;

/// Runs helm (bounded by 60 s) against the cluster; (success, stdout+stderr).
async fn helm(c: &Cluster, args: &[&str]) -> (bool, String) {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/charts/demo");
    let args: Vec<&str> = args.iter().map(|a| if *a == "CHART" { chart } else { a }).collect();
    let out = tokio::process::Command::new("timeout")
        .args(["-k", "5", "60", "helm", "--kube-apiserver", &c.server])
        .args(&args)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_CACHE_HOME", c.dir.path().join("helm-cache"))
        .env("HELM_CONFIG_HOME", c.dir.path().join("helm-config"))
        .env("HELM_DATA_HOME", c.dir.path().join("helm-data"))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("helm 4 (scripts/install-helm.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn must_helm(c: &Cluster, args: &[&str]) -> String {
    let (ok, out) = helm(c, args).await;
    assert!(ok, "helm {args:?} failed:\n{out}");
    out
}

async fn color(c: &Cluster) -> String {
    c.must(&[
        "get",
        "configmap",
        "demo-settings",
        "-n",
        "apps",
        "-o",
        "jsonpath={.data.color}",
    ])
    .await
}

async fn helm_lifecycle(kind: &str) {
    let c = Cluster::start(kind).await;
    let out = must_helm(
        &c,
        &[
            "install",
            "demo",
            "CHART",
            "-n",
            "apps",
            "--create-namespace",
            "--wait=false",
        ],
    )
    .await;
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_eq!(color(&c).await, "blue");
    for object in ["deployment/demo-web", "service/demo-web", "serviceaccount/demo-robot"] {
        c.must(&["get", object, "-n", "apps"]).await;
    }
    // The chart's objects are owned by helm's field manager.
    let managers = c
        .must(&[
            "get",
            "configmap",
            "demo-settings",
            "-n",
            "apps",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert!(managers.contains("helm"), "{managers}");

    must_helm(
        &c,
        &[
            "upgrade",
            "demo",
            "CHART",
            "-n",
            "apps",
            "--set",
            "color=green",
            "--set",
            "replicas=2",
        ],
    )
    .await;
    assert_eq!(color(&c).await, "green");
    let replicas = c
        .must(&[
            "get",
            "deployment",
            "demo-web",
            "-n",
            "apps",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "2");
    let history = must_helm(&c, &["history", "demo", "-n", "apps"]).await;
    assert!(history.contains("Upgrade complete"), "{history}");

    must_helm(&c, &["rollback", "demo", "1", "-n", "apps"]).await;
    assert_eq!(color(&c).await, "blue");
    let list = must_helm(&c, &["list", "-n", "apps"]).await;
    assert!(list.contains("demo") && list.contains("deployed"), "{list}");

    must_helm(&c, &["uninstall", "demo", "-n", "apps"]).await;
    let (ok, _, err) = c
        .kubectl(&["get", "configmap", "demo-settings", "-n", "apps"], None)
        .await;
    assert!(!ok && err.contains("not found"), "{err}");
    let secrets = c.must(&["get", "secrets", "-n", "apps", "-o", "name"]).await;
    assert!(!secrets.contains("sh.helm.release"), "release records gone: {secrets}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_rollback_uninstall_on_our_store() {
    helm_lifecycle("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_rollback_uninstall_on_etcd() {
    helm_lifecycle("etcd").await;
}
