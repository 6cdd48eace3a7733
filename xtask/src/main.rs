//! `cargo xtask <task>`: the project's chores in plain Rust, so they run
//! anywhere cargo does, with nothing else to install.
//!
//! Each task lives in its own module with a `run` function (the bench,
//! dist, cross and wine in their own crates, `upcase-bench`, `upcase-dist`
//! and `upcase-cross`); adding one is a variant in [`Task`] and a line in
//! `main`.

#![forbid(unsafe_code)]

mod ci;
#[cfg(target_os = "linux")]
mod cluster;
mod demo;
mod fuzz;
mod soak;
mod tidy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use upcase_e2e::workspace;

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
    /// Type-check for macOS, FreeBSD and Windows with Debian's Rust and -Zbuild-std.
    Cross(upcase_cross::CrossArgs),
    /// Build the Windows programs and run their end-to-end test under Wine
    /// against Linux-native peers on loopback.
    Wine,
    /// Run every cargo-fuzz target (nightly) for N seconds each; fail on a crash.
    Fuzz(fuzz::FuzzArgs),
    /// Flood the release server on loopback and check that nothing is lost,
    /// memory stays bounded and SIGTERM still stops it.
    Soak(soak::SoakArgs),
    /// Measure upcase-server against the C references and the Python
    /// original on loopback; write target/bench/report.{md,json,svg}.
    Bench(upcase_bench::BenchArgs),
    /// Write the man pages, shell completions and Debian package into
    /// target/dist/, and check each with the tool that reads it.
    Dist,
    /// Run upcase behind nftables and nginx in network namespaces (root):
    /// spread, rolling restart, kill and drain under load, rate limit.
    Cluster,
}

/// How xtask was asked to run, as the user typed it (`cargo xtask ...`).
fn command_line() -> String {
    std::iter::once("cargo xtask".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cluster runs in network namespaces, which only Linux has.
#[cfg(target_os = "linux")]
fn cluster_task() -> anyhow::Result<()> {
    cluster::run()
}

#[cfg(not(target_os = "linux"))]
fn cluster_task() -> anyhow::Result<()> {
    anyhow::bail!("the cluster needs Linux's network namespaces, nftables and nginx")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo => demo::run(),
        Task::Ci => ci::run(),
        Task::Cross(args) => upcase_cross::cross(&args),
        Task::Wine => upcase_cross::wine(),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Soak(args) => soak::run(&args),
        Task::Bench(args) => upcase_bench::run(args, &command_line()),
        Task::Cluster => cluster_task(),
        Task::Dist => {
            workspace::target_dir().and_then(|target| upcase_dist::run(&workspace::root(), &target))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
