//! `kubernate-controller-manager`: the core control loops.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = controller_manager::config::Config::parse();
    let telemetry = match common::telemetry::init("kubernate-controller-manager", &config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kubernate-controller-manager: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = controller_manager::run(config, common::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubernate-controller-manager: {e}");
            ExitCode::FAILURE
        }
    }
}
