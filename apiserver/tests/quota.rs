//! LimitRange and ResourceQuota admission through kubectl: containers get
//! a namespace's default requests and limits, bounds and quotas refuse
//! with 403 and store nothing, quota status records what was charged,
//! and concurrent creates never overrun a quota.

#![allow(clippy::unwrap_used)]

use testkit::Cluster;

const POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults, namespace: team}
spec:
  limits:
  - type: Container
    default: {cpu: 200m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
    max: {memory: 1Gi}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute, namespace: team}
spec:
  hard: {pods: "3", requests.cpu: 250m, limits.memory: 1Gi}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: objects, namespace: team}
spec:
  hard: {count/configmaps: "1"}
"#;

fn pod(name: &str, resources: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "namespace": "team"}},
            "spec": {{"containers": [{{"name": "c", "image": "busybox", "resources": {resources}}}]}}}}"#
    )
}

async fn limit_ranges_default_and_quotas_refuse_on(kind: &str) {
    let c = Cluster::start(kind).await;
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(POLICY)).await;
    assert!(ok, "{out}{err}");
    // The LimitRange was stored with upstream's item defaults.
    let range = c
        .json(&["get", "limitrange", "defaults", "-n", "team", "-o", "json"])
        .await;
    assert_eq!(range["spec"]["limits"][0]["default"]["memory"], "128Mi");

    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&pod("p1", "{}"))).await;
    assert!(ok, "{out}{err}");
    let p1 = c.json(&["get", "pod", "p1", "-n", "team", "-o", "json"]).await;
    let resources = &p1["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["limits"]["memory"], "128Mi");
    assert_eq!(p1["status"]["qosClass"], "Burstable");
    let compute = c
        .json(&["get", "resourcequota", "compute", "-n", "team", "-o", "json"])
        .await;
    assert_eq!(compute["status"]["used"]["pods"], "1");
    assert_eq!(compute["status"]["used"]["requests.cpu"], "100m");
    assert_eq!(compute["status"]["used"]["limits.memory"], "128Mi");
    assert_eq!(compute["status"]["hard"]["pods"], "3");

    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&pod("p2", "{}"))).await;
    assert!(ok, "{out}{err}");
    // A third would take requests.cpu to 300m of 250m.
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(&pod("p3", "{}"))).await;
    assert!(!ok, "{err}");
    assert!(
        err.contains(r#"pods "p3" is forbidden: exceeded quota: compute, requested: requests.cpu=100m, used: requests.cpu=200m, limited: requests.cpu=250m"#),
        "{err}"
    );
    let (ok, _, err) = c.kubectl(&["get", "pod", "p3", "-n", "team"], None).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    // Beyond the LimitRange's max: refused, with upstream's words.
    let big = pod("big", r#"{"requests": {"cpu": "10m"}, "limits": {"memory": "2Gi"}}"#);
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(&big)).await;
    assert!(
        !ok && err.contains("maximum memory usage per Container is 1Gi, but limit is 2Gi"),
        "{err}"
    );
    let described = c.must(&["describe", "resourcequota", "compute", "-n", "team"]).await;
    assert!(
        described.contains("requests.cpu") && described.contains("200m"),
        "{described}"
    );

    // Object counts; a server-side dry run is checked but charges nothing.
    c.must(&["create", "configmap", "one", "-n", "team", "--dry-run=server"])
        .await;
    c.must(&["create", "configmap", "one", "-n", "team"]).await;
    let (ok, _, err) = c.kubectl(&["create", "configmap", "two", "-n", "team"], None).await;
    assert!(!ok && err.contains("exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"), "{err}");

    // Updates are charged what grows: a Service turned NodePort.
    let ports = r#"{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "ports", "namespace": "team"}, "spec": {"hard": {"services.nodeports": "1"}}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(ports)).await;
    assert!(ok, "{out}{err}");
    c.must(&["create", "service", "clusterip", "web", "-n", "team", "--tcp=80,443"])
        .await;
    let (ok, _, err) = c
        .kubectl(
            &[
                "patch",
                "service",
                "web",
                "-n",
                "team",
                "-p",
                r#"{"spec": {"type": "NodePort"}}"#,
            ],
            None,
        )
        .await;
    assert!(!ok && err.contains("exceeded quota: ports"), "{err}");
    let kind = c
        .must(&["get", "service", "web", "-n", "team", "-o", "jsonpath={.spec.type}"])
        .await;
    assert_eq!(kind, "ClusterIP");

    // A quota on cpu needs every container to state its cpu request.
    let (ok, out, err) = c
        .kubectl(
            &["apply", "-f", "-"],
            Some("{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"strict\"}}"),
        )
        .await;
    assert!(ok, "{out}{err}");
    let strict = r#"{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "cpu", "namespace": "strict"}, "spec": {"hard": {"limits.cpu": "4"}}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(strict)).await;
    assert!(ok, "{out}{err}");
    let bare = pod("bare", "{}").replace("\"team\"", "\"strict\"");
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(&bare)).await;
    assert!(
        !ok && err.contains("failed quota: cpu: must specify limits.cpu for: c"),
        "{err}"
    );
    c.stop().await;
}

async fn concurrent_creates_never_overrun_a_quota_on(kind: &str) {
    let c = Cluster::start(kind).await;
    let setup = r#"
apiVersion: v1
kind: Namespace
metadata: {name: race}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: five, namespace: race}
spec:
  hard: {count/configmaps: "5"}
"#;
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(setup)).await;
    assert!(ok, "{out}{err}");
    // Twelve kubectl processes at once.
    let script = format!(
        "for i in $(seq 1 12); do timeout 30 kubectl --kubeconfig {} --server {} create configmap cm-$i -n race & done; wait",
        c.kubeconfig().display(),
        c.server
    );
    let out = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("created")).count(),
        5,
        "{stdout}{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains("exceeded quota: five")).count(),
        7,
        "{stderr}"
    );
    let stored = c.must(&["get", "configmaps", "-n", "race", "-o", "name"]).await;
    assert_eq!(stored.lines().count(), 5, "{stored}");
    let quota = c
        .json(&["get", "resourcequota", "five", "-n", "race", "-o", "json"])
        .await;
    assert_eq!(quota["status"]["used"]["count/configmaps"], "5");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_ranges_default_and_quotas_refuse() {
    limit_ranges_default_and_quotas_refuse_on("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_ranges_default_and_quotas_refuse_on_etcd() {
    limit_ranges_default_and_quotas_refuse_on("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_overrun_a_quota() {
    concurrent_creates_never_overrun_a_quota_on("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_overrun_a_quota_on_etcd() {
    concurrent_creates_never_overrun_a_quota_on("etcd").await;
}
