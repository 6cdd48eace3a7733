//! The command line, and the settings a client session runs with.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, Subcommand};
use upcase_cli::Verbosity;

/// Sends lines to an upcase server over UDP and prints their uppercase.
///
/// With MESSAGE words, sends them joined by spaces as one datagram and prints
/// the reply. Without, sends each line of standard input as one datagram and
/// prints each reply on its own line.
#[derive(Debug, Parser)]
#[command(
    name = "upcase-client",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Use TCP instead: one connection, each line sent with its newline and
    /// its reply printed as it streams back (--retries does not apply).
    #[arg(long)]
    pub tcp: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
    /// Words to send as one message instead of reading standard input.
    pub message: Vec<OsString>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands, kept apart from MESSAGE words by the parser.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure a server: replies per second and round-trip percentiles, with
    /// every reply checked (`--mode ping` or `--mode flood --window W`).
    ///
    /// Takes its own --server and --port (same meaning as above; options
    /// before the subcommand are refused).
    Bench(upcase_load::BenchArgs),
}

/// Where the server is and how long to wait for it: shared by every way of
/// talking to a server, so a subcommand can flatten it too.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Server host: a name, or an IPv4 or IPv6 address (`::1` or `[::1]`).
    #[arg(long, default_value = "localhost", value_name = "HOST")]
    pub server: String,
    /// Server UDP port.
    #[arg(long, default_value_t = upcase_proto::DEFAULT_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How long to wait for a reply before sending again (`250ms`, `2s`).
    #[arg(long, default_value = "1s", value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: Duration,
    /// How many times to send a message again after a timeout.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub retries: u32,
}

/// A positive duration in humantime syntax: a zero timeout would never let a
/// reply arrive.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("the timeout must be more than zero".to_string());
    }
    Ok(duration)
}

/// Everything a client session needs, independent of where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: String,
    pub port: u16,
    pub timeout: Duration,
    pub retries: u32,
    /// The one message to send; `None` reads messages from the input.
    pub message: Option<Vec<u8>>,
}

impl Config {
    /// A config for `server:port` with the command line's default timing,
    /// reading messages from the input.
    pub fn new(server: impl Into<String>, port: u16) -> Config {
        Config {
            server: server.into(),
            port,
            timeout: Duration::from_secs(1),
            retries: 2,
            message: None,
        }
    }

    /// How many times one message may be sent in all.
    pub fn tries(&self) -> u32 {
        self.retries.saturating_add(1)
    }
}

impl From<&Args> for Config {
    fn from(args: &Args) -> Config {
        let c = &args.connection;
        Config {
            server: c.server.clone(),
            port: c.port,
            timeout: c.timeout,
            retries: c.retries,
            message: (!args.message.is_empty()).then(|| join_words(&args.message)),
        }
    }
}

/// The words as one message, separated by single spaces. Raw bytes, so
/// arguments that are not valid UTF-8 are sent as they are.
pub fn join_words(words: &[OsString]) -> Vec<u8> {
    let mut message = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            message.push(b' ');
        }
        message.extend_from_slice(word.as_encoded_bytes());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("upcase-client").chain(argv.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_textbook() {
        let args = parse(&[]).expect("no arguments are fine");
        let config = Config::from(&args);
        assert_eq!(config, Config::new("localhost", 12_000));
        assert_eq!(config.tries(), 3);
    }

    #[test]
    fn options_and_words() {
        let args = parse(&[
            "--server",
            "::1",
            "--port",
            "5",
            "--timeout",
            "250ms",
            "--retries",
            "0",
            "hello",
            "big",
            "world",
        ])
        .expect("valid");
        let config = Config::from(&args);
        assert_eq!(config.server, "::1");
        assert_eq!(config.port, 5);
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert_eq!(config.tries(), 1);
        assert_eq!(config.message.as_deref(), Some(&b"hello big world"[..]));
    }

    #[test]
    fn bad_values_are_refused() {
        for argv in [
            &["--timeout", "0s"][..],
            &["--timeout", "soon"],
            &["--port", "0"],
            &["--port", "65536"],
            &["--retries", "-1"],
            &["--nope"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} should be refused");
        }
    }

    #[test]
    fn words_join_with_single_spaces_as_raw_bytes() {
        use std::os::unix::ffi::OsStringExt;
        let words = [
            OsString::from("a"),
            OsString::from(""),
            OsString::from_vec(b"\xff b".to_vec()),
        ];
        assert_eq!(join_words(&words), b"a  \xff b");
        assert_eq!(join_words(&[]), b"");
    }

    #[test]
    fn an_empty_word_is_an_empty_message() {
        let args = parse(&[""]).expect("valid");
        assert_eq!(Config::from(&args).message.as_deref(), Some(&b""[..]));
    }
}
