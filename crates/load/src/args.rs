//! The options of `upcase-client bench`, and the plan they make.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use upcase_cli::parse::HostPort;
use upcase_udp::Io;

use crate::payload::SEQ_LEN;

/// The shortest `--interval`, as iperf3's: each interval costs a clearing
/// of its latency histogram, and a person cannot read them faster.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How many requests are in flight.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One request at a time: the latency of a lone request.
    Ping,
    /// `--window` requests in flight: the throughput of the server.
    Flood,
}

/// Where a round trip is timed from.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LatencyFrom {
    /// The moment the schedule meant the request to go (`--rate` only):
    /// whatever held it back (a full window, a full socket buffer, a slow
    /// sender) counts, so a stall of the server shows in the percentiles.
    Intended,
    /// The moment it actually went: what a closed loop measures, and what
    /// a paced tool without the correction reports (it hides stalls).
    #[default]
    Sent,
}

impl LatencyFrom {
    pub fn name(self) -> &'static str {
        match self {
            LatencyFrom::Intended => "intended",
            LatencyFrom::Sent => "sent",
        }
    }
}

/// Which transport carries the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One datagram per request.
    Udp,
    /// Lines over TCP connections, requests pipelined on each.
    Tcp,
}

/// Measures a server of the upcase protocol (this project's, the C
/// reference, the textbook's Python one): replies per second and latency.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server host, with its port if wanted: a name, or an IPv4 or IPv6
    /// address (`::1`, `[::1]:12000`, `example.com:12000`); a name with both
    /// kinds of address is reached over IPv4 [default: localhost].
    #[arg(long, value_name = "HOST[:PORT]", value_parser = upcase_cli::parse::host_port)]
    pub server: Option<HostPort>,
    /// Server port (UDP, or TCP with --tcp) [default: the port in --server,
    /// else 12000].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// ping: one request in flight; flood: --window requests in flight.
    #[arg(long, value_enum, default_value_t = Mode::Flood)]
    pub mode: Mode,
    /// Requests in flight in flood mode, over all sockets.
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub window: u32,
    /// Connected sockets the flood is spread over (each its own source
    /// port); with --tcp, TCP connections.
    #[arg(long, default_value_t = 1, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub sockets: u32,
    /// Bytes per request: lowercase text starting with its sequence number
    /// (with --tcp, a line: its last byte is the newline).
    #[arg(long, default_value_t = 32, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(SEQ_LEN as i64..=upcase_proto::MAX_PAYLOAD_V6 as i64))]
    pub size: u32,
    /// How long to measure (`500ms`, `5s`, `1m`).
    #[arg(long, default_value = "5s", value_parser = upcase_cli::parse::positive_duration, value_name = "DURATION")]
    pub duration: Duration,
    /// Traffic before the measurement starts, not counted.
    #[arg(long, default_value = "0s", value_parser = upcase_cli::parse::duration, value_name = "DURATION")]
    pub warmup: Duration,
    /// A request unanswered for this long is lost; a reply after it is late.
    #[arg(long, default_value = "200ms", value_parser = upcase_cli::parse::positive_duration, value_name = "DURATION")]
    pub loss_timeout: Duration,
    /// Measure at most N requests, sent after the warm-up; the run ends
    /// once they are answered or lost (or after --duration).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Send R requests per second on a fixed schedule (latency under a
    /// fixed load): request i is due at start + i/R, and its round trip is
    /// timed from then (see --latency-from). With --find-rate, the first
    /// step's rate [default there: 1000].
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// With --rate: time round trips from each request's intended send time
    /// on the schedule (intended, the default), or from its actual send
    /// (sent: as tools without the coordinated-omission correction do,
    /// which hides a stalled server). Without --rate, always sent.
    #[arg(long, value_enum, value_name = "FROM")]
    pub latency_from: Option<LatencyFrom>,
    /// Search for the highest rate the server sustains: steps of --duration
    /// at rising --rate (doubling from the first, then halving the gap), a
    /// step passing while loss is at most --max-loss, p99 at most --max-p99
    /// and the sender keeps the rate; at most --max-steps steps.
    #[arg(long, conflicts_with = "count")]
    pub find_rate: bool,
    /// --find-rate: the most loss a passing step may have, a fraction
    /// (`0.001`) or a percentage (`0.1%`).
    #[arg(long, default_value = "0.1%", value_name = "FRACTION", value_parser = fraction)]
    pub max_loss: f64,
    /// --find-rate: the highest p99 round trip (from the intended send
    /// time) a passing step may have.
    #[arg(long, default_value = "10ms", value_parser = upcase_cli::parse::positive_duration, value_name = "DURATION")]
    pub max_p99: Duration,
    /// --find-rate: the most steps the search takes.
    #[arg(long, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_steps: u32,
    /// Messages per sendmmsg/recvmmsg call (UDP only).
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,
    /// Send requests as UDP GSO trains and receive replies with UDP GRO,
    /// where the kernel has them (on the batched path).
    #[arg(long)]
    pub gso: bool,
    /// How requests and replies move (UDP only): batched (--batch per
    /// system call, sendmmsg/recvmmsg, GSO and GRO with --gso; Linux only)
    /// or portable (one per system call, on every system) [default:
    /// batched on Linux, else portable]
    #[arg(long, value_name = "PATH", value_parser = Io::parse_available)]
    pub io: Option<Io>,
    /// Measure the TCP service instead: --sockets connections (default 1)
    /// share the window, each request a line, pipelined on its connection.
    #[arg(long, conflicts_with = "gso")]
    pub tcp: bool,
    /// Spin on non-blocking receives instead of sleeping (a whole core).
    #[arg(long)]
    pub busy_poll: bool,
    /// Results per interval of this length too (at least 100ms), besides
    /// the totals: in the table, and in the JSON's `intervals`.
    #[arg(long, default_value = "1s", value_parser = upcase_cli::parse::positive_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Print one JSON object at the end instead of the table: the settings,
    /// the version and a timestamp, the totals, and `intervals`.
    #[arg(long)]
    pub json: bool,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            server: None,
            port: None,
            mode: Mode::Flood,
            window: 64,
            sockets: 1,
            size: 32,
            duration: Duration::from_secs(5),
            warmup: Duration::ZERO,
            loss_timeout: Duration::from_millis(200),
            count: None,
            rate: None,
            latency_from: None,
            find_rate: false,
            max_loss: 0.001,
            max_p99: Duration::from_millis(10),
            max_steps: 16,
            batch: 64,
            gso: false,
            io: None,
            tcp: false,
            busy_poll: false,
            interval: Duration::from_secs(1),
            json: false,
        }
    }
}

