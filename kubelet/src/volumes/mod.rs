//! Pod volumes: set up on the host before the pod's containers start,
//! refreshed on every sync (so a changed ConfigMap or Secret shows up in
//! running containers), and bound into each container at its
//! `volumeMounts` by the runtime.
//!
//! Where each kind lives, as upstream lays it out:
//!
//! ```text
//! pods/<uid>/volumes/kubernetes.io~empty-dir/<name>     emptyDir (tmpfs when medium: Memory)
//! pods/<uid>/volumes/kubernetes.io~configmap/<name>     configMap  ┐
//! pods/<uid>/volumes/kubernetes.io~secret/<name>        secret     │ written by the
//! pods/<uid>/volumes/kubernetes.io~downward-api/<name>  downwardAPI│ atomic writer
//! pods/<uid>/volumes/kubernetes.io~projected/<name>     projected  ┘ (+ ServiceAccount tokens)
//! ```
//!
//! hostPath volumes are the host's own path, checked against their `type`.

pub mod atomic_writer;
pub mod service_account_token;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use client::{Api, Client};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};

use crate::runtime::Mount;
use atomic_writer::File;

/// Why a pod's volumes cannot be set up (the pod waits in
/// ContainerCreating, and the message says which volume and why).
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?}: {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

fn volume_error(volume: &str) -> impl Fn(String) -> VolumeError + '_ {
    move |message| VolumeError {
        volume: volume.to_string(),
        message,
    }
}

/// Volume files' mode when the pod sets none.
const DEFAULT_MODE: i32 = 0o644;

fn plugin_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// Whether something is mounted at `path` (from the mount table).
fn mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(&*wanted))
}

/// `key → path` for the keys a configMap/secret source projects, with
/// each file's mode.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    what: &str,
    optional: bool,
) -> Result<BTreeMap<String, File>, String> {
    let mode = |m: Option<i32>| u32::try_from(m.unwrap_or(default_mode) & 0o7777).unwrap_or(0o644);
    let mut files = BTreeMap::new();
    match items {
        Some(items) => {
            for item in items {
                let Some(bytes) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("{what} has no key {:?}", item.key));
                };
                atomic_writer::check_path(&item.path)?;
                files.insert(
                    item.path.clone(),
                    File {
                        data: bytes.clone(),
                        mode: mode(item.mode),
                    },
                );
            }
        }
        None => {
            for (key, bytes) in data {
                files.insert(
                    key.clone(),
                    File {
                        data: bytes.clone(),
                        mode: mode(None),
                    },
                );
            }
        }
    }
    Ok(files)
}

fn configmap_bytes(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    data
}

