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

use crate::config::{PolicyConfig, ReplyRatio};

/// The limits in force, shared by every worker thread.
///
/// The rate table is behind a mutex rather than split per thread: with
/// SO_REUSEPORT the kernel spreads one source's datagrams over the threads
/// by port, so per-thread tables would let a source multiply its rate by
/// the thread count. The lock is taken only when the rate limit is on.
pub(crate) struct Policy {
    limiter: Option<Mutex<RateLimiter<u128>>>,
    per_second: u32,
    epoch: Instant,
    max_reply_ratio: Option<ReplyRatio>,
}

impl Policy {
    pub(crate) fn new(config: PolicyConfig) -> Policy {
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
    pub(crate) fn unlimited() -> Policy {
        Policy::new(PolicyConfig::default())
    }

    /// The rate limit, replies per second per source (0 when off).
    pub(crate) fn rate_limit(&self) -> u32 {
        self.per_second
    }

    /// The reply ratio limit, if any.
    pub(crate) fn max_reply_ratio(&self) -> Option<ReplyRatio> {
        self.max_reply_ratio
    }

    /// Whether a rate limit has to see every datagram.
    pub(crate) fn limits_rate(&self) -> bool {
        self.limiter.is_some()
    }

    /// Whether `source` may have a reply now; if so, it is charged one.
    pub(crate) fn admits(&self, source: IpAddr) -> bool {
        // No clock read when there is no limit: this is on every datagram.
        self.limiter.is_none() || self.admits_at(source, Instant::now())
    }

    /// [`Policy::admits`] at a given time, for tests.
    pub(crate) fn admits_at(&self, source: IpAddr, now: Instant) -> bool {
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
    pub(crate) fn reply_allowed(&self, request_len: usize, reply_len: usize) -> bool {
        self.max_reply_ratio
            .is_none_or(|ratio| ratio.allows(request_len, reply_len))
    }

    /// The rate table's state for the log at the end: how many sources it
    /// remembers against its fixed size, and how many it forgot to stay so.
    pub(crate) fn table_summary(&self) -> Option<String> {
        let limiter = self.limiter.as_ref()?;
        let limiter = limiter.lock().unwrap_or_else(PoisonError::into_inner);
        Some(format!(
            "rate limit table: {} sources remembered, {} forgotten",
            limiter.len(),
            limiter.evictions()
        ))
    }

    /// How many sources the rate table remembers now.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
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
fn source_key(source: IpAddr) -> u128 {
    match source.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimit;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

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
        let policy = Policy::new(PolicyConfig::default());
        let source = ip("192.0.2.1");
        assert!((0..10_000).all(|_| policy.admits(source)));
        assert!(policy.reply_allowed(1, 1_000));
        assert_eq!(policy.sources(), 0, "no table without a rate limit");
    }

    #[test]
    fn the_ratio_limit_bounds_the_reply_by_its_request() {
        let one = ReplyRatio::new(1.0).expect("valid");
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
