//! `/healthz`, `/livez` and `/readyz`: is this API server alive, and can
//! it serve?
//!
//! Each endpoint runs named checks, as kube-apiserver's do: `ping` (the
//! process answers), `log` (it can still log), and `etcd` (the store
//! answers a read within two seconds). `/readyz` adds `shutdown` (not
//! shutting down). The answer is `ok` with 200, or 500 when a check
//! fails; `?verbose` lists every check (`[+]etcd ok`, `[-]etcd failed:
//! reason withheld`), `?exclude=etcd` skips one, and `/readyz/etcd` runs
//! just that check. The reasons stay in the server's log, as upstream
//! keeps them out of unauthenticated answers.

use std::time::Duration;

use axum::http::StatusCode;

use crate::rest::App;

/// How long the store may take to answer the `etcd` check.
const STORE_CHECK: Duration = Duration::from_secs(2);

/// The three endpoints and their checks.
pub fn endpoint(path: &str) -> Option<(&'static str, Option<&str>)> {
    for name in ["healthz", "livez", "readyz"] {
        let base = format!("/{name}");
        if path == base {
            return Some((name, None));
        }
        if let Some(check) = path.strip_prefix(&base).and_then(|rest| rest.strip_prefix('/')) {
            return Some((name, Some(check)));
        }
    }
    None
}

fn checks(endpoint: &str) -> Vec<&'static str> {
    let mut all = vec!["ping", "log", "etcd"];
    if endpoint == "readyz" {
        all.push("shutdown");
    }
    all
}

/// Runs one check; the reason it failed, if it did.
async fn run(app: &App, check: &str) -> Result<(), String> {
    match check {
        "ping" | "log" | "shutdown" => Ok(()),
        "etcd" => match tokio::time::timeout(STORE_CHECK, app.storage.revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the store did not answer in time".into()),
        },
        _ => Err("no such check".into()),
    }
}

/// The answer to `GET /<endpoint>[/<check>]?<query>`.
pub async fn answer(
    app: &App,
    endpoint: &str,
    only: Option<&str>,
    query: &crate::verbs::Query,
) -> (StatusCode, String) {
    let names = checks(endpoint);
    if let Some(check) = only {
        if !names.contains(&check) {
            return (StatusCode::NOT_FOUND, "404 page not found\n".into());
        }
        return match run(app, check).await {
            Ok(()) => (StatusCode::OK, "ok".into()),
            Err(e) => {
                tracing::warn!(endpoint, check, error = %e, "health check failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error: reason withheld\n".into(),
                )
            }
        };
    }
    let excluded = query.all("exclude");
    let mut lines = Vec::new();
    let mut failed = false;
    for check in names {
        if excluded.contains(&check) {
            lines.push(format!("[+]{check} excluded: ok"));
            continue;
        }
        match run(app, check).await {
            Ok(()) => lines.push(format!("[+]{check} ok")),
            Err(e) => {
                tracing::warn!(endpoint, check, error = %e, "health check failed");
                lines.push(format!("[-]{check} failed: reason withheld"));
                failed = true;
            }
        }
    }
    let verdict = if failed { "failed" } else { "passed" };
    let verbose = query.get("verbose").is_some();
    if failed {
        lines.push(format!("{endpoint} check {verdict}"));
        return (StatusCode::INTERNAL_SERVER_ERROR, lines.join("\n") + "\n");
    }
    if verbose {
        lines.push(format!("{endpoint} check {verdict}"));
        return (StatusCode::OK, lines.join("\n") + "\n");
    }
    (StatusCode::OK, "ok".into())
}
