//! `kubernate-kubelet`: the node agent; also, as `kubernate-kubelet shim
//! --dir DIR`, the shim that watches one container, and as
//! `kubernate-kubelet init --dir DIR`, an isolated container's first
//! process (see the runtime module).

use std::process::ExitCode;

use clap::Parser;

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str);
    let dir = args.iter().position(|a| a == "--dir").and_then(|i| args.get(i + 1));
    if let (Some("init" | "shim"), None) = (mode, dir) {
        eprintln!("usage: kubernate-kubelet shim|init --dir DIR");
        return ExitCode::from(2);
    }
    if let (Some("init"), Some(dir)) = (mode, dir) {
        // No runtime here: the init is PID 1 of a container and stays small.
        return exit_code(kubelet::runtime::init::run(std::path::Path::new(dir)));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubernate-kubelet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some("shim"), Some(dir)) = (mode, dir) {
        return match runtime.block_on(kubelet::runtime::shim::run(dir.into())) {
            Ok(code) => exit_code(code),
            Err(e) => {
                eprintln!("kubernate-kubelet shim: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = kubelet::config::Config::parse();
    let telemetry = config.telemetry.clone();
    runtime.block_on(common::shutdown::run_component(
        "kubernate-kubelet",
        &telemetry,
        |stop| kubelet::run(config, stop),
    ))
}