fn secret_bytes(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    data.extend(
        s.string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    data
}

/// `key="value"` lines, sorted, as the downward API writes labels and
/// annotations (values quoted like Go's %q).
fn key_values(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}\n", serde_json::Value::String(v.clone())))
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// The downward API's files.
fn downward(
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<BTreeMap<String, File>, String> {
    let mut files = BTreeMap::new();
    for item in items {
        atomic_writer::check_path(&item.path)?;
        let value = if let Some(field) = &item.field_ref {
            match field.field_path.as_str() {
                "metadata.labels" => key_values(pod.metadata.labels.as_ref()),
                "metadata.annotations" => key_values(pod.metadata.annotations.as_ref()),
                path => crate::env::field(pod, path)
                    .ok_or_else(|| format!("unsupported fieldRef {path:?} for {:?}", item.path))?,
            }
        } else if let Some(resource) = &item.resource_field_ref {
            crate::env::resource(pod, None, resource)?
        } else {
            return Err(format!("{:?} needs a fieldRef or a resourceFieldRef", item.path));
        };
        let mode = u32::try_from(item.mode.unwrap_or(default_mode) & 0o7777).unwrap_or(0o644);
        files.insert(
            item.path.clone(),
            File {
                data: value.into_bytes(),
                mode,
            },
        );
    }
    Ok(files)
}

async fn configmap(client: &Client, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .map_err(|e| format!("reading configmap {name:?}: {e}"))
}

async fn secret(client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .map_err(|e| format!("reading secret {name:?}: {e}"))
}

/// Sets up one volume; returns its host path.
async fn set_up(
    client: &Client,
    tokens: &service_account_token::Tokens,
    pod: &Pod,
    pod_dir: &Path,
    volume: &Volume,
) -> Result<PathBuf, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = volume.name.as_str();
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    if let Some(empty) = &volume.empty_dir {
        let dir = plugin_dir(pod_dir, "empty-dir", name);
        std::fs::create_dir_all(&dir).map_err(io("creating the directory"))?;
        if empty.medium.as_deref() == Some("Memory") && !mounted(&dir) {
            if !rustix::process::geteuid().is_root() {
                return Err("medium Memory needs a kubelet running as root (tmpfs)".into());
            }
            let mut options = String::from("mode=0777");
            if let Some(limit) = &empty.size_limit {
                let bytes = api::quantity::Quantity::parse(&limit.0)
                    .map_err(|e| e.to_string())?
                    .value();
                options.push_str(&format!(",size={bytes}"));
            }
            let options = std::ffi::CString::new(options).map_err(|e| e.to_string())?;
            rustix::mount::mount(
                "tmpfs",
                &dir,
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                options.as_c_str(),
            )
            .map_err(|e| format!("mounting a tmpfs: {e}"))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io("setting its mode"))?;
        return Ok(dir);
    }
    if let Some(host) = &volume.host_path {
        return host_path(&host.path, host.type_.as_deref().unwrap_or(""));
    }
    let mut files = BTreeMap::new();
    let plugin = if let Some(source) = &volume.config_map {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        match configmap(client, namespace, &source.name).await? {
            Some(cm) => {
                files = project(
                    &configmap_bytes(&cm),
                    source.items.as_ref(),
                    mode,
                    "the configmap",
                    source.optional == Some(true),
                )?
            }
            None if source.optional == Some(true) => {}
            None => return Err(format!("configmap {:?} not found", source.name)),
        }
        "configmap"
    } else if let Some(source) = &volume.secret {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let secret_name = source.secret_name.clone().unwrap_or_default();
        match secret(client, namespace, &secret_name).await? {
            Some(s) => {
                files = project(
                    &secret_bytes(&s),
                    source.items.as_ref(),
                    mode,
                    "the secret",
                    source.optional == Some(true),
                )?
            }
            None if source.optional == Some(true) => {}
            None => return Err(format!("secret {secret_name:?} not found")),
        }
        "secret"
    } else if let Some(source) = &volume.downward_api {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        files = downward(pod, source.items.as_deref().unwrap_or_default(), mode)?;
        "downward-api"
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
        for source in projected.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                match configmap(client, namespace, &c.name).await? {
                    Some(cm) => files.extend(project(
                        &configmap_bytes(&cm),
                        c.items.as_ref(),
                        mode,
                        "the configmap",
                        c.optional == Some(true),
                    )?),
                    None if c.optional == Some(true) => {}
                    None => return Err(format!("configmap {:?} not found", c.name)),
                }
            } else if let Some(s) = &source.secret {
                match secret(client, namespace, &s.name).await? {
                    Some(found) => files.extend(project(
                        &secret_bytes(&found),
                        s.items.as_ref(),
                        mode,
                        "the secret",
                        s.optional == Some(true),
                    )?),
                    None if s.optional == Some(true) => {}
                    None => return Err(format!("secret {:?} not found", s.name)),
                }
            } else if let Some(d) = &source.downward_api {
                files.extend(downward(pod, d.items.as_deref().unwrap_or_default(), mode)?);
            } else if let Some(t) = &source.service_account_token {
                atomic_writer::check_path(&t.path)?;
                let token = tokens.get(client, pod, t).await?;
                let mode = u32::try_from(mode & 0o7777).unwrap_or(0o644);
                files.insert(
                    t.path.clone(),
                    File {
                        data: token.into_bytes(),
                        mode,
                    },
                );
            } else {
                return Err("a projected volume source of an unsupported kind".into());
            }
        }
        "projected"
    } else {
        return Err(
            "this kubelet supports emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes only"
                .into(),
        );
    };
    let dir = plugin_dir(pod_dir, plugin, name);
    atomic_writer::write(&dir, &files).map_err(io("writing its files"))?;
    Ok(dir)
}

/// A hostPath volume, checked (and created) as its `type` says.
fn host_path(path: &str, kind: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(format!("hostPath {path:?} must be absolute"));
    }
    let meta = std::fs::metadata(&p);
    use std::os::unix::fs::FileTypeExt;
    let is = |check: fn(&std::fs::FileType) -> bool| meta.as_ref().is_ok_and(|m| check(&m.file_type()));
    let fail = |what: &str| Err(format!("hostPath type check failed: {path} is not {what}"));
    match kind {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&p).map_err(|e| format!("creating {path}: {e}"))?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
            } else if !is(std::fs::FileType::is_dir) {
                return fail("a directory");
            }
        }
        "Directory" if !is(std::fs::FileType::is_dir) => return fail("a directory"),
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
                std::fs::write(&p, b"").map_err(|e| format!("creating {path}: {e}"))?;
            } else if !is(std::fs::FileType::is_file) {
                return fail("a file");
            }
        }
        "File" if !is(std::fs::FileType::is_file) => return fail("a file"),
        "Socket" if !is(std::fs::FileType::is_socket) => return fail("a socket"),
        "CharDevice" if !is(std::fs::FileType::is_char_device) => return fail("a character device"),
        "BlockDevice" if !is(std::fs::FileType::is_block_device) => return fail("a block device"),
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {}
        other => return Err(format!("unknown hostPath type {other:?}")),
    }
    Ok(p)
}

