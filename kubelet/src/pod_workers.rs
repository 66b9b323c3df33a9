//! The sync loop's workers: one task per pod, woken by the pod's changes
//! (the watch), by its containers' changes (the [PLEG](crate::pleg)), or
//! by a timer, each time bringing the pod's containers toward its spec.
//!
//! One sync of a pod:
//!
//! - **Gone from the API**: its containers are killed and removed, and its
//!   directories with them.
//! - **Being deleted**: its containers are stopped (SIGTERM, then SIGKILL
//!   after the grace period), the final status is written, and the pod is
//!   deleted for good (grace period 0), which is the kubelet's
//!   confirmation that nothing runs any more.
//! - **Otherwise**: init containers run one at a time, in order, each to
//!   success; then every app container is started, and restarted when it
//!   exits as `restartPolicy` says, waiting out a back-off that doubles
//!   from 10 s to 5 min (CrashLoopBackOff) and resets after 10 minutes of
//!   running. The status is written when it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Api, DeleteParams, Patch};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::json;
use tokio::sync::Notify;

use crate::runtime::{ContainerStatus, Mount, Runtime, State};
use crate::status::{self, Waiting};
use crate::Kubelet;

const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long restarts without back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// Grace for containers of a pod that vanished from the API.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// How soon a container waiting for its volumes or config looks again.
const CONFIG_RETRY: Duration = Duration::from_secs(5);

/// What one sync of a pod prepared for all its containers.
struct PodContext<'a> {
    pod: &'a Arc<Pod>,
    /// Volume host paths by name, or why they could not be set up.
    volumes: Result<HashMap<String, std::path::PathBuf>, String>,
    /// The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf.
    pod_files: Vec<Mount>,
}

/// Per container: how long the next restart waits, and from when.
#[derive(Default)]
pub struct Backoffs {
    entries: Mutex<HashMap<(String, String), (Duration, Instant)>>,
}

impl Backoffs {
    /// Whether the container may restart now; if not, how long it still waits.
    /// (time left, the whole delay) while the back-off runs.
    fn wait(&self, uid: &str, name: &str, finished: Instant) -> Option<(Duration, Duration)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (delay, _) = entries.get(&(uid.to_string(), name.to_string())).copied()?;
        let ready = finished + delay;
        ready.checked_duration_since(Instant::now()).map(|left| (left, delay))
    }

    /// A restart happened: the next one waits twice as long.
    fn restarted(&self, uid: &str, name: &str, ran: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (uid.to_string(), name.to_string());
        let next = match entries.get(&key) {
            _ if ran >= BACKOFF_RESET => BACKOFF_INITIAL,
            Some((d, _)) => (*d * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        entries.insert(key, (next, Instant::now()));
    }

    fn forget(&self, uid: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(u, _), _| u != uid);
    }
}

/// Per container: how many times its image was missing and when to look
/// again. A look that fails is `ErrImagePull`; until the next look (10 s
/// doubling to 5 min) the container waits in `ImagePullBackOff`, as
/// upstream's image puller backs off.
#[derive(Default)]
pub struct ImagePulls {
    failures: Mutex<HashMap<(String, String), (u32, Instant)>>,
}

impl ImagePulls {
    /// While a back-off runs: how long it still waits.
    fn backing_off(&self, uid: &str, name: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (_, next) = failures.get(&(uid.to_string(), name.to_string()))?;
        next.checked_duration_since(Instant::now())
    }

    /// Counts a failed look; returns when to look again.
    fn failed(&self, uid: &str, name: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = failures
            .entry((uid.to_string(), name.to_string()))
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        let delay = (BACKOFF_INITIAL * 2u32.saturating_pow(entry.0.saturating_sub(1).min(5))).min(BACKOFF_MAX);
        entry.1 = Instant::now() + delay;
        delay
    }

    fn succeeded(&self, uid: &str, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&(uid.to_string(), name.to_string()));
    }

    fn forget(&self, uid: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|(u, _), _| u != uid);
    }
}

