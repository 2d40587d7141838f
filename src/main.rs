//! The `prereg-sync` binary: parse the command line, run, map errors to a one-line message and
//! a non-zero exit status.

use clap::Parser;
use prereg_sync::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Cli::parse().execute().await {
        Ok(completion) => std::process::ExitCode::from(completion.exit_code()),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
