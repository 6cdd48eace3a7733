//! The command line: [`Args`] and the option groups flattened into it, and
//! how they become a [`Config`]. Only this module knows clap; below it the
//! server sees plain configuration data.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use upcase_cli::Verbosity;
use upcase_proto::DEFAULT_PORT;
use upcase_udp::Io;

use crate::config::{
    Bind, Cidr, Config, DEFAULT_PROXY_SESSIONS, DEFAULT_RATE_LIMIT_TABLE, DEFAULT_RECV_BUFFER,
    Given, MAX_PROXY_SESSIONS, MAX_RATE_LIMIT_TABLE, PolicyConfig, ProxyConfig, ProxySources,
    RateLimit, ReplyRatio, TcpLimits, Transports, UdpTuning, default_threads,
};

/// `upcase-server [--bind ADDR] [--port PORT] [--threads N] [-v|-q] ...`
#[derive(Debug, clap::Parser)]
#[command(name = "upcase-server", version = upcase_cli::VERSION, about, after_help = AFTER_HELP)]
#[non_exhaustive]
pub struct Args {
    /// Address to receive on [default: all interfaces, IPv6 and IPv4, one
    /// dual-stack socket on ::, or 0.0.0.0 where IPv6 is off]
    #[arg(long, value_name = "ADDR", env = "UPCASE_BIND")]
    bind: Option<IpAddr>,
    /// Port to receive on, the same for UDP and TCP; 0 lets the system
    /// choose one [default: 12000]
    #[arg(short, long, value_name = "PORT", env = "UPCASE_PORT")]
    port: Option<u16>,
    /// Worker threads. On Linux and FreeBSD each has its own socket on the
    /// same port (SO_REUSEPORT, SO_REUSEPORT_LB) and the kernel spreads the
    /// datagrams; on macOS and Windows, and with inherited sockets, the
    /// threads share the socket; TCP is served on as many threads
    /// [default: one per core]
    #[arg(long, value_name = "N", env = "UPCASE_THREADS",
          value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Serve the counters in the Prometheus text format at
    /// http://ADDR:PORT/metrics (port 0: the system chooses; the ready line
    /// names it) [default: no metrics, nothing else listens]
    #[arg(long, value_name = "ADDR:PORT", env = "UPCASE_METRICS")]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    udp: UdpArgs,
    #[command(flatten)]
    transport: TransportArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    verbosity: Verbosity,
}

impl Args {
    /// Sends the logs to stderr at the level `-v`/`-q` ask for.
    pub fn init_logging(&self) {
        self.verbosity.init_logging();
    }

    pub(crate) fn into_config(self) -> Config {
        let given = Given {
            bind: self.bind.is_some(),
            port: self.port.is_some(),
            transport: self.transport.transport.is_some(),
        };
        Config {
            bind: self.bind.map_or(Bind::DualStack, Bind::Addr),
            port: self.port.unwrap_or(DEFAULT_PORT),
            threads: self.threads.map_or_else(default_threads, usize::from),
            transports: self.transport.transport.unwrap_or_default(),
            udp: self.udp.into_tuning(),
            tcp: self.transport.into_limits(),
            policy: self.policy.into_config(),
            metrics: self.metrics,
            proxy: self.proxy.into_config(),
            given,
        }
    }
}

/// What `--help` ends with: where else the configuration comes from.
const AFTER_HELP: &str = "Every option can also be set by the environment variable it names \
(for unit files and containers); the command line wins over the environment. Started by \
systemd's socket activation (LISTEN_FDS), the server serves the sockets it is given instead of \
binding, and --bind, --port and --transport are refused. With NOTIFY_SOCKET it tells systemd \
when it is ready (READY=1) and stopping (STOPPING=1), and keeps the watchdog (WATCHDOG_USEC).";

