//! The Deployment controller end to end: rollouts under maxSurge and
//! maxUnavailable, undo through kubectl, Recreate, pause and resume, the
//! progress deadline, and a controller-manager restart mid-rollout. Pods
//! "run" because a stand-in kubelet writes their status.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Api, ListParams};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: i32, strategy: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: {replicas}
  strategy: {strategy}
  selector: {{matchLabels: {{app: {name}}}}}
  {extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: "busybox:1"}}]}}
"#
    )
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// (sum of ReplicaSet spec.replicas, ready pods, images of pods alive)
type Sample = (i32, usize, BTreeSet<String>);

/// Samples the world every 50 ms until stopped; returns what it saw.
struct Sampler {
    running: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Sampler {
    fn start(env: &Env, app: &str) -> Sampler {
        let running = Arc::new(AtomicBool::new(true));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (flag, out) = (running.clone(), samples.clone());
        let rs_api: Api<ReplicaSet> = env.api("default");
        let pod_api: Api<Pod> = env.api("default");
        let selector = format!("app={app}");
        tokio::spawn(async move {
            while flag.load(Ordering::SeqCst) {
                let params = ListParams::default().labels(&selector);
                if let (Ok(rs), Ok(pods)) = (rs_api.list(&params).await, pod_api.list(&params).await) {
                    let spec: i32 = rs
                        .items
                        .iter()
                        .map(|r| r.spec.as_ref().unwrap().replicas.unwrap_or(0))
                        .sum();
                    let ready = pods.items.iter().filter(|p| ready(p)).count();
                    let images = pods.items.iter().map(image).collect();
                    out.lock().unwrap().push((spec, ready, images));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Sampler { running, samples }
    }

    fn stop(self) -> Vec<Sample> {
        self.running.store(false, Ordering::SeqCst);
        let samples = self.samples.lock().unwrap().clone();
        samples
    }
}

async fn rollout_status(env: &Env, name: &str) -> (bool, String) {
    let (ok, out, err) = env
        .cluster
        .kubectl(
            &["rollout", "status", &format!("deployment/{name}"), "--timeout=60s"],
            None,
        )
        .await;
    (ok, format!("{out}{err}"))
}

async fn pod_images(env: &Env, app: &str) -> Vec<String> {
    let pods = support::live_pods(&env.client, "default", &format!("app={app}")).await;
    pods.iter().map(image).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_surge_and_unavailability_and_undo_goes_back() {
    let env = Env::start(&[]).await;
    let _kubelet = env.fake_kubelet("n1");
    let strategy = "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}";
    env.apply(&deployment("web", 4, strategy, "")).await;
    let (ok, out) = rollout_status(&env, "web").await;
    assert!(ok, "first rollout: {out}");
    assert!(out.contains("successfully rolled out"), "{out}");

    let sampler = Sampler::start(&env, "web");
    env.cluster
        .must(&["set", "image", "deployment/web", "c=busybox:2"])
        .await;
    let (ok, out) = rollout_status(&env, "web").await;
    assert!(ok, "second rollout: {out}");
    let samples = sampler.stop();
    assert!(samples.len() > 3, "the sampler saw the rollout");
    for (spec, ready, _) in &samples {
        assert!(*spec <= 5, "more than replicas + maxSurge pods requested: {samples:?}");
        assert!(
            *ready >= 3,
            "fewer than replicas - maxUnavailable pods ready: {samples:?}"
        );
    }
    assert_eq!(pod_images(&env, "web").await, vec!["busybox:2"; 4]);

    let d: Deployment = env.api("default").get("web").await.unwrap();
    let annotations = d.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "2");
    let status = d.status.unwrap();
    assert_eq!(
        (status.replicas, status.updated_replicas, status.available_replicas),
        (Some(4), Some(4), Some(4))
    );
    let conditions = status.conditions.unwrap();
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));
    let available = conditions.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(available.status, "True");

    let history = env.cluster.must(&["rollout", "history", "deployment/web"]).await;
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");

    env.cluster.must(&["rollout", "undo", "deployment/web"]).await;
    let (ok, out) = rollout_status(&env, "web").await;
    assert!(ok, "undo rollout: {out}");
    wait_for("pods back on busybox:1", T, || async {
        (pod_images(&env, "web").await == vec!["busybox:1"; 4]).then_some(())
    })
    .await;
    let rs: Api<ReplicaSet> = env.api("default");
    let sets = rs.list(&ListParams::default().labels("app=web")).await.unwrap().items;
    assert_eq!(sets.len(), 2, "undo reuses the first ReplicaSet");
    let revisions: BTreeSet<String> = sets
        .iter()
        .map(|r| r.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone())
        .collect();
    assert_eq!(revisions, BTreeSet::from(["2".to_string(), "3".to_string()]));

    // A resize is not a rollout: the same ReplicaSet grows.
    env.cluster.must(&["scale", "deployment/web", "--replicas=6"]).await;
    let (ok, out) = rollout_status(&env, "web").await;
    assert!(ok, "{out}");
    assert_eq!(pod_images(&env, "web").await, vec!["busybox:1"; 6]);
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_starting_new_ones() {
    let env = Env::start(&[]).await;
    let _kubelet = env.fake_kubelet("n1");
    env.apply(&deployment("db", 3, "{type: Recreate}", "")).await;
    let (ok, out) = rollout_status(&env, "db").await;
    assert!(ok, "{out}");
    let sampler = Sampler::start(&env, "db");
    env.cluster
        .must(&["set", "image", "deployment/db", "c=busybox:2"])
        .await;
    let (ok, out) = rollout_status(&env, "db").await;
    assert!(ok, "{out}");
    let samples = sampler.stop();
    for (_, _, images) in &samples {
        assert!(images.len() <= 1, "old and new pods alive together: {samples:?}");
    }
    assert_eq!(pod_images(&env, "db").await, vec!["busybox:2"; 3]);
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployments_wait_and_stalled_ones_exceed_their_deadline() {
    let env = Env::start(&[]).await;
    let kubelet = env.fake_kubelet("n1");
    env.apply(&deployment(
        "p",
        2,
        "{type: RollingUpdate}",
        "progressDeadlineSeconds: 3",
    ))
    .await;
    let (ok, out) = rollout_status(&env, "p").await;
    assert!(ok, "{out}");

    env.cluster.must(&["rollout", "pause", "deployment/p"]).await;
    env.cluster.must(&["set", "image", "deployment/p", "c=busybox:2"]).await;
    wait_for("the paused condition", T, || async {
        let d: Deployment = env.api("default").get("p").await.unwrap();
        let conditions = d.status?.conditions?;
        conditions
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rs: Api<ReplicaSet> = env.api("default");
    assert_eq!(
        rs.list(&ListParams::default().labels("app=p"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Resumed with no kubelet, the new pods never become ready: the deadline passes.
    kubelet.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.cluster.must(&["rollout", "resume", "deployment/p"]).await;
    let (ok, out) = rollout_status(&env, "p").await;
    assert!(!ok, "rollout status should fail: {out}");
    assert!(out.contains("exceeded its progress deadline"), "{out}");
    let d: Deployment = env.api("default").get("p").await.unwrap();
    let conditions = d.status.unwrap().conditions.unwrap();
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_manager_finishes_the_rollout_without_extra_pods() {
    let mut env = Env::start(&[]).await;
    let _kubelet = env.fake_kubelet("n1");
    let strategy = "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    env.apply(&deployment("r", 3, strategy, "minReadySeconds: 2")).await;
    let (ok, out) = rollout_status(&env, "r").await;
    assert!(ok, "{out}");

    let sampler = Sampler::start(&env, "r");
    env.cluster.must(&["set", "image", "deployment/r", "c=busybox:2"]).await;
    wait_for("the new ReplicaSet", T, || async {
        let rs: Api<ReplicaSet> = env.api("default");
        let sets = rs.list(&ListParams::default().labels("app=r")).await.ok()?.items;
        (sets.len() == 2).then_some(())
    })
    .await;
    env.kill_manager();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.start_manager();
    let (ok, out) = rollout_status(&env, "r").await;
    assert!(ok, "{out}\n{}", env.manager_log());
    let samples = sampler.stop();
    for (spec, _, _) in &samples {
        assert!(*spec <= 4, "more than replicas + maxSurge: {samples:?}");
    }
    assert_eq!(pod_images(&env, "r").await, vec!["busybox:2"; 3]);
    env.cluster.stop().await;
}
