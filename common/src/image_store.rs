//! The local image store's layout, shared by `kubernate image import`
//! (which writes it) and the kubelet's process runtime (which runs
//! containers in it). Images come from archives, not registries.
//!
//! ```text
//! <store>/<name>/image.json   {"name": "busybox:latest", "config": {...}}
//! <store>/<name>/rootfs/      the unpacked filesystem
//! ```
//!
//! `<name>` is the image's normalized name with `/`, `:` and `@` turned
//! into `_`; `config` is the image config's `config` object (Entrypoint,
//! Cmd, Env, WorkingDir, User), as Docker and OCI write it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the image says about how to run it (the OCI image config's
/// `config`, under its field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub config: RunConfig,
    pub rootfs: PathBuf,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    config: Option<RunConfig>,
}

/// The directory name of an image: `registry/app:1` → `registry_app_1`.
pub fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c == ':' || c == '@' { '_' } else { c })
        .collect()
}

/// The name an image is stored under: Docker Hub's implicit prefixes
/// dropped (`docker.io/library/busybox` is `busybox`), and `:latest` added
/// to a reference without a tag or digest.
pub fn normalize(name: &str) -> String {
    let name = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .or_else(|| name.strip_prefix("index.docker.io/library/"))
        .unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("image {name:?} is not in the local image store {store} (load it with `kubernate image import FILE`)")]
    Missing { name: String, store: String },
    #[error("image {name:?} in {store} is damaged: {why}")]
    Damaged { name: String, store: String, why: String },
}

/// Finds an image by the name a pod gives it.
pub fn lookup(store: &Path, reference: &str) -> Result<Image, LookupError> {
    let name = normalize(reference);
    let dir = store.join(dir_name(&name));
    let damaged = |why: String| LookupError::Damaged {
        name: name.clone(),
        store: store.display().to_string(),
        why,
    };
    let bytes = match std::fs::read(dir.join("image.json")) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LookupError::Missing {
                name: name.clone(),
                store: store.display().to_string(),
            })
        }
        Err(e) => return Err(damaged(format!("image.json: {e}"))),
    };
    let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| damaged(format!("image.json: {e}")))?;
    let rootfs = dir.join("rootfs");
    if !rootfs.is_dir() {
        return Err(damaged("no rootfs directory".into()));
    }
    Ok(Image {
        name: meta.name,
        config: meta.config.unwrap_or_default(),
        rootfs,
    })
}

/// The names of the stored images, sorted.
pub fn list(store: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(store) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("image.json")).ok())
        .filter_map(|b| serde_json::from_slice::<Meta>(&b).ok())
        .map(|m| m.name)
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_escaped() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("docker.io/library/busybox:1.36"), "busybox:1.36");
        assert_eq!(normalize("docker.io/bitnami/redis"), "bitnami/redis:latest");
        assert_eq!(normalize("registry:5000/app"), "registry:5000/app:latest");
        assert_eq!(normalize("app@sha256:abc"), "app@sha256:abc");
        assert_eq!(dir_name("registry:5000/app:1"), "registry_5000_app_1");
    }

    #[test]
    fn lookup_tells_missing_from_damaged() {
        let store = std::env::temp_dir().join(format!("image-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let err = lookup(&store, "busybox").unwrap_err();
        assert!(matches!(err, LookupError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("kubernate image import"), "{err}");
        let dir = store.join("busybox_latest");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("image.json"), "not json").unwrap();
        assert!(matches!(lookup(&store, "busybox"), Err(LookupError::Damaged { .. })));
        std::fs::write(
            dir.join("image.json"),
            r#"{"name": "busybox:latest", "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}}"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let image = lookup(&store, "docker.io/library/busybox:latest").unwrap();
        assert_eq!(image.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(list(&store), vec!["busybox:latest".to_string()]);
        std::fs::remove_dir_all(&store).unwrap();
    }
}
