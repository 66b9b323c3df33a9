//! The namespace, service account and root CA publisher controllers end
//! to end.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use client::{Api, Patch};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use serde_json::json;
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_namespaces_get_a_default_service_account_and_the_root_ca() {
    let env = Env::start(&[]).await;
    env.cluster.must(&["create", "namespace", "team"]).await;
    let accounts: Api<ServiceAccount> = env.api("team");
    let configmaps: Api<ConfigMap> = env.api("team");
    let ca = std::fs::read_to_string(env.cluster.pki().join("ca.crt")).unwrap();
    wait_for("default account and root CA", T, || async {
        let sa = accounts.get_opt("default").await.unwrap();
        let cm = configmaps.get_opt("kube-root-ca.crt").await.unwrap();
        (sa.is_some() && cm.is_some_and(|cm| cm.data.unwrap()["ca.crt"] == ca)).then_some(())
    })
    .await;
    // Deleted or tampered with, they come back.
    accounts.delete("default", &Default::default()).await.unwrap();
    configmaps
        .patch("kube-root-ca.crt", &Patch::Merge(json!({"data": {"ca.crt": "forged"}})))
        .await
        .unwrap();
    wait_for("restored", T, || async {
        let sa = accounts.get_opt("default").await.unwrap();
        let cm = configmaps.get("kube-root-ca.crt").await.unwrap();
        (sa.is_some() && cm.data.unwrap()["ca.crt"] == ca).then_some(())
    })
    .await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_everything_in_it_then_the_namespace() {
    let env = Env::start(&["--discovery-period", "1s"]).await;
    let _kubelet = env.fake_kubelet("n1");
    env.cluster.must(&["create", "namespace", "shop"]).await;
    env.apply(
        r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "carts.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "carts", "singular": "cart", "kind": "Cart"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#,
    )
    .await;
    wait_for("the CRD served", T, || async {
        env.cluster.kubectl(&["get", "carts", "-A"], None).await.0.then_some(())
    })
    .await;
    let manifest = r#"
kind: ConfigMap
apiVersion: v1
metadata: {name: settings, namespace: shop}
data: {a: "1"}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: held, namespace: shop, finalizers: [example.com/hold]}}
---
{apiVersion: v1, kind: Secret, metadata: {name: token, namespace: shop}, stringData: {t: x}}
---
{apiVersion: v1, kind: Service, metadata: {name: web, namespace: shop}, spec: {selector: {app: web}, ports: [{port: 80}]}}
---
{apiVersion: example.com/v1, kind: Cart, metadata: {name: c1, namespace: shop}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
"#;
    env.apply(manifest).await;
    wait_for("pods running", T, || async {
        (support::live_pods(&env.client, "shop", "app=web").await.len() == 2).then_some(())
    })
    .await;

    env.cluster.must(&["delete", "namespace", "shop", "--wait=false"]).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let message = wait_for("the finalizer reported", T, || async {
        let ns = namespaces.get("shop").await.unwrap();
        let conditions = ns.status?.conditions?;
        let c = conditions.iter().find(|c| c.type_ == "NamespaceFinalizersRemaining")?;
        (c.status == "True").then(|| c.message.clone().unwrap_or_default())
    })
    .await;
    assert!(message.contains("example.com/hold"), "{message}");
    // Everything but the held ConfigMap is gone already.
    for kind in ["pods", "deployments", "replicasets", "secrets", "services", "carts"] {
        let out = env.cluster.must(&["get", kind, "-n", "shop", "-o", "name"]).await;
        assert!(out.trim().is_empty(), "{kind} left: {out}");
    }
    let cms: Api<ConfigMap> = env.api("shop");
    cms.patch("held", &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    wait_for("the namespace gone", T, || async {
        namespaces.get_opt("shop").await.unwrap().is_none().then_some(())
    })
    .await;
    env.cluster.stop().await;
}