/// How the UDP sockets are tuned for load: a receive buffer that absorbs
/// bursts, UDP GRO so a sender's GSO trains arrive (and leave) as one
/// buffer, and busy-polling for latency.
#[derive(Clone, Debug, clap::Args)]
struct UdpArgs {
    /// Receive buffer of each UDP socket in bytes (SO_RCVBUF), so that a burst
    /// is queued rather than dropped; the kernel caps it at net.core.rmem_max
    /// unless the server has CAP_NET_ADMIN
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RECV_BUFFER, env = "UPCASE_RECV_BUFFER",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    recv_buffer: u32,
    /// Spin on the socket instead of sleeping between datagrams: lower
    /// latency, at the cost of a whole core per worker thread
    #[arg(long, env = "UPCASE_BUSY_POLL")]
    busy_poll: bool,
    /// Turn UDP GRO on: a sender's GSO train arrives as one buffer and an
    /// all-ASCII train is answered with one GSO send, but every ordinary
    /// datagram then costs the kernel a few percent more
    #[arg(long, env = "UPCASE_GRO")]
    gro: bool,
    /// How the workers move datagrams: batched (many per system call,
    /// recvmmsg/sendmmsg, with GRO and GSO; Linux only) or portable (one
    /// per system call, on every system) [default: batched on Linux, else
    /// portable]
    #[arg(long, value_name = "PATH", env = "UPCASE_IO", value_parser = Io::parse_available)]
    io: Option<Io>,
}

impl UdpArgs {
    fn into_tuning(self) -> UdpTuning {
        UdpTuning {
            recv_buffer: usize::try_from(self.recv_buffer).unwrap_or(usize::MAX),
            busy_poll: self.busy_poll,
            gro: self.gro,
            io: self.io.unwrap_or_default(),
        }
    }
}

/// The transports and TCP's limits.
#[derive(Debug, Clone, clap::Args)]
struct TransportArgs {
    /// Transports to serve, on the same address and port: udp, tcp, or
    /// udp,tcp [default: udp,tcp]
    #[arg(long, value_name = "LIST", env = "UPCASE_TRANSPORT", value_parser = parse_transports)]
    transport: Option<Transports>,
    /// Most TCP connections served at once; one more is reset at once
    #[arg(long, value_name = "N", default_value_t = 1024, env = "UPCASE_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Close a TCP connection that sends nothing, or takes none of its reply,
    /// for this long (`300ms`, `30s`, `2m`)
    #[arg(long, value_name = "DURATION", default_value = "30s", env = "UPCASE_IDLE_TIMEOUT",
          value_parser = upcase_cli::parse::positive_duration)]
    idle_timeout: Duration,
    /// After a stop signal, how long open TCP connections may go on before
    /// they are closed (`0s` closes them at once)
    #[arg(long, value_name = "DURATION", default_value = "500ms", env = "UPCASE_STOP_GRACE",
          value_parser = upcase_cli::parse::duration)]
    stop_grace: Duration,
}

impl TransportArgs {
    fn into_limits(self) -> TcpLimits {
        TcpLimits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            idle_timeout: self.idle_timeout,
            grace: self.stop_grace,
        }
    }
}

/// `udp`, `tcp`, or both separated by a comma, in any order.
fn parse_transports(text: &str) -> Result<Transports, String> {
    let mut chosen = Transports {
        udp: false,
        tcp: false,
    };
    for name in text.split(',').map(str::trim) {
        match name.to_ascii_lowercase().as_str() {
            "udp" => chosen.udp = true,
            "tcp" => chosen.tcp = true,
            _ => {
                return Err(format!(
                    "unknown transport {name:?}: expected udp, tcp or udp,tcp"
                ));
            }
        }
    }
    Ok(chosen)
}

/// Opt-in abuse limits (see the `policy` module for why).
#[derive(Debug, Clone, clap::Args)]
struct PolicyArgs {
    /// At most N replies per second to one source address (an IPv6 /64
    /// counts as one), with a burst of N; the excess is dropped and counted
    /// [default: no limit]
    #[arg(long, value_name = "N", env = "UPCASE_RATE_LIMIT",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate_limit: Option<u32>,
    /// How many source addresses the rate limit remembers; when the table is
    /// full the least recently seen is forgotten, so memory stays fixed
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE_LIMIT_TABLE, env = "UPCASE_RATE_LIMIT_TABLE",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE_LIMIT_TABLE)))]
    rate_limit_table: u32,
    /// Drop any reply longer than R times its request (R >= 1; 1 makes the
    /// server no amplifier at all) [default: no limit]
    #[arg(long, value_name = "R", env = "UPCASE_MAX_REPLY_RATIO", value_parser = parse_reply_ratio)]
    max_reply_ratio: Option<ReplyRatio>,
}

