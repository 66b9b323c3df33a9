//! `kubernate-store`: an etcd v3 compatible key-value store replicated by Raft.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = store::config::Config::parse();
    let telemetry = match common::telemetry::init("kubernate-store", &config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kubernate-store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = store::run(config, common::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubernate-store: {e}");
            ExitCode::FAILURE
        }
    }
}
