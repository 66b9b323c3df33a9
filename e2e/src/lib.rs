//! The end-to-end harness: a cluster started by the real `kubernate up
//! --detach` in a temporary directory (on ports no other test uses),
//! kubectl pointed at it, and `kubernate down` when the test is done.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a harness is a failed test

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The ports `up` uses, before the offset.
const PORTS: &[u16] = &[
    2379, 2380, 2381, 6443, 10257, 10259, 10260, 10261, 10262, 11250, 11251, 11252,
];

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub struct Up {
    pub dir: tempfile::TempDir,
    pub offset: u16,
    nodes: u32,
    /// Extra `kubernate up` flags.
    flags: Vec<String>,
    /// Environment for `kubernate up` (and so its components).
    env: Vec<(String, String)>,
}

impl Up {
    /// `kubernate up --detach` with `nodes` nodes; returns when ready.
    pub fn start(nodes: u32) -> Up {
        Self::start_with(nodes, &[])
    }

    /// The same with extra `kubernate up` flags.
    pub fn start_with(nodes: u32, flags: &[&str]) -> Up {
        Self::start_with_env(nodes, flags, &[])
    }

    /// The same with environment variables for the cluster's processes
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`, say).
    pub fn start_with_env(nodes: u32, flags: &[&str], env: &[(&str, &str)]) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let up = Up {
            dir,
            offset: 0,
            nodes,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        up.start_again()
    }

    fn start_again(mut self) -> Up {
        for _ in 0..50 {
            let offset = fastrand_offset();
            if PORTS.iter().all(|p| free(p + offset)) {
                self.offset = offset;
                break;
            }
        }
        self.up();
        self
    }

    /// Runs `kubernate up --detach` (again, on the same directory).
    pub fn up(&self) {
        let out = Command::new(testkit::binary("kubernate"))
            .args(["up", "--detach", "--dir", self.dir.path().to_str().unwrap()])
            .args([
                "--nodes",
                &self.nodes.to_string(),
                "--port-offset",
                &self.offset.to_string(),
            ])
            .args(&self.flags)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubernate up failed: {}{}\n{}\n--- components ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log("up"),
            self.log_tails()
        );
    }

    pub fn down(&self) {
        let out = Command::new(testkit::binary("kubernate"))
            .args(["down", "--dir", self.dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubernate down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("pki").join("admin.kubeconfig")
    }

    /// The last lines of every component's log, for a failure message.
    pub fn log_tails(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) else {
            return String::new();
        };
        let mut out = String::new();
        for e in entries.filter_map(|e| e.ok()) {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("== {} ==\n{tail}\n", e.file_name().to_string_lossy()));
        }
        out
    }

    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{component}.log"))).unwrap_or_default()
    }

    /// kubectl (bounded by 60 s): (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new("timeout")
            .args(["-k", "5", "60", "kubectl", "--kubeconfig"])
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .await
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    pub async fn must(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    /// `kubectl create deployment NAME --image=busybox --replicas=N -- COMMAND…`.
    pub async fn create_deployment(&self, name: &str, replicas: u32, command: &[&str]) {
        let replicas = format!("--replicas={replicas}");
        let mut args = vec!["create", "deployment", name, "--image=busybox", replicas.as_str(), "--"];
        args.extend_from_slice(command);
        self.must(&args).await;
    }

    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.must(args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON ({e}): {out}"))
    }

    /// The pods of a label selector that are not being deleted.
    pub async fn pods(&self, selector: &str) -> Vec<serde_json::Value> {
        let list = self.json(&["get", "pods", "-l", selector, "-o", "json"]).await;
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new(testkit::binary("kubernate"))
            .args(["down", "--dir", self.dir.path().to_str().unwrap_or_default()])
            .output();
    }
}

/// A pseudo-random port offset from the clock and pid (no extra crate).
///
/// Offsets are multiples of 500 from 1000 to 20500: no difference between
/// two of them equals a difference between two of `up`'s ports, so two
/// clusters started at once never pick each other's ports, and every port
/// stays below the ephemeral range (32768) other tests' connections use.
fn fastrand_offset() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let slot = (nanos ^ std::process::id().wrapping_mul(2654435761)) % 40;
    u16::try_from(1000 + 500 * slot).unwrap_or(1000)
}

/// Whether a pod is Running with every container ready.
pub fn running_and_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub const T: Duration = Duration::from_secs(90);
pub use testkit::wait_for;

impl Up {
    /// The pid of a component of this cluster (by binary name, and for
    /// kubelets the node), found in /proc by its command line.
    pub fn pid_of(&self, binary: &str, node: Option<&str>) -> Option<i32> {
        let dir = self.dir.path().to_string_lossy().to_string();
        std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()).find_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect();
            let matches = args.first().is_some_and(|a| a.ends_with(binary))
                && args.iter().any(|a| a.contains(&dir))
                && node.is_none_or(|n| args.iter().any(|a| a == n));
            matches.then_some(pid)
        })
    }

    /// Sends a signal (`-STOP`, `-CONT`, `-9`) to a component.
    pub fn signal(&self, binary: &str, node: Option<&str>, signal: &str) -> i32 {
        let pid = self
            .pid_of(binary, node)
            .unwrap_or_else(|| panic!("{binary} is not running"));
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        assert!(status.success());
        pid
    }

    /// kill -9 of a component.
    pub fn kill(&self, binary: &str, node: Option<&str>) -> i32 {
        let pid = self
            .pid_of(binary, node)
            .unwrap_or_else(|| panic!("{binary} is not running"));
        let status = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        assert!(status.success());
        pid
    }
}

impl Up {
    /// `kubectl apply -f -` of a manifest.
    pub async fn apply(&self, manifest: &str) -> (bool, String, String) {
        self.kubectl_stdin(&["apply", "-f", "-"], manifest).await
    }

    /// kubectl (bounded by 60 s) with `input` on its standard input.
    pub async fn kubectl_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("timeout")
            .args(["-k", "5", "60", "kubectl", "--kubeconfig"])
            .arg(self.kubeconfig())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }
}
