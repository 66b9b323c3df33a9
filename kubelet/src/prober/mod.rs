//! Probes: liveness, readiness and startup checks of running containers.
//!
//! A loop looks at every running container a few times a second and runs
//! the probes that are due (`initialDelaySeconds` after the container
//! started, then every `periodSeconds`, each bounded by `timeoutSeconds`).
//! A probe's result flips only after `successThreshold` successes or
//! `failureThreshold` failures in a row. Until a startup probe has
//! succeeded, the other probes wait. A failed readiness probe makes the
//! container not ready (the pod leaves its Services' endpoints); a failed
//! liveness or startup probe kills the container, which then restarts as
//! its restartPolicy says. Every change wakes the pod's worker.
//!
//! Actions: `exec` (the command, inside the container, in its
//! environment: exit code 0), [`httpGet`](http_get) (a status from 200 to
//! 399; HTTP or unverified HTTPS), `tcpSocket` (the port accepts a
//! connection), `grpc` (the gRPC Health service answers SERVING).

mod grpc;
mod http_get;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio_util::sync::CancellationToken;

use crate::runtime::{ContainerStatus, Runtime, State};
use crate::Kubelet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// One probe's running state for one container (attempt).
#[derive(Debug, Clone)]
struct Tracked {
    /// The current result: `None` until decided.
    result: Option<bool>,
    successes: i32,
    failures: i32,
    last_run: Option<Instant>,
}

/// Results, by (container id, kind).
#[derive(Default)]
pub struct Probes {
    tracked: Mutex<HashMap<(String, Kind), Tracked>>,
}

impl Probes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Kind), Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The result of a container's probe; `None` when undecided.
    pub fn result(&self, container_id: &str, kind: Kind) -> Option<bool> {
        self.lock()
            .get(&(container_id.to_string(), kind))
            .and_then(|t| t.result)
    }

    /// Whether the container counts as started (no startup probe, or it passed).
    pub fn started(&self, container: &Container, id: &str) -> bool {
        container.startup_probe.is_none() || self.result(id, Kind::Startup) == Some(true)
    }

    /// Whether the container is ready (running, started, and no readiness
    /// probe or it passes).
    pub fn ready(&self, container: &Container, id: &str) -> bool {
        self.started(container, id)
            && (container.readiness_probe.is_none() || self.result(id, Kind::Readiness) == Some(true))
    }

    /// Forgets containers that are gone.
    fn retain(&self, ids: &[String]) {
        self.lock().retain(|(id, _), _| ids.contains(id));
    }
}

fn seconds(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

/// Runs a lifecycle hook (postStart, preStop): exec, httpGet, tcpSocket
/// or sleep, bounded by `timeout`.
pub async fn run_hook(
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    container: &Container,
    status: &ContainerStatus,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &hook.sleep {
        let wanted = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        tokio::time::sleep(wanted.min(timeout)).await;
        return Ok(());
    }
    let probe = Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        timeout_seconds: Some(i32::try_from(timeout.as_secs().max(1)).unwrap_or(30)),
        ..Default::default()
    };
    run_action(&probe, container, status, pod_ip).await
}

