//! The container runtime behind the kubelet, in the shape of the CRI
//! (Kubernetes' Container Runtime Interface): pod sandboxes, and
//! containers created, started, stopped and removed inside them, with
//! their status and log files. The kubelet's sync loop speaks only this
//! trait; [`process`] implements it with plain Linux processes, and
//! container-engine runtimes will implement it the same way.
//!
//! - [`process`]: the runtime; [`shim`]: the process watching each container.
//! - [`init`]: the container's first process, inside its namespaces;
//!   [`rootfs`]: the filesystem it builds there; [`cgroups`]: limits.

pub mod cgroups;
pub mod init;
pub mod process;
pub mod rootfs;
pub mod shim;

use std::path::PathBuf;
use std::time::Duration;

/// What a container is asked to run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub name: String,
    pub image: String,
    /// command + args, resolved (`$(VAR)` expanded).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// The how-many-th start of this container in its pod (restartCount).
    pub attempt: i32,
    /// The image's filesystem, mounts, host name, user and limits; applied
    /// when the runtime can isolate (as root), ignored otherwise.
    #[serde(default)]
    pub isolation: Option<Isolation>,
}

/// How a container is set apart from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Isolation {
    /// The image's root filesystem: the read-only lower layer under the
    /// container's own writable one.
    pub rootfs: PathBuf,
    /// Bind mounts (volumes, /etc/hosts, /etc/resolv.conf), in order.
    pub mounts: Vec<Mount>,
    /// The UTS namespace's host name (the pod's).
    pub hostname: String,
    /// User and group ids the process runs as (default: root).
    pub user: Option<(u32, u32)>,
    pub limits: Limits,
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub target: String,
    pub read_only: bool,
}

/// Resource limits, in the units cgroups take.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// cpu limit in millicores (a CFS quota).
    pub cpu_limit_millis: Option<u64>,
    /// cpu request in millicores (a CFS share weight).
    pub cpu_request_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    Created,
    Running {
        pid: i32,
        /// Seconds since the epoch.
        started_at: i64,
    },
    Exited {
        exit_code: i32,
        started_at: i64,
        finished_at: i64,
        /// `Completed`, `Error`, `OOMKilled`, `ContainerCannotRun`.
        reason: String,
        message: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub config: ContainerConfig,
    pub state: State,
    pub log_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {0} not found")]
    NotFound(String),
    #[error("cannot run {what}: {message}")]
    CannotRun { what: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// A CRI-shaped runtime.
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name and version, for the Node's nodeInfo.
    fn version(&self) -> String;

    /// Prepares the pod's shared environment (directories; namespaces for
    /// runtimes that have them); returns the pod's IP.
    fn run_pod_sandbox(&self, pod_uid: &str) -> Result<String>;

    /// Removes what the sandbox held once every container is gone.
    fn remove_pod_sandbox(&self, pod_uid: &str) -> Result<()>;

    fn create_container(&self, config: &ContainerConfig) -> Result<String>;

    fn start_container(&self, id: &str) -> Result<()>;

    /// SIGTERM, then SIGKILL after `grace`; returns when it has exited.
    fn stop_container(&self, id: &str, grace: Duration) -> impl std::future::Future<Output = Result<()>> + Send;

    fn remove_container(&self, id: &str) -> Result<()>;

    /// Every container the runtime knows, running or not.
    fn list_containers(&self) -> Vec<ContainerStatus>;
}
