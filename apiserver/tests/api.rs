//! The API server as its clients see it: the real `kubectl` against the
//! real API server binary over our store and over a real etcd 3.4, and the
//! internal gRPC API as the components will use it.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::process::Stdio;
use std::time::Duration;

use testkit::Cluster;

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
  labels:
    app: web
data:
  color: blue
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
"#;

async fn kubectl_basics(kind: &str) {
    let c = Cluster::start(kind).await;

    let namespaces = c.must(&["get", "namespaces", "-o", "name"]).await;
    for ns in apiserver::BUILT_IN_NAMESPACES {
        assert!(namespaces.contains(&format!("namespace/{ns}")), "{namespaces}");
    }
    let resources = c.must(&["api-resources", "-o", "name"]).await;
    assert!(
        resources.contains("deployments.apps") && resources.contains("configmaps"),
        "{resources}"
    );
    // kubectl asks for aggregated discovery and, getting it, reads no
    // per-group-version documents (a fresh cache, so nothing is reused).
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let (ok, out, log) = c
        .kubectl(&["api-resources", "-o", "name", "-v=6", "--cache-dir", cache_dir], None)
        .await;
    assert!(ok && out.contains("deployments.apps"), "{out}\n{log}");
    let gets: Vec<&str> = log.lines().filter(|l| l.contains(" GET ")).collect();
    assert_eq!(gets.len(), 2, "{log}");
    assert!(gets.iter().all(|l| l.contains(" 200 OK")), "{log}");
    assert!(gets[0].contains("/api?") && gets[1].contains("/apis?"), "{log}");

    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(MANIFEST)).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("configmap/settings created") && out.contains("namespace/team-a created"),
        "{out}"
    );
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(MANIFEST)).await;
    assert!(
        !ok && err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );

    let json = c.json(&["get", "configmap", "settings", "-o", "json"]).await;
    assert_eq!(json["data"]["color"], "blue");
    assert!(json["metadata"]["uid"].is_string());
    let rv: i64 = json["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv > 0);
    // Subresources not served yet say so.
    let exec = curl(&c, "GET", "/api/v1/namespaces/default/pods/p/exec", None).await;
    assert!(
        exec.contains(" 405") && exec.contains("pods/exec is not served"),
        "{exec}"
    );
    let yaml = c.must(&["get", "configmap", "settings", "-o", "yaml"]).await;
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("color: blue"),
        "{yaml}"
    );

    // The columns kubectl shows, computed by the server (Table).
    let node = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(node)).await;
    assert!(ok, "{out}{err}");
    let deployment = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(deployment)).await;
    assert!(ok, "{out}{err}");
    let replicaset = deployment
        .replace("Deployment", "ReplicaSet")
        .replace("\"web\"}", "\"web-rs\"}");
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&replicaset)).await;
    assert!(ok, "{out}{err}");
    let event = r#"{"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Tested", "message": "hello", "type": "Normal"}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(event)).await;
    assert!(ok, "{out}{err}");
    for (args, header) in [
        (&["get", "nodes"][..], "NAME STATUS ROLES AGE VERSION"),
        (&["get", "deployments"][..], "NAME READY UP-TO-DATE AVAILABLE AGE"),
        (&["get", "replicasets"][..], "NAME DESIRED CURRENT READY AGE"),
        (&["get", "namespaces"][..], "NAME STATUS AGE"),
        (&["get", "services"][..], "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE"),
        (&["get", "events"][..], "LAST SEEN TYPE REASON OBJECT MESSAGE"),
    ] {
        let out = c.must(args).await;
        let first = out
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(first.starts_with(header), "{args:?}: {out}");
    }

    let selected = c.must(&["get", "configmaps", "-l", "app=web", "-o", "name"]).await;
    assert_eq!(selected.trim(), "configmap/settings");
    let none = c.must(&["get", "configmaps", "-l", "app=db", "-o", "name"]).await;
    assert!(none.trim().is_empty(), "{none}");
    let by_field = c
        .must(&[
            "get",
            "configmaps",
            "-A",
            "--field-selector",
            "metadata.name=settings",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(by_field.trim(), "configmap/settings");

    // Merge and JSON patches.
    c.must(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"size":"xl"}}"#,
    ])
    .await;
    c.must(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/data/color","value":"red"}]"#,
    ])
    .await;
    let data = c
        .must(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.color},{.data.size}",
        ])
        .await;
    assert_eq!(data, "red,xl");

    // Nothing is created in a namespace that does not exist.
    let orphan = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n";
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(orphan)).await;
    assert!(!ok && err.contains("namespaces \"nowhere\" not found"), "{err}");
    // Invalid names are refused with 422.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(bad)).await;
    assert!(!ok && err.contains("is invalid"), "{err}");

    // A bounded watch sees a change.
    let watcher = {
        let mut cmd = tokio::process::Command::new("timeout");
        cmd.args(["5", "kubectl", "--kubeconfig"])
            .arg(c.kubeconfig())
            .args(["--server", &c.server, "get", "configmaps", "-w", "-o", "name"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.must(&["create", "configmap", "late", "--dry-run=client", "-o", "yaml"])
        .await;
    let (ok, _, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n"),
        )
        .await;
    assert!(ok, "{err}");
    let watched = watcher.wait_with_output().await.unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched.contains("configmap/settings") && watched.contains("configmap/late"),
        "{watched}"
    );

    // deletecollection with a label selector removes only what matches.
    c.must(&["label", "configmap", "late", "batch=1"]).await;
    let doomed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: doomed\n  labels:\n    batch: \"1\"\n";
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(doomed)).await;
    assert!(ok, "{err}");
    // Paged lists (limit and continue) return everything, one page at a time.
    let chunked = c.must(&["get", "configmaps", "--chunk-size=1", "-o", "name"]).await;
    let mut pages: Vec<&str> = chunked.lines().collect();
    pages.sort();
    assert_eq!(
        pages,
        ["configmap/doomed", "configmap/late", "configmap/settings"],
        "{chunked}"
    );
    let first = c
        .json(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=1"])
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["metadata"]["remainingItemCount"], 2);
    assert!(first["metadata"]["continue"].is_string());

    let gone = c
        .must(&[
            "delete",
            "--raw",
            "/api/v1/namespaces/default/configmaps?labelSelector=batch%3D1",
        ])
        .await;
    assert!(gone.contains("\"doomed\"") && gone.contains("\"late\""), "{gone}");
    let left = c.must(&["get", "configmaps", "-o", "name"]).await;
    assert_eq!(left.trim(), "configmap/settings", "{left}");

    // Requests are counted under kube-apiserver's metric names.
    let metrics = c.must(&["get", "--raw", "/metrics"]).await;
    assert!(
        metrics.contains(r#"apiserver_request_total{code="201",component="apiserver",group="",resource="configmaps",scope="namespace",subresource="",verb="POST",version="v1"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket"));
    assert!(
        metrics.contains(r#"apiserver_current_inflight_requests{request_kind="mutating"} 0"#),
        "nothing is in flight between requests: {metrics}"
    );

    c.must(&["delete", "configmap", "settings"]).await;
    let (ok, _, err) = c.kubectl(&["get", "configmap", "settings"], None).await;
    assert!(!ok && err.contains("configmaps \"settings\" not found"), "{err}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_against_our_store() {
    kubectl_basics("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_against_etcd() {
    kubectl_basics("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_unauthorized() {
    let c = Cluster::start("kubernate").await;
    let anonymous = c.dir.path().join("anonymous.kubeconfig");
    let ca = c.dir.path().join("pki/ca.crt");
    std::fs::write(
        &anonymous,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: nobody\n  user: {{token: not-a-valid-token}}\ncontexts:\n- name: k\n  context: {{cluster: k, user: nobody}}\ncurrent-context: k\n",
            c.server,
            ca.display()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new("timeout")
        .args(["30", "kubectl", "--kubeconfig"])
        .arg(&anonymous)
        .args(["get", "namespaces"])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // kubectl's words for a 401 (it words it one of two ways).
    let refused = err.contains("provide credentials") || err.contains("(Unauthorized)");
    assert!(!out.status.success() && refused, "{err}");
    // /version answers anyone.
    let out = tokio::process::Command::new("timeout")
        .args(["30", "kubectl", "--kubeconfig"])
        .arg(&anonymous)
        .args(["get", "--raw", "/version"])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"major\": \"1\"")
            || String::from_utf8_lossy(&out.stdout).contains("\"major\":\"1\"")
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_grpc_api_serves_the_same_verbs() {
    use api::proto::resources_client::ResourcesClient;
    use api::proto::*;

    let c = Cluster::start("kubernate").await;
    let admin = common::kubeconfig::Kubeconfig::load_resolved(&c.kubeconfig()).unwrap();
    let tls = admin.client_tls(&[common::grpc::ALPN_H2]).unwrap();
    let mut client = ResourcesClient::new(common::grpc::channel(&c.server, tls).unwrap());
    let configmaps = |name: &str| ResourceRef {
        version: "v1".into(),
        resource: "configmaps".into(),
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    };
    let json = |o: &Object| serde_json::from_slice::<serde_json::Value>(&o.json).unwrap();

    // A watch started now sees the create below.
    let mut watch = client
        .watch(WatchRequest {
            r#ref: Some(configmaps("")),
            timeout_seconds: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let body =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"via-grpc","labels":{"t":"g"}},"data":{"k":"v"}}"#;
    let created = client
        .create(CreateRequest {
            r#ref: Some(configmaps("")),
            object: body.to_vec(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(json(&created)["metadata"]["resourceVersion"].is_string());

    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = watch.message().await.unwrap().unwrap();
            if json(&Object { json: e.object.clone() })["metadata"]["name"] == "via-grpc" {
                return e;
            }
        }
    })
    .await
    .expect("the watch reports the create within 10 s");
    assert_eq!(event.r#type, "ADDED");

    let got = client
        .get(GetRequest {
            r#ref: Some(configmaps("via-grpc")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(json(got.get_ref())["data"]["k"], "v");
    let listed = client
        .list(ListRequest {
            r#ref: Some(configmaps("")),
            label_selector: "t=g".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(json(listed.get_ref())["items"].as_array().unwrap().len(), 1);

    client
        .delete(DeleteRequest {
            r#ref: Some(configmaps("via-grpc")),
            options: Vec::new(),
        })
        .await
        .unwrap();
    let err = client
        .get(GetRequest {
            r#ref: Some(configmaps("via-grpc")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let status: serde_json::Value = serde_json::from_slice(err.details()).unwrap();
    assert_eq!(
        (status["code"].as_u64(), status["reason"].as_str()),
        (Some(404), Some("NotFound"))
    );

    // Bad input gets the Status a REST client would.
    let err = client
        .create(CreateRequest {
            r#ref: Some(configmaps("")),
            object: b"{not json".to_vec(),
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let widgets = ResourceRef {
        version: "v1".into(),
        resource: "widgets".into(),
        ..Default::default()
    };
    let err = client
        .list(ListRequest {
            r#ref: Some(widgets),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // gRPC calls are counted like REST calls.
    let metrics = c.must(&["get", "--raw", "/metrics"]).await;
    assert!(
        metrics.contains(r#"apiserver_request_total{code="404",component="apiserver",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"}"#),
        "{metrics}"
    );
    // Store calls, stored objects and open watches have their metrics too.
    for line in [
        r#"etcd_request_duration_seconds_count{operation="create",type="configmaps"} 1"#,
        r#"apiserver_storage_objects{resource="namespaces"} 4"#,
        r#"apiserver_registered_watchers{group="",kind="ConfigMap",version="v1"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    // And the exposition is valid for Prometheus.
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut input = promtool.stdin.take().unwrap();
        input.write_all(metrics.as_bytes()).await.unwrap();
    }
    let checked = promtool.wait_with_output().await.unwrap();
    let complaints = String::from_utf8_lossy(&checked.stdout).to_string() + &String::from_utf8_lossy(&checked.stderr);
    assert!(!complaints.contains("error"), "{complaints}");

    // No client certificate: unauthenticated.
    let anonymous = common::tls::client_config(
        &common::tls::load_certs(&c.dir.path().join("pki/ca.crt")).unwrap(),
        None,
        &[common::grpc::ALPN_H2],
    )
    .unwrap();
    let mut stranger = ResourcesClient::new(common::grpc::channel(&c.server, anonymous).unwrap());
    let err = stranger
        .get(GetRequest {
            r#ref: Some(configmaps("x")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    c.stop().await;
}

/// pods/binding, pods/eviction and watch bookmarks over REST, on `kind`.
async fn pod_subresources_and_bookmarks(kind: &str) {
    let c = Cluster::start_with(kind, &["--watch-bookmark-interval", "1"]).await;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
                  "spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(pod)).await;
    assert!(ok, "{out}{err}");
    let binding =
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}"#;
    let path = "/api/v1/namespaces/default/pods/p/binding";
    let (ok, out, err) = c.kubectl(&["create", "--raw", path, "-f", "-"], Some(binding)).await;
    assert!(ok && out.contains("Success"), "{out}{err}");
    let node = c.must(&["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]).await;
    assert_eq!(node, "n1");
    let (ok, _, err) = c.kubectl(&["create", "--raw", path, "-f", "-"], Some(binding)).await;
    assert!(!ok && err.contains("already assigned"), "{err}");
    // Tables: the server computes the columns kubectl prints.
    let shown = c.must(&["get", "pods"]).await;
    let header: Vec<&str> = shown.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{shown}");
    assert!(shown.contains("0/1") && shown.contains("Pending"), "{shown}");
    let wide = c.must(&["get", "pods", "-o", "wide"]).await;
    assert!(wide.contains("NODE") && wide.contains("n1"), "{wide}");
    let namespaces = c.must(&["get", "namespaces", "--show-labels"]).await;
    assert!(
        namespaces.contains("Active") && namespaces.contains("kubernetes.io/metadata.name=default"),
        "{namespaces}"
    );
    let (_, watched, err) = c.kubectl(&["get", "pods", "-w", "--request-timeout", "2s"], None).await;
    assert!(
        watched.contains("STATUS") && watched.contains("Pending"),
        "{watched}{err}"
    );
    let no_target = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{}}"#;
    let (ok, _, err) = c.kubectl(&["create", "--raw", path, "-f", "-"], Some(no_target)).await;
    assert!(!ok && err.contains("target.name"), "{err}");

    let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p","namespace":"default"}}"#;
    let evict = "/api/v1/namespaces/default/pods/p/eviction";
    let (ok, out, err) = c.kubectl(&["create", "--raw", evict, "-f", "-"], Some(eviction)).await;
    assert!(ok, "{out}{err}");
    // A bound pod terminates gracefully: marked, and left for its kubelet.
    let marked = c
        .must(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}",
        ])
        .await;
    assert_eq!(marked, "30");
    assert!(c.must(&["get", "pods"]).await.contains("Terminating"));
    // The kubelet's final delete (grace 0) removes it.
    c.must(&["delete", "pod", "p", "--grace-period=0", "--force"]).await;
    let (ok, _, err) = c.kubectl(&["get", "pod", "p"], None).await;
    assert!(!ok && err.contains("not found"), "{err}");

    let rv = c
        .must(&[
            "get",
            "namespace",
            "default",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await;
    let watch = format!("/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion={rv}");
    let events = c.must(&["get", "--raw", &watch]).await;
    assert!(events.contains(r#""type":"BOOKMARK""#), "{events}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_subresources_and_bookmarks_on_our_store() {
    pod_subresources_and_bookmarks("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_subresources_and_bookmarks_on_etcd() {
    pod_subresources_and_bookmarks("etcd").await;
}

const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: token
  namespace: shop
stringData:
  token: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
    tier: front
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: busybox:1
        env:
        - name: MODE
          value: fast
      - name: sidecar
        image: busybox:1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
"#;

/// Client-side `kubectl apply` (three-way strategic merge patches) and
/// `kubectl patch` of every type, on `kind`.
async fn kubectl_apply(kind: &str) {
    let c = Cluster::start(kind).await;
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(SHOP)).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches(" created").count(), 5, "{out}");
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(SHOP)).await;
    assert!(ok, "{out}{err}");
    // Nothing modified the second time; the Secret is "configured" again
    // because its stringData is folded into data on every write (so the
    // live object never has the stringData kubectl compares), exactly as
    // with Kubernetes.
    assert_eq!(
        out.matches(" unchanged").count(),
        4,
        "nothing modified the second time:\n{out}"
    );
    assert!(out.contains("secret/token configured"), "{out}");

    // One field changed, one label dropped, one env var changed.
    let changed = SHOP
        .replace("replicas: 2", "replicas: 3")
        .replace("    tier: front\n", "")
        .replace("value: fast", "value: safe")
        .replace("color: blue", "color: green");
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(&changed)).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/settings configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let web = c.json(&["get", "deployment", "web", "-n", "shop", "-o", "json"]).await;
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(web["metadata"]["labels"], serde_json::json!({"app": "web"}));
    let containers = web["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert_eq!(containers[0]["env"][0]["value"], "safe");
    assert_eq!(web["metadata"]["generation"], 2, "one spec change, one generation");

    // kubectl patch: strategic (the default) merges containers by name.
    c.must(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "shop",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:2"}]}}}}"#,
    ])
    .await;
    let web = c.json(&["get", "deployment", "web", "-n", "shop", "-o", "json"]).await;
    let images: Vec<&str> = web["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["busybox:1", "busybox:2"]);
    // --type merge replaces the list; --type json edits by position.
    c.must(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "shop",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"busybox:3"}]"#,
    ])
    .await;
    c.must(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"busybox:4"}]}}}}"#,
    ])
    .await;
    let web = c.json(&["get", "deployment", "web", "-n", "shop", "-o", "json"]).await;
    let containers = web["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "a merge patch replaces the list: {containers:?}");
    assert_eq!(
        (&containers[0]["name"], &containers[0]["image"]),
        (&"app".into(), &"busybox:4".into())
    );
    // … and the new container got Kubernetes' defaults.
    assert_eq!(containers[0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(web["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    // A strategic patch that names no merge key is refused and changes nothing.
    let (ok, _, err) = c
        .kubectl(
            &[
                "patch",
                "deployment",
                "web",
                "-n",
                "shop",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}"#,
            ],
            None,
        )
        .await;
    assert!(!ok && err.contains("merge key"), "{err}");

    // kubectl scale goes through the scale subresource.
    c.must(&["scale", "deployment", "web", "-n", "shop", "--replicas=5"])
        .await;
    let replicas = c
        .must(&[
            "get",
            "deployment",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "5");
    let scale = c
        .json(&["get", "--raw", "/apis/apps/v1/namespaces/shop/deployments/web/scale"])
        .await;
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(5))
    );
    assert_eq!(scale["status"]["selector"], "app=web");
    let (ok, _, err) = c
        .kubectl(
            &[
                "scale",
                "deployment",
                "web",
                "-n",
                "shop",
                "--current-replicas=4",
                "--replicas=1",
            ],
            None,
        )
        .await;
    assert!(!ok && err.contains("4"), "a failed precondition: {err}");

    c.must(&["label", "service", "web", "-n", "shop", "team=blue"]).await;
    c.must(&["annotate", "configmap", "settings", "-n", "shop", "note=hi"])
        .await;
    let svc = c.json(&["get", "service", "web", "-n", "shop", "-o", "json"]).await;
    assert_eq!(svc["metadata"]["labels"]["team"], "blue");
    let secret = c.json(&["get", "secret", "token", "-n", "shop", "-o", "json"]).await;
    assert!(
        secret["data"]["token"].is_string() || secret["stringData"]["token"].is_string(),
        "{secret}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_on_our_store() {
    kubectl_apply("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_on_etcd() {
    kubectl_apply("etcd").await;
}

/// One HTTPS request as admin with curl (no retries, unlike kubectl on a
/// 429); returns the response head and body.
async fn curl(c: &Cluster, method: &str, path: &str, body: Option<&str>) -> String {
    let mut args = vec!["-i", "-X", method, "-H", "Content-Type: application/json"];
    if let Some(body) = body {
        args.extend(["--data", body]);
    }
    String::from_utf8_lossy(&c.curl(&args, path).await).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limits_get_429() {
    let c = Cluster::start_with(
        "etcd",
        &["--max-requests-inflight", "1", "--max-mutating-requests-inflight", "1"],
    )
    .await;
    // With the store frozen, one read and one write hold the only slots.
    c.signal_store("-STOP");
    let c = std::sync::Arc::new(c);
    let (c1, c2) = (c.clone(), c.clone());
    let read = tokio::spawn(async move { curl(&c1, "GET", "/api/v1/namespaces/default/configmaps", None).await });
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late"}}"#;
    let write = tokio::spawn(async move { curl(&c2, "POST", "/api/v1/namespaces/default/configmaps", Some(cm)).await });
    tokio::time::sleep(Duration::from_millis(700)).await;

    let refused = curl(&c, "GET", "/api/v1/namespaces", None).await;
    assert!(refused.starts_with("HTTP/2 429"), "{refused}");
    assert!(refused.to_lowercase().contains("retry-after: 1"), "{refused}");
    assert!(refused.contains(r#""reason":"TooManyRequests""#), "{refused}");
    let refused = curl(&c, "DELETE", "/api/v1/namespaces/default/configmaps/x", None).await;
    assert!(
        refused.starts_with("HTTP/2 429"),
        "the mutating limit is its own: {refused}"
    );

    c.signal_store("-CONT");
    let read = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap()
        .unwrap();
    assert!(read.starts_with("HTTP/2 200"), "{read}");
    let write = tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .unwrap()
        .unwrap();
    assert!(write.starts_with("HTTP/2 201"), "{write}");
    // Slots come back.
    assert!(curl(&c, "GET", "/api/v1/namespaces", None)
        .await
        .starts_with("HTTP/2 200"));
}

fn service(name: &str, extra_spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}","namespace":"default"}},
            "spec":{{"selector":{{"app":"{name}"}},"ports":[{{"port":80}}]{extra_spec}}}}}"#
    )
}

async fn svc(c: &Cluster, name: &str) -> serde_json::Value {
    c.json(&["get", "service", name, "-o", "json"]).await
}

/// Service defaults, ClusterIP and NodePort allocation and release, with
/// a range small enough to fill, across an API server restart.
async fn services_get_addresses_and_node_ports(kind: &str) {
    let mut c = Cluster::start_with(
        kind,
        &[
            "--service-cluster-ip-range",
            "10.0.0.0/29",
            "--service-node-port-range",
            "30000-30002",
        ],
    )
    .await;
    let kubernetes = svc(&c, "kubernetes").await;
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.0.0.1", "the first address");
    let endpoints = c
        .must(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].ports[0].port}",
        ])
        .await;
    assert_eq!(endpoints, c.server.rsplit(':').next().unwrap());
    let slice = c
        .json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "json",
        ])
        .await;
    let slice = &slice["items"][0];
    assert_eq!(slice["metadata"]["name"], "kubernetes");
    assert_eq!(slice["ports"][0]["port"].to_string(), endpoints);
    assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);

    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&service("a", ""))).await;
    assert!(ok, "{out}{err}");
    let a = svc(&c, "a").await;
    assert_eq!(a["spec"]["type"], "ClusterIP");
    assert_eq!(a["spec"]["sessionAffinity"], "None");
    assert_eq!(a["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.0.0.") && ip != "10.0.0.1", "{ip}");
    assert_eq!(a["spec"]["clusterIPs"], serde_json::json!([ip]));

    // Asked-for addresses: taken, out of range, headless.
    let (ok, _, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some(&service("b", &format!(r#","clusterIP":"{ip}""#))),
        )
        .await;
    assert!(!ok && err.contains("already allocated"), "{err}");
    let (ok, _, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some(&service("b", r#","clusterIP":"10.9.9.9""#)),
        )
        .await;
    assert!(!ok && err.contains("not in the valid range"), "{err}");
    let (ok, _, err) = c.kubectl(&["get", "service", "b"], None).await;
    assert!(!ok && err.contains("not found"), "nothing stored: {err}");
    let (ok, out, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some(&service("headless", r#","clusterIP":"None""#)),
        )
        .await;
    assert!(ok, "{out}{err}");
    assert_eq!(svc(&c, "headless").await["spec"]["clusterIP"], "None");

    // Node ports.
    let (ok, out, err) = c
        .kubectl(&["create", "-f", "-"], Some(&service("np", r#","type":"NodePort""#)))
        .await;
    assert!(ok, "{out}{err}");
    let np = svc(&c, "np").await;
    let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=30002).contains(&port), "{port}");
    let (ok, _, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some(&service(
                "np2",
                &format!(r#","type":"NodePort","ports":[{{"port":81,"nodePort":{port}}}]"#),
            )),
        )
        .await;
    assert!(!ok && err.contains("already allocated"), "{err}");
    // The address cannot change; leaving it out keeps it.
    let other = if ip == "10.0.0.6" { "10.0.0.5" } else { "10.0.0.6" };
    let (ok, _, err) = c
        .kubectl(
            &[
                "patch",
                "service",
                "a",
                "-p",
                &format!(r#"{{"spec":{{"clusterIP":"{other}"}}}}"#),
            ],
            None,
        )
        .await;
    assert!(!ok && err.contains("may not change once set"), "{err}");
    c.must(&[
        "patch",
        "service",
        "np",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ])
    .await;
    let np = svc(&c, "np").await;
    assert!(np["spec"]["ports"][0]["nodePort"].is_null(), "{np}");
    // … and the released node port can be asked for again.
    let (ok, out, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some(&service(
                "np2",
                &format!(r#","type":"NodePort","ports":[{{"port":81,"nodePort":{port}}}]"#),
            )),
        )
        .await;
    assert!(ok, "{out}{err}");

    // Fill the range (.1 kubernetes, a, np, np2; two left), restart, still full.
    for name in ["f1", "f2"] {
        let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&service(name, ""))).await;
        assert!(ok, "{out}{err}");
    }
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(&service("f3", ""))).await;
    assert!(!ok && err.contains("range is full"), "{err}");
    c.kill_apiserver();
    c.start_apiserver().await;
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(&service("f3", ""))).await;
    assert!(
        !ok && err.contains("range is full"),
        "still full after a restart: {err}"
    );
    c.must(&["delete", "service", "a"]).await;
    let (ok, out, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some(&service("f3", &format!(r#","clusterIP":"{ip}""#))),
        )
        .await;
    assert!(ok, "a deleted Service's address is free again: {out}{err}");
    let shown = c.must(&["get", "services"]).await;
    assert!(
        shown.contains("CLUSTER-IP") && shown.contains(&format!("81:{port}/TCP")),
        "{shown}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_our_store() {
    services_get_addresses_and_node_ports("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_etcd() {
    services_get_addresses_and_node_ports("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_service_creates_get_distinct_addresses() {
    // Small ranges, so that concurrent picks collide and must retry.
    let args = [
        "--service-cluster-ip-range",
        "10.0.0.0/27",
        "--service-node-port-range",
        "30000-30020",
    ];
    let c = std::sync::Arc::new(Cluster::start_with("kubernate", &args).await);
    let mut creates = Vec::new();
    for i in 0..12 {
        let c = c.clone();
        creates.push(tokio::spawn(async move {
            let body = service(&format!("s{i}"), r#","type":"NodePort""#);
            let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&body)).await;
            assert!(ok, "{out}{err}");
        }));
    }
    for create in creates {
        create.await.unwrap();
    }
    let list = c.json(&["get", "services", "-o", "json"]).await;
    let items = list["items"].as_array().unwrap();
    let ips: std::collections::HashSet<_> = items.iter().map(|s| s["spec"]["clusterIP"].to_string()).collect();
    let ports: std::collections::HashSet<_> = items
        .iter()
        .filter_map(|s| s["spec"]["ports"][0]["nodePort"].as_u64())
        .collect();
    assert_eq!(items.len(), 13, "12 and the kubernetes Service");
    assert_eq!(ips.len(), 13, "every address distinct");
    assert_eq!(ports.len(), 12, "every node port distinct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_drive_explain_and_server_side_validation() {
    let c = Cluster::start("kubernate").await;
    let explained = c.must(&["explain", "deployment.spec.replicas"]).await;
    assert!(
        explained.contains("KIND:") && explained.contains("Deployment"),
        "{explained}"
    );
    assert!(explained.contains("FIELD: replicas <integer>"), "{explained}");
    assert!(explained.contains("desired pods"), "{explained}");
    let resources = c.must(&["explain", "pods.spec.containers"]).await;
    assert!(
        resources.contains("image\t<string>") || resources.contains("image <string>"),
        "{resources}"
    );

    // kubectl finds fieldValidation in the v3 document and asks the
    // server to be strict; the unknown field is named and nothing stored.
    let typo = SHOP.replace("  replicas: 2", "  replicass: 2");
    let (ok, _, err) = c.kubectl(&["apply", "-f", "-"], Some(&typo)).await;
    assert!(!ok && err.contains(r#"unknown field "spec.replicass""#), "{err}");
    let (ok, _, err) = c.kubectl(&["get", "deployment", "web", "-n", "shop"], None).await;
    assert!(!ok && err.contains("not found"), "{err}");
    // Without validation the unknown field is dropped, the rest stored.
    let (ok, out, err) = c.kubectl(&["apply", "--validate=false", "-f", "-"], Some(&typo)).await;
    assert!(ok, "{out}{err}");
    let spec = c
        .must(&["get", "deployment", "web", "-n", "shop", "-o", "jsonpath={.spec}"])
        .await;
    assert!(!spec.contains("replicass"), "{spec}");

    // A wrongly typed field is a 400 that says which.
    let bad = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"bad","namespace":"shop"},
                  "spec":{"replicas":"three","selector":{"matchLabels":{"a":"b"}},"template":{}}}"#;
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(bad)).await;
    assert!(!ok && err.contains("cannot be handled as a Deployment"), "{err}");

    // The documents themselves.
    let index = c.must(&["get", "--raw", "/openapi/v3"]).await;
    assert!(index.contains("apis/apps/v1"), "{index}");
    let v2 = c.must(&["get", "--raw", "/openapi/v2"]).await;
    assert!(v2.contains(r#""swagger":"2.0""#), "{}", &v2[..200.min(v2.len())]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_defaulted_validated_and_mostly_immutable() {
    let c = Cluster::start("kubernate").await;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"web"}},
                  "spec":{"containers":[{"name":"main","image":"busybox"}]},
                  "status":{"phase":"Running"}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(pod)).await;
    assert!(ok, "{out}{err}");
    let p = c.json(&["get", "pod", "p", "-o", "json"]).await;
    assert_eq!(p["spec"]["schedulerName"], "default-scheduler");
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    assert_eq!(p["status"]["phase"], "Pending", "a client cannot create a pod Running");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert_eq!(
        p["spec"]["serviceAccountName"], "default",
        "the ServiceAccount admission step"
    );
    assert!(p["spec"]["tolerations"]
        .to_string()
        .contains("node.kubernetes.io/unreachable"));

    // Images may change; other fields may not.
    c.must(&["set", "image", "pod/p", "main=busybox:2"]).await;
    let (ok, _, err) = c
        .kubectl(
            &["patch", "pod", "p", "-p", r#"{"spec":{"restartPolicy":"Never"}}"#],
            None,
        )
        .await;
    assert!(!ok && err.contains("pod updates may not change fields"), "{err}");

    for (bad, expected) in [
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"},"spec":{"containers":[]}}"#,
            "spec.containers: Required value",
        ),
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"},"spec":{"containers":[{"name":"Main","image":"x"}]}}"#,
            "spec.containers[0].name",
        ),
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q","labels":{"bad key":"x"}},"spec":{"containers":[{"name":"m","image":"x"}]}}"#,
            "metadata.labels",
        ),
        (
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"q"},"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"m","image":"x"}]}}}}"#,
            "does not match template",
        ),
    ] {
        let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(bad)).await;
        assert!(
            !ok && err.contains(expected) && err.contains("is invalid"),
            "{expected}: {err}"
        );
    }
    let (ok, _, err) = c.kubectl(&["get", "pod", "q"], None).await;
    assert!(!ok && err.contains("not found"), "nothing stored: {err}");
    c.stop().await;
}

/// Finalizers, propagation policies, terminating namespaces and dry runs.
async fn deletion_semantics(kind: &str) {
    let c = Cluster::start(kind).await;
    let held = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","finalizers":["example.com/hold"]}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(held)).await;
    assert!(ok, "{out}{err}");
    c.must(&["delete", "configmap", "held", "--wait=false"]).await;
    let stamp = c
        .must(&[
            "get",
            "configmap",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(!stamp.is_empty(), "marked, not removed");
    let (ok, _, err) = c
        .kubectl(
            &[
                "patch",
                "configmap",
                "held",
                "--type",
                "merge",
                "-p",
                r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#,
            ],
            None,
        )
        .await;
    assert!(!ok && err.contains("no new finalizers"), "{err}");
    c.must(&[
        "patch",
        "configmap",
        "held",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    let (ok, _, err) = c.kubectl(&["get", "configmap", "held"], None).await;
    assert!(
        !ok && err.contains("not found"),
        "the last finalizer removed, the object goes: {err}"
    );

    // Propagation policies become finalizers for the garbage collector.
    for (name, cascade, finalizer) in [("fg", "foreground", "foregroundDeletion"), ("orph", "orphan", "orphan")] {
        let cm = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
        let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&cm)).await;
        assert!(ok, "{out}{err}");
        c.must(&[
            "delete",
            "configmap",
            name,
            &format!("--cascade={cascade}"),
            "--wait=false",
        ])
        .await;
        let finalizers = c
            .must(&["get", "configmap", name, "-o", "jsonpath={.metadata.finalizers}"])
            .await;
        assert!(finalizers.contains(finalizer), "{cascade}: {finalizers}");
    }
    // Background (the default): gone at once, dependents left to the
    // garbage collector.
    c.must(&["create", "configmap", "bg"]).await;
    c.must(&["delete", "configmap", "bg", "--cascade=background"]).await;
    let (ok, _, err) = c.kubectl(&["get", "configmap", "bg"], None).await;
    assert!(!ok && err.contains("not found"), "{err}");

    // A namespace terminates; nothing new goes in; finalize lets it go.
    let doomed = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(doomed)).await;
    assert!(ok, "{out}{err}");
    c.must(&["delete", "namespace", "doomed", "--wait=false"]).await;
    let phase = c
        .must(&["get", "namespace", "doomed", "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(phase, "Terminating");
    let late = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late","namespace":"doomed"}}"#;
    let (ok, _, err) = c.kubectl(&["create", "-f", "-"], Some(late)).await;
    assert!(!ok && err.contains("because it is being terminated"), "{err}");
    let mut ns = c.json(&["get", "namespace", "doomed", "-o", "json"]).await;
    ns["spec"]["finalizers"] = serde_json::json!([]);
    let (ok, out, err) = c
        .kubectl(
            &["replace", "--raw", "/api/v1/namespaces/doomed/finalize", "-f", "-"],
            Some(&ns.to_string()),
        )
        .await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = c.kubectl(&["get", "namespace", "doomed"], None).await;
    assert!(!ok && err.contains("not found"), "{err}");

    // Server-side dry runs change nothing.
    let dry = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dry"},"data":{"a":"b"}}"#;
    let (ok, out, err) = c.kubectl(&["create", "--dry-run=server", "-f", "-"], Some(dry)).await;
    assert!(ok && out.contains("server dry run"), "{out}{err}");
    let (ok, _, err) = c.kubectl(&["get", "configmap", "dry"], None).await;
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(dry)).await;
    assert!(ok, "{out}{err}");
    c.must(&["delete", "configmap", "dry", "--dry-run=server"]).await;
    c.must(&["label", "configmap", "dry", "x=y", "--dry-run=server"]).await;
    let labels = c
        .must(&["get", "configmap", "dry", "-o", "jsonpath={.metadata.labels}"])
        .await;
    assert!(labels.is_empty(), "{labels}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_semantics_on_our_store() {
    deletion_semantics("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_semantics_on_etcd() {
    deletion_semantics("etcd").await;
}

/// `kubectl apply --server-side`: creation, removal of dropped fields,
/// conflicts with another manager and --force-conflicts; with kubectl 1.32
/// and 1.35.
async fn server_side_apply(kind: &str) {
    let c = Cluster::start(kind).await;
    for kubectl in ["kubectl", "kubectl-1.35"] {
        let name = if kubectl == "kubectl" { "ssa-132" } else { "ssa-135" };
        let manifest = |replicas: u32, label: bool| {
            let labels = if label { "\n  labels:\n    tier: front" } else { "" };
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}{labels}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: busybox:1\n"
            )
        };
        let apply = |body: String, extra: &'static [&'static str]| {
            let c = &c;
            async move {
                let mut args = vec!["apply", "--server-side", "-f", "-"];
                args.extend(extra);
                c.kubectl_version(kubectl, &args, Some(&body)).await
            }
        };
        let (ok, out, err) = apply(manifest(2, true), &[]).await;
        assert!(ok && out.contains("serverside-applied"), "{kubectl}: {out}{err}");
        let (ok, out, err) = apply(manifest(2, false), &[]).await;
        assert!(ok, "{out}{err}");
        let labels = c
            .must(&["get", "deployment", name, "-o", "jsonpath={.metadata.labels}"])
            .await;
        assert!(
            !labels.contains("tier"),
            "a field dropped from the configuration goes: {labels}"
        );

        c.must(&["scale", "deployment", name, "--replicas=5"]).await;
        let (ok, _, err) = apply(manifest(3, false), &[]).await;
        assert!(
            !ok && err.contains("conflict") && err.contains(".spec.replicas"),
            "{kubectl}: {err}"
        );
        let (ok, out, err) = apply(manifest(3, false), &["--force-conflicts"]).await;
        assert!(ok, "{out}{err}");
        let replicas = c
            .must(&["get", "deployment", name, "-o", "jsonpath={.spec.replicas}"])
            .await;
        assert_eq!(replicas, "3");
    }
    // Applies are counted as APPLY, as kube-apiserver labels them.
    let metrics = c.must(&["get", "--raw", "/metrics"]).await;
    assert!(
        metrics.contains(r#"apiserver_request_total{code="200",component="apiserver",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"}"#),
        "{metrics}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_on_our_store() {
    server_side_apply("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_on_etcd() {
    server_side_apply("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insecure_port_answers_curl_on_loopback() {
    let port = testkit::free_port().to_string();
    let c = Cluster::start_with("kubernate", &["--insecure-port", &port]).await;
    let get = |path: &str| {
        let url = format!("http://127.0.0.1:{port}{path}");
        async move {
            let out = tokio::process::Command::new("curl")
                .args(["-s", "--max-time", "10", &url])
                .output()
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let resources = get("/api/v1").await;
    assert_eq!(resources["kind"], "APIResourceList");
    for (path, kind) in [
        ("/api/v1/pods", "PodList"),
        ("/api/v1/services", "ServiceList"),
        ("/api/v1/replicationcontrollers", "ReplicationControllerList"),
    ] {
        assert_eq!(get(path).await["kind"], kind, "{path}");
    }
    let services = get("/api/v1/services").await;
    assert_eq!(services["items"][0]["metadata"]["name"], "kubernetes");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_stores_nothing() {
    let c = Cluster::start("kubernate").await;
    let post = |body: String, content_type: &'static str| {
        let c = &c;
        async move {
            let args = [
                "-i",
                "-X",
                "POST",
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                "@-",
            ];
            c.curl_input(&args, "/api/v1/namespaces/default/configmaps", &body)
                .await
        }
    };
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            "{not json".into(),
            "application/json",
            "HTTP/2 400",
            "error decoding JSON",
        ),
        (
            "a: [unclosed".into(),
            "application/yaml",
            "HTTP/2 400",
            "error decoding YAML",
        ),
        (
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.into(),
            "application/json",
            "HTTP/2 400",
            "does not match the expected kind",
        ),
        (
            r#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.into(),
            "application/json",
            "HTTP/2 400",
            "does not match the expected API version",
        ),
        (
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.into(),
            "application/json",
            "HTTP/2 422",
            "metadata.name",
        ),
        (
            format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"x"}},"data":{{"big":"{}"}}}}"#,
                "a".repeat(4 << 20)
            ),
            "application/json",
            "HTTP/2 413",
            "RequestEntityTooLarge",
        ),
        ("<xml/>".into(), "application/xml", "HTTP/2 415", "UnsupportedMediaType"),
    ];
    for (body, content_type, status, words) in cases {
        let answer = post(body, content_type).await;
        assert!(
            answer.starts_with(status),
            "{status} for {content_type}: {}",
            &answer[..answer.len().min(400)]
        );
        assert!(
            answer.contains(words) && answer.contains(r#""kind":"Status""#),
            "{}",
            &answer[..answer.len().min(600)]
        );
    }
    let stored = c.must(&["get", "configmaps", "-o", "name"]).await;
    assert!(stored.trim().is_empty(), "nothing stored: {stored}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_proxy_serves_curl() {
    let c = Cluster::start("kubernate").await;
    let port = testkit::free_port().to_string();
    let mut proxy = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["--server", &c.server, "proxy", "--port", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/namespaces");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "--max-time", "5", &url])
            .output()
            .await
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl proxy did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "NamespaceList");
    assert!(list["items"].as_array().unwrap().len() >= 4);
    proxy.kill().await.unwrap();
    c.stop().await;
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.count, labelSelectorPath: .status.selector}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue]}
          status:
            type: object
            properties:
              ready: {type: boolean}
              count: {type: integer}
              selector: {type: string}
"#;

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec: {spec}\n")
}

/// A CRD's resource is served at once, checked against its schema, has a
/// status subresource, survives an API server restart and goes with its CRD.
async fn custom_resources(kind: &str) {
    let mut c = Cluster::start(kind).await;
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(WIDGET_CRD)).await;
    assert!(ok, "{out}{err}");
    let established = c
        .must(&[
            "get",
            "crd",
            "widgets.example.com",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#,
        ])
        .await;
    assert_eq!(established, "True");
    let in_apps = WIDGET_CRD
        .replace("group: example.com", "group: apps")
        .replace("widgets.example.com", "widgets.apps");
    let (ok, _, err) = c.kubectl(&["apply", "-f", "-"], Some(&in_apps)).await;
    assert!(!ok && err.contains("cannot be extended"), "{err}");
    let resources = c.must(&["api-resources", "--api-group", "example.com"]).await;
    assert!(resources.contains("widgets") && resources.contains("wd"), "{resources}");

    let (ok, out, err) = c
        .kubectl(&["apply", "-f", "-"], Some(&widget("w1", "{size: 3, color: red}")))
        .await;
    assert!(ok, "{out}{err}");
    let size = c.must(&["get", "wd", "w1", "-o", "jsonpath={.spec.size}"]).await;
    assert_eq!(size, "3");
    // The CRD's printer columns, as kubectl get shows them.
    let shown = c.must(&["get", "wd", "w1"]).await;
    let mut lines = shown.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "AGE"], "{shown}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["w1", "3", "red"], "{shown}");
    // The scale subresource maps onto the CRD's paths.
    c.must(&["scale", "wd", "w1", "--replicas=5"]).await;
    assert_eq!(c.must(&["get", "wd", "w1", "-o", "jsonpath={.spec.size}"]).await, "5");
    let patch_status = |patch: &'static str| {
        let c = &c;
        async move {
            let args = [
                "patch",
                "widget",
                "w1",
                "--subresource=status",
                "--type=merge",
                "-p",
                patch,
            ];
            c.must(&args).await
        }
    };
    patch_status(r#"{"status":{"count":4,"selector":"app=w1"}}"#).await;
    let scale = c
        .json(&[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
        ])
        .await;
    assert_eq!(
        (scale["spec"]["replicas"].as_i64(), scale["status"]["replicas"].as_i64()),
        (Some(5), Some(4))
    );
    assert_eq!(scale["status"]["selector"], "app=w1");
    // kubectl explain reads the CRD's schema from /openapi/v3.
    let explained = c.must(&["explain", "widgets.spec"]).await;
    assert!(
        explained.contains("size") && explained.contains("<integer>"),
        "{explained}"
    );
    for (spec, expected) in [
        ("{size: 0}", "greater than or equal to 1"),
        ("{size: big}", "must be of type integer"),
        ("{color: red}", "spec.size: Required value"),
        ("{size: 2, color: green}", "Unsupported value"),
        ("{size: 2, shape: round}", r#"unknown field "spec.shape""#),
    ] {
        let (ok, _, err) = c.kubectl(&["apply", "-f", "-"], Some(&widget("bad", spec))).await;
        assert!(!ok && err.contains(expected), "{spec}: {err}");
    }
    let (ok, out, err) = c
        .kubectl(
            &["apply", "--validate=false", "-f", "-"],
            Some(&widget("pruned", "{size: 2, shape: round}")),
        )
        .await;
    assert!(ok, "{out}{err}");
    let spec = c.must(&["get", "widget", "pruned", "-o", "jsonpath={.spec}"]).await;
    assert!(!spec.contains("shape"), "unknown fields are pruned: {spec}");

    patch_status(r#"{"status":{"ready":true}}"#).await;
    c.must(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":false}}"#,
    ])
    .await;
    let ready = c.must(&["get", "widget", "w1", "-o", "jsonpath={.status.ready}"]).await;
    assert_eq!(ready, "true", "the main resource ignores status");

    c.kill_apiserver();
    c.start_apiserver().await;
    let listed = c.must(&["get", "widgets", "-o", "name"]).await;
    assert!(
        listed.contains("widget.example.com/w1"),
        "served again after a restart: {listed}"
    );

    c.must(&["delete", "crd", "widgets.example.com"]).await;
    let (ok, _, err) = c.kubectl(&["get", "widgets"], None).await;
    assert!(!ok, "{err}");
    // Defined again, it starts empty.
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(WIDGET_CRD)).await;
    assert!(ok, "{out}{err}");
    let listed = c.must(&["get", "widgets", "-o", "name"]).await;
    assert!(listed.trim().is_empty(), "{listed}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_on_our_store() {
    custom_resources("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_on_etcd() {
    custom_resources("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_larger_than_a_grpc_message_are_served() {
    for kind in ["etcd", "kubernate"] {
        large_list(kind).await;
    }
}

async fn large_list(kind: &str) {
    let c = Cluster::start(kind).await;
    let big = "x".repeat(700 * 1024);
    for i in 0..8 {
        let cm = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big-{i}"}},"data":{{"d":"{big}"}}}}"#
        );
        let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&cm)).await;
        assert!(ok, "{out}{err}");
    }
    // 5.6 MB of objects: more than etcd-client's 4 MiB message limit.
    let names = c.must(&["get", "configmaps", "-o", "name"]).await;
    assert_eq!(names.lines().count(), 8, "{names}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_sharing_storage_convert_and_lose_nothing() {
    let c = Cluster::start("kubernate").await;
    let hpa = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 1Gi}}
"#;
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(hpa)).await;
    assert!(ok, "{out}{err}");
    let v1 = c
        .must(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "-o",
            "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage}",
        ])
        .await;
    assert_eq!(v1, "autoscaling/v1 60");
    // A write through v1 keeps what only v2 can say.
    c.must(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":7}}"#,
    ])
    .await;
    let v2 = c
        .must(&[
            "get",
            "horizontalpodautoscalers.v2.autoscaling",
            "web",
            "-o",
            "jsonpath={.spec.maxReplicas} {.spec.metrics[*].resource.name}",
        ])
        .await;
    assert_eq!(v2, "7 cpu memory");

    let event = r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e1"},
        "involvedObject":{"kind":"Pod","name":"p","namespace":"default"},"reason":"Started","message":"started it","type":"Normal"}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(event)).await;
    assert!(ok, "{out}{err}");
    let seen = c
        .must(&[
            "get",
            "events.v1.events.k8s.io",
            "e1",
            "-o",
            "jsonpath={.apiVersion} {.note} {.regarding.name}",
        ])
        .await;
    assert_eq!(seen, "events.k8s.io/v1 started it p");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_resource_version_matches_are_checked() {
    let c = Cluster::start("kubernate").await;
    let base = "/api/v1/namespaces/default/configmaps";
    let future = curl(
        &c,
        "GET",
        &format!("{base}?resourceVersion=999999&resourceVersionMatch=NotOlderThan"),
        None,
    )
    .await;
    assert!(
        future.starts_with("HTTP/2 504") && future.contains("Too large resource version"),
        "{future}"
    );
    let odd = curl(
        &c,
        "GET",
        &format!("{base}?resourceVersion=1&resourceVersionMatch=Sometimes"),
        None,
    )
    .await;
    assert!(odd.starts_with("HTTP/2 400"), "{odd}");
    let bare = curl(&c, "GET", &format!("{base}?resourceVersionMatch=Exact"), None).await;
    assert!(
        bare.starts_with("HTTP/2 400") && bare.contains("forbidden unless resourceVersion"),
        "{bare}"
    );
    // Gets: any version reached is fine, a future one is a 504, and a
    // field label a resource lacks is a 400.
    c.must(&["create", "configmap", "one"]).await;
    let one = format!("{base}/one");
    assert!(curl(&c, "GET", &format!("{one}?resourceVersion=1"), None)
        .await
        .starts_with("HTTP/2 200"));
    let ahead = curl(&c, "GET", &format!("{one}?resourceVersion=999999"), None).await;
    assert!(
        ahead.starts_with("HTTP/2 504") && ahead.contains("Too large resource version"),
        "{ahead}"
    );
    let bad = curl(&c, "GET", &format!("{one}?resourceVersion=abc"), None).await;
    assert!(bad.starts_with("HTTP/2 400"), "{bad}");
    let label = curl(&c, "GET", &format!("{base}?fieldSelector=spec.color%3Dred"), None).await;
    assert!(
        label.starts_with("HTTP/2 400") && label.contains("field label not supported: spec.color"),
        "{label}"
    );
    // A Node that never set spec.unschedulable is schedulable.
    let (ok, out, err) = c
        .kubectl(
            &["create", "-f", "-"],
            Some(r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#),
        )
        .await;
    assert!(ok, "{out}{err}");
    let nodes = c
        .must(&[
            "get",
            "nodes",
            "--field-selector",
            "spec.unschedulable=false",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(nodes.trim(), "node/n1");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_all_land_and_a_pinned_version_is_a_precondition() {
    let c = Cluster::start("kubernate").await;
    c.must(&["create", "configmap", "busy"]).await;
    // Eight kubectl patches at once: each is re-applied to the newest object
    // rather than refused, and none is lost.
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(["--server", &c.server]);
        cmd.args([
            "patch",
            "configmap",
            "busy",
            "-p",
            &format!(r#"{{"data": {{"k{i}": "v{i}"}}}}"#),
        ]);
        writers.spawn(async move { cmd.output().await.unwrap() });
    }
    while let Some(out) = writers.join_next().await {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "a concurrent patch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cm = c.json(&["get", "configmap", "busy", "-o", "json"]).await;
    for i in 0..8 {
        assert_eq!(cm["data"][format!("k{i}")], format!("v{i}"), "{cm}");
    }
    // A patch that names an old resourceVersion is refused, not re-applied.
    let stale = r#"{"metadata": {"resourceVersion": "1"}, "data": {"late": "x"}}"#;
    let (ok, _, err) = c
        .kubectl(&["patch", "configmap", "busy", "--type=merge", "-p", stale], None)
        .await;
    assert!(
        !ok && (err.contains("Conflict") || err.contains("the object has been modified")),
        "{err}"
    );
    let cm = c.json(&["get", "configmap", "busy", "-o", "json"]).await;
    assert!(cm["data"].get("late").is_none());
    c.stop().await;
}

/// kubectl reads the protobuf `/openapi/v2` for kinds without a PATCH
/// operation (the reviews): a review is created without
/// `--validate=false`, and a misspelt field is refused (kubectl asks for
/// `fieldValidation=Strict`, which review bodies honour too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_validates_review_kinds_with_the_protobuf_openapi_v2() {
    let c = Cluster::start("kubernate").await;
    let review = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}}"#;
    for kubectl in ["kubectl", "kubectl-1.35"] {
        let (ok, out, err) = c
            .kubectl_version(kubectl, &["create", "-f", "-", "-o", "json"], Some(review))
            .await;
        assert!(ok, "{kubectl}: {out}{err}");
        let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(answer["status"]["allowed"], true, "{out}");
        let bad = review.replace("\"verb\"", "\"verbb\"");
        let (ok, _, err) = c.kubectl_version(kubectl, &["create", "-f", "-"], Some(&bad)).await;
        assert!(
            !ok && err.contains(r#"unknown field "spec.resourceAttributes.verbb""#),
            "{kubectl}: {err}"
        );
    }
    c.stop().await;
}

/// Health endpoints run named checks: `?verbose` lists them, one can be
/// asked alone or excluded, and a stopped store fails `etcd` (500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_report_each_check() {
    // etcd: a store process the test can freeze.
    let c = Cluster::start("etcd").await;
    let ready = curl(&c, "GET", "/readyz?verbose", None).await;
    assert!(
        ready.starts_with("HTTP/2 200") || ready.starts_with("HTTP/1.1 200"),
        "{ready}"
    );
    for line in ["[+]ping ok", "[+]etcd ok", "[+]shutdown ok", "readyz check passed"] {
        assert!(ready.contains(line), "{ready}");
    }
    assert!(curl(&c, "GET", "/livez/etcd", None).await.ends_with("\r\n\r\nok"));
    assert!(curl(&c, "GET", "/livez/nonsense", None).await.contains(" 404"));
    c.signal_store("-STOP");
    let stopped = curl(&c, "GET", "/readyz", None).await;
    // Excluding the failing check passes while the store is still frozen.
    let excluded = curl(&c, "GET", "/healthz?exclude=etcd", None).await;
    c.signal_store("-CONT");
    assert!(stopped.contains(" 500"), "{stopped}");
    assert!(
        stopped.contains("[-]etcd failed: reason withheld") && stopped.contains("readyz check failed"),
        "{stopped}"
    );
    assert!(excluded.contains(" 200"), "{excluded}");
    c.stop().await;
}

/// deletecollection honours dryRun (query or DeleteOptions) and deletes
/// only the selected objects otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_collection_honours_dry_run_and_selectors() {
    let c = Cluster::start("kubernate").await;
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        c.must(&["create", "configmap", name]).await;
        c.must(&["label", "configmap", name, &format!("tier={tier}")]).await;
    }
    let names = || async { c.must(&["get", "configmaps", "-o", "name"]).await };
    let answer = curl(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dweb&dryRun=All",
        None,
    )
    .await;
    assert!(answer.contains(" 200"), "{answer}");
    let body = r#"{"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}"#;
    let answer = curl(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dweb",
        Some(body),
    )
    .await;
    assert!(answer.contains(" 200"), "{answer}");
    let left = names().await;
    assert!(
        left.contains("configmap/a") && left.contains("configmap/b"),
        "dry runs deleted: {left}"
    );
    c.must(&["delete", "configmaps", "-l", "tier=web"]).await;
    let left = names().await;
    assert!(
        !left.contains("configmap/a") && !left.contains("configmap/b") && left.contains("configmap/c"),
        "{left}"
    );
    c.stop().await;
}

/// Name rules per kind, immutable ConfigMaps and the namespaces that may
/// not be deleted, through kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_immutable_data_and_immortal_namespaces() {
    let c = Cluster::start("kubernate").await;
    let (ok, _, err) = c.kubectl(&["create", "namespace", "a.b"], None).await;
    assert!(!ok && err.contains("RFC 1123 label"), "{err}");
    let (ok, _, err) = c
        .kubectl(&["create", "service", "clusterip", "1web", "--tcp=80"], None)
        .await;
    assert!(!ok && err.contains("DNS-1035 label"), "{err}");
    for ns in ["default", "kube-system", "kube-public"] {
        let (ok, _, err) = c.kubectl(&["delete", "namespace", ns], None).await;
        assert!(!ok && err.contains("this namespace may not be deleted"), "{err}");
    }
    let frozen = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen"}, "immutable": true, "data": {"a": "1"}}"#;
    let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(frozen)).await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = c
        .kubectl(&["patch", "configmap", "frozen", "-p", r#"{"data": {"a": "2"}}"#], None)
        .await;
    assert!(
        !ok && err.contains("field is immutable when `immutable` is set"),
        "{err}"
    );
    c.must(&["label", "configmap", "frozen", "still=editable"]).await;
    c.stop().await;
}

/// `kubectl certificate approve` and `deny` write the approval
/// subresource: the condition is stored, nothing else changes, and a
/// request cannot be both approved and denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_requests_are_approved_through_their_subresource() {
    let c = Cluster::start("kubernate").await;
    let csr = |name: &str| {
        format!(
            r#"{{"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {{"name": "{name}"}},
                "spec": {{"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "signerName": "example.com/signer",
                         "usages": ["client auth"]}}}}"#
        )
    };
    for name in ["alice", "bob"] {
        let (ok, out, err) = c.kubectl(&["create", "-f", "-"], Some(&csr(name))).await;
        assert!(ok, "{out}{err}");
    }
    c.must(&["certificate", "approve", "alice"]).await;
    c.must(&["certificate", "deny", "bob"]).await;
    let alice = c.json(&["get", "csr", "alice", "-o", "json"]).await;
    assert_eq!(alice["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(alice["spec"]["signerName"], "example.com/signer");
    let bob = c.json(&["get", "csr", "bob", "-o", "json"]).await;
    assert_eq!(bob["status"]["conditions"][0]["type"], "Denied");
    // kubectl will not approve a denied request; the server refuses too.
    let mut both = bob.clone();
    both["status"]["conditions"] = serde_json::json!([
        {"type": "Denied", "status": "True", "reason": "r", "message": "m"},
        {"type": "Approved", "status": "True", "reason": "r", "message": "m"},
    ]);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/bob/approval";
    let answer = curl(&c, "PUT", path, Some(&both.to_string())).await;
    assert!(
        answer.starts_with("HTTP/2 422") && answer.contains("mutually exclusive"),
        "{answer}"
    );
    c.stop().await;
}

/// Content negotiation: YAML when asked, 406 for media types not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_in_the_media_type_asked_for() {
    let c = Cluster::start("kubernate").await;
    c.must(&["create", "configmap", "settings", "--from-literal=color=blue"])
        .await;
    let path = "/api/v1/namespaces/default/configmaps/settings";
    let cluster = &c;
    let get = |accept: &'static str| async move {
        let header = format!("Accept: {accept}");
        String::from_utf8_lossy(&cluster.curl(&["-i", "-H", &header], path).await).to_string()
    };
    // fieldValidation=Warn drops unknown fields and says so.
    let odd = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "odd"}, "colour": "red"}"#;
    let (ok, out, err) = c.kubectl(&["create", "--validate=warn", "-f", "-"], Some(odd)).await;
    assert!(ok && err.contains(r#"Warning: unknown field "colour""#), "{out}{err}");
    let yaml = get("application/yaml").await;
    assert!(
        yaml.contains("content-type: application/yaml") && yaml.contains("color: blue"),
        "{yaml}"
    );
    let refused = get("text/html").await;
    assert!(refused.starts_with("HTTP/2 406"), "{refused}");
    let anything = get("text/html, */*").await;
    assert!(anything.contains("content-type: application/json"), "{anything}");
    c.stop().await;
}