impl PolicyArgs {
    fn into_config(self) -> PolicyConfig {
        PolicyConfig {
            rate_limit: self.rate_limit.map(|per_second| RateLimit {
                per_second,
                table: usize::try_from(self.rate_limit_table).unwrap_or(usize::MAX),
            }),
            max_reply_ratio: self.max_reply_ratio,
        }
    }
}

/// Peers that stand in front of the server (nginx's `stream` module, HAProxy)
/// and say in a PROXY header whom they forward for.
#[derive(Debug, Clone, clap::Args)]
struct ProxyArgs {
    /// Read a PROXY protocol header (v1 or v2, as nginx's `proxy_protocol
    /// on` sends) from these peers: its client is the one the rate limit,
    /// the logs and the metrics see; replies go to the proxy. UDP: a header
    /// opens a session, so the proxy's later datagrams from the same port
    /// count as the same client; other datagrams from the proxy are its
    /// own. TCP: a connection from these peers must start with a header.
    /// Other peers are never read for one [default: none]
    #[arg(long, value_name = "CIDR[,CIDR...]", env = "UPCASE_PROXY_PROTOCOL_FROM",
          value_parser = parse_proxy_sources)]
    proxy_protocol_from: Option<ProxySources>,
    /// How many UDP proxy sessions each socket remembers (one socket per
    /// worker thread); when full, a new session replaces the least recently
    /// seen of a few, so memory stays fixed whatever is sent
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PROXY_SESSIONS, env = "UPCASE_PROXY_SESSION_TABLE",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PROXY_SESSIONS)))]
    proxy_session_table: u32,
    /// Forget a UDP proxy session after this long without a datagram; at
    /// least the proxy's own (nginx's `proxy_timeout`, 10m by default)
    // The default is nginx's, so a session nginx still keeps is never
    // forgotten here first.
    #[arg(long, value_name = "DURATION", default_value = "10m", env = "UPCASE_PROXY_SESSION_IDLE",
          value_parser = upcase_cli::parse::positive_duration)]
    proxy_session_idle: Duration,
}

impl ProxyArgs {
    fn into_config(self) -> Option<ProxyConfig> {
        Some(ProxyConfig {
            from: self.proxy_protocol_from?,
            sessions: usize::try_from(self.proxy_session_table).unwrap_or(usize::MAX),
            idle: self.proxy_session_idle,
        })
    }
}