/// Sets up (or refreshes) every volume of the pod; returns each one's
/// host path by name.
pub async fn set_up_all(
    client: &Client,
    tokens: &service_account_token::Tokens,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let mut paths = HashMap::new();
    for volume in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let path = set_up(client, tokens, pod, pod_dir, volume)
            .await
            .map_err(volume_error(&volume.name))?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

/// The bind mounts of one container, from its `volumeMounts`.
pub fn mounts_for(
    pod: &Pod,
    container: &Container,
    paths: &HashMap<String, PathBuf>,
    env: &[(String, String)],
) -> Result<Vec<Mount>, VolumeError> {
    // Files the kubelet writes are never the container's to change (a
    // writable one could plant links the next update would follow).
    let kubelet_written: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some())
        .map(|v| v.name.as_str())
        .collect();
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let error = volume_error(&m.name);
        let base = paths
            .get(&m.name)
            .ok_or_else(|| error(format!("the pod has no volume {:?}", m.name)))?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(expr)) if !expr.is_empty() => crate::env::expand(expr, &vars),
            _ => String::new(),
        };
        let source = if sub.is_empty() {
            base.clone()
        } else {
            atomic_writer::check_path(&sub).map_err(|e| error(format!("subPath {e}")))?;
            // Resolved inside the volume: a link a container left there
            // cannot point the mount at the host (CVE-2017-1002101).
            let source =
                crate::runtime::rootfs::secure_join(base, &sub).map_err(|e| error(format!("subPath {sub:?}: {e}")))?;
            if std::fs::symlink_metadata(&source).is_err() {
                std::fs::create_dir_all(&source).map_err(|e| error(format!("creating subPath {sub:?}: {e}")))?;
            }
            source
        };
        mounts.push(Mount {
            source,
            target: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || kubelet_written.contains(&m.name.as_str()),
        });
    }
    Ok(mounts)
}

/// Unmounts the pod's memory-backed emptyDirs, so its directory can go.
pub fn tear_down(pod_dir: &Path) {
    let empty = pod_dir.join("volumes").join("kubernetes.io~empty-dir");
    let Ok(entries) = std::fs::read_dir(&empty) else { return };
    for e in entries.filter_map(|e| e.ok()) {
        if mounted(&e.path()) {
            if let Err(err) = rustix::mount::unmount(e.path(), rustix::mount::UnmountFlags::DETACH) {
                tracing::warn!(path = %e.path().display(), error = %err, "could not unmount an emptyDir");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_pick_keys_with_their_modes() {
        let data = BTreeMap::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]);
        let all = project(&data, None, 0o600, "x", false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o600);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o400),
        }];
        let some = project(&data, Some(&items), 0o644, "x", false).unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), vec!["dir/b.txt"]);
        assert_eq!(some["dir/b.txt"].mode, 0o400);
        let missing = vec![KeyToPath {
            key: "c".into(),
            path: "c".into(),
            mode: None,
        }];
        assert!(project(&data, Some(&missing), 0o644, "the configmap", false)
            .unwrap_err()
            .contains("no key \"c\""));
        assert!(project(&data, Some(&missing), 0o644, "the configmap", true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = std::env::temp_dir().join(format!("host-path-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.join("made");
        assert!(host_path(d.to_str().unwrap(), "Directory").is_err());
        host_path(d.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        let f = dir.join("f/file");
        host_path(f.to_str().unwrap(), "FileOrCreate").unwrap();
        assert!(host_path(f.to_str().unwrap(), "Directory")
            .unwrap_err()
            .contains("not a directory"));
        assert!(host_path("relative", "").is_err());
        assert!(host_path("/tmp", "Sideways").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_are_written_quoted_and_sorted() {
        let labels = BTreeMap::from([
            ("b".to_string(), "x\"y".to_string()),
            ("a".to_string(), "1".to_string()),
        ]);
        assert_eq!(key_values(Some(&labels)), "a=\"1\"\nb=\"x\\\"y\"");
    }
}