/// The arguments checked, resolved and made consistent.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub server: SocketAddr,
    pub transport: Transport,
    pub mode: Mode,
    pub size: usize,
    pub window: usize,
    pub sockets: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub loss_timeout: Duration,
    pub count: Option<u64>,
    pub rate: Option<u64>,
    pub latency_from: LatencyFrom,
    /// `--find-rate`: the bounds of the search (`rate` is its first step).
    pub search: Option<SearchPlan>,
    pub batch: usize,
    pub gso: bool,
    /// The UDP path: `--io`, or this system's fastest.
    pub io: Io,
    pub busy_poll: bool,
    pub interval: Duration,
}

/// What `--find-rate` looks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SearchPlan {
    pub max_loss: f64,
    pub max_p99: Duration,
    pub max_steps: u32,
}

/// The first rate `--find-rate` tries without `--rate`: well under what any
/// server of the protocol answers, so the ramp starts on a passing step.
pub(crate) const FIRST_SEARCH_RATE: u64 = 1_000;

impl Plan {
    pub(crate) fn new(args: &BenchArgs) -> anyhow::Result<Plan> {
        let named = args.server.clone().unwrap_or_else(HostPort::localhost);
        let port = named
            .port_or(args.port, upcase_proto::DEFAULT_PORT)
            .map_err(anyhow::Error::msg)?;
        let server = resolve(&named.host, port)?;
        let family = upcase_proto::Family::of(server);
        let size = args.size as usize;
        let transport = if args.tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        if args.tcp {
            check_tcp(args)?;
        } else if size > family.max_payload() {
            bail!(
                "--size {size} does not fit in one {} datagram (at most {} bytes)",
                family.name(),
                family.max_payload()
            );
        }
        if !(SEQ_LEN..=upcase_proto::MAX_PAYLOAD).contains(&size) {
            bail!(
                "--size must be between {SEQ_LEN} and {} bytes",
                family.max_payload()
            );
        }
        if args.interval < MIN_INTERVAL {
            bail!("--interval must be at least {}ms", MIN_INTERVAL.as_millis());
        }
        let (window, sockets) = match args.mode {
            Mode::Ping => (1, 1),
            // Every socket keeps at least one request in flight.
            Mode::Flood => (
                args.window as usize,
                (args.sockets.min(args.window)) as usize,
            ),
        };
        let search = args.find_rate.then_some(SearchPlan {
            max_loss: args.max_loss,
            max_p99: args.max_p99,
            max_steps: args.max_steps,
        });
        let rate = match search {
            Some(_) => Some(args.rate.unwrap_or(FIRST_SEARCH_RATE)),
            None => args.rate,
        };
        let latency_from = match (args.latency_from, rate) {
            (Some(LatencyFrom::Intended), None) => bail!(
                "--latency-from intended needs --rate: without a schedule there is no intended send time"
            ),
            (Some(from), _) => from,
            (None, Some(_)) => LatencyFrom::Intended,
            (None, None) => LatencyFrom::Sent,
        };
        Ok(Plan {
            server,
            transport,
            mode: args.mode,
            size,
            window,
            sockets,
            duration: args.duration,
            warmup: args.warmup,
            loss_timeout: args.loss_timeout,
            count: args.count,
            rate,
            latency_from,
            search,
            batch: (args.batch as usize).clamp(1, upcase_udp::MAX_BATCH),
            gso: args.gso,
            io: args.io.unwrap_or_default(),
            busy_poll: args.busy_poll,
            interval: args.interval,
        })
    }

