//! The container's init: `kubernate-kubelet init --dir DIR`, started by
//! the [shim](super::shim) through util-linux's `unshare` in new PID,
//! mount, UTS and IPC namespaces (the project forbids `unsafe`, and
//! entering namespaces from Rust needs it). It is the container's PID 1:
//!
//! 1. notes its host PID, by which the kubelet signals and inspects the
//!    container (written to `init-pid` once the command runs);
//! 2. joins the container's cgroups (`cgroups.json`, made by the shim);
//! 3. builds the [root filesystem](super::rootfs) and `chroot`s into it,
//!    sets the host name and the working directory;
//! 4. starts the container's command as the container's user, then stays
//!    as a minimal init (like `docker run --init`): it passes SIGTERM and
//!    the other catchable signals on to the command's process group, reaps
//!    orphans, and exits with the command's status (128 + signal when a
//!    signal ended it). When PID 1 exits, the kernel kills whatever is left
//!    in the namespace.
//!
//! A failure before the command runs is written to `init-error` (opened
//! before the `chroot`, which hides the host) and ends the init with 128;
//! the shim reports it as `StartError`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use super::ContainerConfig;

pub const INIT_PID: &str = "init-pid";
pub const INIT_ERROR: &str = "init-error";
pub const CGROUPS: &str = "cgroups.json";

/// The exit code of a container whose command never ran.
pub const CANNOT_RUN: i32 = 128;

/// Runs the init; returns its exit code.
pub fn run(dir: &Path) -> i32 {
    let mut errors = match std::fs::File::create(dir.join(INIT_ERROR)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("init: cannot create {}: {e}", dir.join(INIT_ERROR).display());
            return CANNOT_RUN;
        }
    };
    // Handlers first: a PID 1 without one never sees SIGTERM.
    let child = std::sync::Arc::new(std::sync::OnceLock::new());
    let (ready, registered) = std::sync::mpsc::channel();
    let target = child.clone();
    std::thread::spawn(move || forward_signals(target, ready));
    let _ = registered.recv_timeout(std::time::Duration::from_secs(5));
    match start(dir) {
        Ok(pid) => {
            let _ = child.set(pid);
            supervise(pid)
        }
        Err(message) => {
            let _ = errors.write_all(message.as_bytes());
            eprintln!("init: {message}");
            CANNOT_RUN
        }
    }
}

/// Steps 1–4 up to the command's start; returns its pid.
fn start(dir: &Path) -> Result<Pid, String> {
    // Still the host's /proc: /proc/self names our PID out there.
    let host_pid = std::fs::read_link("/proc/self").map_err(|e| format!("reading /proc/self: {e}"))?;
    // The container's directory stays reachable through this descriptor
    // after the chroot hides its path.
    let dir_fd = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening {}: {e}", dir.display()))?;
    let config: ContainerConfig = std::fs::read(dir.join(super::shim::CONFIG))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("reading the container's config: {e}"))?;
    let isolation = config
        .isolation
        .clone()
        .ok_or("the container has no isolation settings")?;
    let cgroups: Vec<PathBuf> = match std::fs::read(dir.join(CGROUPS)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("reading {CGROUPS}: {e}"))?,
        Err(_) => Vec::new(),
    };
    for cgroup in &cgroups {
        std::fs::write(cgroup.join("cgroup.procs"), b"0")
            .map_err(|e| format!("joining cgroup {}: {e}", cgroup.display()))?;
    }
    // Our own session: the kubelet signals this process alone, and we
    // pass the signal on.
    let _ = rustix::process::setsid();
    let root = super::rootfs::build(dir, &isolation)?;
    let wd = config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !wd.starts_with('/') {
        return Err(format!("the working directory {wd:?} must be an absolute path"));
    }
    rustix::process::chroot(&root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
    // chroot leaves the current directory where it was (on the host).
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    std::fs::create_dir_all(&wd).map_err(|e| format!("creating the working directory {wd}: {e}"))?;
    std::env::set_current_dir(&wd).map_err(|e| format!("chdir {wd}: {e}"))?;
    if !isolation.hostname.is_empty() {
        rustix::system::sethostname(isolation.hostname.as_bytes())
            .map_err(|e| format!("setting the host name {:?}: {e}", isolation.hostname))?;
    }
    let (program, args) = config
        .argv
        .split_first()
        .ok_or("no command given and the image has no default")?;
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .process_group(0);
    if let Some((uid, gid)) = isolation.user {
        command.uid(uid).gid(gid);
    }
    let child = command.spawn().map_err(|e| format!("exec: {program:?}: {e}"))?;
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or("the command has no pid")?;
    // Dropping a Child neither waits nor kills: the loop below reaps it.
    drop(child);
    // Only now is the container running (exec probes and postStart hooks
    // entering it find its filesystem): say so, atomically.
    let tmp = format!("{INIT_PID}.tmp");
    let file = rustix::fs::openat(
        &dir_fd,
        tmp.as_str(),
        OFlags::CREATE | OFlags::WRONLY | OFlags::TRUNC | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| format!("writing {INIT_PID}: {e}"))?;
    std::fs::File::from(file)
        .write_all(host_pid.to_string_lossy().as_bytes())
        .map_err(|e| format!("writing {INIT_PID}: {e}"))?;
    rustix::fs::renameat(&dir_fd, tmp.as_str(), &dir_fd, INIT_PID).map_err(|e| format!("writing {INIT_PID}: {e}"))?;
    Ok(pid)
}

/// Passes signals on and reaps children until the command ends.
fn supervise(child: Pid) -> i32 {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == child => {
                return match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => code,
                    (None, Some(signal)) => 128 + signal,
                    (None, None) => 255,
                };
            }
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                eprintln!("init: waiting for the command: {e}");
                return 255;
            }
        }
    }
}

/// Passes the catchable signals on to the command's process group; one
/// that comes before the command started ends the init at once.
fn forward_signals(child: std::sync::Arc<std::sync::OnceLock<Pid>>, ready: std::sync::mpsc::Sender<()>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().build() else {
        let _ = ready.send(());
        return;
    };
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            (SignalKind::terminate(), Signal::TERM),
            (SignalKind::interrupt(), Signal::INT),
            (SignalKind::hangup(), Signal::HUP),
            (SignalKind::quit(), Signal::QUIT),
            (SignalKind::user_defined1(), Signal::USR1),
            (SignalKind::user_defined2(), Signal::USR2),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (kind, sig) in kinds {
            let Ok(mut stream) = signal(kind) else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let _ = ready.send(());
        while let Some(sig) = rx.recv().await {
            let Some(&child) = child.get() else {
                std::process::exit(128 + sig.as_raw());
            };
            if rustix::process::kill_process_group(child, sig).is_err() {
                let _ = rustix::process::kill_process(child, sig);
            }
        }
    });
}
