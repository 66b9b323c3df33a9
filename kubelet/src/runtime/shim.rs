//! The container shim: a small process between the runtime and each
//! container, like containerd's shim or conmon.
//!
//! The kubelet starts `kubernate-kubelet shim --dir DIR` in its own
//! process group, so it outlives a kubelet restart. The shim reads the
//! container's `config.json` from DIR, starts the container's process,
//! writes its pid (`pid`), copies its stdout and stderr into the log file
//! in the CRI format kubectl logs reads (`<RFC 3339 time> <stream> F
//! <line>`), and when the process ends writes how (`exit.json`). A
//! restarted kubelet finds running containers by their pid and finished
//! ones by their exit file: nothing is started twice and no exit code is
//! lost.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use super::ContainerConfig;

pub const CONFIG: &str = "config.json";
pub const PID: &str = "pid";
pub const EXIT: &str = "exit.json";
pub const LOG_PATH: &str = "log-path";

/// How long an isolated container's init may take to start the command
/// (below the runtime's START_TIMEOUT, after which an unstarted container
/// counts as never started).
const INIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// The longest log entry: a longer line is cut into partial (`P`) entries,
/// as the CRI log format allows, so no output can grow the shim's memory.
const MAX_LINE: usize = 16 * 1024;

/// How a container ended, as the shim records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    pub exit_code: i32,
    pub started_at: i64,
    pub finished_at: i64,
    pub reason: String,
    pub message: Option<String>,
}

impl From<Exit> for super::State {
    fn from(exit: Exit) -> Self {
        super::State::Exited {
            exit_code: exit.exit_code,
            started_at: exit.started_at,
            finished_at: exit.finished_at,
            reason: exit.reason,
            message: exit.message,
        }
    }
}

/// The pid and the process's start time (clock ticks since boot, from
/// /proc), which tells a live container from a reused pid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Started {
    pub pid: i32,
    pub proc_start: u64,
    pub started_at: i64,
    /// The shim itself: while it lives, the exit is still to be written.
    pub shim_pid: i32,
    pub shim_start: u64,
}

impl Started {
    pub fn process_alive(&self) -> bool {
        proc_start(self.pid).is_some_and(|t| t == self.proc_start)
    }

    pub fn shim_alive(&self) -> bool {
        proc_start(self.shim_pid).is_some_and(|t| t == self.shim_start)
    }
}

pub fn now_seconds() -> i64 {
    client::api::timestamp_now().as_second()
}

/// Field 22 of /proc/PID/stat: when the process started.
pub fn proc_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after ") " count from 3.
    let rest = stat.rsplit_once(") ")?.1;
    rest.split(' ').nth(19)?.parse().ok()
}

/// Writes a file so readers see all of it or nothing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Copies a stream into the log line by line. It never stops reading while
/// the stream is open (a container writing to a closed pipe would die of
/// SIGPIPE): bytes that are not UTF-8 are replaced, a line longer than
/// [`MAX_LINE`] is written in partial pieces, and a line that cannot be
/// written to the log is dropped.
async fn copy_lines(stream: impl tokio::io::AsyncRead + Unpin, name: &'static str, log: Arc<Mutex<tokio::fs::File>>) {
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    loop {
        // (consumed bytes, an entry to write with its tag, stream over)
        let (used, tag, over) = match reader.fill_buf().await {
            Ok([]) | Err(_) => (0, (!line.is_empty()).then_some("F"), true),
            Ok(buf) => {
                let room = MAX_LINE - line.len();
                match buf.iter().take(room).position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&buf[..i]);
                        (i + 1, Some("F"), false)
                    }
                    None => {
                        let take = buf.len().min(room);
                        line.extend_from_slice(&buf[..take]);
                        (take, (line.len() >= MAX_LINE).then_some("P"), false)
                    }
                }
            }
        };
        reader.consume(used);
        if let Some(tag) = tag {
            let text = String::from_utf8_lossy(&line);
            let stamp = client::api::timestamp_now().to_string();
            let entry = format!("{stamp} {name} {tag} {text}\n");
            let mut file = log.lock().await;
            let _ = file.write_all(entry.as_bytes()).await;
            line.clear();
        }
        if over {
            return;
        }
    }
}

fn record_exit(dir: &Path, exit: &Exit) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(exit).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(EXIT), &bytes)
}

