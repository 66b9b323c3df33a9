//! The process runtime: every container is a Linux process, started and
//! watched through its [shim](super::shim), sharing the node's network
//! (the pod IP is the node's IP).
//!
//! Layout under the kubelet's root directory:
//!
//! ```text
//! containers/<pod uid>_<name>_<attempt>/config.json   what to run
//!                                       log-path      where its log goes
//!                                       pid           pid and start time, once running
//!                                       exit.json     how it ended
//! logs/<namespace>_<pod>_<uid>/<container>/<attempt>.log
//! pods/<pod uid>/                                     the sandbox's directory
//!
//! containers/<id>/cgroups.json, init-pid, init-error   an isolated container's
//! containers/<id>/upper, work, rootfs                 its overlay (see rootfs)
//! ```
//!
//! As root, each container is isolated: the shim starts it through
//! `unshare` in new PID, mount, UTS and IPC namespaces, where its
//! [init](super::init) joins its [cgroups](super::cgroups), builds its
//! [root filesystem](super::rootfs) from the image and runs the command.
//! Not as root, the command runs on the host as the kubelet's user.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::shim::{self, Exit, Started};
use super::{ContainerConfig, ContainerStatus, Result, Runtime, RuntimeError, State};

pub struct ProcessRuntime {
    root: PathBuf,
    /// The kubelet binary, which is also the shim.
    shim: PathBuf,
    ip: String,
}

/// Whether containers run isolated here (only root can).
pub fn isolates(config: &ContainerConfig) -> bool {
    config.isolation.is_some() && rustix::process::geteuid().is_root()
}

