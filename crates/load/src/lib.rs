//! Load and latency measurement of any server of the upcase protocol (ours,
//! the C references, the textbook's Python one): the library behind
//! `upcase-client bench`.
//!
//! Requests are lowercase text that carries its sequence number in letters
//! (see [`payload`]), so every reply is checked against the exact uppercase
//! of its own request and counted correct, wrong, late or lost. Sending and
//! receiving go through `upcase-udp`'s batches (`sendmmsg`/`recvmmsg`, UDP
//! GSO/GRO with `--gso`) so that the client costs less per reply than the
//! server it measures. With `--tcp`, requests are lines pipelined over TCP
//! connections instead (see `tcp.rs`). Every run is bounded: `--warmup` + `--duration`, then
//! at most `--loss-timeout` to collect the last replies.
#![forbid(unsafe_code)]

mod args;
pub mod connect;
mod engine;
mod inflight;
pub mod payload;
mod progress;
mod report;
mod tally;
mod tcp;

use std::io::{IsTerminal, Write};

use anyhow::Context;

pub use args::{BenchArgs, Mode, Transport};
pub use report::{Interval, Summary};
pub use tally::Counts;

/// Runs the load `args` describe and returns what it measured. Draws a
/// progress bar on standard error when `progress` is set.
pub fn run(args: &BenchArgs, progress: bool) -> anyhow::Result<Summary> {
    let plan = args::Plan::new(args)?;
    let started = std::time::SystemTime::now();
    let run = match plan.transport {
        Transport::Udp => engine::run(&plan, progress)?,
        Transport::Tcp => tcp::run(&plan, progress)?,
    };
    Ok(Summary::new(&plan, run, started))
}

/// `upcase-client bench`: runs, prints the report (or one JSON object with
/// `--json`) and fails if the server answered wrongly or not at all.
pub fn run_cli(args: &BenchArgs) -> anyhow::Result<()> {
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let summary = run(args, stderr_is_terminal)?;
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let json = serde_json::to_string(&summary).context("cannot write the result as JSON")?;
        writeln!(stdout, "{json}")
    } else {
        write!(stdout, "{}", summary.render())
    }
    .and_then(|()| stdout.flush())
    .context("cannot write the result")?;
    match summary.failure() {
        Some(failure) => anyhow::bail!(failure),
        None => Ok(()),
    }
}
