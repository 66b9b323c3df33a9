//! `kubernate-store`: an etcd v3 compatible key-value store replicated by Raft.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = store::config::Config::parse();
    let telemetry = config.telemetry.clone();
    common::shutdown::run_component("kubernate-store", &telemetry, |stop| store::run(config, stop)).await
}
