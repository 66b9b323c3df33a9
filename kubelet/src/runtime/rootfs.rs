//! The container's root filesystem, built by its [init](super::init)
//! inside its own mount namespace (so every mount here vanishes with the
//! container, and none is seen by the host):
//!
//! 1. an overlay: the image's rootfs as the read-only lower layer, the
//!    container's own directory as the writable upper one (the image is
//!    shared by every container that runs it and never changes);
//! 2. `/proc` for the container's PID namespace, a small `/dev` (a tmpfs
//!    holding the host's null, zero, full, random, urandom and tty nodes,
//!    `/dev/shm`), a read-only `/sys`;
//! 3. the bind mounts the kubelet asked for: volumes and the pod's
//!    `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
//!
//! Mount points are resolved inside the rootfs by [`secure_join`]: an
//! image's symlink can never point a mount at a host path.

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use rustix::mount::{self, MountFlags};

use super::{Isolation, Mount};

/// Resolves `path` under `root` as if `root` were `/`: symlinks are
/// followed inside the root (an absolute target restarts at `root`, `..`
/// stops at it), so the result never leaves `root`. Missing components
/// are taken as they are.
pub fn secure_join(root: &Path, path: &str) -> std::io::Result<PathBuf> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::other(format!("too many symlinks resolving {path}")));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let parts: Vec<String> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_string_lossy().to_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                pending.extend(parts.into_iter().rev());
            }
            _ => resolved.push(part),
        }
    }
    Ok(resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn failed<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

fn c_string(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("{text:?} holds a NUL byte"))
}

/// Stacks the container's writable layer on the image; returns the
/// merged root. Without overlayfs (an overlay-backed kubelet directory)
/// the image is copied into the container's directory instead.
fn overlay(dir: &Path, lower: &Path) -> Result<PathBuf, String> {
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(failed(format!("creating {}", d.display())))?;
    }
    let options = c_string(&format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    ))?;
    if mount::mount("overlay", &merged, "overlay", MountFlags::empty(), options.as_c_str()).is_ok() {
        return Ok(merged);
    }
    let copied = dir.join("copied");
    if !copied.exists() {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", lower.display()))
            .arg(&upper)
            .status()
            .map_err(failed("copying the image (no overlayfs)"))?;
        if !status.success() {
            return Err(format!("copying the image (no overlayfs) failed: {status}"));
        }
        std::fs::write(&copied, b"").map_err(failed("marking the copy"))?;
    }
    mount::mount_bind(&upper, &merged).map_err(failed("binding the copied image"))?;
    Ok(merged)
}

/// `/proc`, `/dev` and `/sys` of the container.
fn system_mounts(root: &Path) -> Result<(), String> {
    let proc = secure_join(root, "/proc").map_err(failed("/proc"))?;
    std::fs::create_dir_all(&proc).map_err(failed("creating /proc"))?;
    let quiet = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount::mount("proc", &proc, "proc", quiet, None).map_err(failed("mounting /proc"))?;

    let dev = secure_join(root, "/dev").map_err(failed("/dev"))?;
    std::fs::create_dir_all(&dev).map_err(failed("creating /dev"))?;
    let options = c_string("mode=755,size=65536k")?;
    mount::mount("tmpfs", &dev, "tmpfs", MountFlags::NOSUID, options.as_c_str()).map_err(failed("mounting /dev"))?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        std::fs::write(&target, b"").map_err(failed(format!("creating /dev/{node}")))?;
        mount::mount_bind(format!("/dev/{node}"), &target).map_err(failed(format!("binding /dev/{node}")))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(failed(format!("linking /dev/{link}")))?;
    }
    let shm = dev.join("shm");
    std::fs::create_dir_all(&shm).map_err(failed("creating /dev/shm"))?;
    let options = c_string("mode=1777,size=65536k")?;
    mount::mount("shm", &shm, "tmpfs", quiet, options.as_c_str()).map_err(failed("mounting /dev/shm"))?;

    let sys = secure_join(root, "/sys").map_err(failed("/sys"))?;
    std::fs::create_dir_all(&sys).map_err(failed("creating /sys"))?;
    // Read-only; a host that refuses a new sysfs here leaves /sys empty.
    let _ = mount::mount("sysfs", &sys, "sysfs", quiet | MountFlags::RDONLY, None);
    Ok(())
}

/// One bind mount, its mount point created to match the source (a
/// directory for a directory, an empty file for anything else).
fn bind(root: &Path, m: &Mount) -> Result<(), String> {
    let target = secure_join(root, &m.target).map_err(failed(&m.target))?;
    let source_is_dir = std::fs::metadata(&m.source)
        .map_err(failed(format!("volume source {}", m.source.display())))?
        .is_dir();
    if source_is_dir {
        std::fs::create_dir_all(&target).map_err(failed(format!("creating {}", m.target)))?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(failed(format!("creating the directory of {}", m.target)))?;
        }
        if !target.exists() {
            std::fs::write(&target, b"").map_err(failed(format!("creating {}", m.target)))?;
        }
    }
    mount::mount_bind_recursive(&m.source, &target).map_err(failed(format!("mounting {}", m.target)))?;
    if m.read_only {
        mount::mount_remount(&target, MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(failed(format!("making {} read-only", m.target)))?;
    }
    Ok(())
}

/// Parents before children (so a nested mount is not hidden by its
/// parent's), and of two mounts on one path only the later (a volume
/// mounted at /etc/hosts replaces the pod's file), as containerd orders them.
fn mount_order(mounts: &[Mount]) -> Vec<&Mount> {
    let depth = |m: &Mount| m.target.split('/').filter(|p| !p.is_empty() && *p != ".").count();
    let mut kept: Vec<&Mount> = Vec::new();
    for m in mounts.iter().rev() {
        let path = m.target.trim_end_matches('/');
        if !kept.iter().any(|k| k.target.trim_end_matches('/') == path) {
            kept.push(m);
        }
    }
    kept.reverse();
    kept.sort_by_key(|m| depth(m));
    kept
}

/// Builds the container's filesystem under its directory `dir`; returns
/// the root to `chroot` into.
pub fn build(dir: &Path, isolation: &Isolation) -> Result<PathBuf, String> {
    let root = overlay(dir, &isolation.rootfs)?;
    system_mounts(&root)?;
    for m in mount_order(&isolation.mounts) {
        bind(&root, m)?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_go_parents_first_and_the_last_of_one_path_wins() {
        let m = |target: &str, source: &str| Mount {
            source: source.into(),
            target: target.into(),
            read_only: false,
        };
        let mounts = [
            m("/etc/hosts", "pod"),
            m("/data/sub", "a"),
            m("/data", "b"),
            m("/etc/hosts", "volume"),
        ];
        let order: Vec<(&str, &str)> = mount_order(&mounts)
            .iter()
            .map(|m| (m.target.as_str(), m.source.to_str().unwrap()))
            .collect();
        assert_eq!(order, [("/data", "b"), ("/data/sub", "a"), ("/etc/hosts", "volume")]);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = std::env::temp_dir().join(format!("secure-join-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("/real/dir", root.join("abs")).unwrap();
        let join = |p: &str| secure_join(&root, p).unwrap();
        assert_eq!(join("/escape/etc/hosts"), root.join("etc/hosts"));
        assert_eq!(join("/real/up/etc"), root.join("etc"));
        assert_eq!(join("/abs/x"), root.join("real/dir/x"));
        assert_eq!(join("../../etc"), root.join("etc"));
        assert_eq!(join("/missing/./file"), root.join("missing/file"));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(secure_join(&root, "/loop").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
