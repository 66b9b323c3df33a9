//! Shared by the test files that drive the API server with the kube crate.

#![allow(clippy::unwrap_used, dead_code)] // a panic in a test is a failed test

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use testkit::Cluster;

/// A kube-rs client as the cluster admin, from the cluster's kubeconfig.
pub async fn kube_client(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.cluster_url = c.server.parse().unwrap();
    Client::try_from(config).unwrap()
}
