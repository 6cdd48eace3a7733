//! The upcase UDP client: the textbook's UDPClient.py, made dependable.
//!
//! It sends each message as one datagram from a socket of its own, connected
//! to the server (`link`), waits `--timeout` for the reply and sends again up
//! to `--retries` times, and tries each address of the server's name in turn
//! until one answers (`route`). A late reply to an earlier message, or junk a
//! server (or a forger) sends after an answer, is never printed as the answer
//! to a later one (`pick`).
#![forbid(unsafe_code)]

mod args;
mod editor;
mod health;
mod input;
mod link;
mod output;
mod pick;
mod resolve;
mod route;
mod session;
pub mod tcp;
mod tcp_terminal;
mod terminal;

use std::io::{BufRead, IsTerminal, Write};

use crate::editor::Editor;
use crate::input::Piped;

pub use args::{Args, Command, Config, ConnectionArgs, FromEnv, UsageError, join_words};
pub use editor::Interrupted;
pub use health::{EXIT_UNHEALTHY, Healthy, Unhealthy, probe, probe_message};
pub use input::{Line, PROMPT, read_line};
pub use resolve::{Resolver, SystemResolver, server_addresses};
pub use route::{Miss, NoReply, Route};
pub use session::check_size;

/// Exit status when the server never replied, after every try.
pub const EXIT_NO_REPLY: u8 = 3;
/// Exit status after Ctrl-C at the prompt: 128 + SIGINT, as a shell shows a
/// program that SIGINT stopped.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Talks to the server `config` names, found through `resolver`: sends the
/// configured message, or each line of `input`, and writes each reply to
/// `output` on its own line. `input_is_terminal` asks for the textbook's
/// prompt before each line.
pub fn run(
    config: &Config,
    resolver: &impl Resolver,
    input: impl BufRead,
    input_is_terminal: bool,
    output: impl Write,
) -> anyhow::Result<()> {
    let addrs = server_addresses(&config.server, config.port, resolver)?;
    session::Session::new(config, addrs, output).run(&mut Piped(input), input_is_terminal)
}

/// The program: the parsed command line, standard input and output, and the
/// system resolver.
///
/// A person at a terminal (standard input and output both terminals, no
/// MESSAGE words) types lines through the line editor, over UDP or TCP;
/// anything else is read as raw bytes, as the textbook's client reads it.
pub fn run_cli(args: Args) -> anyhow::Result<()> {
    if let Some(bench) = args.bench() {
        return upcase_load::run_cli(&bench?);
    }
    let config = Config::try_from(&args)?;
    if matches!(args.command, Some(Command::Health)) {
        let healthy = probe(&config, args.tcp, &SystemResolver)?;
        if args.verbosity.verbose > 0 {
            println!("{healthy}");
        }
        return Ok(());
    }
    let stdin = std::io::stdin();
    let person = config.message.is_none() && stdin.is_terminal() && std::io::stdout().is_terminal();
    match (args.tcp, person) {
        (true, true) => {
            return tcp_terminal::run(&config, &SystemResolver, Editor::new()?, output::stdout());
        }
        (true, false) => return tcp::run_cli(&config),
        (false, true) => {
            let addrs = server_addresses(&config.server, config.port, &SystemResolver)?;
            let output = output::stdout();
            return session::Session::new(&config, addrs, output).run(&mut Editor::new()?, false);
        }
        (false, false) => {}
    }
    let is_terminal = stdin.is_terminal();
    run(
        &config,
        &SystemResolver,
        stdin.lock(),
        is_terminal,
        output::stdout(),
    )
}

/// The exit status for an error: [`EXIT_UNHEALTHY`] for a failed health
/// probe, whatever failed; [`EXIT_NO_REPLY`] when the server never replied,
/// [`upcase_cli::EXIT_USAGE`] for options that contradict each other,
/// [`upcase_cli::EXIT_FAILURE`] otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Unhealthy>().is_some() {
        EXIT_UNHEALTHY
    } else if err.downcast_ref::<NoReply>().is_some() {
        EXIT_NO_REPLY
    } else if err.downcast_ref::<Interrupted>().is_some() {
        EXIT_INTERRUPTED
    } else if err.downcast_ref::<UsageError>().is_some() {
        upcase_cli::EXIT_USAGE
    } else {
        upcase_cli::EXIT_FAILURE
    }
}
