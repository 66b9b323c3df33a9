//! The audit log (`--audit-log-path`): one JSON line per request, in
//! upstream's `audit.k8s.io/v1` Event format at the Metadata level — who
//! (user, groups, impersonation), what (verb, resource, namespace, name),
//! the response code, and when (received and completed timestamps, and
//! the latency as an annotation). Metadata level never records request
//! or response bodies, so no Secret's data, token or password reaches the
//! log. The file is rotated by size (`--audit-log-maxsize` MB), keeping
//! `--audit-log-maxbackup` old files, named as upstream names them
//! (`audit-2026-11-26T12-00-00.000.log`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use crate::authn::User;
use crate::request_info::RequestInfo;

/// One request, as the audit log records it.
pub struct Record<'a> {
    pub uri: &'a str,
    pub verb: &'a str,
    /// The authenticated user; `None` when authentication failed.
    pub user: Option<&'a User>,
    /// Whom the request acted as, when it impersonated.
    pub impersonated: Option<&'a User>,
    pub info: Option<&'a RequestInfo>,
    pub source: Option<std::net::IpAddr>,
    pub user_agent: Option<&'a str>,
    pub code: u16,
    pub received: time::OffsetDateTime,
    pub started: Instant,
}

fn user_json(user: &User) -> Value {
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    u
}

fn timestamp(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The Event line for a record.
pub fn event(r: &Record<'_>) -> Value {
    let mut e = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": uuid::Uuid::new_v4().to_string(),
        "stage": "ResponseComplete",
        "requestURI": r.uri,
        "verb": r.verb,
        "user": r.user.map(user_json).unwrap_or_else(|| json!({})),
        "sourceIPs": r.source.map(|ip| vec![ip.to_string()]).unwrap_or_default(),
        "responseStatus": {"metadata": {}, "code": r.code},
        "requestReceivedTimestamp": timestamp(r.received),
        "stageTimestamp": timestamp(time::OffsetDateTime::now_utc()),
        "annotations": {"kubernate.io/latency-seconds": format!("{:.6}", r.started.elapsed().as_secs_f64())},
    });
    if let Some(agent) = r.user_agent {
        e["userAgent"] = json!(agent);
    }
    if let Some(who) = r.impersonated {
        e["impersonatedUser"] = user_json(who);
    }
    if let Some(info) = r.info {
        let mut object = json!({
            "resource": info.resource.plural,
            "apiGroup": info.resource.group,
            "apiVersion": info.resource.version,
        });
        for (key, value) in [
            ("namespace", &info.namespace),
            ("name", &info.name),
            ("subresource", &info.subresource),
        ] {
            if let Some(v) = value {
                object[key] = json!(v);
            }
        }
        e["objectRef"] = object;
    }
    e
}

/// The log file, rotated by size.
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    max_backups: usize,
    file: Mutex<(Box<dyn Write + Send>, u64)>,
}

impl AuditLog {
    /// Opens (appends to) the log; `-` is standard output.
    pub fn open(path: &Path, max_megabytes: u64, max_backups: usize) -> std::io::Result<AuditLog> {
        let (writer, size): (Box<dyn Write + Send>, u64) = if path.as_os_str() == "-" {
            (Box::new(std::io::stdout()), 0)
        } else {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            let size = file.metadata()?.len();
            (Box::new(file), size)
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            max_bytes: max_megabytes.saturating_mul(1024 * 1024),
            max_backups,
            file: Mutex::new((writer, size)),
        })
    }

    /// Writes one record; a failure is logged, never fails the request.
    pub fn record(&self, r: &Record<'_>) {
        let mut line = event(r).to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if self.max_bytes > 0 && file.1 + line.len() as u64 > self.max_bytes && self.path.as_os_str() != "-" {
            match self.rotate() {
                Ok(fresh) => *file = (fresh, 0),
                Err(e) => tracing::warn!(error = %e, "cannot rotate the audit log"),
            }
        }
        match file.0.write_all(line.as_bytes()) {
            Ok(()) => file.1 += line.len() as u64,
            Err(e) => tracing::warn!(error = %e, "cannot write the audit log"),
        }
    }

    /// Moves the full file aside and opens a new one; drops the oldest
    /// backups beyond the limit.
    fn rotate(&self) -> std::io::Result<Box<dyn Write + Send>> {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond()
        );
        std::fs::rename(&self.path, dir.join(format!("{stem}-{stamp}{ext}")))?;
        // The new file first: a backup that cannot be pruned must not keep
        // the log writing into a rotated file.
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let prefix = format!("{stem}-");
        let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&ext))
            })
            .collect();
        backups.sort();
        let excess = backups.len().saturating_sub(self.max_backups);
        for oldest in backups.into_iter().take(excess) {
            if let Err(e) = std::fs::remove_file(&oldest) {
                tracing::warn!(file = %oldest.display(), error = %e, "cannot remove an old audit log");
            }
        }
        Ok(Box::new(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest_backups() {
        let dir = std::env::temp_dir().join(format!("audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::open(&dir.join("audit.log"), 0, 2).unwrap();
        let log = AuditLog { max_bytes: 600, ..log };
        let user = User {
            name: "alice".into(),
            groups: vec!["devs".into()],
            ..Default::default()
        };
        for _ in 0..12 {
            log.record(&Record {
                uri: "/api/v1/namespaces/default/secrets/s",
                verb: "get",
                user: Some(&user),
                impersonated: None,
                info: None,
                source: None,
                user_agent: Some("kubectl"),
                code: 200,
                received: time::OffsetDateTime::now_utc(),
                started: Instant::now(),
            });
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(names.contains(&"audit.log".to_string()));
        assert_eq!(names.iter().filter(|n| n.starts_with("audit-")).count(), 2, "{names:?}");
        let line = std::fs::read_to_string(dir.join("audit.log")).unwrap();
        let first: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert_eq!(first["user"]["username"], "alice");
        assert_eq!(first["responseStatus"]["code"], 200);
        assert!(first["annotations"]["kubernate.io/latency-seconds"].is_string());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