/// `CIDR[,CIDR...]`, each `ADDRESS/BITS` or a bare address (one host).
fn parse_proxy_sources(text: &str) -> Result<ProxySources, String> {
    let blocks = text
        .split(',')
        .map(|block| parse_cidr(block.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    ProxySources::new(blocks).ok_or_else(|| "no address block given".to_string())
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let network: IpAddr = address.parse().map_err(|_| {
        format!("{text:?} is not an address block: expected ADDRESS/BITS (10.0.0.0/8, fd00::/8) or an address")
    })?;
    let prefix = match prefix {
        Some(bits) => bits
            .parse::<u8>()
            .map_err(|_| format!("{bits:?} in {text:?} is not a prefix length in bits"))?,
        None if network.is_ipv4() => 32,
        None => 128,
    };
    Cidr::new(network, prefix)
}

fn parse_reply_ratio(text: &str) -> Result<ReplyRatio, String> {
    let ratio: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    ReplyRatio::new(ratio)
        .ok_or_else(|| format!("the reply ratio must be a finite number of at least 1, not {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Args::try_parse_from(std::iter::once("upcase-server").chain(args.iter().copied()))
            .map(Args::into_config)
    }

    #[test]
    fn defaults_are_the_textbook_port_on_every_interface() {
        assert_eq!(parse(&[]).expect("no arguments"), Config::default());
        assert_eq!(Config::default().port, 12_000);
    }

    #[test]
    fn options_are_read() {
        let config = parse(&["--bind", "::1", "--port", "0", "--threads", "3"]).expect("valid");
        assert_eq!(
            config,
            Config {
                bind: Bind::Addr("::1".parse().expect("ip")),
                port: 0,
                threads: 3,
                given: Given {
                    bind: true,
                    port: true,
                    transport: false,
                },
                ..Config::default()
            }
        );
        let config = parse(&["--bind", "127.0.0.1", "-p", "4000", "-v"]).expect("valid");
        assert_eq!(config.port, 4000);
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        assert_eq!(parse(&[]).expect("defaults").metrics, None);
        let config = parse(&["--metrics", "127.0.0.1:0"]).expect("valid");
        assert_eq!(config.metrics, Some("127.0.0.1:0".parse().expect("addr")));
        let config = parse(&["--metrics", "[::1]:9100"]).expect("valid");
        assert_eq!(config.metrics.map(|m| m.port()), Some(9100));
        for bad in ["9100", "localhost:9100", "127.0.0.1", ""] {
            assert!(parse(&["--metrics", bad]).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_address_options_given_are_known_from_defaults() {
        assert_eq!(
            parse(&[]).expect("defaults").given.names(),
            Vec::<&str>::new()
        );
        let given = parse(&["--port", "12000", "--transport", "udp"])
            .expect("valid")
            .given;
        assert_eq!(given.names(), ["--port", "--transport"]);
        assert_eq!(
            parse(&["--bind", "::"]).expect("valid").given.names(),
            ["--bind"]
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--port", "70000"][..],
            &["--port", "-1"],
            &["--threads", "0"],
            &["--bind", "localhost:1"],
            &["--bind", "300.1.1.1"],
            &["--nope"],
            &["-v", "-q"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn transports_are_parsed() {
        assert_eq!(parse_transports("udp"), Ok(Transports::UDP));
        assert_eq!(parse_transports("tcp"), Ok(Transports::TCP));
        assert_eq!(parse_transports("udp,tcp"), Ok(Transports::BOTH));
        assert_eq!(parse_transports("TCP, udp"), Ok(Transports::BOTH));
        for bad in ["", "udp,", "sctp", "udp;tcp"] {
            assert!(parse_transports(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_command_line_sets_transports_and_limits() {
        let defaults = parse(&[]).expect("defaults");
        assert_eq!(defaults.transports, Transports::BOTH);
        assert_eq!(defaults.tcp.max_connections, 1024);
        assert_eq!(defaults.tcp.idle_timeout, Duration::from_secs(30));
        assert_eq!(defaults.tcp.grace, crate::config::DEFAULT_GRACE);
        let chosen = parse(&[
            "--transport",
            "tcp",
            "--max-connections",
            "2",
            "--idle-timeout",
            "300ms",
            "--stop-grace",
            "0s",
        ])
        .expect("valid");
        assert_eq!(chosen.transports, Transports::TCP);
        assert_eq!(chosen.tcp.max_connections, 2);
        assert_eq!(chosen.tcp.idle_timeout, Duration::from_millis(300));
        assert_eq!(chosen.tcp.grace, Duration::ZERO);
        for bad in [
            &["--transport", "sctp"][..],
            &["--transport", ""],
            &["--max-connections", "0"],
            &["--max-connections", "-1"],
            &["--idle-timeout", "0s"],
            &["--idle-timeout", "30"],
            &["--stop-grace", "soon"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_gro_and_buffer_options_tune_udp() {
        let config = parse(&["--gro", "--busy-poll", "--recv-buffer", "65536"]).expect("valid");
        assert_eq!(
            config.udp,
            UdpTuning {
                recv_buffer: 65_536,
                busy_poll: true,
                gro: true,
                ..UdpTuning::default()
            }
        );
        assert!(parse(&["--recv-buffer", "0"]).is_err());
    }

    #[test]
    fn the_io_path_is_chosen_and_an_unavailable_one_refused() {
        assert_eq!(parse(&[]).expect("defaults").udp.io, Io::default());
        let config = parse(&["--io", "portable"]).expect("valid");
        assert_eq!(config.udp.io, Io::Portable);
        let batched = parse(&["--io", "batched"]);
        if Io::Batched.is_available() {
            assert_eq!(batched.expect("valid on Linux").udp.io, Io::Batched);
        } else {
            let err = batched.expect_err("not here").to_string();
            assert!(err.contains("portable path only"), "{err}");
        }
        assert!(parse(&["--io", "fast"]).is_err());
    }

    #[test]
    fn no_limits_by_default() {
        let config = parse(&[]).expect("no options");
        assert_eq!(config.policy, PolicyConfig::default());
        assert_eq!(config.policy.describe(), None);
    }

    #[test]
    fn limit_options_are_read() {
        let config = parse(&[
            "--rate-limit",
            "50",
            "--rate-limit-table",
            "128",
            "--max-reply-ratio",
            "1.5",
        ])
        .expect("valid")
        .policy;
        assert_eq!(
            config.rate_limit,
            Some(RateLimit {
                per_second: 50,
                table: 128
            })
        );
        assert_eq!(config.max_reply_ratio.map(ReplyRatio::get), Some(1.5));
        assert_eq!(
            config.describe().as_deref(),
            Some(
                "at most 50 replies per second per source, 128 sources remembered; no reply longer than 1.5 times its request"
            )
        );
        let config = parse(&["--rate-limit", "7"]).expect("valid").policy;
        assert_eq!(
            config.rate_limit.map(|l| l.table),
            Some(DEFAULT_RATE_LIMIT_TABLE as usize)
        );
    }

    #[test]
    fn bad_limit_values_are_refused() {
        for bad in [
            &["--rate-limit", "0"][..],
            &["--rate-limit", "-3"],
            &["--rate-limit", "many"],
            &["--rate-limit", "5", "--rate-limit-table", "0"],
            &["--rate-limit", "5", "--rate-limit-table", "99999999999"],
            &["--max-reply-ratio", "0.5"],
            &["--max-reply-ratio", "NaN"],
            &["--max-reply-ratio", "inf"],
            &["--max-reply-ratio", "-1"],
            &["--max-reply-ratio", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let err = parse_reply_ratio("0.9").expect_err("below 1");
        assert_eq!(
            err,
            "the reply ratio must be a finite number of at least 1, not 0.9"
        );
    }

    #[test]
    fn the_proxy_protocol_is_off_unless_sources_are_given() {
        assert_eq!(parse(&[]).expect("defaults").proxy, None);
        assert_eq!(
            parse(&["--proxy-session-table", "8"]).expect("valid").proxy,
            None,
            "a table size alone turns nothing on"
        );
        let proxy = parse(&["--proxy-protocol-from", "10.0.0.0/8, ::1,192.0.2.7"])
            .expect("valid")
            .proxy
            .expect("on");
        assert_eq!(proxy.from.to_string(), "10.0.0.0/8, ::1/128, 192.0.2.7/32");
        assert_eq!(proxy.sessions, DEFAULT_PROXY_SESSIONS as usize);
        assert_eq!(
            proxy.idle,
            Duration::from_secs(600),
            "nginx's proxy_timeout"
        );
        let proxy = parse(&[
            "--proxy-protocol-from",
            "::ffff:10.0.0.0/104",
            "--proxy-session-table",
            "64",
            "--proxy-session-idle",
            "30s",
        ])
        .expect("valid")
        .proxy
        .expect("on");
        assert_eq!(proxy.from.to_string(), "10.0.0.0/8");
        assert_eq!((proxy.sessions, proxy.idle), (64, Duration::from_secs(30)));
    }

    #[test]
    fn bad_proxy_sources_say_what_is_wrong() {
        for (bad, why) in [
            ("", "\"\" is not an address block"),
            ("10.0.0.0/8,", "\"\" is not an address block"),
            ("localhost", "\"localhost\" is not an address block"),
            (
                "10.0.0.0/x",
                "\"x\" in \"10.0.0.0/x\" is not a prefix length",
            ),
            (
                "10.0.0.0/33",
                "a prefix of 33 bits is longer than an IPv4 address",
            ),
            ("10.0.0.1/8", "the block is 10.0.0.0/8"),
        ] {
            let err = parse_proxy_sources(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(parse(&["--proxy-protocol-from", bad]).is_err(), "{bad:?}");
        }
        for bad in [
            &["--proxy-protocol-from", "::1", "--proxy-session-table", "0"][..],
            &["--proxy-protocol-from", "::1", "--proxy-session-idle", "0s"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