    /// Requests in flight allowed on socket `i`: the window shared out.
    pub(crate) fn window_of(&self, i: usize) -> usize {
        self.window / self.sockets + usize::from(i < self.window % self.sockets)
    }
}

/// A fraction from 0 (inclusive) to 1 (exclusive), as `0.001` or `0.1%`.
fn fraction(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.trim().strip_suffix('%') {
        Some(percent) => (percent, 0.01),
        None => (text.trim(), 1.0),
    };
    let value = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{text:?} is not a fraction such as 0.001 or 0.1%"))?
        * scale;
    if !(0.0..1.0).contains(&value) {
        return Err(format!("{text:?} is not at least 0 and below 1 (100%)"));
    }
    Ok(value)
}

/// What a TCP run cannot do: a request must hold its sequence letters and
/// the newline after them, and GSO is a UDP feature.
fn check_tcp(args: &BenchArgs) -> anyhow::Result<()> {
    if args.gso {
        bail!("--gso is for UDP only: it cannot be used with --tcp");
    }
    if (args.size as usize) < SEQ_LEN + 1 {
        bail!(
            "--size must be at least {} bytes with --tcp ({SEQ_LEN} sequence letters and a newline)",
            SEQ_LEN + 1
        );
    }
    Ok(())
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server {host:?}"))?
        .collect();
    // Servers on loopback (the C references, `localhost` names) most often
    // listen on IPv4 only, and one run measures one address.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("server {host:?} has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn defaults_match_the_default_impl() {
        let parsed = parse(&[]).unwrap();
        let default = BenchArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn the_io_path_defaults_to_the_fastest_and_an_unavailable_one_is_refused() {
        let plan = |args: &[&str]| Plan::new(&parse(args).unwrap()).unwrap();
        assert_eq!(plan(&[]).io, Io::default());
        assert_eq!(plan(&["--io", "portable"]).io, Io::Portable);
        match parse(&["--io", "batched"]) {
            Ok(args) if Io::Batched.is_available() => {
                assert_eq!(Plan::new(&args).unwrap().io, Io::Batched);
            }
            Ok(_) => panic!("batched was accepted where it is not available"),
            Err(err) => assert!(!Io::Batched.is_available(), "{err}"),
        }
        assert!(parse(&["--io", "mmsg"]).is_err());
    }

    #[test]
    fn options_parse_and_bad_values_are_refused() {
        let a = parse(&[
            "--mode",
            "ping",
            "--size",
            "100",
            "--duration",
            "300ms",
            "--rate",
            "1000",
            "--server",
            "[::1]",
        ])
        .unwrap();
        assert_eq!(a.mode, Mode::Ping);
        assert_eq!(a.duration, Duration::from_millis(300));
        let plan = Plan::new(&a).unwrap();
        assert_eq!(plan.server, "[::1]:12000".parse().unwrap());
        assert_eq!((plan.window, plan.sockets), (1, 1));
        for bad in [
            &["--size", "7"][..],
            &["--size", "65528"],
            &["--window", "0"],
            &["--sockets", "65"],
            &["--duration", "0s"],
            &["--loss-timeout", "soon"],
            &["--mode", "storm"],
            &["--rate", "0"],
            &["--port", "0"],
            &["--interval", "0s"],
            &["--latency-from", "later"],
            &["--find-rate", "--count", "5"],
            &["--max-loss", "1"],
            &["--max-loss", "-0.1%"],
            &["--max-loss", "lots"],
            &["--max-p99", "0s"],
            &["--max-steps", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let named = Plan::new(&parse(&["--server", "127.0.0.1:7"]).unwrap()).unwrap();
        assert_eq!(named.server, "127.0.0.1:7".parse().unwrap());
        let both = parse(&["--server", "127.0.0.1:7", "--port", "8"]).unwrap();
        let err = Plan::new(&both).unwrap_err().to_string();
        assert_eq!(err, "--server names port 7 and --port says 8: give one");
        let fast = parse(&["--interval", "50ms"]).unwrap();
        let err = Plan::new(&fast).unwrap_err().to_string();
        assert_eq!(err, "--interval must be at least 100ms");
        let v4_too_big = parse(&["--size", "65508"]).unwrap();
        let err = Plan::new(&v4_too_big).unwrap_err().to_string();
        assert!(err.contains("65507"), "{err}");
    }

    #[test]
    fn tcp_refuses_gso_and_requests_too_short_for_a_line() {
        let err = parse(&["--tcp", "--gso"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        // The library refuses it too, for callers that fill BenchArgs themselves.
        let both = BenchArgs {
            tcp: true,
            gso: true,
            ..BenchArgs::default()
        };
        let err = Plan::new(&both).unwrap_err().to_string();
        assert!(err.contains("--gso") && err.contains("--tcp"), "{err}");

        let short = parse(&["--tcp", "--size", "8", "--server", "127.0.0.1"]).unwrap();
        let err = Plan::new(&short).unwrap_err().to_string();
        assert!(err.contains("at least 9 bytes"), "{err}");
        let udp = Plan::new(&parse(&["--size", "8", "--server", "127.0.0.1"]).unwrap()).unwrap();
        assert_eq!(udp.transport, Transport::Udp, "8 bytes is fine for UDP");

        // A line has no datagram limit: IPv4 takes the largest size too, and
        // --batch is accepted and ignored.
        let tcp = parse(&[
            "--tcp",
            "--size",
            "65527",
            "--server",
            "127.0.0.1",
            "--batch",
            "8",
        ])
        .unwrap();
        let plan = Plan::new(&tcp).unwrap();
        assert_eq!((plan.transport, plan.size), (Transport::Tcp, 65_527));
        let ping = parse(&["--tcp", "--mode", "ping", "--sockets", "4", "--window", "9"]).unwrap();
        let plan = Plan::new(&ping).unwrap();
        assert_eq!((plan.window, plan.sockets), (1, 1), "ping: one connection");
    }

    #[test]
    fn latency_is_timed_from_the_schedule_only_under_a_rate() {
        let plan = |args: &[&str]| Plan::new(&parse(args).unwrap());
        assert_eq!(plan(&[]).unwrap().latency_from, LatencyFrom::Sent);
        let paced = plan(&["--rate", "5000"]).unwrap();
        assert_eq!(paced.latency_from, LatencyFrom::Intended);
        assert_eq!(paced.search, None);
        let uncorrected = plan(&["--rate", "5000", "--latency-from", "sent"]).unwrap();
        assert_eq!(uncorrected.latency_from, LatencyFrom::Sent);
        let err = plan(&["--latency-from", "intended"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs --rate"), "{err}");
    }

    #[test]
    fn find_rate_starts_at_its_first_rate_with_its_bounds() {
        let plan = |args: &[&str]| Plan::new(&parse(args).unwrap()).unwrap();
        let search = plan(&["--find-rate"]);
        assert_eq!(search.rate, Some(FIRST_SEARCH_RATE));
        assert_eq!(search.latency_from, LatencyFrom::Intended);
        assert_eq!(
            search.search,
            Some(SearchPlan {
                max_loss: 0.001,
                max_p99: Duration::from_millis(10),
                max_steps: 16
            })
        );
        let given = plan(&[
            "--find-rate",
            "--rate",
            "20000",
            "--max-loss",
            "0.5%",
            "--max-p99",
            "2ms",
            "--max-steps",
            "5",
        ]);
        assert_eq!(given.rate, Some(20_000));
        let bounds = given.search.unwrap();
        assert!((bounds.max_loss - 0.005).abs() < 1e-12, "{bounds:?}");
        assert_eq!(
            (bounds.max_p99, bounds.max_steps),
            (Duration::from_millis(2), 5)
        );
        assert_eq!(fraction("0.001"), Ok(0.001));
        assert_eq!(fraction("0"), Ok(0.0));
    }

    #[test]
    fn the_window_is_shared_out_over_the_sockets() {
        let a = parse(&["--window", "10", "--sockets", "4"]).unwrap();
        let plan = Plan::new(&a).unwrap();
        let shares: Vec<usize> = (0..plan.sockets).map(|i| plan.window_of(i)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        let few = Plan::new(&parse(&["--window", "2", "--sockets", "8"]).unwrap()).unwrap();
        assert_eq!(few.sockets, 2, "no socket without a request in flight");
    }
}
