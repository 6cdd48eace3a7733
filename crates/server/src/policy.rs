//! Opt-in abuse limits, in the spirit of DNS response rate limiting: which
//! replies the server refuses to send even though it could.
//!
//! A UDP server answers whatever source address a datagram claims, and that
//! address can be forged. Without limits, anyone can aim the server's replies
//! at a victim (a reflector), and, since `ß` becomes `SS`, make them larger
//! than what they sent (an amplifier). Two limits close this:
//! - `--rate-limit N`: at most N replies per second to one source, so a
//!   reflected flood is capped whatever the attacker sends;
//! - `--max-reply-ratio R`: no reply longer than R times its request, so
//!   the server never multiplies an attacker's bandwidth (R = 1: not at all).
//!
//! Both are off by default, as the textbook's server has neither.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use upcase_proto::ratelimit::RateLimiter;

/// How many sources the rate limit remembers unless told otherwise: about
/// 4 MiB, allocated once when the limit is on.
pub const DEFAULT_RATE_LIMIT_TABLE: u32 = 65_536;

/// The largest table accepted, about 256 MiB: more is a typo, not a plan.
pub const MAX_RATE_LIMIT_TABLE: u32 = 1 << 22;

/// The command-line options of the limits, flattened into [`crate::Args`].
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// At most N replies per second to one source address (an IPv6 /64
    /// counts as one), with a burst of N; the excess is dropped and counted
    /// [default: no limit]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit: Option<u32>,
    /// How many source addresses the rate limit remembers; when the table is
    /// full the least recently seen is forgotten, so memory stays fixed
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE_LIMIT_TABLE,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE_LIMIT_TABLE)))]
    pub rate_limit_table: u32,
    /// Drop any reply longer than R times its request (R >= 1; 1 makes the
    /// server no amplifier at all) [default: no limit]
    #[arg(long, value_name = "R", value_parser = parse_reply_ratio)]
    pub max_reply_ratio: Option<ReplyRatio>,
}

impl PolicyArgs {
    pub fn into_config(self) -> PolicyConfig {
        PolicyConfig {
            rate_limit: self.rate_limit.map(|per_second| RateLimit {
                per_second,
                table: usize::try_from(self.rate_limit_table).unwrap_or(usize::MAX),
            }),
            max_reply_ratio: self.max_reply_ratio,
        }
    }
}

/// The limits asked for; the default is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub rate_limit: Option<RateLimit>,
    pub max_reply_ratio: Option<ReplyRatio>,
}