/// Runs one probe action; `Ok(())` is a success, `Err(why)` a failure.
async fn run_action(
    probe: &Probe,
    container: &Container,
    status: &ContainerStatus,
    pod_ip: &str,
) -> Result<(), String> {
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_millis(100));
    let port_of = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("no container port named {name:?}")),
        }
    };
    let work = async {
        if let Some(exec) = &probe.exec {
            let argv = exec.command.clone().unwrap_or_default();
            let program = argv.first().ok_or("an exec probe needs a command")?;
            let mut command =
                crate::runtime::process::exec_command(status, &argv).map_err(|e| format!("exec {program:?}: {e}"))?;
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let code = command.status().await.map_err(|e| format!("exec {program:?}: {e}"))?;
            return if code.success() {
                Ok(())
            } else {
                Err(format!("command exited with {code}"))
            };
        }
        if let Some(tcp) = &probe.tcp_socket {
            let host = tcp.host.clone().unwrap_or_else(|| pod_ip.to_string());
            let port = port_of(&tcp.port)?;
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
            return Ok(());
        }
        if let Some(http) = &probe.http_get {
            let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
            let headers: Vec<(String, String)> = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            return http_get::get(http_get::Request {
                https: http.scheme.as_deref() == Some("HTTPS"),
                host: &host,
                port: port_of(&http.port)?,
                path: http.path.as_deref().unwrap_or("/"),
                headers: &headers,
            })
            .await;
        }
        if let Some(grpc) = &probe.grpc {
            let port = u16::try_from(grpc.port).map_err(|_| format!("port {} out of range", grpc.port))?;
            return grpc::check(pod_ip, port, grpc.service.clone().unwrap_or_default()).await;
        }
        Err("the probe has no handler this kubelet supports (exec, httpGet, tcpSocket, grpc)".into())
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

/// The probes of a container, by kind.
fn probes_of(c: &Container) -> Vec<(Kind, &Probe)> {
    let mut out = Vec::new();
    if let Some(p) = &c.startup_probe {
        out.push((Kind::Startup, p));
    }
    if let Some(p) = &c.liveness_probe {
        out.push((Kind::Liveness, p));
    }
    if let Some(p) = &c.readiness_probe {
        out.push((Kind::Readiness, p));
    }
    out
}

impl<R: Runtime> Kubelet<R> {
    /// Runs the due probes of one container; returns whether a result changed.
    async fn probe_container(&self, pod: &Pod, spec: &Container, status: &ContainerStatus, started_at: i64) -> bool {
        let mut changed = false;
        let age = Duration::from_secs(u64::try_from(crate::runtime::shim::now_seconds() - started_at).unwrap_or(0));
        for (kind, probe) in probes_of(spec) {
            if kind != Kind::Startup && !self.probes.started(spec, &status.id) {
                continue; // Everything waits for the startup probe.
            }
            if kind == Kind::Startup && self.probes.result(&status.id, Kind::Startup) == Some(true) {
                continue; // A startup probe stops once it has succeeded.
            }
            let key = (status.id.clone(), kind);
            let due = {
                let tracked = self.probes.lock();
                let last = tracked.get(&key).and_then(|t| t.last_run);
                age >= seconds(probe.initial_delay_seconds, 0)
                    && last.is_none_or(|l| {
                        l.elapsed() >= seconds(probe.period_seconds, 10).max(Duration::from_millis(100))
                    })
            };
            if !due {
                continue;
            }
            let outcome = run_action(probe, spec, status, &self.node_ip).await;
            let mut tracked = self.probes.lock();
            let t = tracked.entry(key).or_insert(Tracked {
                result: None,
                successes: 0,
                failures: 0,
                last_run: None,
            });
            t.last_run = Some(Instant::now());
            let before = t.result;
            match &outcome {
                Ok(()) => {
                    t.successes += 1;
                    t.failures = 0;
                    if t.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                        t.result = Some(true);
                    }
                }
                Err(why) => {
                    t.failures += 1;
                    t.successes = 0;
                    if t.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                        t.result = Some(false);
                        tracing::info!(pod = ?pod.metadata.name, container = %spec.name, ?kind, %why, "probe failed");
                    }
                }
            }
            if t.result != before {
                changed = true;
            }
        }
        changed
    }

    /// Whether a failed liveness or startup probe says: restart it.
    pub fn should_kill(&self, id: &str) -> bool {
        self.probes.result(id, Kind::Liveness) == Some(false) || self.probes.result(id, Kind::Startup) == Some(false)
    }
}

/// The probe loop.
pub async fn run<R: Runtime>(kubelet: Arc<Kubelet<R>>, stop: CancellationToken) {
    // Each container's probes run in their own task, so a slow probe
    // delays only its own container; one round at a time per container.
    let in_flight: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    loop {
        let containers = kubelet.runtime.list_containers();
        let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
        kubelet.probes.retain(&ids);
        for status in &containers {
            let State::Running { started_at, .. } = status.state else {
                continue;
            };
            let Some(pod) = kubelet
                .pods
                .indexer()
                .by_index(crate::UID_INDEX, &status.config.pod_uid)
                .into_iter()
                .next()
            else {
                continue;
            };
            let spec = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == status.config.name))
                .cloned();
            let Some(spec) = spec else { continue };
            if probes_of(&spec).is_empty() {
                continue;
            }
            if !in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(status.id.clone())
            {
                continue;
            }
            let (kubelet, status, in_flight) = (kubelet.clone(), status.clone(), in_flight.clone());
            tokio::spawn(async move {
                if kubelet.probe_container(&pod, &spec, &status, started_at).await {
                    kubelet.workers.dispatch(&kubelet, &status.config.pod_uid);
                }
                in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&status.id);
            });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
