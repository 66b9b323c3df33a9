//! The Endpoints and EndpointSlice controllers end to end: addresses
//! follow pods' readiness, named ports resolve per pod, selector-less
//! Services are left alone, and everything goes with the Service.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use client::{Api, ListParams};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use support::{live_pods, set_ready, wait_for, Env};

const T: Duration = Duration::from_secs(60);

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, labels: {tier: front}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

/// (ready IPs, not-ready IPs) of the Endpoints, sorted.
async fn endpoint_ips(api: &Api<Endpoints>) -> Option<(Vec<String>, Vec<String>)> {
    let e = api.get_opt("web").await.unwrap()?;
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    for subset in e.subsets.unwrap_or_default() {
        let ports: Vec<i32> = subset.ports.unwrap_or_default().iter().map(|p| p.port).collect();
        assert_eq!(
            ports,
            vec![8080],
            "the named target port resolves to the container port"
        );
        ready.extend(subset.addresses.unwrap_or_default().into_iter().map(|a| a.ip));
        not_ready.extend(subset.not_ready_addresses.unwrap_or_default().into_iter().map(|a| a.ip));
    }
    ready.sort();
    not_ready.sort();
    Some((ready, not_ready))
}

/// (ready IPs, not-ready IPs) across the Service's slices.
async fn slice_ips(api: &Api<EndpointSlice>) -> (Vec<String>, Vec<String>) {
    let slices = api
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items;
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    for slice in slices {
        assert_eq!(slice.address_type, "IPv4");
        let labels = slice.metadata.labels.unwrap();
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(labels["tier"], "front");
        assert_eq!(slice.ports.unwrap()[0].port, Some(8080));
        for e in slice.endpoints {
            let ip = e.addresses[0].clone();
            if e.conditions.unwrap().ready == Some(true) {
                ready.push(ip);
            } else {
                not_ready.push(ip);
            }
        }
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pod_readiness() {
    let env = Env::start(&[]).await;
    let _kubelet = env.fake_kubelet("n1");
    env.apply(MANIFEST).await;
    let pods = wait_for("3 running pods", T, || async {
        let pods = live_pods(&env.client, "default", "app=web").await;
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
            .count();
        (running == 3).then_some(pods)
    })
    .await;
    let mut ips: Vec<String> = pods
        .iter()
        .map(|p| support::pod_ip(p.metadata.name.as_deref().unwrap()))
        .collect();
    ips.sort();
    let endpoints: Api<Endpoints> = env.api("default");
    let slices: Api<EndpointSlice> = env.api("default");
    wait_for("every pod published", T, || async {
        let e = endpoint_ips(&endpoints).await?;
        (e == (ips.clone(), vec![]) && slice_ips(&slices).await == (ips.clone(), vec![])).then_some(())
    })
    .await;

    // One pod stops being ready: it moves to the not-ready side.
    let pod_api: Api<Pod> = env.api("default");
    let name = pods[0].metadata.name.clone().unwrap();
    set_ready(&pod_api, &name, false).await.unwrap();
    let unready = support::pod_ip(&name);
    let ready: Vec<String> = ips.iter().filter(|ip| **ip != unready).cloned().collect();
    wait_for("the unready pod moved", T, || async {
        let e = endpoint_ips(&endpoints).await?;
        let expected = (ready.clone(), vec![unready.clone()]);
        (e == expected && slice_ips(&slices).await == expected).then_some(())
    })
    .await;

    // The Service goes: so do its Endpoints and slices.
    env.cluster.must(&["delete", "service", "web"]).await;
    wait_for("endpoints and slices gone", T, || async {
        let gone = endpoints.get_opt("web").await.unwrap().is_none();
        (gone && slice_ips(&slices).await == (vec![], vec![])).then_some(())
    })
    .await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_selectors_keep_their_own_endpoints() {
    let env = Env::start(&[]).await;
    env.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: external, namespace: default}
spec: {ports: [{port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: external, namespace: default}
subsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 5432}]}]
"#,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let endpoints: Api<Endpoints> = env.api("default");
    let e = endpoints.get("external").await.unwrap();
    assert_eq!(e.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip, "192.0.2.10");
    let slices: Api<EndpointSlice> = env.api("default");
    let managed = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=external"))
        .await
        .unwrap();
    assert!(managed.items.is_empty());
    env.cluster.stop().await;
}
