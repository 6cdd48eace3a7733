//! The command line, and the settings a client session runs with.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, Subcommand};
use upcase_cli::Verbosity;
use upcase_cli::parse::HostPort;
use upcase_load::BenchArgs;

/// The default `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default `--retries`.
const DEFAULT_RETRIES: u32 = 2;

/// Sends lines to an upcase server over UDP and prints their uppercase.
///
/// With MESSAGE words, sends them joined by spaces as one datagram and prints
/// the reply. Without, sends each line of standard input as one datagram and
/// prints each reply on its own line. A first word `bench` runs the
/// benchmark instead, `health` the health probe: to send such a word
/// itself, write `-- bench`.
#[derive(Debug, Parser)]
#[command(
    name = "upcase-client",
    version = upcase_cli::VERSION,
    disable_help_subcommand = true
)]
pub struct Args {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Use TCP instead: one connection, each line sent with its newline and
    /// its reply printed as it streams back (--retries does not apply).
    /// Before `bench`, measures the TCP service.
    #[arg(long)]
    pub tcp: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
    /// Words to send as one message instead of reading standard input.
    pub message: Vec<OsString>,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Which connection options came from the environment rather than the
    /// command line: [`Args::with_sources`] fills it in.
    #[arg(skip)]
    pub from_env: FromEnv,
}

/// The connection options whose value was read from an `UPCASE_*`
/// variable. The command line wins over the environment, so such a value
/// gives way where an option given on the command line says otherwise
/// (a port in `--server HOST:PORT`, the bench's own `--server`), and
/// `--timeout`/`--retries` set for sessions are no reason to refuse a bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FromEnv {
    pub server: bool,
    pub port: bool,
    pub timeout: bool,
    pub retries: bool,
}

/// Subcommands: a first word that names one runs it; any later word is
/// part of the message.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure a server: replies per second and round-trip percentiles, with
    /// every reply checked (`--mode ping` or `--mode flood --window W`).
    ///
    /// --server, --port and --tcp may come before `bench` or after it.
    Bench(BenchArgs),
    /// Probe a server once, for a load balancer, an orchestrator or a
    /// monitor: exit status 0 if it is healthy, 1 if not, with one `error:`
    /// line saying why (2: a command line that cannot run).
    ///
    /// Sends one probe message, unique to the run (mixed case, letters
    /// outside ASCII), and the server is healthy only if the reply is
    /// exactly its uppercase: a closed port, silence for every try, or any
    /// other reply is not. Over UDP by default (--timeout for each try,
    /// --retries more tries), over one connection with --tcp. The options
    /// come before `health`: `upcase-client --server HOST:PORT --timeout
    /// 200ms --retries 0 health`. Prints nothing on success unless -v is
    /// given.
    Health,
}

/// Where the server is and how long to wait for it: shared by every way of
/// talking to a server. Each is `None` when not given, so that options
/// given before `bench` can be told from defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Server host, with its port if wanted: a name, an IPv4 or an IPv6
    /// address (`localhost`, `::1`, `[::1]:12000`, `example.com:12000`)
    /// [default: localhost].
    #[arg(long, value_name = "HOST[:PORT]", env = "UPCASE_SERVER",
          value_parser = upcase_cli::parse::host_port)]
    pub server: Option<HostPort>,
    /// Server port [default: the port in --server, else 12000].
    #[arg(long, env = "UPCASE_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// How long to wait for a reply before sending again (`250ms`, `2s`)
    /// [default: 1s].
    #[arg(long, env = "UPCASE_TIMEOUT", value_name = "DURATION",
          value_parser = upcase_cli::parse::positive_duration)]
    pub timeout: Option<Duration>,
    /// How many times to send a message again after a timeout [default: 2].
    #[arg(long, value_name = "N", env = "UPCASE_RETRIES")]
    pub retries: Option<u32>,
}

impl Args {
    /// Records which connection options `matches` took from the
    /// environment (see [`FromEnv`]).
    pub fn with_sources(mut self, matches: &clap::ArgMatches) -> Args {
        let from_env =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable);
        self.from_env = FromEnv {
            server: from_env("server"),
            port: from_env("port"),
            timeout: from_env("timeout"),
            retries: from_env("retries"),
        };
        self
    }

    /// The bench's options, with those given before `bench` (`--server`,
    /// `--port`, `--tcp`) added; `None` without the subcommand.
    ///
    /// The same option before and after `bench` must agree, and the options
    /// that only mean something to a session (`--timeout`, `--retries`) are
    /// refused before `bench` rather than ignored.
    pub fn bench(&self) -> Option<Result<BenchArgs, UsageError>> {
        let Some(Command::Bench(bench)) = &self.command else {
            return None;
        };
        Some(self.before_bench(bench.clone()))
    }

    fn before_bench(&self, mut bench: BenchArgs) -> Result<BenchArgs, UsageError> {
        let c = &self.connection;
        let env = self.from_env;
        if c.timeout.is_some() && !env.timeout {
            return Err(UsageError(
                "--timeout does not apply to bench (a request unanswered for --loss-timeout is lost)"
                    .to_string(),
            ));
        }
        if c.retries.is_some() && !env.retries {
            return Err(UsageError(
                "--retries does not apply to bench (it never sends a request again)".to_string(),
            ));
        }
        // A value from the environment gives way to the bench's own option.
        bench.server = once(
            "--server",
            unless_env_and(c.server.clone(), env.server, &bench.server),
            bench.server,
        )?;
        bench.port = once(
            "--port",
            unless_env_and(c.port, env.port, &bench.port),
            bench.port,
        )?;
        bench.tcp |= self.tcp;
        Ok(bench)
    }
}