impl PolicyConfig {
    /// The limits in words for the startup log, or `None` when there are none.
    pub fn describe(&self) -> Option<String> {
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
pub struct RateLimit {
    pub per_second: u32,
    pub table: usize,
}

/// A finite ratio of at least 1: below 1 even `a` -> `A` would be refused.
#[derive(Clone, Copy, Debug)]
pub struct ReplyRatio(f64);

impl ReplyRatio {
    pub fn new(ratio: f64) -> Option<ReplyRatio> {
        (ratio.is_finite() && ratio >= 1.0).then_some(ReplyRatio(ratio))
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether a reply of `reply_len` bytes may answer `request_len` bytes;
    /// an empty reply to an empty request is always fine.
    pub fn allows(self, request_len: usize, reply_len: usize) -> bool {
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

pub fn parse_reply_ratio(text: &str) -> Result<ReplyRatio, String> {
    let ratio: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    ReplyRatio::new(ratio)
        .ok_or_else(|| format!("the reply ratio must be a finite number of at least 1, not {text}"))
}

/// The limits in force, shared by every worker thread.
///
/// The rate table is behind a mutex rather than split per thread: with
/// SO_REUSEPORT the kernel spreads one source's datagrams over the threads
/// by port, so per-thread tables would let a source multiply its rate by
/// the thread count. The lock is taken only when the rate limit is on.
pub struct Policy {
    limiter: Option<Mutex<RateLimiter<u128>>>,
    per_second: u32,
    epoch: Instant,
    max_reply_ratio: Option<ReplyRatio>,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        Policy {
            limiter: config
                .rate_limit
                .map(|limit| Mutex::new(RateLimiter::new(limit.per_second, limit.table))),
            per_second: config.rate_limit.map_or(0, |limit| limit.per_second),
            epoch: Instant::now(),
            max_reply_ratio: config.max_reply_ratio,
        }
    }

    /// No limits: every reply that fits is sent.
    pub fn unlimited() -> Policy {
        Policy::new(PolicyConfig::default())
    }

    /// The rate limit, replies per second per source (0 when off).
    pub fn rate_limit(&self) -> u32 {
        self.per_second
    }

    /// The reply ratio limit, if any.
    pub fn max_reply_ratio(&self) -> Option<ReplyRatio> {
        self.max_reply_ratio
    }

    /// Whether a rate limit has to see every datagram.
    pub fn limits_rate(&self) -> bool {
        self.limiter.is_some()
    }

    /// Whether `source` may have a reply now; if so, it is charged one.
    pub fn admits(&self, source: IpAddr) -> bool {
        // No clock read when there is no limit: this is on every datagram.
        self.limiter.is_none() || self.admits_at(source, Instant::now())
    }

    /// [`Policy::admits`] at a given time, for tests.
    pub fn admits_at(&self, source: IpAddr, now: Instant) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        // A panic elsewhere while holding the lock leaves a table that is
        // still consistent enough to limit with.
        let mut limiter = limiter.lock().unwrap_or_else(PoisonError::into_inner);
        limiter.allow(source_key(source), now_ns)
    }

    /// Whether a reply of `reply_len` bytes to `request_len` bytes is within
    /// the ratio limit.
    pub fn reply_allowed(&self, request_len: usize, reply_len: usize) -> bool {
        self.max_reply_ratio
            .is_none_or(|ratio| ratio.allows(request_len, reply_len))
    }

    /// The rate table's state for the log at the end: how many sources it
    /// remembers against its fixed size, and how many it forgot to stay so.
    pub fn table_summary(&self) -> Option<String> {
        let limiter = self.limiter.as_ref()?;
        let limiter = limiter.lock().unwrap_or_else(PoisonError::into_inner);
        Some(format!(
            "rate limit table: {} sources remembered, {} forgotten",
            limiter.len(),
            limiter.evictions()
        ))
    }

    /// How many sources the rate table remembers now.
    pub fn sources(&self) -> usize {
        self.limiter.as_ref().map_or(0, |limiter| {
            limiter.lock().unwrap_or_else(PoisonError::into_inner).len()
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::unlimited()
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("rate_limit", &self.per_second)
            .field("max_reply_ratio", &self.max_reply_ratio)
            .finish_non_exhaustive()
    }
}

/// The rate table's key for a source: an IPv4 address (also when it arrives
/// IPv4-mapped on the dual-stack socket), or the /64 of an IPv6 address,
/// since one IPv6 host usually owns a whole /64 and could rotate through it.
pub fn source_key(source: IpAddr) -> u128 {
    match source.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn parse(args: &[&str]) -> Result<PolicyConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|cli| cli.policy.into_config())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn limited(per_second: u32, table: usize) -> Policy {
        Policy::new(PolicyConfig {
            rate_limit: Some(RateLimit { per_second, table }),
            ..PolicyConfig::default()
        })
    }

    #[test]
    fn no_limits_by_default() {
        let config = parse(&[]).expect("no options");
        assert_eq!(config, PolicyConfig::default());
        assert_eq!(config.describe(), None);
        let policy = Policy::new(config);
        let source = ip("192.0.2.1");
        assert!((0..10_000).all(|_| policy.admits(source)));
        assert!(policy.reply_allowed(1, 1_000));
        assert_eq!(policy.sources(), 0, "no table without a rate limit");
    }

    #[test]
    fn options_are_read() {
        let config = parse(&[
            "--rate-limit",
            "50",
            "--rate-limit-table",
            "128",
            "--max-reply-ratio",
            "1.5",
        ])
        .expect("valid");
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
        let config = parse(&["--rate-limit", "7"]).expect("valid");
        assert_eq!(
            config.rate_limit.map(|l| l.table),
            Some(DEFAULT_RATE_LIMIT_TABLE as usize)
        );
    }

    #[test]
    fn bad_values_are_refused() {
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
        let policy = Policy::new(PolicyConfig {
            max_reply_ratio: Some(one),
            ..PolicyConfig::default()
        });
        assert!(policy.reply_allowed(65_507, 65_507));
        assert!(!policy.reply_allowed(65_506, 65_507));
    }

    #[test]
    fn a_source_gets_its_rate_per_second() {
        let policy = limited(10, 16);
        let t0 = Instant::now();
        let source = ip("192.0.2.1");
        let burst = (0..100).filter(|_| policy.admits_at(source, t0)).count();
        assert_eq!(burst, 10);
        assert!(!policy.admits_at(source, t0 + Duration::from_millis(50)));
        assert!(policy.admits_at(source, t0 + Duration::from_millis(100)));
        assert!(
            policy.admits_at(ip("192.0.2.2"), t0),
            "another source has its own bucket"
        );
    }

    #[test]
    fn a_mapped_address_is_the_same_source_as_its_ipv4_address() {
        let policy = limited(1, 16);
        let t0 = Instant::now();
        assert!(policy.admits_at(ip("127.0.0.1"), t0));
        assert!(!policy.admits_at(ip("::ffff:127.0.0.1"), t0));
        assert_eq!(
            source_key(ip("127.0.0.1")),
            source_key(ip("::ffff:127.0.0.1"))
        );
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let policy = limited(1, 16);
        let t0 = Instant::now();
        assert!(policy.admits_at(ip("2001:db8:0:1::1"), t0));
        assert!(
            !policy.admits_at(ip("2001:db8:0:1:ffff::2"), t0),
            "same /64: rotating addresses does not help"
        );
        assert!(policy.admits_at(ip("2001:db8:0:2::1"), t0), "another /64");
        assert_ne!(
            source_key(ip("::ffff:0:0")),
            source_key(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            "IPv4 and IPv6 keys never meet"
        );
    }

    #[test]
    fn a_spoofed_flood_from_many_sources_keeps_the_table_at_its_size() {
        let policy = limited(5, 256);
        let t0 = Instant::now();
        for n in 0..100_000u32 {
            assert!(policy.admits_at(IpAddr::V4(Ipv4Addr::from(n)), t0));
        }
        assert_eq!(policy.sources(), 256);
        assert_eq!(
            policy.table_summary().as_deref(),
            Some("rate limit table: 256 sources remembered, 99744 forgotten")
        );
        assert_eq!(Policy::unlimited().table_summary(), None);
    }

    #[test]
    fn threads_share_one_bucket_per_source() {
        let policy = limited(100, 16);
        let t0 = Instant::now();
        let source = ip("192.0.2.9");
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..100).filter(|_| policy.admits_at(source, t0)).count()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .sum()
        });
        assert_eq!(admitted, 100, "four threads together get one burst");
    }
}