/// A command run inside a running container (exec probes and hooks, CRI's
/// ExecSync): for an isolated container, `nsenter` into its namespaces,
/// root and working directory; otherwise on the host in its working
/// directory. Either way with the container's environment.
pub fn exec_command(status: &ContainerStatus, argv: &[String]) -> std::io::Result<tokio::process::Command> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("an exec needs a command"))?;
    let mut command = match status.state {
        State::Running { pid, .. } if isolates(&status.config) => {
            let mut command = tokio::process::Command::new("nsenter");
            command
                .arg(format!("--target={pid}"))
                .args(["--mount", "--uts", "--ipc", "--pid", "--root", "--wd"]);
            // As the container's user, as its own processes run.
            if let Some((uid, gid)) = status.config.isolation.as_ref().and_then(|i| i.user) {
                command.arg(format!("--setuid={uid}")).arg(format!("--setgid={gid}"));
            }
            command.arg("--").arg(program).args(args);
            command
        }
        // Never on the host for a container meant to be isolated.
        _ if isolates(&status.config) => return Err(std::io::Error::other("the container is not running")),
        _ => {
            let mut command = tokio::process::Command::new(program);
            command.args(args);
            if let Some(wd) = status.config.working_dir.as_deref().filter(|w| !w.is_empty()) {
                command.current_dir(wd);
            }
            command
        }
    };
    command
        .env_clear()
        .envs(status.config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    Ok(command)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Signals the container's whole process group (its pid is its group's
/// id: the shim made it so), so a shell's children stop with it. Callers
/// only signal containers they have just seen alive.
fn signal(pid: i32, signal: rustix::process::Signal) {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    if rustix::process::kill_process_group(pid, signal).is_err() {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// How long a created container may wait for its shim before it counts
/// as unable to run.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl ProcessRuntime {
    pub fn new(root: &Path, ip: &str) -> Result<ProcessRuntime> {
        std::fs::create_dir_all(root.join("containers"))?;
        std::fs::create_dir_all(root.join("logs"))?;
        std::fs::create_dir_all(root.join("pods"))?;
        Ok(ProcessRuntime {
            root: root.to_path_buf(),
            shim: std::env::current_exe()?,
            ip: ip.to_string(),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join("pods").join(pod_uid)
    }

    /// `logs/<namespace>_<pod>_<uid>/<container>/<attempt>.log`, as
    /// upstream lays out /var/log/pods.
    pub fn log_path(&self, c: &ContainerConfig) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{}_{}_{}", c.pod_namespace, c.pod_name, c.pod_uid))
            .join(&c.name)
            .join(format!("{}.log", c.attempt))
    }

    fn status_of(&self, id: &str) -> Option<ContainerStatus> {
        let dir = self.dir(id);
        let config: ContainerConfig = read_json(&dir.join(shim::CONFIG))?;
        let log_path = self.log_path(&config);
        let state = if let Some(exit) = read_json::<Exit>(&dir.join(shim::EXIT)) {
            State::from(exit)
        } else if let Some(started) = read_json::<Started>(&dir.join(shim::PID)) {
            // A shim still alive is about to write the exit: not over yet.
            if started.process_alive() || started.shim_alive() {
                State::Running {
                    pid: started.pid,
                    started_at: started.started_at,
                }
            } else {
                // The process is gone and its shim could not say how: record
                // it once, so the time does not move on every look.
                self.synthetic_exit(
                    &dir,
                    137,
                    started.started_at,
                    "Error",
                    "the container's process ended while nothing watched it",
                )
            }
        } else {
            let age = std::fs::metadata(dir.join(shim::CONFIG))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            if age > START_TIMEOUT {
                // Never started (the kubelet died between create and start, or
                // the shim failed before writing anything).
                let now = shim::now_seconds();
                self.synthetic_exit(
                    &dir,
                    128,
                    now,
                    "ContainerCannotRun",
                    "the container was created but never started",
                )
            } else {
                State::Created
            }
        };
        Some(ContainerStatus {
            id: id.to_string(),
            config,
            state,
            log_path,
        })
    }

    fn synthetic_exit(&self, dir: &Path, code: i32, started_at: i64, reason: &str, message: &str) -> State {
        let exit = Exit {
            exit_code: code,
            started_at,
            finished_at: shim::now_seconds(),
            reason: reason.into(),
            message: Some(message.into()),
        };
        if let Ok(bytes) = serde_json::to_vec(&exit) {
            let _ = shim::write_atomic(&dir.join(shim::EXIT), &bytes);
        }
        State::from(exit)
    }

    fn exited(&self, id: &str) -> bool {
        matches!(self.status_of(id).map(|s| s.state), Some(State::Exited { .. }) | None)
    }
}

impl Runtime for ProcessRuntime {
    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }

    fn run_pod_sandbox(&self, pod_uid: &str) -> Result<String> {
        std::fs::create_dir_all(self.pod_dir(pod_uid))?;
        Ok(self.ip.clone())
    }

    fn remove_pod_sandbox(&self, pod_uid: &str) -> Result<()> {
        super::cgroups::detect().remove_pod(pod_uid);
        match std::fs::remove_dir_all(self.pod_dir(pod_uid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn create_container(&self, config: &ContainerConfig) -> Result<String> {
        let id = format!("{}_{}_{}", config.pod_uid, config.name, config.attempt);
        let dir = self.dir(&id);
        // Never over an existing attempt: a read that failed must not look
        // like "no container" and start one twice.
        std::fs::create_dir(&dir)?;
        let bytes = serde_json::to_vec(config).map_err(std::io::Error::other)?;
        shim::write_atomic(&dir.join(shim::CONFIG), &bytes)?;
        let log = self.log_path(config);
        shim::write_atomic(&dir.join(shim::LOG_PATH), log.to_string_lossy().as_bytes())?;
        Ok(id)
    }

    fn start_container(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        if !dir.join(shim::CONFIG).exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let mut child = tokio::process::Command::new(&self.shim)
            .arg("shim")
            .arg("--dir")
            .arg(&dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| RuntimeError::CannotRun {
                what: id.to_string(),
                message: e.to_string(),
            })?;
        // Reap the shim when it ends (it is our child while we live).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let Some(status) = self.status_of(id) else {
            return Err(RuntimeError::NotFound(id.to_string()));
        };
        let State::Running { pid, .. } = status.state else {
            return Ok(());
        };
        signal(pid, rustix::process::Signal::TERM);
        // A grace period too long to add to now waits as long as can be.
        let deadline = Instant::now()
            .checked_add(grace)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(u64::from(u32::MAX)));
        while Instant::now() < deadline {
            if self.exited(id) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal(pid, rustix::process::Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.exited(id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        if let Some(status) = self.status_of(id) {
            if let State::Running { pid, .. } = status.state {
                signal(pid, rustix::process::Signal::KILL);
            }
        }
        match std::fs::remove_dir_all(self.dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn list_containers(&self) -> Vec<ContainerStatus> {
        let Ok(entries) = std::fs::read_dir(self.root.join("containers")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| self.status_of(&e.file_name().to_string_lossy()))
            .collect()
    }
}
