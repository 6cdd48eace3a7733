//! `cargo xtask <task>`: the project's chores in plain Rust, so they run
//! anywhere cargo does, with nothing else to install.
//!
//! Each task lives in its own module with a `run` function; adding one is a
//! variant in [`Task`] and a line in `main`.

mod ci;
mod demo;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "The upcase project's tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the release binaries, start the server on loopback, send it a
    /// few lines with the client and show what comes back.
    Demo,
    /// Run every check CI runs, in order, stopping at the first failure.
    Ci,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo => demo::run(),
        Task::Ci => ci::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
