//! The local image store and `kubernate image import`.
//!
//! The process runtime will run a container in its image's root
//! filesystem; images come from archives, not registries:
//! `kubernate image import FILE` loads a `docker save` archive or an OCI
//! image layout archive. Its layers are unpacked in order into one root
//! filesystem, applying whiteouts (`.wh.NAME` deletes NAME from the layers
//! below, `.wh..wh..opq` empties its directory), so what is stored is the
//! filesystem the container sees.
//!
//! The store's layout is [`common::image_store`]'s.
//!
//! Tar archives are read with the system's `tar` (GNU tar detects
//! compression), so nothing here parses tar by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Format(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("tar failed on {0}: {1}")]
    Tar(String, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn untar(archive: &Path, into: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(into).map_err(io(format!("creating {}", into.display())))?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .args(["--no-same-owner", "--delay-directory-restore"])
        .output()
        .map_err(io("running tar"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Tar(
            archive.display().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

pub use common::image_store::{dir_name, list, normalize};

/// Applies one unpacked layer's whiteouts to the rootfs, then removes the
/// whiteout files themselves.
fn apply_whiteouts(layer: &Path, rootfs: &Path) -> Result<(), Error> {
    let mut stack = vec![layer.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let relative = path.strip_prefix(layer).map_err(|e| Error::Format(e.to_string()))?;
            let parent = relative.parent().unwrap_or(Path::new(""));
            if name == ".wh..wh..opq" {
                let target = rootfs.join(parent);
                if let Ok(children) = std::fs::read_dir(&target) {
                    for child in children.filter_map(|c| c.ok()) {
                        remove(&child.path())?;
                    }
                }
                std::fs::remove_file(&path).map_err(io("removing a whiteout"))?;
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                remove(&rootfs.join(parent).join(hidden))?;
                std::fs::remove_file(&path).map_err(io("removing a whiteout"))?;
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(io(format!("removing {}", path.display())))
}

/// Unpacks the layers, in order, into `rootfs`.
fn unpack_layers(layers: &[PathBuf], rootfs: &Path, scratch: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(rootfs).map_err(io("creating the rootfs"))?;
    for (i, layer) in layers.iter().enumerate() {
        // Whiteouts first, against what the layers below left …
        let staged = scratch.join(format!("layer-{i}"));
        untar(layer, &staged)?;
        apply_whiteouts(&staged, rootfs)?;
        // … then the layer's own files on top.
        untar(layer, rootfs)?;
        let mut stack = vec![rootfs.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with(".wh.") {
                    remove(&entry.path())?;
                } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
}

/// (name, config, layer paths) of an unpacked archive.
fn describe(unpacked: &Path) -> Result<(String, Value, Vec<PathBuf>), Error> {
    if unpacked.join("manifest.json").exists() {
        // docker save
        let manifest = read_json(&unpacked.join("manifest.json"))?;
        let first = manifest
            .get(0)
            .ok_or_else(|| Error::Format("manifest.json lists no image".into()))?;
        let name = first["RepoTags"][0].as_str().unwrap_or("imported:latest").to_string();
        let config = match first["Config"].as_str() {
            Some(c) => read_json(&unpacked.join(c))?,
            None => json!({}),
        };
        let layers = first["Layers"]
            .as_array()
            .ok_or_else(|| Error::Format("manifest.json has no Layers".into()))?
            .iter()
            .filter_map(Value::as_str)
            .map(|l| unpacked.join(l))
            .collect();
        return Ok((name, config, layers));
    }
    if unpacked.join("index.json").exists() {
        // OCI image layout
        let blob = |digest: &str| {
            let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
            unpacked.join("blobs").join(algorithm).join(hex)
        };
        let index = read_json(&unpacked.join("index.json"))?;
        let entry = index["manifests"]
            .get(0)
            .ok_or_else(|| Error::Format("index.json lists no manifest".into()))?;
        let name = entry["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .or_else(|| entry["annotations"]["io.containerd.image.name"].as_str())
            .unwrap_or("imported:latest")
            .to_string();
        let manifest = read_json(&blob(entry["digest"].as_str().unwrap_or_default()))?;
        let config = read_json(&blob(manifest["config"]["digest"].as_str().unwrap_or_default()))?;
        let layers = manifest["layers"]
            .as_array()
            .ok_or_else(|| Error::Format("the OCI manifest has no layers".into()))?
            .iter()
            .filter_map(|l| l["digest"].as_str())
            .map(blob)
            .collect();
        return Ok((name, config, layers));
    }
    Err(Error::Format(
        "neither a docker save archive (manifest.json) nor an OCI layout (index.json)".into(),
    ))
}

/// Imports an archive into the store; returns the image's name.
pub fn import(archive: &Path, store: &Path) -> Result<String, Error> {
    // Scratch space inside the store, so the final rename stays on one
    // filesystem (its directory has no image.json, so it never lists).
    std::fs::create_dir_all(store).map_err(io(format!("creating {}", store.display())))?;
    let scratch = tempfile::tempdir_in(store).map_err(io("creating a scratch directory"))?;
    let unpacked = scratch.path().join("archive");
    untar(archive, &unpacked)?;
    let (name, config, layers) = describe(&unpacked)?;
    let name = normalize(&name);
    let target = store.join(dir_name(&name));
    let staging = scratch.path().join("image");
    unpack_layers(&layers, &staging.join("rootfs"), scratch.path())?;
    let meta = json!({"name": name, "config": config["config"].clone()});
    std::fs::write(
        staging.join("image.json"),
        serde_json::to_vec_pretty(&meta).unwrap_or_default(),
    )
    .map_err(io("writing image.json"))?;
    std::fs::create_dir_all(store).map_err(io(format!("creating {}", store.display())))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(format!("replacing {}", target.display())))?;
    }
    std::fs::rename(&staging, &target).map_err(io(format!("storing {}", target.display())))?;
    Ok(name)
}
