//! `kubernate image import` with archives built here by the real `tar`:
//! layers unpacked in order, whiteouts applied, the config kept.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::path::Path;
use std::process::Command;

fn tar(dir: &Path, out: &Path) {
    let status = Command::new("tar")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_docker_save_archive_becomes_one_root_filesystem() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Layer 1: two files and a directory with content.
    write(&w.join("l1/bin/tool"), "v1");
    write(&w.join("l1/etc/old.conf"), "old");
    write(&w.join("l1/var/cache/a"), "a");
    // Layer 2: replaces a file, deletes one, empties a directory, adds one.
    write(&w.join("l2/bin/tool"), "v2");
    write(&w.join("l2/etc/.wh.old.conf"), "");
    write(&w.join("l2/var/cache/.wh..wh..opq"), "");
    write(&w.join("l2/var/cache/b"), "b");
    let save = w.join("save");
    std::fs::create_dir_all(save.join("l1")).unwrap();
    std::fs::create_dir_all(save.join("l2")).unwrap();
    tar(&w.join("l1"), &save.join("l1/layer.tar"));
    tar(&w.join("l2"), &save.join("l2/layer.tar"));
    write(
        &save.join("config.json"),
        r#"{"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}}"#,
    );
    write(
        &save.join("manifest.json"),
        r#"[{"Config": "config.json", "RepoTags": ["example/tool"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]"#,
    );
    let archive = w.join("tool.tar");
    tar(&save, &archive);

    // A store whose parent does not exist yet.
    let store = w.join("cluster/images");
    let out = Command::new(env!("CARGO_BIN_EXE_kubernate"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported example/tool:latest"));

    let rootfs = store.join("example_tool_latest/rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("bin/tool")).unwrap(), "v2");
    assert!(!rootfs.join("etc/old.conf").exists(), "a whiteout deletes");
    assert!(
        !rootfs.join("var/cache/a").exists(),
        "an opaque whiteout empties the directory"
    );
    assert_eq!(std::fs::read_to_string(rootfs.join("var/cache/b")).unwrap(), "b");
    assert!(!rootfs.join("etc/.wh.old.conf").exists() && !rootfs.join("var/cache/.wh..wh..opq").exists());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("example_tool_latest/image.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["Cmd"][0], "sh");

    let list = Command::new(env!("CARGO_BIN_EXE_kubernate"))
        .args(["image", "list", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout), "example/tool:latest\n");
}

#[test]
fn a_file_that_is_no_image_is_refused_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    write(&work.path().join("content/readme"), "hello");
    let archive = work.path().join("not-an-image.tar");
    tar(&work.path().join("content"), &archive);
    let out = Command::new(env!("CARGO_BIN_EXE_kubernate"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--store")
        .arg(work.path().join("store"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("neither a docker save archive"), "{err}");
}
