//! `kubernate-apiserver`: the Kubernetes REST API over the store.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = apiserver::config::Config::parse();
    let telemetry = match common::telemetry::init("kubernate-apiserver", &config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kubernate-apiserver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = apiserver::run(config, common::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubernate-apiserver: {e}");
            ExitCode::FAILURE
        }
    }
}
