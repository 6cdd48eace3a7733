//! What the server is asked to do, as plain data: where it listens, with
//! how many threads, which transports, how the UDP sockets are tuned, TCP's
//! limits, the abuse limits and which peers are proxies. A leaf: it imports
//! no other module of the server, and the command line (`cli`) is one way
//! of filling it in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use upcase_proto::DEFAULT_PORT;
use upcase_udp::Io;

/// Where the server listens and how many threads answer.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The peers whose PROXY headers name the client (`--proxy-protocol-from`).
    pub(crate) proxy: Option<ProxyConfig>,
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
            proxy: None,
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

/// How many proxy sessions each UDP socket remembers unless told
/// otherwise: more than the sessions one nginx worker keeps open by default
/// (`worker_connections 512`) many times over, in about 1.2 MiB.
pub(crate) const DEFAULT_PROXY_SESSIONS: u32 = 16_384;

/// The largest session table accepted, about 300 MiB per socket.
pub(crate) const MAX_PROXY_SESSIONS: u32 = 1 << 22;

/// `--proxy-protocol-from` and its session table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxyConfig {
    /// The peers that may put a PROXY header in front of what they send.
    pub(crate) from: ProxySources,
    /// Sessions remembered per UDP socket, at least 1.
    pub(crate) sessions: usize,
    /// A session without a datagram for this long is forgotten.
    pub(crate) idle: Duration,
}

impl ProxyConfig {
    /// What is accepted from whom, for the startup log.
    pub(crate) fn describe(&self) -> String {
        format!(
            "PROXY protocol headers accepted from {}; UDP sessions remembered: {} per socket, each until idle for {}",
            self.from,
            self.sessions,
            humantime::format_duration(self.idle)
        )
    }
}

/// The address blocks of `--proxy-protocol-from`: at least one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxySources(Vec<Cidr>);

impl ProxySources {
    /// `None` for an empty list: a list names at least one block.
    pub(crate) fn new(blocks: Vec<Cidr>) -> Option<ProxySources> {
        (!blocks.is_empty()).then_some(ProxySources(blocks))
    }

    /// Whether `ip` is in one of the blocks (an IPv4-mapped address as the
    /// IPv4 address it is).
    pub(crate) fn lists(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|block| block.contains(ip))
    }
}

impl fmt::Display for ProxySources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, block) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{block}")?;
        }
        Ok(())
    }
}

/// An address block: every address whose first `prefix` bits are those of
/// `network`, whose other bits are zero. IPv4 blocks hold IPv4 addresses
/// only, IPv6 blocks IPv6 addresses only; an IPv4-mapped block
/// (`::ffff:10.0.0.0/104`) is the IPv4 block it maps (`10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block `network/prefix`; `Err` says why it is none: a prefix
    /// longer than the family's addresses, or bits set past the prefix.
    pub(crate) fn new(network: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let (network, prefix) = match network {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (network.to_canonical(), prefix - 96)
            }
            _ => (network, prefix),
        };
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return Err(format!(
                "a prefix of {prefix} bits is longer than an {} address",
                if bits == 32 { "IPv4" } else { "IPv6" }
            ));
        }
        let block = Cidr { network, prefix };
        let kept = block.masked(network);
        if kept != bits_of(network) {
            let base = match network {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(kept).unwrap_or(0))),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(kept)),
            };
            return Err(format!(
                "{network}/{prefix} has address bits set past its prefix: the block is {base}/{prefix}"
            ));
        }
        Ok(block)
    }

    /// Whether `ip` (canonical: IPv4 as IPv4) is in the block.
    fn contains(self, ip: IpAddr) -> bool {
        let same_family = matches!(
            (self.network, ip),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        );
        same_family && self.masked(ip) == self.masked(self.network)
    }

    /// The first `prefix` bits of `ip`, the others zero.
    fn masked(self, ip: IpAddr) -> u128 {
        let (bits, width) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let host_bits = width - u32::from(self.prefix.min(width as u8));
        bits & u128::MAX.checked_shl(host_bits).unwrap_or(0)
    }
}

/// Every bit of `ip`.
fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
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

    fn block(text: &str) -> Result<Cidr, String> {
        let (ip, prefix) = text.split_once('/').expect("test block");
        Cidr::new(ip.parse().expect("ip"), prefix.parse().expect("prefix"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn a_block_holds_the_addresses_of_its_prefix() {
        let ten = block("10.0.0.0/8").expect("valid");
        assert!(ten.contains(ip("10.255.1.2")));
        assert!(!ten.contains(ip("11.0.0.0")));
        let one = block("10.0.1.12/32").expect("valid");
        assert!(one.contains(ip("10.0.1.12")) && !one.contains(ip("10.0.1.13")));
        let all_v4 = block("0.0.0.0/0").expect("valid");
        assert!(all_v4.contains(ip("255.255.255.255")));
        assert!(!all_v4.contains(ip("::1")), "IPv4 blocks hold IPv4 only");
        let doc = block("2001:db8::/32").expect("valid");
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        assert!(block("::/0").expect("valid").contains(ip("::1")));
        assert!(block("::1/128").expect("valid").contains(ip("::1")));
    }

    #[test]
    fn mapped_addresses_and_blocks_are_ipv4() {
        let sources = ProxySources::new(vec![block("10.0.0.0/8").expect("valid")]).expect("one");
        assert!(
            sources.lists(ip("::ffff:10.1.2.3")),
            "a mapped peer on the dual-stack socket"
        );
        assert!(sources.lists(ip("10.1.2.3")));
        assert!(!sources.lists(ip("::ffff:11.1.2.3")));
        let mapped = block("::ffff:10.0.0.0/104").expect("valid");
        assert_eq!(mapped, block("10.0.0.0/8").expect("valid"));
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(
            !block("::/0").expect("valid").contains(ip("10.0.0.1")),
            "an IPv6 block holds IPv6 peers only"
        );
    }

    #[test]
    fn bad_blocks_say_why() {
        assert_eq!(
            block("10.0.0.0/33"),
            Err("a prefix of 33 bits is longer than an IPv4 address".to_string())
        );
        assert_eq!(
            block("::/129"),
            Err("a prefix of 129 bits is longer than an IPv6 address".to_string())
        );
        assert_eq!(
            block("10.0.0.1/8"),
            Err(
                "10.0.0.1/8 has address bits set past its prefix: the block is 10.0.0.0/8"
                    .to_string()
            )
        );
        assert_eq!(
            block("2001:db8::1/64"),
            Err(
                "2001:db8::1/64 has address bits set past its prefix: the block is 2001:db8::/64"
                    .to_string()
            )
        );
        assert_eq!(ProxySources::new(Vec::new()), None);
    }

    #[test]
    fn the_proxy_options_are_described_for_the_log() {
        let config = ProxyConfig {
            from: ProxySources::new(vec![
                block("10.0.0.0/8").expect("valid"),
                block("::1/128").expect("valid"),
            ])
            .expect("two"),
            sessions: 16_384,
            idle: Duration::from_secs(600),
        };
        assert_eq!(
            config.describe(),
            "PROXY protocol headers accepted from 10.0.0.0/8, ::1/128; UDP sessions remembered: 16384 per socket, each until idle for 10m"
        );
    }
}
