//! `kubernate-controller-manager`: the core control loops.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = controller_manager::config::Config::parse();
    let telemetry = config.telemetry.clone();
    common::shutdown::run_component("kubernate-controller-manager", &telemetry, |stop| {
        controller_manager::run(config, stop)
    })
    .await
}
