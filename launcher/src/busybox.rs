//! The `busybox` test image, made from the host's static busybox
//! (Debian's `busybox-static`): `kubernate up` stores it when the image
//! store has no `busybox:latest`, so `kubectl run x --image=busybox -- sh
//! -c …` works out of the box, and the tests use it too. It is written
//! straight into the store's layout ([`common::image_store`]): `/bin/busybox`
//! with a link per applet, a minimal `/etc/passwd` and `/etc/group` (root,
//! nobody), `/tmp`, and `Cmd ["sh"]`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

pub const NAME: &str = "busybox:latest";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no busybox on this machine (Debian: apt-get install busybox-static)")]
    NotFound,
    #[error("{0} is dynamically linked; the image needs a static busybox (busybox-static)")]
    Dynamic(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The host's busybox: `$BUSYBOX`, else the first on PATH.
fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BUSYBOX") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join("busybox"))
        .find(|p| p.is_file())
}

/// Whether the store already holds the image.
pub fn present(store: &Path) -> bool {
    common::image_store::lookup(store, NAME).is_ok()
}

/// Builds the image into the store (replacing an older one).
pub fn import(store: &Path) -> Result<String, Error> {
    let busybox = find().ok_or(Error::NotFound)?;
    // ldd succeeds only on a dynamically linked program.
    if Command::new("ldd")
        .arg(&busybox)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err(Error::Dynamic(busybox.display().to_string()));
    }
    std::fs::create_dir_all(store).map_err(io(format!("creating {}", store.display())))?;
    let scratch = tempfile::tempdir_in(store).map_err(io("creating a scratch directory"))?;
    let staging = scratch.path().join("image");
    let root = staging.join("rootfs");
    for dir in ["bin", "etc", "root", "home", "tmp", "var", "usr/bin"] {
        std::fs::create_dir_all(root.join(dir)).map_err(io(format!("creating /{dir}")))?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).map_err(io("/tmp"))?;
    std::fs::copy(&busybox, root.join("bin/busybox")).map_err(io(format!("copying {}", busybox.display())))?;
    let applets = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(io(format!("running {} --list", busybox.display())))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
            .map_err(io(format!("linking /bin/{applet}")))?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .map_err(io("/etc/passwd"))?;
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").map_err(io("/etc/group"))?;
    let meta = json!({
        "name": NAME,
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
    });
    std::fs::write(staging.join("image.json"), meta.to_string()).map_err(io("image.json"))?;
    let target = store.join(common::image_store::dir_name(NAME));
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(format!("replacing {}", target.display())))?;
    }
    std::fs::rename(&staging, &target).map_err(io(format!("storing {}", target.display())))?;
    Ok(NAME.to_string())
}
