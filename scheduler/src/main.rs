//! `kubernate-scheduler`: assigns pods to nodes.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = scheduler::config::Flags::parse();
    let telemetry = config.telemetry.clone();
    common::shutdown::run_component("kubernate-scheduler", &telemetry, |stop| scheduler::run(config, stop)).await
}
