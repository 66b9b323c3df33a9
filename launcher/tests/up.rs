//! `kubernate up`'s refusals of bad flags (whole clusters are run by the
//! e2e crate).

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::process::Command;

#[test]
fn up_refuses_ports_beyond_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubernate"))
        .args(["up", "--dir"])
        .arg(dir.path())
        .args(["--port-offset", "60000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--port-offset 60000 with 1 node(s) needs port 71251, above 65535"),
        "{err}"
    );
}