/// The workers, by pod uid.
#[derive(Default)]
pub struct PodWorkers {
    workers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl PodWorkers {
    /// Wakes the pod's worker, starting it if there is none.
    pub fn dispatch<R: Runtime>(&self, kubelet: &Arc<Kubelet<R>>, uid: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = workers.get(uid) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        notify.notify_one();
        workers.insert(uid.to_string(), notify.clone());
        let (kubelet, uid) = (kubelet.clone(), uid.to_string());
        tokio::spawn(async move {
            loop {
                let period = kubelet.sync_period;
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(period) => {}
                    _ = kubelet.stop.cancelled() => break,
                }
                let started = Instant::now();
                let outcome = kubelet.sync_pod(&uid).await;
                kubelet.metrics.worker_duration.observe(started.elapsed().as_secs_f64());
                match outcome {
                    Ok(Next::Done) => break,
                    Ok(Next::After(d)) => {
                        let n = notify.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(d).await;
                            n.notify_one();
                        });
                    }
                    Ok(Next::Idle) => {}
                    Err(e) => {
                        tracing::warn!(pod = %uid, error = %e, "pod sync failed; retrying");
                        let n = notify.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            n.notify_one();
                        });
                    }
                }
            }
            kubelet
                .workers
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
        });
    }

    pub fn count(&self) -> usize {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// What the worker does after a sync.
pub enum Next {
    /// Wait for the next change or the periodic resync.
    Idle,
    /// Look again after this long (a back-off running out).
    After(Duration),
    /// The pod is gone: the worker ends.
    Done,
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

impl<R: Runtime> Kubelet<R> {
    fn containers_of(&self, uid: &str) -> Vec<ContainerStatus> {
        self.runtime
            .list_containers()
            .into_iter()
            .filter(|c| c.config.pod_uid == uid)
            .collect()
    }

    pub async fn sync_pod(self: &Arc<Self>, uid: &str) -> client::Result<Next> {
        let pod = self.pods.indexer().by_index(crate::UID_INDEX, uid).into_iter().next();
        let Some(pod) = pod else {
            self.clean_up(uid).await;
            return Ok(Next::Done);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(&pod).await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            for c in self.containers_of(uid) {
                let _ = self.runtime.stop_container(&c.id, ORPHAN_GRACE).await;
            }
            return Ok(Next::Idle);
        }
        let ip = self
            .runtime
            .run_pod_sandbox(uid)
            .map_err(|e| client::Error::Config(e.to_string()))?;
        self.kill_unhealthy(&pod).await;
        let pod_dir = self.pod_dir(uid);
        let volumes = crate::volumes::set_up_all(&self.client, &self.tokens, &pod, &pod_dir)
            .await
            .map_err(|e| e.to_string());
        let pod_files = crate::container_config::pod_files(&pod, &pod_dir, &ip)
            .map_err(|e| client::Error::Config(format!("writing the pod's files: {e}")))?;
        let ctx = PodContext {
            pod: &pod,
            volumes,
            pod_files,
        };
        let mut waiting = Waiting::new();
        let next = self.start_containers(&ctx, &mut waiting).await;
        let containers = self.containers_of(uid);
        self.write_status(&pod, &containers, &waiting, &ip).await?;
        self.collect_dead(&containers);
        Ok(next)
    }

    /// Starts what should run now; returns when to look again.
    async fn start_containers(self: &Arc<Self>, ctx: &PodContext<'_>, waiting: &mut Waiting) -> Next {
        let pod = ctx.pod;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let containers = self.containers_of(&uid);
        let mut next = Next::Idle;
        // Init containers, in order, each to success.
        for init in spec.init_containers.iter().flatten() {
            let (latest, _) = status::attempts(&containers, &init.name);
            match latest.map(|c| &c.state) {
                Some(State::Exited { exit_code: 0, .. }) => continue,
                Some(State::Running { .. } | State::Created) => {
                    self.mark_waiting_apps(&spec.containers, waiting, "PodInitializing");
                    return next;
                }
                Some(State::Exited { .. }) if policy == "Never" => return next,
                _ => {
                    self.start_or_wait(ctx, init, latest, latest.is_none(), waiting, &mut next)
                        .await;
                    self.mark_waiting_apps(&spec.containers, waiting, "PodInitializing");
                    return next;
                }
            }
        }
        for c in &spec.containers {
            let (latest, _) = status::attempts(&containers, &c.name);
            let restart = match latest.map(|l| &l.state) {
                None => true,
                Some(State::Running { .. }) | Some(State::Created) => false,
                Some(State::Exited { exit_code, .. }) => match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => *exit_code != 0,
                    _ => true,
                },
            };
            if restart {
                self.start_or_wait(ctx, c, latest, latest.is_none(), waiting, &mut next)
                    .await;
            }
        }
        next
    }

    fn mark_waiting_apps(&self, containers: &[Container], waiting: &mut Waiting, reason: &str) {
        for c in containers {
            waiting.insert(c.name.clone(), (reason.to_string(), String::new()));
        }
    }

    /// Starts a container (again), unless its back-off still runs.
    async fn start_or_wait(
        self: &Arc<Self>,
        ctx: &PodContext<'_>,
        spec: &Container,
        latest: Option<&ContainerStatus>,
        first: bool,
        waiting: &mut Waiting,
        next: &mut Next,
    ) {
        let pod = ctx.pod;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let attempt = latest.map_or(0, |l| l.config.attempt + 1);
        if let (
            false,
            Some(State::Exited {
                started_at,
                finished_at,
                ..
            }),
        ) = (first, latest.map(|l| &l.state))
        {
            let ran = Duration::from_secs(u64::try_from(finished_at - started_at).unwrap_or(0));
            let finished_ago =
                Duration::from_secs(u64::try_from(crate::runtime::shim::now_seconds() - finished_at).unwrap_or(0));
            let finished = Instant::now().checked_sub(finished_ago).unwrap_or_else(Instant::now);
            // A container that ran long enough restarts at once (its back-off resets).
            let waiting_out = if ran >= BACKOFF_RESET {
                None
            } else {
                self.backoff.wait(&uid, &spec.name, finished)
            };
            if let Some((left, delay)) = waiting_out {
                // The whole delay, as upstream says it: a message that changed
                // every second would rewrite the status every second.
                let message = format!(
                    "back-off {}s restarting failed container={} pod={}",
                    delay.as_secs(),
                    spec.name,
                    pod_key(pod)
                );
                waiting.insert(spec.name.clone(), ("CrashLoopBackOff".into(), message));
                *next = Next::After(left);
                return;
            }
            self.backoff.restarted(&uid, &spec.name, ran);
        }
        let mut config_error = |reason: &str, message: String, retry: Duration| {
            waiting.insert(spec.name.clone(), (reason.to_string(), message));
            *next = Next::After(retry);
        };
        let paths = match &ctx.volumes {
            Ok(paths) => paths,
            Err(e) => return config_error("ContainerCreating", e.clone(), CONFIG_RETRY),
        };
        let image_name = spec.image.clone().unwrap_or_default();
        if let Some(left) = self.pulls.backing_off(&uid, &spec.name) {
            let message = format!("Back-off pulling image {image_name:?}");
            return config_error("ImagePullBackOff", message, left);
        }
        let image = match common::image_store::lookup(&self.image_store, &image_name) {
            Ok(image) => {
                self.pulls.succeeded(&uid, &spec.name);
                image
            }
            Err(e) => {
                let retry = self.pulls.failed(&uid, &spec.name);
                return config_error("ErrImagePull", e.to_string(), retry);
            }
        };
        let image_env = image.config.env.clone().unwrap_or_default();
        let env = match crate::env::resolve(&self.client, pod, spec, &image_env).await {
            Ok(env) => env,
            Err(e) => return config_error("CreateContainerConfigError", e.to_string(), CONFIG_RETRY),
        };
        let mut mounts = ctx.pod_files.clone();
        match crate::volumes::mounts_for(pod, spec, paths, &env) {
            Ok(m) => mounts.extend(m),
            Err(e) => return config_error("CreateContainerConfigError", e.to_string(), CONFIG_RETRY),
        }
        let inputs = crate::container_config::Inputs {
            pod,
            spec,
            image: &image,
            env,
            mounts,
            attempt,
        };
        let config = match crate::container_config::build(inputs) {
            Ok(config) => config,
            Err(e) => return config_error("CreateContainerConfigError", e, CONFIG_RETRY),
        };
        let started = self
            .runtime
            .create_container(&config)
            .and_then(|id| self.runtime.start_container(&id).map(|()| id));
        match started {
            Ok(id) => {
                tracing::info!(pod = %pod_key(pod), container = %spec.name, attempt, "started container");
                self.post_start(pod, spec, &id).await;
            }
            Err(e) => {
                waiting.insert(spec.name.clone(), ("RunContainerError".into(), e.to_string()));
                *next = Next::After(Duration::from_secs(5));
            }
        }
    }

    /// Kills the containers whose liveness or startup probe failed; the
    /// restart policy decides what follows.
    async fn kill_unhealthy(&self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        for c in self.containers_of(uid) {
            if matches!(c.state, State::Running { .. }) && self.should_kill(&c.id) {
                tracing::info!(pod = %pod_key(pod), container = %c.config.name, "probe failed: restarting the container");
                let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
                if let Err(e) = self.runtime.stop_container(&c.id, grace).await {
                    tracing::warn!(error = %e, "could not stop an unhealthy container");
                }
            }
        }
    }

    /// Runs the container's postStart hook; a failure kills the container
    /// (its restart policy decides what follows), as upstream does.
    async fn post_start(&self, pod: &Pod, spec: &Container, id: &str) {
        let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
            return;
        };
        // The hook runs once the container does (its shim says so shortly).
        let mut status = None;
        for _ in 0..200 {
            match self.runtime.list_containers().into_iter().find(|c| c.id == id) {
                Some(c) if matches!(c.state, State::Created) => {}
                found => {
                    status = found;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(status) = status else {
            return;
        };
        if let Err(why) = crate::prober::run_hook(hook, spec, &status, &self.node_ip, Duration::from_secs(30)).await {
            tracing::warn!(pod = %pod_key(pod), container = %spec.name, %why, "postStart hook failed; killing the container");
            let _ = self.runtime.stop_container(id, Duration::from_secs(2)).await;
        }
    }

    /// Runs the preStop hooks of the pod's running containers, together,
    /// within `grace`; returns what is left of it.
    async fn pre_stop(&self, pod: &Pod, running: &[ContainerStatus], grace: Duration) -> Duration {
        let started = Instant::now();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut hooks = tokio::task::JoinSet::new();
        for c in running {
            let Some(container) = spec.containers.iter().find(|s| s.name == c.config.name).cloned() else {
                continue;
            };
            let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
                continue;
            };
            let (status, ip, key) = (c.clone(), self.node_ip.clone(), pod_key(pod));
            hooks.spawn(async move {
                if let Err(why) = crate::prober::run_hook(&hook, &container, &status, &ip, grace).await {
                    tracing::warn!(pod = %key, container = %container.name, %why, "preStop hook failed");
                }
            });
        }
        let _ = tokio::time::timeout(grace, async { while hooks.join_next().await.is_some() {} }).await;
        grace.saturating_sub(started.elapsed())
    }

    /// Keeps the newest two attempts of each container (the second is
    /// lastState); removes older ones.
    fn collect_dead(&self, containers: &[ContainerStatus]) {
        let mut by_name: HashMap<&str, Vec<&ContainerStatus>> = HashMap::new();
        for c in containers {
            by_name.entry(c.config.name.as_str()).or_default().push(c);
        }
        for (_, mut attempts) in by_name {
            attempts.sort_by_key(|c| std::cmp::Reverse(c.config.attempt));
            for old in attempts.iter().skip(2) {
                if matches!(old.state, State::Exited { .. }) {
                    let _ = self.runtime.remove_container(&old.id);
                }
            }
        }
    }

    async fn write_status(
        &self,
        pod: &Pod,
        containers: &[ContainerStatus],
        waiting: &Waiting,
        ip: &str,
    ) -> client::Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let start_time = {
            let mut starts = self.start_times.lock().unwrap_or_else(|p| p.into_inner());
            starts
                .entry(uid.clone())
                .or_insert_with(|| {
                    pod.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map_or_else(|| client::api::timestamp_now().to_string(), |t| t.0.to_string())
                })
                .clone()
        };
        let probes = |c: &Container, id: &str| (self.probes.ready(c, id), self.probes.started(c, id));
        let status = status::pod_status(pod, containers, waiting, &probes, ip, &self.node_ip, &start_time);
        // Through the API types, as the API server will store it (whole-second
        // times, absent nulls), so an unchanged status compares equal.
        let status = serde_json::from_value::<k8s_openapi::api::core::v1::PodStatus>(status)
            .ok()
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or_default();
        let current = serde_json::to_value(&pod.status).unwrap_or_default();
        let changed = status.as_object().into_iter().flatten().any(|(k, v)| {
            let mut theirs = current.get(k).cloned().unwrap_or_default();
            let mut ours = v.clone();
            // Compare without the probe times the API fills in.
            for side in [&mut theirs, &mut ours] {
                if let Some(list) = side.as_array_mut() {
                    list.iter_mut().filter_map(|c| c.as_object_mut()).for_each(|c| {
                        c.remove("lastProbeTime");
                    });
                }
            }
            theirs != ours
        });
        if !changed {
            return Ok(());
        }
        if status["phase"] == "Running" && current["phase"] != "Running" {
            let seen = self.first_seen(&uid);
            self.metrics.pod_start_duration.observe(seen.elapsed().as_secs_f64());
        }
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        api.patch_status(
            pod.metadata.name.as_deref().unwrap_or_default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
        Ok(())
    }

    /// The pod is being deleted: stop everything, report, confirm.
    async fn terminate(self: &Arc<Self>, pod: &Arc<Pod>) -> client::Result<Next> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        let running: Vec<ContainerStatus> = self
            .containers_of(&uid)
            .into_iter()
            .filter(|c| matches!(c.state, State::Running { .. }))
            .collect();
        let grace = self.pre_stop(pod, &running, grace).await;
        // All of a pod's containers stop together.
        let mut stops = tokio::task::JoinSet::new();
        for c in running {
            let runtime = self.runtime.clone();
            stops.spawn(async move { runtime.stop_container(&c.id, grace).await });
        }
        while let Some(done) = stops.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "stopping a container failed");
            }
        }
        let containers = self.containers_of(&uid);
        let ip = self.node_ip.clone();
        let _ = self.write_status(pod, &containers, &Waiting::new(), &ip).await;
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let params = DeleteParams {
            uid: Some(uid.clone()),
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match api
            .delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        tracing::info!(pod = %pod_key(pod), "pod terminated");
        Ok(Next::Idle)
    }

    /// The pod is gone from the API: nothing of it may stay.
    async fn clean_up(&self, uid: &str) {
        for c in self.containers_of(uid) {
            let _ = self.runtime.stop_container(&c.id, ORPHAN_GRACE).await;
            let _ = self.runtime.remove_container(&c.id);
            if let Some(dir) = c.log_path.parent().and_then(|p| p.parent()) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        crate::volumes::tear_down(&self.pod_dir(uid));
        let _ = self.runtime.remove_pod_sandbox(uid);
        self.backoff.forget(uid);
        self.pulls.forget(uid);
        self.tokens.forget(uid);
        self.start_times.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    fn pod_dir(&self, uid: &str) -> std::path::PathBuf {
        self.root_dir.join("pods").join(uid)
    }

    fn first_seen(&self, uid: &str) -> Instant {
        *self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(uid.to_string())
            .or_insert_with(Instant::now)
    }
}
