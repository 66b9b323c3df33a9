//! The kubelet end to end with the real API server and store and the
//! process runtime: registration and heartbeat, a pod with an init
//! container and two containers running with their environment and logs,
//! graceful deletion, a crash loop backing off, and a kubelet restart that
//! adopts its running containers.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::path::{Path, PathBuf};
use std::time::Duration;

use client::{Api, Client};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use testkit::{wait_for, Cluster, Component};

const T: Duration = Duration::from_secs(60);
const NODE: &str = "node-1";

/// Kills the containers left under a kubelet root when dropped, so a
/// failed test (which never reaches `stop`) leaves no process behind.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_all(&self.0);
    }
}

struct Env {
    cluster: Cluster,
    _reaper: Reaper,
    client: Client,
    kubelet: Component,
    root: PathBuf,
    /// The kubelet API's port.
    api_port: String,
}

impl Env {
    async fn start() -> Env {
        let cluster = Cluster::start("kubernate").await;
        cluster.add_node(NODE);
        let client = Client::from_resolved(&cluster.admin_config()).unwrap();
        let root = cluster.dir.path().join("kubelet");
        let images = cluster.dir.path().join("images");
        testkit::import_busybox(&images);
        let pki = cluster.pki();
        let file = |f: &str| pki.join(f).to_str().unwrap().to_string();
        let (cert, key, ca) = (
            file(&format!("nodes/{NODE}-serving.crt")),
            file(&format!("nodes/{NODE}-serving.key")),
            file("ca.crt"),
        );
        let api_port = testkit::free_port().to_string();
        let kubelet = Component::start(
            &cluster,
            "kubernate-kubelet",
            &format!("nodes/{NODE}"),
            &[
                "--hostname-override",
                NODE,
                "--root-dir",
                root.to_str().unwrap(),
                "--image-store",
                images.to_str().unwrap(),
                "--node-ip",
                "127.0.0.1",
                "--capacity-cpu",
                "4",
                "--capacity-memory",
                "8Gi",
                "--sync-frequency",
                "5s",
                "--address",
                "127.0.0.1",
                "--port",
                &api_port,
                "--tls-cert-file",
                &cert,
                "--tls-private-key-file",
                &key,
                "--client-ca-file",
                &ca,
            ],
        );
        Env {
            _reaper: Reaper(root.clone()),
            cluster,
            client,
            kubelet,
            root,
            api_port,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.cluster.kubectl(&["apply", "-f", "-"], Some(manifest)).await;
        assert!(ok, "kubectl apply failed: {out}{err}");
    }

    async fn running(&self, name: &str) -> Pod {
        wait_for(&format!("{name} Running and Ready"), T, || async {
            let pod = self.pods().get(name).await.ok()?;
            let status = pod.status.clone()?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (status.phase.as_deref() == Some("Running") && ready).then_some(pod)
        })
        .await
    }

    /// `kubectl logs ARGS…` once `done` says the output is complete.
    async fn logs_until(&self, args: &[&str], done: impl Fn(&str) -> bool) -> String {
        let mut full = vec!["logs"];
        full.extend_from_slice(args);
        wait_for(&format!("kubectl {full:?}"), T, || async {
            let logs = self.cluster.must(&full).await;
            done(&logs).then_some(logs)
        })
        .await
    }

    /// `kubectl delete pod NAME --wait=false`, then waits until it is gone.
    async fn delete_and_wait(&self, name: &str) {
        self.cluster.must(&["delete", "pod", name, "--wait=false"]).await;
        wait_for(&format!("{name} gone"), T, || async {
            self.pods().get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }

    /// Stops whatever containers are left (their shims outlive the kubelet).
    async fn stop(self) {
        kill_all(&self.root);
        self.cluster.stop().await;
    }
}

/// The pids of every container recorded under the kubelet's root.
fn container_pids(root: &Path) -> Vec<i32> {
    let Ok(dirs) = std::fs::read_dir(root.join("containers")) else {
        return Vec::new();
    };
    dirs.filter_map(|d| d.ok())
        .filter_map(|d| std::fs::read(d.path().join("pid")).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| v["pid"].as_i64().and_then(|p| i32::try_from(p).ok()))
        .collect()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn kill_all(root: &Path) {
    for pid in container_pids(root) {
        // Only a live container leading its own process group.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let group = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(2)?.parse::<i32>().ok());
        if pid > 1 && group == Some(pid) {
            let _ = std::process::Command::new("kill")
                .args(["-9", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// A directory for files a test's containers and probes signal through.
fn flag_dir(env: &Env, name: &str) -> PathBuf {
    let dir = env.cluster.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn log_of(root: &Path, pod: &Pod, container: &str) -> String {
    let dir = root.join("logs").join(format!(
        "default_{}_{}",
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap()
    ));
    std::fs::read_to_string(dir.join(container).join("0.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_registers_and_heartbeats() {
    let env = Env::start().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let node = wait_for("the node Ready", T, || async {
        let n = nodes.get_opt(NODE).await.ok()??;
        let ready = n
            .status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(n)
    })
    .await;
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    let status = node.status.unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "4");
    assert_eq!(status.allocatable.as_ref().unwrap()["memory"].0, "8Gi");
    assert!(status
        .addresses
        .unwrap()
        .iter()
        .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"));
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "kube-node-lease");
    let first = wait_for("the lease", T, || async { leases.get_opt(NODE).await.ok()? }).await;
    assert_eq!(first.spec.as_ref().unwrap().holder_identity.as_deref(), Some(NODE));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_its_init_and_app_containers_and_stops_gracefully() {
    let env = Env::start().await;
    env.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: default}}
data: {{greeting: hello}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 5
  initContainers:
  - {{name: init, image: busybox, command: [sh, -c, "echo init-done"]}}
  containers:
  - {{name: one, image: busybox, command: [sh, -c, "echo one; sleep 3600"]}}
  - name: two
    image: busybox
    command: [sh, -c, "echo two $GREETING $(POD_NAME); sleep 3600"]
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
"#
    ))
    .await;
    let pod = env.running("web").await;
    let status = pod.status.clone().unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    let init = &status.init_container_statuses.unwrap()[0];
    assert_eq!(init.state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 0);
    for c in status.container_statuses.unwrap() {
        assert!(c.ready && c.started == Some(true) && c.restart_count == 0, "{c:?}");
        assert!(c.state.unwrap().running.is_some());
    }
    wait_for("the logs", T, || async {
        let (init, one, two) = (
            log_of(&env.root, &pod, "init"),
            log_of(&env.root, &pod, "one"),
            log_of(&env.root, &pod, "two"),
        );
        (init.contains(" stdout F init-done")
            && one.contains(" stdout F one")
            && two.contains(" stdout F two hello web"))
        .then_some(())
    })
    .await;

    // kubectl logs, through the API server's pods/log and the kubelet API.
    assert_eq!(env.cluster.must(&["logs", "web", "-c", "two"]).await, "two hello web\n");
    assert_eq!(env.cluster.must(&["logs", "web", "-c", "init"]).await, "init-done\n");
    assert_eq!(
        env.cluster.must(&["logs", "web", "-c", "one", "--tail=1"]).await,
        "one\n"
    );
    let stamped = env.cluster.must(&["logs", "web", "-c", "one", "--timestamps"]).await;
    assert!(stamped.ends_with(" one\n") && stamped.starts_with("20"), "{stamped}");
    let (ok, _, err) = env.cluster.kubectl(&["logs", "web", "-c", "nope"], None).await;
    assert!(!ok && err.contains("container nope is not valid for pod web"), "{err}");

    // The kubelet API's resource metrics, as metrics-server reads them.
    let pki = env.cluster.pki();
    let out = std::process::Command::new("curl")
        .args(["-sf", "--cacert", pki.join("ca.crt").to_str().unwrap()])
        .args([
            "--cert",
            pki.join("admin.crt").to_str().unwrap(),
            "--key",
            pki.join("admin.key").to_str().unwrap(),
        ])
        .arg(format!("https://127.0.0.1:{}/metrics/resource", env.api_port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("container_memory_working_set_bytes{container=\"one\",namespace=\"default\",pod=\"web\"}")
        })
        .unwrap_or_else(|| panic!("no memory for container one:\n{text}"));
    let bytes: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 0.0, "{line}");
    assert!(text.contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"}"));

    let pids = container_pids(&env.root);
    assert!(pids.iter().filter(|p| alive(**p)).count() >= 2);
    let started = std::time::Instant::now();
    env.delete_and_wait("web").await;
    assert!(
        started.elapsed() < Duration::from_secs(5 + 10),
        "took {:?}",
        started.elapsed()
    );
    wait_for("processes gone", T, || async {
        pids.iter().all(|p| !alive(*p)).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_backs_off_with_growing_restarts() {
    let env = Env::start().await;
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "crash", "namespace": "default"}},
            "spec": {{"nodeName": "{NODE}", "containers": [{{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"]}}]}}}}"#
    ))
    .await;
    let c = wait_for("CrashLoopBackOff after a restart", Duration::from_secs(90), || async {
        let pod = env.pods().get("crash").await.ok()?;
        let c = pod.status?.container_statuses?.into_iter().next()?;
        let waiting = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
        (c.restart_count >= 1 && waiting == "CrashLoopBackOff").then_some(c)
    })
    .await;
    // Waiting out the back-off writes nothing: the status does not change.
    let version = env.pods().get("crash").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = env.pods().get("crash").await.unwrap();
    if pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| c[0].restart_count == 1)
    {
        assert_eq!(
            pod.metadata.resource_version, version,
            "the status was rewritten while nothing changed"
        );
    }
    let last = c.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    let pod = env.pods().get("crash").await.unwrap();
    assert_eq!(
        pod.status.unwrap().phase.as_deref(),
        Some("Running"),
        "restartPolicy Always keeps it Running"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kubelet_adopts_its_running_containers() {
    let mut env = Env::start().await;
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "steady", "namespace": "default"}},
            "spec": {{"nodeName": "{NODE}", "containers": [{{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}}]}}}}"#
    ))
    .await;
    let pod = env.running("steady").await;
    // A running pod's status is written once, not on every sync.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = env.pods().get("steady").await.unwrap();
    assert_eq!(
        again.metadata.resource_version, pod.metadata.resource_version,
        "status rewritten in a loop"
    );
    let before = container_pids(&env.root);
    assert_eq!(before.len(), 1);
    env.kubelet.kill();
    assert!(alive(before[0]), "containers outlive their kubelet");
    env.kubelet.restart();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pod = env.running("steady").await;
    assert_eq!(container_pids(&env.root), before, "nothing started twice");
    let c = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(c.restart_count, 0);
    let _ = json!({});
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_restart_unhealthy_containers_and_gate_readiness() {
    let env = Env::start().await;
    let flags = flag_dir(&env, "flags");
    let f = flags.to_str().unwrap();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: probed, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  volumes: [{{name: flags, hostPath: {{path: "{f}", type: Directory}}}}]
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{{name: flags, mountPath: /flags, readOnly: true}}]
    readinessProbe: {{exec: {{command: [test, -f, /flags/ready]}}, periodSeconds: 1, failureThreshold: 1}}
    livenessProbe: {{exec: {{command: [sh, -c, "test ! -f /flags/dead"]}}, periodSeconds: 1, failureThreshold: 2}}
"#
    ))
    .await;
    let status = |pod: Pod| pod.status?.container_statuses?.into_iter().next();
    wait_for("running but not ready", T, || async {
        let c = status(env.pods().get("probed").await.ok()?)?;
        (c.state.as_ref()?.running.is_some() && !c.ready).then_some(())
    })
    .await;
    std::fs::write(flags.join("ready"), "").unwrap();
    env.running("probed").await;
    std::fs::remove_file(flags.join("ready")).unwrap();
    wait_for("not ready again", T, || async {
        (!status(env.pods().get("probed").await.ok()?)?.ready).then_some(())
    })
    .await;

    // Liveness fails: the container is killed and started again.
    std::fs::write(flags.join("dead"), "").unwrap();
    wait_for("a liveness restart", T, || async {
        let c = status(env.pods().get("probed").await.ok()?)?;
        (c.restart_count >= 1).then_some(())
    })
    .await;
    std::fs::remove_file(flags.join("dead")).unwrap();
    std::fs::write(flags.join("ready"), "").unwrap();
    env.running("probed").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_run_after_start_and_before_stop() {
    let env = Env::start().await;
    let flags = flag_dir(&env, "hooks");
    // The container runs as an unprivileged user, who writes here.
    std::fs::set_permissions(&flags, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let f = flags.to_str().unwrap();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 5
  volumes: [{{name: hooks, hostPath: {{path: "{f}"}}}}]
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
    securityContext: {{runAsUser: 1234, runAsGroup: 5678}}
    volumeMounts: [{{name: hooks, mountPath: /hooks}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "id -u > /hooks/poststart-user; echo started > /hooks/poststart"]}}}}
      preStop: {{exec: {{command: [sh, -c, "echo stopping > /hooks/prestop"]}}}}
"#
    ))
    .await;
    env.running("hooked").await;
    assert_eq!(std::fs::read_to_string(flags.join("poststart")).unwrap(), "started\n");
    // Hooks run as the container's user, not as root.
    assert_eq!(std::fs::read_to_string(flags.join("poststart-user")).unwrap(), "1234\n");
    assert!(!flags.join("prestop").exists());
    env.delete_and_wait("hooked").await;
    assert_eq!(std::fs::read_to_string(flags.join("prestop")).unwrap(), "stopping\n");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_logs_streams_until_the_container_ends() {
    let env = Env::start().await;
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "talker", "namespace": "default"}},
            "spec": {{"nodeName": "{NODE}", "restartPolicy": "Never",
                     "containers": [{{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo first; sleep 2; echo second"]}}]}}}}"#
    ))
    .await;
    wait_for("talker running", T, || async {
        let pod = env.pods().get("talker").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let out = env.cluster.must(&["logs", "-f", "talker"]).await;
    assert_eq!(out, "first\nsecond\n");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "follow waited for the second line"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_hold_their_files_with_their_modes_and_follow_updates() {
    let env = Env::start().await;
    let host = flag_dir(&env, "host");
    std::fs::write(host.join("note"), "from the host").unwrap();
    let h = host.to_str().unwrap();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: conf, namespace: default}}
data: {{greeting: hello, other: x}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: default}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vols, namespace: default, labels: {{app: vols, tier: front-end}}}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: conf, configMap: {{name: conf, items: [{{key: greeting, path: dir/greeting.txt, mode: 0400}}]}}}}
  - {{name: creds, secret: {{secretName: creds, defaultMode: 0600}}}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: mem, resourceFieldRef: {{containerName: c, resource: limits.memory, divisor: 1Mi}}}}
  - name: both
    projected:
      sources:
      - {{configMap: {{name: conf, items: [{{key: other, path: other}}]}}}}
      - {{secret: {{name: creds}}}}
  - {{name: scratch, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
  - {{name: host, hostPath: {{path: "{h}", type: Directory}}}}
  containers:
  - name: c
    image: busybox
    resources: {{limits: {{memory: 64Mi}}}}
    command: [sh, -c]
    args:
    - |
      stat -L -c 'mode %a %n' /conf/dir/greeting.txt /creds/password
      echo "greeting=$(cat /conf/dir/greeting.txt) password=$(cat /creds/password)"
      echo "both=$(cat /both/other)/$(cat /both/password)"
      echo "name=$(cat /info/name) mem=$(cat /info/mem)"
      cat /info/labels; echo
      echo "host=$(cat /host/note)"
      echo written > /host/from-pod
      grep -q " /scratch tmpfs" /proc/mounts && echo scratch=tmpfs
      while true; do echo "now=$(cat /conf/dir/greeting.txt)"; sleep 1; done
    volumeMounts:
    - {{name: conf, mountPath: /conf}}
    - {{name: creds, mountPath: /creds, readOnly: true}}
    - {{name: info, mountPath: /info}}
    - {{name: both, mountPath: /both}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: host, mountPath: /host}}
"#
    ))
    .await;
    env.running("vols").await;
    let logs = env.logs_until(&["vols"], |l| l.contains("now=")).await;
    for want in [
        "mode 400 /conf/dir/greeting.txt",
        "mode 600 /creds/password",
        "greeting=hello password=s3cret",
        "both=x/s3cret",
        "name=vols mem=64",
        "app=\"vols\"\ntier=\"front-end\"",
        "host=from the host",
        "scratch=tmpfs",
    ] {
        assert!(logs.contains(want), "{want:?} missing from:\n{logs}");
    }
    assert_eq!(std::fs::read_to_string(host.join("from-pod")).unwrap(), "written\n");
    // A changed ConfigMap reaches the running container.
    env.cluster
        .must(&["patch", "configmap", "conf", "-p", r#"{"data":{"greeting":"bonjour"}}"#])
        .await;
    wait_for("the updated file", T, || async {
        env.cluster
            .must(&["logs", "vols", "--tail=1"])
            .await
            .contains("now=bonjour")
            .then_some(())
    })
    .await;
    // A missing ConfigMap keeps a pod in ContainerCreating, saying why.
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "nocm", "namespace": "default"}},
            "spec": {{"nodeName": "{NODE}", "volumes": [{{"name": "v", "configMap": {{"name": "absent"}}}}],
                     "containers": [{{"name": "c", "image": "busybox", "command": ["sleep", "60"],
                                      "volumeMounts": [{{"name": "v", "mountPath": "/v"}}]}}]}}}}"#
    ))
    .await;
    let waiting = wait_for("ContainerCreating with a reason", T, || async {
        let pod = env.pods().get("nocm").await.ok()?;
        pod.status?.container_statuses?.into_iter().next()?.state?.waiting
    })
    .await;
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    let message = waiting.message.unwrap_or_default();
    assert!(message.contains(r#"configmap "absent" not found"#), "{message}");
    env.cluster
        .must(&["delete", "pod", "vols", "nocm", "--wait=false"])
        .await;
    wait_for("the pods gone", T, || async {
        env.pods().get_opt("vols").await.unwrap().is_none().then_some(())
    })
    .await;
    let tmpfs_left = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.contains(env.root.to_str().unwrap()));
    assert!(!tmpfs_left, "the memory-backed emptyDir is unmounted");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_isolated_and_a_memory_hog_is_oom_killed() {
    if !rustix_is_root() {
        eprintln!("skipped: isolation needs root");
        return;
    }
    let env = Env::start().await;
    let secret_path = env.cluster.dir.path().join("host-only");
    std::fs::write(&secret_path, "host").unwrap();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: boxed, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: busybox
    command: [sh, -c]
    args:
    - |
      echo "host=$(hostname) pid=$$$$ procs=$(ls -d /proc/[0-9]* | wc -l)"
      test -e {secret} && echo "sees the host" || echo "host files hidden"
      touch /written-in-the-container
      exec sleep 3600
  - name: hog
    image: busybox
    resources: {{limits: {{memory: 32Mi, cpu: 200m}}}}
    command: [sh, -c, "echo hogging; exec dd if=/dev/zero of=/dev/null bs=200M count=1"]
"#,
        secret = secret_path.display()
    ))
    .await;
    let logs = env
        .logs_until(&["boxed", "-c", "c"], |l| l.contains("host files"))
        .await;
    assert!(logs.contains("host=boxed pid="), "{logs}");
    let pid: u32 = logs
        .split("pid=")
        .nth(1)
        .unwrap()
        .split(char::is_whitespace)
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{logs}"));
    assert!(pid < 10, "the container has its own PID namespace: {logs}");
    assert!(logs.contains("host files hidden"), "{logs}");
    // The image is shared and never written: the write went to the
    // container's own layer.
    let image_root = env.cluster.dir.path().join("images/busybox_latest/rootfs");
    assert!(image_root.join("bin/sh").exists());
    assert!(!image_root.join("written-in-the-container").exists());

    let hog = wait_for("the hog OOMKilled", T, || async {
        let pod = env.pods().get("boxed").await.ok()?;
        let statuses = pod.status?.container_statuses?;
        let hog = statuses.into_iter().find(|c| c.name == "hog")?;
        let terminated = hog
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .or_else(|| hog.state.as_ref()?.terminated.clone())?;
        Some(terminated)
    })
    .await;
    assert_eq!(
        (hog.reason.as_deref(), hog.exit_code),
        (Some("OOMKilled"), 137),
        "{hog:?}"
    );
    let hog_logs = env.cluster.must(&["logs", "boxed", "-c", "hog"]).await;
    assert!(hog_logs.contains("hogging"), "{hog_logs}");

    // SIGTERM reaches a command that runs as PID 2 under the init: a
    // plain `sleep` stops at once, well within its 30 s grace.
    let started = std::time::Instant::now();
    env.delete_and_wait("boxed").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_waits_in_image_pull_back_off_until_imported() {
    let env = Env::start().await;
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "later", "namespace": "default"}},
            "spec": {{"nodeName": "{NODE}", "terminationGracePeriodSeconds": 1,
                     "containers": [{{"name": "c", "image": "example.com/tools:1.0"}}]}}}}"#
    ))
    .await;
    let reason = |pod: Pod| -> Option<(String, String)> {
        let waiting = pod.status?.container_statuses?.into_iter().next()?.state?.waiting?;
        Some((waiting.reason?, waiting.message.unwrap_or_default()))
    };
    let (_, message) = wait_for("ErrImagePull", T, || async {
        reason(env.pods().get("later").await.ok()?).filter(|(r, _)| r == "ErrImagePull")
    })
    .await;
    assert!(
        message.contains("example.com/tools:1.0") && message.contains("kubernate image import"),
        "{message}"
    );
    wait_for("ImagePullBackOff", T, || async {
        reason(env.pods().get("later").await.ok()?).filter(|(r, _)| r == "ImagePullBackOff")
    })
    .await;
    // The image arrives (the busybox files under the wanted name): the pod
    // starts with the image's default command (sh, which exits at once
    // without input, so it restarts: a Terminated or back-off status).
    let images = env.cluster.dir.path().join("images");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(images.join("busybox_latest"))
        .arg(images.join("example.com_tools_1.0"))
        .status()
        .unwrap();
    assert!(status.success());
    let meta = images.join("example.com_tools_1.0/image.json");
    let text = std::fs::read_to_string(&meta)
        .unwrap()
        .replace("busybox:latest", "example.com/tools:1.0");
    std::fs::write(&meta, text).unwrap();
    wait_for("the container ran", Duration::from_secs(90), || async {
        let pod = env.pods().get("later").await.ok()?;
        let c = pod.status?.container_statuses?.into_iter().next()?;
        let ran = c.state.as_ref()?.terminated.is_some()
            || c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).is_some()
            || c.state.as_ref()?.running.is_some();
        ran.then_some(())
    })
    .await;
    env.stop().await;
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_probes_reach_a_server_in_the_container() {
    let env = Env::start().await;
    let port = testkit::free_port();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: served, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && sleep 2 && echo up > /www/ready.html && exec httpd -f -p 127.0.0.1:{port} -h /www"]
    ports: [{{name: http, containerPort: {port}}}]
    readinessProbe: {{httpGet: {{path: /ready.html, port: http}}, periodSeconds: 1}}
    livenessProbe: {{tcpSocket: {{port: {port}}}, initialDelaySeconds: 3, periodSeconds: 1, failureThreshold: 3}}
"#
    ))
    .await;
    let pod = env.running("served").await;
    let c = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(c.restart_count, 0, "the tcp liveness probe passes");
    // The page goes away: readiness fails, liveness (tcp) still passes.
    let out = tokio::process::Command::new("nsenter")
        .arg(format!("--target={}", container_pids(&env.root)[0]))
        .args(["--mount", "--root", "--", "rm", "/www/ready.html"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("not ready after a 404", T, || async {
        let pod = env.pods().get("served").await.ok()?;
        let c = pod.status?.container_statuses?.into_iter().next()?;
        (!c.ready && c.restart_count == 0).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projected_token_is_the_pods_and_the_kubelet_api_asks_the_api_server() {
    let env = Env::start().await;
    env.cluster.must(&["create", "serviceaccount", "robot"]).await;
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: tokened, namespace: default}}
spec:
  nodeName: {NODE}
  serviceAccountName: robot
  # Its own token volume only (no kube-root-ca.crt here: no controller manager).
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  volumes:
  - name: token
    projected:
      defaultMode: 0400
      sources: [{{serviceAccountToken: {{path: token, expirationSeconds: 3600}}}}]
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "stat -L -c 'mode %a' /var/run/secrets/tokens/token; cat /var/run/secrets/tokens/token; echo; sleep 3600"]
    volumeMounts: [{{name: token, mountPath: /var/run/secrets/tokens}}]
"#
    ))
    .await;
    env.running("tokened").await;
    let logs = env.logs_until(&["tokened"], |l| l.lines().count() >= 2).await;
    assert!(logs.starts_with("mode 400\n"), "{logs}");
    let token = logs.lines().nth(1).unwrap().trim().to_string();
    let review = env
        .cluster
        .kubectl(
            &["create", "--validate=false", "-o", "json", "-f", "-"],
            Some(&format!(
                r#"{{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {{"token": "{token}"}}}}"#
            )),
        )
        .await;
    assert!(review.0, "{}", review.2);
    let review: serde_json::Value = serde_json::from_str(&review.1).unwrap();
    assert_eq!(
        review["status"]["user"]["username"], "system:serviceaccount:default:robot",
        "{review}"
    );
    assert_eq!(
        review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["tokened"])
    );

    // The kubelet API asks the API server (SubjectAccessReview) who may
    // read: a plain user may not, until a binding says so.
    env.cluster.add_user("viewer", &[]);
    let pki = env.cluster.pki();
    let fetch = || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                pki.join("ca.crt").to_str().unwrap(),
            ])
            .args(["--cert", pki.join("users/viewer.crt").to_str().unwrap()])
            .args(["--key", pki.join("users/viewer.key").to_str().unwrap()])
            .arg(format!("https://127.0.0.1:{}/metrics/resource", env.api_port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(fetch(), "403");
    env.cluster
        .must(&[
            "create",
            "clusterrolebinding",
            "viewer-kubelet",
            "--clusterrole=system:kubelet-api-admin",
            "--user=viewer",
        ])
        .await;
    // A refusal is cached for 30 s, as upstream's webhook authorizer does.
    wait_for("allowed once the refusal expires", Duration::from_secs(60), || async {
        (fetch() == "200").then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_specs_cannot_reach_the_host_through_links_or_relative_paths() {
    let env = Env::start().await;
    env.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: conf, namespace: default}}
data: {{k: v}}
---
apiVersion: v1
kind: Pod
metadata: {{name: linky, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: shared, emptyDir: {{}}}}
  - {{name: conf, configMap: {{name: conf}}}}
  initContainers:
  - name: plant
    image: busybox
    command: [sh, -c, "ln -s / /shared/escape && ln -s ../../../../.. /shared/up"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: c
    image: busybox
    command: [sh, -c]
    args:
    - |
      echo "escape=$(ls /escape | tr '\n' ' ')"
      echo "up=$(ls /up | tr '\n' ' ')"
      touch /conf/x 2>/dev/null && echo "conf writable" || echo "conf read-only"
      sleep 3600
    volumeMounts:
    - {{name: shared, mountPath: /escape, subPath: escape}}
    - {{name: shared, mountPath: /up, subPath: up}}
    - {{name: conf, mountPath: /conf}}
"#
    ))
    .await;
    env.running("linky").await;
    let logs = env.logs_until(&["linky", "-c", "c"], |l| l.contains("conf ")).await;
    // Both links resolve inside the volume (its own root), never to the host's /.
    for line in ["escape=", "up="] {
        let seen = logs.lines().find(|l| l.starts_with(line)).unwrap();
        assert!(
            seen.contains("escape") && seen.contains("up") && !seen.contains("proc"),
            "{logs}"
        );
    }
    assert!(logs.contains("conf read-only"), "{logs}");

    // A relative working directory would start outside the chroot: refused.
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "relative", "namespace": "default"}},
            "spec": {{"nodeName": "{NODE}", "restartPolicy": "Never",
                     "containers": [{{"name": "c", "image": "busybox", "workingDir": "app", "command": ["pwd"]}}]}}}}"#
    ))
    .await;
    let ended = wait_for("relative refused", T, || async {
        let pod = env.pods().get("relative").await.ok()?;
        let c = pod.status?.container_statuses?.into_iter().next()?;
        c.state?.terminated
    })
    .await;
    assert_eq!(ended.reason.as_deref(), Some("StartError"), "{ended:?}");
    assert!(ended.message.unwrap_or_default().contains("must be an absolute path"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_the_kubelet_was_down_leaves_nothing_behind() {
    let mut env = Env::start().await;
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "gone", "namespace": "default"}},
            "spec": {{"nodeName": "{NODE}", "terminationGracePeriodSeconds": 1,
                     "volumes": [{{"name": "v", "emptyDir": {{"medium": "Memory"}}}}],
                     "containers": [{{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                      "volumeMounts": [{{"name": "v", "mountPath": "/v"}}]}}]}}}}"#
    ))
    .await;
    let pod = env.running("gone").await;
    let uid = pod.metadata.uid.unwrap();
    let pids = container_pids(&env.root);
    env.kubelet.kill();
    // Deleted for good while no kubelet runs (as the pod GC would).
    env.cluster
        .must(&["delete", "pod", "gone", "--grace-period=0", "--force"])
        .await;
    // The pod's directory alone, as a crash between steps would leave it.
    std::fs::create_dir_all(env.root.join("pods").join("orphan-uid")).unwrap();
    env.kubelet.restart();
    wait_for("processes and directories gone", T, || async {
        let dirs_gone = !env.root.join("pods").join(&uid).exists() && !env.root.join("pods/orphan-uid").exists();
        (dirs_gone && pids.iter().all(|p| !alive(*p))).then_some(())
    })
    .await;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(env.root.to_str().unwrap()), "a tmpfs was left mounted");
    env.stop().await;
}
