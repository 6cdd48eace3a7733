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
//!
//! Under `--rate`, round trips are timed from each request's place on the
//! schedule, not from its send (the coordinated-omission correction, see
//! `engine::Schedule::origin`). `--find-rate` searches for the highest
//! rate a server sustains within bounds of loss and p99 (see `search.rs`),
//! each step one such run, at most `--max-steps` of them.
#![forbid(unsafe_code)]

mod args;
pub mod connect;
mod engine;
mod inflight;
pub mod payload;
mod progress;
mod ramp;
mod report;
mod search;
mod tally;
mod tcp;

use std::io::{IsTerminal, Write};

use anyhow::Context;

pub use args::{BenchArgs, LatencyFrom, Mode, Transport};
pub use report::{BEHIND_SHARE, Interval, Summary};
pub use search::{RateSearch, Step};
pub use tally::Counts;

/// Runs the load `args` describe (one run, at the first rate of a
/// `--find-rate` search) and returns what it measured. Draws a progress
/// bar on standard error when `progress` is set.
pub fn run(args: &BenchArgs, progress: bool) -> anyhow::Result<Summary> {
    measure(&args::Plan::new(args)?, progress)
}

fn measure(plan: &args::Plan, progress: bool) -> anyhow::Result<Summary> {
    let started = std::time::SystemTime::now();
    let run = match plan.transport {
        Transport::Udp => engine::run(plan, progress)?,
        Transport::Tcp => tcp::run(plan, progress)?,
    };
    Ok(Summary::new(plan, run, started))
}

/// Runs the `--find-rate` search `args` describe (without `--find-rate`,
/// with its defaults): one run per step.
pub fn find_rate(args: &BenchArgs, progress: bool) -> anyhow::Result<RateSearch> {
    let args = BenchArgs {
        find_rate: true,
        ..args.clone()
    };
    search::find_rate(&args::Plan::new(&args)?, |plan| measure(plan, progress))
}

/// What `run_cli` prints and judges: one run's [`Summary`], or a
/// [`RateSearch`].
trait Outcome: serde::Serialize {
    fn render(&self) -> String;
    fn notes(&self) -> &[String];
    fn failure(&self) -> Option<String>;
}

impl Outcome for Summary {
    fn render(&self) -> String {
        Summary::render(self)
    }
    fn notes(&self) -> &[String] {
        &self.notes
    }
    fn failure(&self) -> Option<String> {
        Summary::failure(self)
    }
}

impl Outcome for RateSearch {
    fn render(&self) -> String {
        RateSearch::render(self)
    }
    fn notes(&self) -> &[String] {
        &self.notes
    }
    fn failure(&self) -> Option<String> {
        RateSearch::failure(self)
    }
}

/// `upcase-client bench`: runs (or searches, with `--find-rate`), prints
/// the report (or one JSON object with `--json`) and fails if the server
/// answered wrongly or not at all (or no step of the search passed).
pub fn run_cli(args: &BenchArgs) -> anyhow::Result<()> {
    let stderr_is_terminal = std::io::stderr().is_terminal();
    if args.find_rate {
        report(&find_rate(args, stderr_is_terminal)?, args.json)
    } else {
        report(&run(args, stderr_is_terminal)?, args.json)
    }
}

/// Prints `outcome`'s notes on stderr and the outcome itself on stdout (as
/// one line of JSON with `json`); its failure, if any, is the error.
fn report(outcome: &impl Outcome, json: bool) -> anyhow::Result<()> {
    for note in outcome.notes() {
        eprintln!("note: {note}");
    }
    let mut stdout = std::io::stdout().lock();
    if json {
        let json = serde_json::to_string(outcome).context("cannot write the result as JSON")?;
        writeln!(stdout, "{json}")
    } else {
        write!(stdout, "{}", outcome.render())
    }
    .and_then(|()| stdout.flush())
    .context("cannot write the result")?;
    match outcome.failure() {
        Some(failure) => anyhow::bail!(failure),
        None => Ok(()),
    }
}
