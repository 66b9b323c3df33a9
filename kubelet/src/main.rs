//! `kubernate-kubelet`: the node agent (and, as `kubernate-kubelet shim
//! --dir DIR`, the shim that watches one container).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        let Some(dir) = args.iter().position(|a| a == "--dir").and_then(|i| args.get(i + 1)) else {
            eprintln!("usage: kubernate-kubelet shim --dir DIR");
            return ExitCode::from(2);
        };
        return match kubelet::runtime::shim::run(dir.into()).await {
            Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
            Err(e) => {
                eprintln!("kubernate-kubelet shim: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = kubelet::config::Config::parse();
    let telemetry = config.telemetry.clone();
    common::shutdown::run_component("kubernate-kubelet", &telemetry, |stop| kubelet::run(config, stop)).await
}
