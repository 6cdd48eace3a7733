//! What the server is asked to do, as plain data: where it listens, with
//! how many threads, which transports, how the UDP sockets are tuned, TCP's
//! limits and the abuse limits. A leaf: it imports no other module of the
//! server, and the command line (`cli`) is one way of filling it in.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use upcase_proto::DEFAULT_PORT;
use upcase_udp::Io;

/// Where the server listens and how many threads answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) bind: Bind,
    /// 0 lets the system choose.
    pub(crate) port: u16,
    /// At least 1.
    pub(crate) threads: usize,
    /// UDP, TCP or both.
    pub(crate) transports: Transports,
    /// Receive buffer size, GRO and busy-polling of the UDP sockets.
    pub(crate) udp: UdpTuning,
    /// How many TCP connections, and for how long.
    pub(crate) tcp: TcpLimits,
    /// Opt-in abuse limits (rate per source, reply/request ratio).
    pub(crate) policy: PolicyConfig,
    /// Where to serve the metrics, if anywhere.
    pub(crate) metrics: Option<SocketAddr>,
    /// Which of the address options were given rather than defaulted: with
    /// inherited sockets they do not apply.
    pub(crate) given: Given,
}

/// Whether `--bind`, `--port` and `--transport` were given (on the command
/// line or in the environment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Given {
    pub(crate) bind: bool,
    pub(crate) port: bool,
    pub(crate) transport: bool,
}

impl Given {
    /// The options given, as the command line names them.
    pub(crate) fn names(self) -> Vec<&'static str> {
        [
            (self.bind, "--bind"),
            (self.port, "--port"),
            (self.transport, "--transport"),
        ]
        .into_iter()
        .filter_map(|(given, name)| given.then_some(name))
        .collect()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: Bind::DualStack,
            port: DEFAULT_PORT,
            threads: default_threads(),
            transports: Transports::default(),
            udp: UdpTuning::default(),
            tcp: TcpLimits::default(),
            policy: PolicyConfig::default(),
            metrics: None,
            given: Given::default(),
        }
    }
}

/// One worker per core this process may run on.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Which address the sockets bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bind {
    /// Every interface, both families: `[::]` with IPV6_V6ONLY off, or
    /// `0.0.0.0` on a host without IPv6.
    DualStack,
    /// Exactly this address.
    Addr(IpAddr),
}

/// Which transports to serve; at least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transports {
    pub(crate) udp: bool,
    pub(crate) tcp: bool,
}

impl Transports {
    pub(crate) const BOTH: Transports = Transports {
        udp: true,
        tcp: true,
    };
    #[cfg(test)]
    pub(crate) const UDP: Transports = Transports {
        udp: true,
        tcp: false,
    };
    #[cfg(test)]
    pub(crate) const TCP: Transports = Transports {
        udp: false,
        tcp: true,
    };
}

impl Default for Transports {
    fn default() -> Self {
        Transports::BOTH
    }
}

impl fmt::Display for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.udp, self.tcp) {
            (true, true) => f.write_str("udp,tcp"),
            (true, false) => f.write_str("udp"),
            (false, true) => f.write_str("tcp"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// Enough for a burst of several thousand small datagrams.
pub(crate) const DEFAULT_RECV_BUFFER: u32 = 4 << 20;

/// How the UDP sockets are tuned for load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UdpTuning {
    /// Bytes asked for with SO_RCVBUF.
    pub(crate) recv_buffer: usize,
    /// Workers spin on non-blocking receives instead of sleeping.
    pub(crate) busy_poll: bool,
    /// UDP GRO is asked for.
    pub(crate) gro: bool,
    /// How the workers move datagrams: batched (Linux) or portable.
    pub(crate) io: Io,
}

impl Default for UdpTuning {
    fn default() -> Self {
        UdpTuning {
            recv_buffer: DEFAULT_RECV_BUFFER as usize,
            busy_poll: false,
            gro: false,
            io: Io::default(),
        }
    }
}

/// How long running TCP connections may go on after a stop unless told
/// otherwise: short, so a signalled server still exits within a second.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_millis(500);

/// How many connections, and for how long, the TCP service keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpLimits {
    /// Connections served at once; more are reset at once.
    pub(crate) max_connections: usize,
    /// A connection that neither sends nor takes its reply for this long is closed.
    pub(crate) idle_timeout: Duration,
    /// After the stop, how long running connections may go on.
    pub(crate) grace: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30),
            grace: DEFAULT_GRACE,
        }
    }
}

