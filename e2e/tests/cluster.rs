//! Whole clusters from `kubernate up`, used the way a person would use
//! them: through kubectl.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use e2e::{running_and_ready, wait_for, Up, T};

async fn ready_pods(up: &Up, selector: &str, n: usize) {
    wait_for(&format!("{n} pods {selector} Running and Ready"), T, || async {
        let pods = up.pods(selector).await;
        (pods.len() == n && pods.iter().all(running_and_ready)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_scales_rolls_out_and_goes() {
    let up = Up::start(1);
    up.create_deployment("web", 3, &["sh", "-c", "echo serving; sleep 3600"])
        .await;
    ready_pods(&up, "app=web", 3).await;
    let logs = up.must(&["logs", "deployment/web"]).await;
    assert_eq!(logs, "serving\n");
    up.must(&["scale", "deployment/web", "--replicas=5"]).await;
    ready_pods(&up, "app=web", 5).await;
    up.must(&["scale", "deployment/web", "--replicas=1"]).await;
    ready_pods(&up, "app=web", 1).await;

    up.must(&["set", "env", "deployment/web", "COLOR=blue"]).await;
    up.must(&["rollout", "status", "deployment/web", "--timeout=90s"]).await;
    let pods = up.pods("app=web").await;
    let env = &pods[0]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["value"], "blue", "{env}");
    up.must(&["rollout", "undo", "deployment/web"]).await;
    up.must(&["rollout", "status", "deployment/web", "--timeout=90s"]).await;
    wait_for("the old template back", T, || async {
        let pods = up.pods("app=web").await;
        (pods.len() == 1 && pods[0]["spec"]["containers"][0]["env"].is_null() && running_and_ready(&pods[0]))
            .then_some(())
    })
    .await;

    up.must(&["delete", "deployment", "web"]).await;
    wait_for("ReplicaSets and pods gone", T, || async {
        let rs = up.must(&["get", "replicasets", "-o", "name"]).await;
        let (ok, pods, _) = up.kubectl(&["get", "pods", "-o", "name"]).await;
        (ok && rs.trim().is_empty() && pods.trim().is_empty()).then_some(())
    })
    .await;
    up.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_shows_crash_loop_back_off() {
    let up = Up::start(1);
    up.must(&[
        "run",
        "crash",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo failing; exit 1",
    ])
    .await;
    wait_for("CrashLoopBackOff with restarts", T, || async {
        let pod = up.json(&["get", "pod", "crash", "-o", "json"]).await;
        let c = &pod["status"]["containerStatuses"][0];
        let restarts = c["restartCount"].as_i64().unwrap_or(0);
        (restarts >= 1 && c["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(())
    })
    .await;
    let table = up.must(&["get", "pod", "crash"]).await;
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    up.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_starting_the_cluster_keeps_objects_and_running_pods() {
    let up = Up::start(2);
    up.create_deployment("keep", 2, &["sleep", "3600"]).await;
    up.must(&["create", "configmap", "settings", "--from-literal=a=1"])
        .await;
    ready_pods(&up, "app=keep", 2).await;
    let nodes = up.must(&["get", "nodes", "-o", "name"]).await;
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    up.down();
    assert!(!std::path::Path::new(&up.dir.path().join("up.pid")).exists());
    up.up();
    ready_pods(&up, "app=keep", 2).await;
    let cm = up.json(&["get", "configmap", "settings", "-o", "json"]).await;
    assert_eq!(cm["data"]["a"], "1");
    up.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_component() {
    let up = Up::start(2);
    let config = up.dir.path().join("prometheus.yml");
    let check = std::process::Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let port = testkit::free_port();
    let data = up.dir.path().join("prometheus-data");
    let _prometheus = testkit::ChildGuard(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let targets = wait_for("every target up", T, || async {
        let out = tokio::process::Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/api/v1/targets")])
            .output()
            .await
            .ok()?;
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let active = body["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 6 && active.iter().all(|t| t["health"] == "up")).then_some(active)
    })
    .await;
    let mut jobs: Vec<String> = targets
        .iter()
        .filter_map(|t| t["labels"]["job"].as_str().map(str::to_string))
        .collect();
    jobs.sort();
    jobs.dedup();
    assert_eq!(
        jobs,
        ["apiserver", "controller-manager", "kubelet", "scheduler", "store"]
    );
    up.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_components_come_back_and_the_cluster_converges() {
    let up = Up::start(1);
    up.create_deployment("steady", 2, &["sleep", "3600"]).await;
    ready_pods(&up, "app=steady", 2).await;
    let before = up.pods("app=steady").await;
    let ids = |pods: &[serde_json::Value]| {
        let mut ids: Vec<String> = pods
            .iter()
            .map(|p| {
                p["status"]["containerStatuses"][0]["containerID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids
    };

    // kill -9 of the kubelet: restarted, it adopts its containers.
    let old = up.kill("kubernate-kubelet", Some("node-1"));
    wait_for("a new kubelet", T, || async {
        up.pid_of("kubernate-kubelet", Some("node-1")).filter(|p| *p != old)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    ready_pods(&up, "app=steady", 2).await;
    let after = up.pods("app=steady").await;
    assert_eq!(ids(&after), ids(&before), "the same containers, none started twice");
    assert!(after
        .iter()
        .all(|p| p["status"]["containerStatuses"][0]["restartCount"] == 0));

    // kill -9 of the API server: everyone reconnects, new work gets done.
    let old = up.kill("kubernate-apiserver", None);
    wait_for("a new API server", T, || async {
        up.pid_of("kubernate-apiserver", None).filter(|p| *p != old)
    })
    .await;
    wait_for("the API answering", T, || async {
        up.kubectl(&["get", "nodes"]).await.0.then_some(())
    })
    .await;
    up.create_deployment("later", 2, &["sleep", "3600"]).await;
    ready_pods(&up, "app=later", 2).await;
    up.must(&["scale", "deployment/steady", "--replicas=3"]).await;
    ready_pods(&up, "app=steady", 3).await;
    up.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_kubelet_makes_its_node_not_ready_until_it_is_back() {
    let up = Up::start_with(1, &["--node-monitor-grace-period", "4s"]);
    up.must(&["run", "quiet", "--image=busybox", "--", "sleep", "3600"])
        .await;
    ready_pods(&up, "run=quiet", 1).await;
    let ready = |node: serde_json::Value| {
        node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    };
    // A frozen kubelet stops renewing its Lease: the node goes Unknown (NotReady).
    up.signal("kubernate-kubelet", Some("node-1"), "-STOP");
    wait_for("node-1 NotReady", T, || async {
        let node = up.json(&["get", "node", "node-1", "-o", "json"]).await;
        (ready(node)? == "Unknown").then_some(())
    })
    .await;
    let table = up.must(&["get", "nodes"]).await;
    assert!(table.contains("NotReady"), "{table}");
    up.signal("kubernate-kubelet", Some("node-1"), "-CONT");
    wait_for("node-1 Ready again", T, || async {
        let node = up.json(&["get", "node", "node-1", "-o", "json"]).await;
        (ready(node)? == "True").then_some(())
    })
    .await;
    ready_pods(&up, "run=quiet", 1).await;
    up.down();
}

const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: shop}
stringData: {value: s3cret}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox
        command: [sh, -c, "echo $GREETING ${#TOKEN} $(cat /config/greeting) $(wc -c < /secret/value); sleep 3600"]
        env:
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
        - {name: TOKEN, valueFrom: {secretKeyRef: {name: token, key: value}}}
        volumeMounts:
        - {name: config, mountPath: /config}
        - {name: secret, mountPath: /secret, readOnly: true}
        readinessProbe: {exec: {command: [test, -f, /config/greeting]}, periodSeconds: 1}
        livenessProbe: {exec: {command: [test, -f, /secret/value]}, periodSeconds: 2}
      volumes:
      - {name: config, configMap: {name: settings}}
      - {name: secret, secret: {secretName: token, defaultMode: 0400}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_manifest_runs_and_its_namespace_deletion_cleans_up() {
    let up = Up::start(1);
    let (ok, out, err) = up.apply(SHOP).await;
    assert!(ok, "{out}{err}");
    wait_for("2 ready pods in shop", T, || async {
        let list = up
            .json(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "json"])
            .await;
        let pods = list["items"].as_array()?.clone();
        (pods.len() == 2 && pods.iter().all(running_and_ready)).then_some(())
    })
    .await;
    let all = up.must(&["get", "all", "-n", "shop"]).await;
    for kind in ["deployment.apps/web", "replicaset.apps/web-", "service/web", "pod/web-"] {
        assert!(all.contains(kind), "{kind} missing from:\n{all}");
    }
    // Environment and volumes from the ConfigMap and the Secret (its
    // length only).
    let logs = up.must(&["logs", "-n", "shop", "deployment/web"]).await;
    assert_eq!(logs, "hello 6 hello 6\n");
    // The Service's endpoints list both ready pods.
    wait_for("endpoints", T, || async {
        let e = up.json(&["get", "endpoints", "web", "-n", "shop", "-o", "json"]).await;
        let addresses = e["subsets"][0]["addresses"].as_array()?.len();
        (addresses == 2 && e["subsets"][0]["ports"][0]["port"] == 8080).then_some(())
    })
    .await;

    up.must(&["delete", "namespace", "shop", "--wait=false"]).await;
    wait_for("the namespace gone", T, || async {
        let (ok, _, err) = up.kubectl(&["get", "namespace", "shop"]).await;
        (!ok && err.contains("not found")).then_some(())
    })
    .await;
    let (_, leftovers, _) = up.kubectl(&["get", "pods", "-A", "-o", "name"]).await;
    assert!(!leftovers.contains("web-"), "{leftovers}");
    up.down();
}

/// (service.name, trace id, span name) of one received span.
type Seen = (String, Vec<u8>, String);

/// An OTLP trace receiver: keeps every span it is sent, with the
/// `service.name` of the process that sent it.
#[derive(Default, Clone)]
struct Receiver {
    spans: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span.trace_id, span.name));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_apply_is_one_trace_through_the_api_server_and_the_store() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
                    receiver.clone(),
                ),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let up = Up::start_with_env(1, &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let (ok, out, err) = up
        .apply(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "traced", "namespace": "default"}, "data": {"k": "v"}}"#)
        .await;
    assert!(ok, "{out}{err}");
    // The apply's create: a span in the API server, and in the store a span
    // of the same trace.
    let (trace, services) = wait_for("a trace through the API server and the store", T, || async {
        let spans = receiver.spans.lock().unwrap().clone();
        spans
            .iter()
            .filter(|(service, _, name)| service == "kubernate-apiserver" && name.contains("/configmaps"))
            .find_map(|(_, trace, _)| {
                let services: std::collections::BTreeSet<String> = spans
                    .iter()
                    .filter(|(_, t, _)| t == trace)
                    .map(|(s, _, _)| s.clone())
                    .collect();
                services.contains("kubernate-store").then(|| (trace.clone(), services))
            })
    })
    .await;
    assert_eq!(trace.len(), 16, "a W3C trace id");
    assert!(services.contains("kubernate-apiserver"), "{services:?}");
    // The API server's store calls are spans of the same trace.
    let spans = receiver.spans.lock().unwrap().clone();
    let store_calls = spans
        .iter()
        .filter(|(service, t, name)| service == "kubernate-apiserver" && *t == trace && name == "etcd");
    assert!(store_calls.count() >= 1, "{spans:?}");
    up.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_find_their_service_account_credentials_where_client_go_looks() {
    let up = Up::start(1);
    wait_for("the default ServiceAccount", T, || async {
        up.kubectl(&["get", "serviceaccount", "default"]).await.0.then_some(())
    })
    .await;
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    up.must(&[
        "run",
        "creds",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        &format!("cat {dir}/namespace; echo; head -1 {dir}/ca.crt; cat {dir}/token; echo"),
    ])
    .await;
    let logs = wait_for("the credentials printed", T, || async {
        let (ok, logs, _) = up.kubectl(&["logs", "creds"]).await;
        (ok && logs.lines().count() >= 3).then_some(logs)
    })
    .await;
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines[0], "default", "{logs}");
    assert_eq!(lines[1], "-----BEGIN CERTIFICATE-----", "{logs}");
    let review = format!(
        r#"{{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {{"token": "{}"}}}}"#,
        lines[2].trim()
    );
    let (ok, out, err) = up.kubectl_stdin(&["create", "-o", "json", "-f", "-"], &review).await;
    assert!(ok, "{err}");
    let review: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        review["status"]["user"]["username"], "system:serviceaccount:default:default",
        "{review}"
    );
    up.down();
}