/// `value`, unless it came from the environment and `other` (given on the
/// command line) takes its place.
fn unless_env_and<T>(value: Option<T>, from_env: bool, other: &Option<T>) -> Option<T> {
    if from_env && other.is_some() {
        None
    } else {
        value
    }
}

/// The value of an option that may be given before `bench` and after it:
/// either, or both if they agree.
fn once<T: PartialEq + std::fmt::Debug>(
    name: &str,
    before: Option<T>,
    after: Option<T>,
) -> Result<Option<T>, UsageError> {
    match (before, after) {
        (Some(before), Some(after)) if before != after => Err(UsageError(format!(
            "{name} is given before bench and after it, with different values: give it once"
        ))),
        (before, after) => Ok(after.or(before)),
    }
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
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
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
        let mut server = c.server.clone().unwrap_or_else(HostPort::localhost);
        // Two ports can disagree only when both were written on the command
        // line (or both in the environment): otherwise the command line's wins.
        let mut given_port = c.port;
        let env = args.from_env;
        if given_port.is_some() && server.port.is_some() && env.port != env.server {
            if env.port {
                given_port = None;
            } else {
                server.port = None;
            }
        }
        let port = server
            .port_or(given_port, upcase_proto::DEFAULT_PORT)
            .map_err(UsageError)?;
        Ok(Config {
            server: server.host,
            port,
            timeout: c.timeout.unwrap_or(DEFAULT_TIMEOUT),
            retries: c.retries.unwrap_or(DEFAULT_RETRIES),
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

    fn bench_of(argv: &[&str]) -> Result<BenchArgs, UsageError> {
        parse(argv).expect("valid").bench().expect("a bench")
    }

    #[test]
    fn options_before_bench_are_the_benchs() {
        let host = |h: &str, port| {
            Some(HostPort {
                host: h.into(),
                port,
            })
        };
        let bench = bench_of(&["--server", "h", "--port", "5", "bench", "--count", "3"])
            .expect("consistent");
        assert_eq!(
            (bench.server, bench.port, bench.count),
            (host("h", None), Some(5), Some(3))
        );
        let bench = bench_of(&["--tcp", "bench", "--server", "[::1]:7"]).expect("consistent");
        assert_eq!((bench.server, bench.tcp), (host("::1", Some(7)), true));
        let bench = bench_of(&["--port", "5", "bench", "--port", "5"]).expect("the same twice");
        assert_eq!(bench.port, Some(5));
        assert_eq!(bench_of(&["bench"]).expect("defaults").server, None);
        let err = bench_of(&["--server", "a", "bench", "--server", "b"]).expect_err("two");
        assert_eq!(
            err.to_string(),
            "--server is given before bench and after it, with different values: give it once"
        );
        for (argv, option) in [
            (&["--timeout", "2s", "bench"][..], "--timeout"),
            (&["--retries", "0", "bench"], "--retries"),
        ] {
            let err = bench_of(argv).expect_err("not a bench option");
            assert!(
                err.to_string()
                    .starts_with(&format!("{option} does not apply to bench"))
            );
        }
        assert!(parse(&["--server", "h"]).expect("valid").bench().is_none());
    }

    #[test]
    fn bench_is_a_word_anywhere_but_first_or_after_a_double_dash() {
        let message = |argv: &[&str]| {
            let args = parse(argv).expect("valid");
            assert!(args.command.is_none(), "{argv:?} ran a subcommand");
            Config::try_from(&args).expect("consistent").message
        };
        assert_eq!(message(&["--", "bench"]).as_deref(), Some(&b"bench"[..]));
        assert_eq!(
            message(&["hello", "bench"]).as_deref(),
            Some(&b"hello bench"[..])
        );
        assert_eq!(
            message(&["help"]).as_deref(),
            Some(&b"help"[..]),
            "not a subcommand"
        );
        assert!(parse(&["bench", "hello"]).is_err(), "bench takes no words");
    }

    #[test]
    fn words_join_with_single_spaces() {
        let words = [OsString::from("a"), OsString::from(""), OsString::from("b")];
        assert_eq!(join_words(&words), b"a  b");
        assert_eq!(join_words(&[]), b"");
    }

    /// Only Unix has arguments that are not text (Windows' are UTF-16).
    #[cfg(unix)]
    #[test]
    fn words_are_sent_as_raw_bytes() {
        use std::os::unix::ffi::OsStringExt;
        let words = [OsString::from("a"), OsString::from_vec(b"\xff b".to_vec())];
        assert_eq!(join_words(&words), b"a \xff b");
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