/// The shim's whole life; returns the process's exit code.
pub async fn run(dir: PathBuf) -> std::io::Result<i32> {
    let config: ContainerConfig =
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG))?).map_err(std::io::Error::other)?;
    let log_path = PathBuf::from(std::fs::read_to_string(dir.join(LOG_PATH))?.trim());
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let log = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .await?;
    let log = Arc::new(Mutex::new(log));
    let started_at = now_seconds();
    let Some((program, args)) = config.argv.split_first() else {
        return cannot_run(&dir, started_at, "no command given and the image has no default".into());
    };
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let isolation = config
        .isolation
        .as_ref()
        .filter(|_| rustix::process::geteuid().is_root());
    let cgroups = super::cgroups::detect();
    let mut command = match isolation {
        Some(isolation) => {
            let dirs = cgroups
                .create(&config.pod_uid, &id, &isolation.limits)
                .and_then(|dirs| serde_json::to_vec(&dirs).map_err(std::io::Error::other))
                .and_then(|bytes| write_atomic(&dir.join(super::init::CGROUPS), &bytes));
            if let Err(e) = dirs {
                return cannot_run(&dir, started_at, format!("creating the container's cgroup: {e}"));
            }
            let mut command = tokio::process::Command::new("unshare");
            command
                .args(["--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc"])
                .args(["--propagation", "private", "--"])
                .arg(std::env::current_exe()?)
                .arg("init")
                .arg("--dir")
                .arg(&dir)
                .env_clear();
            command
        }
        None => {
            let mut command = tokio::process::Command::new(program);
            command
                .args(args)
                .env_clear()
                .envs(config.env.iter().map(|(k, v)| (k, v)));
            if let Some(wd) = config.working_dir.as_deref().filter(|w| !w.is_empty()) {
                command.current_dir(wd);
            }
            command
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a stop reaches its children too.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return cannot_run(&dir, started_at, format!("exec: {program:?}: {e}")),
    };
    let mut pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    if isolation.is_some() {
        // The container is its init, which says its pid once the command
        // runs. Never fall back to unshare's pid: its root is the host's,
        // and exec probes entering it would run there.
        let deadline = std::time::Instant::now() + INIT_DEADLINE;
        loop {
            if let Some(p) = std::fs::read_to_string(dir.join(super::init::INIT_PID))
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                pid = p;
                break;
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                // It ended before running the command; the exit below says how.
                pid = 0;
                break;
            }
            if std::time::Instant::now() > deadline {
                if let Some(group) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                let _ = child.wait().await;
                cgroups.remove(&config.pod_uid, &id);
                let message = format!("the container did not start within {}s", INIT_DEADLINE.as_secs());
                return cannot_run(&dir, started_at, message);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    let shim_pid = i32::try_from(std::process::id()).unwrap_or(0);
    let started = Started {
        pid,
        proc_start: proc_start(pid).unwrap_or(0),
        started_at,
        shim_pid,
        shim_start: proc_start(shim_pid).unwrap_or(0),
    };
    write_atomic(
        &dir.join(PID),
        &serde_json::to_vec(&started).map_err(std::io::Error::other)?,
    )?;
    let mut copies = Vec::new();
    if let Some(out) = child.stdout.take() {
        copies.push(tokio::spawn(copy_lines(out, "stdout", log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        copies.push(tokio::spawn(copy_lines(err, "stderr", log.clone())));
    }
    let status = child.wait().await?;
    // Children the process left behind go with it (they would hold the
    // pipes open and the container would never be seen to end). An
    // isolated container's are gone with its PID namespace.
    if isolation.is_none() {
        if let Some(group) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
    for c in copies {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), c).await;
    }
    use std::os::unix::process::ExitStatusExt;
    let (exit_code, reason) = match (status.code(), status.signal()) {
        (Some(0), _) => (0, "Completed"),
        (Some(code), _) => (code, "Error"),
        (None, Some(signal)) => (128 + signal, "Error"),
        (None, None) => (255, "Error"),
    };
    let mut exit = Exit {
        exit_code,
        started_at,
        finished_at: now_seconds(),
        reason: reason.into(),
        message: None,
    };
    if isolation.is_some() {
        let error = std::fs::read_to_string(dir.join(super::init::INIT_ERROR)).unwrap_or_default();
        if exit_code == super::init::CANNOT_RUN && !error.trim().is_empty() {
            exit.reason = "StartError".into();
            exit.message = Some(error.trim().to_string());
        } else if cgroups.oom_kills(&config.pod_uid, &id) > 0 {
            exit.reason = "OOMKilled".into();
        }
        cgroups.remove(&config.pod_uid, &id);
    }
    record_exit(&dir, &exit)?;
    Ok(exit_code)
}

/// Records that the container could not be started.
fn cannot_run(dir: &Path, started_at: i64, message: String) -> std::io::Result<i32> {
    let exit = Exit {
        exit_code: super::init::CANNOT_RUN,
        started_at,
        finished_at: now_seconds(),
        reason: "ContainerCannotRun".into(),
        message: Some(message),
    };
    record_exit(dir, &exit)?;
    Ok(super::init::CANNOT_RUN)
}