/// How many sources the rate limit remembers unless told otherwise: about
/// 4 MiB, allocated once when the limit is on.
pub(crate) const DEFAULT_RATE_LIMIT_TABLE: u32 = 65_536;

/// The largest table accepted, about 256 MiB: more is a typo, not a plan.
pub(crate) const MAX_RATE_LIMIT_TABLE: u32 = 1 << 22;

/// The abuse limits asked for; the default is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PolicyConfig {
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) max_reply_ratio: Option<ReplyRatio>,
}

impl PolicyConfig {
    /// The limits in words for the startup log, or `None` when there are none.
    pub(crate) fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(limit) = self.rate_limit {
            parts.push(format!(
                "at most {} replies per second per source, {} sources remembered",
                limit.per_second, limit.table
            ));
        }
        if let Some(ratio) = self.max_reply_ratio {
            parts.push(format!("no reply longer than {ratio} times its request"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// `--rate-limit` and `--rate-limit-table`, both positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) per_second: u32,
    pub(crate) table: usize,
}

/// A finite ratio of at least 1: below 1 even `a` -> `A` would be refused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplyRatio(f64);

impl ReplyRatio {
    pub(crate) fn new(ratio: f64) -> Option<ReplyRatio> {
        (ratio.is_finite() && ratio >= 1.0).then_some(ReplyRatio(ratio))
    }

    pub(crate) fn get(self) -> f64 {
        self.0
    }

    /// Whether a reply of `reply_len` bytes may answer `request_len` bytes;
    /// an empty reply to an empty request is always fine.
    pub(crate) fn allows(self, request_len: usize, reply_len: usize) -> bool {
        // Exact: both lengths are far below 2^53.
        reply_len as f64 <= self.0 * request_len as f64
    }
}

// Never NaN, so equality of the bits is equality of the values.
impl PartialEq for ReplyRatio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for ReplyRatio {}

impl fmt::Display for ReplyRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_textbook_port_on_every_interface_over_both_transports() {
        let config = Config::default();
        assert_eq!(config.port, 12_000);
        assert_eq!(config.bind, Bind::DualStack);
        assert_eq!(config.transports, Transports::BOTH);
        assert_eq!(config.policy.describe(), None);
        assert!(config.threads >= 1);
    }

    #[test]
    fn transports_are_named_as_the_command_line_writes_them() {
        assert_eq!(Transports::default().to_string(), "udp,tcp");
        assert_eq!(Transports::UDP.to_string(), "udp");
        assert_eq!(Transports::TCP.to_string(), "tcp");
    }

    #[test]
    fn the_ratio_bounds_the_reply_by_its_request() {
        let one = ReplyRatio::new(1.0).expect("valid");
        assert!(
            one.allows(0, 0),
            "an empty request may have its empty reply"
        );
        assert!(one.allows(2, 2), "ß -> SS is no larger");
        assert!(!one.allows(2, 6), "ΐ -> Ϊ́ triples");
        assert!(!one.allows(0, 1));
        let three = ReplyRatio::new(3.0).expect("valid");
        assert!(three.allows(2, 6));
        assert!(!three.allows(2, 7));
        for bad in [0.5, f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(ReplyRatio::new(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_limits_are_described_for_the_log() {
        let config = PolicyConfig {
            rate_limit: Some(RateLimit {
                per_second: 50,
                table: 128,
            }),
            max_reply_ratio: ReplyRatio::new(1.5),
        };
        assert_eq!(
            config.describe().as_deref(),
            Some(
                "at most 50 replies per second per source, 128 sources remembered; no reply longer than 1.5 times its request"
            )
        );
    }
}
