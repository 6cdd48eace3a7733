//! The command line, and the settings a client session runs with.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, Subcommand};
use upcase_cli::Verbosity;
use upcase_cli::parse::HostPort;

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
    /// Server host, with its port if wanted: a name, an IPv4 or an IPv6
    /// address (`localhost`, `::1`, `[::1]:12000`, `example.com:12000`).
    #[arg(long, default_value = "localhost", value_name = "HOST[:PORT]",
          value_parser = upcase_cli::parse::host_port)]
    pub server: HostPort,
    /// Server port [default: the port in --server, else 12000].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// How long to wait for a reply before sending again (`250ms`, `2s`).
    #[arg(long, default_value = "1s", value_parser = upcase_cli::parse::positive_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// How many times to send a message again after a timeout.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub retries: u32,
}

/// A command line whose options contradict each other: exit status 2, like
/// the errors the parser itself finds.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

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

impl TryFrom<&Args> for Config {
    type Error = UsageError;

    /// Refuses a `--server HOST:PORT` and a `--port` that disagree.
    fn try_from(args: &Args) -> Result<Config, UsageError> {
        let c = &args.connection;
        let port = c
            .server
            .port_or(c.port, upcase_proto::DEFAULT_PORT)
            .map_err(UsageError)?;
        Ok(Config {
            server: c.server.host.clone(),
            port,
            timeout: c.timeout,
            retries: c.retries,
            message: (!args.message.is_empty()).then(|| join_words(&args.message)),
        })
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
        let config = Config::try_from(&args).expect("consistent");
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
        let config = Config::try_from(&args).expect("consistent");
        assert_eq!(config.server, "::1");
        assert_eq!(config.port, 5);
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert_eq!(config.tries(), 1);
        assert_eq!(config.message.as_deref(), Some(&b"hello big world"[..]));
    }

    #[test]
    fn the_server_may_name_its_port() {
        let config_of = |argv: &[&str]| Config::try_from(&parse(argv).expect("valid"));
        let at = |host: &str, port| Ok(Config::new(host, port));
        assert_eq!(
            config_of(&["--server", "example.com:7"]),
            at("example.com", 7)
        );
        assert_eq!(config_of(&["--server", "127.0.0.1:8"]), at("127.0.0.1", 8));
        assert_eq!(config_of(&["--server", "[::1]:9"]), at("::1", 9));
        assert_eq!(config_of(&["--server", "[::1]"]), at("::1", 12_000));
        assert_eq!(config_of(&["--server", "::1"]), at("::1", 12_000));
        assert_eq!(
            config_of(&["--server", "fe80::1:2"]),
            at("fe80::1:2", 12_000)
        );
        assert_eq!(config_of(&["--server", "::1", "--port", "5"]), at("::1", 5));
        assert_eq!(config_of(&["--server", "h:5", "--port", "5"]), at("h", 5));
        let err = config_of(&["--server", "h:5", "--port", "6"]).expect_err("two ports");
        assert_eq!(
            err.to_string(),
            "--server names port 5 and --port says 6: give one"
        );
        for bad in [
            "h:0", "h:65536", "h:", ":5", "[::1", "[::1]5", "[]:5", "h:x",
        ] {
            assert!(parse(&["--server", bad]).is_err(), "{bad:?} accepted");
        }
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
        assert_eq!(
            Config::try_from(&args)
                .expect("consistent")
                .message
                .as_deref(),
            Some(&b""[..])
        );
    }
}
