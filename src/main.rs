//! The `prereg-sync` binary: parse the command line, run, map errors to a one-line message and
//! a non-zero exit status.

use clap::Parser;
use prereg_sync::{
    amqp,
    cli::{Cli, UsageError},
    error_text,
};

fn main() -> std::process::ExitCode {
    // Before any thread exists: see the function's documentation.
    amqp::reserve_frame_parsing_stack();
    // Tokio's threads drop what lapin parsed, recursively too: the same reasoning, a smaller
    // margin (dropping costs far less stack per level than parsing).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 * 1024 * 1024)
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(Cli::parse().execute()) {
        Ok(completion) => std::process::ExitCode::from(completion.exit_code()),
        Err(err) => {
            eprintln!("error: {}", error_text(err.as_ref()));
            match err.downcast_ref::<UsageError>() {
                Some(_) => std::process::ExitCode::from(2),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
