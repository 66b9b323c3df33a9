//! `kubernate-apiserver`: the Kubernetes REST API over the store.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = apiserver::config::Config::parse();
    let telemetry = config.telemetry.clone();
    common::shutdown::run_component("kubernate-apiserver", &telemetry, |stop| apiserver::run(config, stop)).await
}
