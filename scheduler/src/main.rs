//! `kubernate-scheduler`: assigns pods to nodes.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let flags = scheduler::config::Flags::parse();
    let telemetry = match common::telemetry::init("kubernate-scheduler", &flags.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kubernate-scheduler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = scheduler::run(flags, common::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubernate-scheduler: {e}");
            ExitCode::FAILURE
        }
    }
}
