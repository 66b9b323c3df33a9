//! Graceful shutdown: one token for the whole process.
//!
//! Every long-running task gets a child of the token that [`on_signal`]
//! returns. SIGTERM (what Kubernetes, Docker and systemd send) or SIGINT
//! (Ctrl-C) cancels it; the component then stops accepting work and waits for
//! its tasks with [`drain`], which gives up after a grace period so a stuck
//! task cannot keep the process alive forever.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Returns a token that is cancelled when the process receives SIGTERM or
/// SIGINT. Must be called inside a Tokio runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; only Ctrl-C will stop");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

/// Closes `tasks` and waits for them to finish, for at most `grace`.
/// Returns `true` when every task ended in time.
pub async fn drain(tasks: &TaskTracker, grace: Duration) -> bool {
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            grace_seconds = grace.as_secs_f64(),
            "grace period over, tasks still running"
        );
        return false;
    }
    true
}

/// A component's `main` after its flags are parsed: sets up logs and
/// traces under `binary`'s name, runs `run` until SIGTERM or SIGINT,
/// flushes the traces, and turns the outcome into an exit status (the
/// error printed as `binary: error`).
pub async fn run_component<E, F, Fut>(
    binary: &str,
    telemetry: &crate::telemetry::TelemetryArgs,
    run: F,
) -> std::process::ExitCode
where
    E: std::fmt::Display,
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let telemetry = match crate::telemetry::init(binary, telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = run(on_signal()).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks_that_honour_the_token() {
        let token = CancellationToken::new();
        let tasks = TaskTracker::new();
        let child = token.child_token();
        tasks.spawn(async move { child.cancelled().await });
        token.cancel();
        assert!(drain(&tasks, Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let tasks = TaskTracker::new();
        tasks.spawn(std::future::pending::<()>());
        assert!(!drain(&tasks, Duration::from_secs(5)).await);
    }
}
