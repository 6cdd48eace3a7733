//! What a worker does with each datagram, whatever loop receives it: the
//! reply (or the reason for none), counted; and how receive errors are told
//! apart.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, warn};
use upcase_proto::{Family, Path, uppercase_ascii_prefix_in_place, uppercase_datagram};

use crate::counters::Counters;
use crate::policy::Policy;
use crate::warn_limit::{WarnLimiter, suppressed_note};

/// Answers a GRO train of `segments` datagrams from `peer` in one pass, when
/// that gives what [`answer`] would give each of them: every segment is
/// ASCII (so its reply is itself, uppercased in place, the same length: no
/// reply ratio, which is at least 1, refuses it) and no rate limit has to
/// see each datagram. Counts them as received and returns `true`; the train
/// is then its own reply. Returns `false` otherwise, having maybe
/// uppercased some ASCII letters of the train: [`answer`] gives the same
/// replies from those bytes.
pub fn answer_ascii_train(
    train: &mut [u8],
    segments: u64,
    peer: SocketAddr,
    counters: &mut Counters,
    policy: &Policy,
) -> bool {
    if policy.limits_rate() || uppercase_ascii_prefix_in_place(train) != train.len() {
        return false;
    }
    counters.received += segments;
    counters.bytes_in += train.len() as u64;
    debug!(
        "{}: a train of {segments} ASCII datagrams, {} bytes, answered in place",
        shown(peer),
        train.len()
    );
    true
}

/// The reply to one received datagram, or `None` when it must not be sent.
///
/// Counts the datagram and, for a reply too large for the peer's address
/// family, warns (within `warnings`' limit) and counts the drop. Sending and
/// counting what was sent is the caller's, so that a loop receiving and
/// sending in batches can use this unchanged.
pub fn answer<'a>(
    datagram: &'a mut [u8],
    peer: SocketAddr,
    scratch: &'a mut Vec<u8>,
    counters: &mut Counters,
    warnings: &mut WarnLimiter,
    policy: &Policy,
) -> Option<&'a [u8]> {
    let len = datagram.len();
    counters.received += 1;
    counters.bytes_in += len as u64;
    // First, so a flood over the limit costs no transform.
    if !policy.admits(peer.ip()) {
        counters.dropped_rate_limited += 1;
        if let Some(suppressed) = warnings.allow(Instant::now()) {
            warn!(
                "reply to {} not sent: its address is over the rate limit of {} replies per second{}",
                shown(peer),
                policy.rate_limit(),
                suppressed_note(suppressed)
            );
        }
        return None;
    }
    let family = Family::of(peer);
    match uppercase_datagram(datagram, scratch, family.max_payload()) {
        Ok(reply) => {
            if reply.path == Path::InvalidUtf8 {
                counters.invalid_utf8 += 1;
            }
            if !policy.reply_allowed(len, reply.bytes.len()) {
                counters.dropped_ratio += 1;
                if let Some(suppressed) = warnings.allow(Instant::now()) {
                    warn!(
                        "reply to {} not sent: {} bytes is more than {} times the {len}-byte request{}",
                        shown(peer),
                        reply.bytes.len(),
                        policy.max_reply_ratio().map_or(0.0, |r| r.get()),
                        suppressed_note(suppressed)
                    );
                }
                return None;
            }
            debug!(
                "{}: {len} bytes in, {} out ({:?})",
                shown(peer),
                reply.bytes.len(),
                reply.path
            );
            Some(reply.bytes)
        }
        Err(too_large) => {
            if too_large.path == Path::InvalidUtf8 {
                counters.invalid_utf8 += 1;
            }
            counters.dropped_too_large += 1;
            if let Some(suppressed) = warnings.allow(Instant::now()) {
                warn!(
                    "reply to {} not sent: {} bytes (request {len} bytes) is over the {} limit of {} bytes{}",
                    shown(peer),
                    too_large.reply_len,
                    family.name(),
                    too_large.limit,
                    suppressed_note(suppressed)
                );
            }
            None
        }
    }
}

/// A peer as people write it: `127.0.0.1:5000`, not `[::ffff:127.0.0.1]:5000`.
pub fn shown(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// What a receive error means for the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The timeout, or a signal: nothing went wrong, look at the stop flag.
    Idle,
    /// Something passing or caused by one peer (an ICMP error reported on
    /// the socket, a moment without buffers): count it and carry on.
    Transient,
    /// The socket itself is unusable: retrying would spin.
    Fatal,
}

pub fn classify_recv_error(err: &io::Error) -> RecvError {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            return RecvError::Idle;
        }
        _ => {}
    }
    match err.raw_os_error() {
        Some(
            libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::EHOSTUNREACH
            | libc::EHOSTDOWN
            | libc::ENETUNREACH
            | libc::ENETDOWN
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::EMSGSIZE
            | libc::EPROTO,
        ) => RecvError::Transient,
        _ => RecvError::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use upcase_proto::{MAX_PAYLOAD_V4, MAX_PAYLOAD_V6};

    fn v4_peer() -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5000)
    }
    fn v6_peer() -> SocketAddr {
        SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 5000)
    }
    fn mapped_peer() -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), 5000)
    }

    fn run(input: &[u8], peer: SocketAddr, counters: &mut Counters) -> Option<Vec<u8>> {
        let mut buf = input.to_vec();
        let mut scratch = Vec::new();
        let mut warnings = WarnLimiter::default();
        let policy = Policy::unlimited();
        answer(
            &mut buf,
            peer,
            &mut scratch,
            counters,
            &mut warnings,
            &policy,
        )
        .map(<[u8]>::to_vec)
    }

    #[test]
    fn the_policy_drops_and_counts_before_anything_is_sent() {
        use crate::policy::{PolicyConfig, RateLimit, ReplyRatio};
        let policy = Policy::new(PolicyConfig {
            rate_limit: Some(RateLimit {
                per_second: 2,
                table: 4,
            }),
            max_reply_ratio: ReplyRatio::new(1.0),
        });
        let mut c = Counters::default();
        let mut scratch = Vec::new();
        let mut warnings = WarnLimiter::default();
        let mut ask = |input: &[u8], c: &mut Counters| {
            let mut buf = input.to_vec();
            answer(&mut buf, v4_peer(), &mut scratch, c, &mut warnings, &policy).map(<[u8]>::to_vec)
        };
        // U+0390 is 2 bytes and its uppercase 6: over a ratio of 1.
        assert_eq!(ask("\u{390}".as_bytes(), &mut c), None);
        assert_eq!(ask("ß".as_bytes(), &mut c).as_deref(), Some(&b"SS"[..]));
        assert_eq!(ask(b"abc", &mut c), None, "the burst of 2 is spent");
        assert_eq!(
            c,
            Counters {
                received: 3,
                bytes_in: 2 + 2 + 3,
                dropped_ratio: 1,
                dropped_rate_limited: 1,
                ..Counters::default()
            }
        );
    }

    #[test]
    fn replies_are_the_uppercase_and_are_counted() {
        let mut c = Counters::default();
        assert_eq!(run(b"abc", v4_peer(), &mut c).as_deref(), Some(&b"ABC"[..]));
        assert_eq!(
            run("straße".as_bytes(), v6_peer(), &mut c).as_deref(),
            Some(&b"STRASSE"[..])
        );
        assert_eq!(
            run(b"\xff\xfeabc", v4_peer(), &mut c).as_deref(),
            Some(&b"\xff\xfeABC"[..])
        );
        assert_eq!(run(b"", v4_peer(), &mut c).as_deref(), Some(&b""[..]));
        assert_eq!(
            c,
            Counters {
                received: 4,
                bytes_in: 3 + 7 + 5,
                invalid_utf8: 1,
                ..Counters::default()
            },
            "sending is counted by the caller"
        );
    }

    #[test]
    fn the_limit_follows_the_family_on_the_wire() {
        assert_eq!(Family::of(v4_peer()), Family::V4);
        assert_eq!(Family::of(mapped_peer()), Family::V4);
        assert_eq!(Family::of(v6_peer()), Family::V6);

        // 65,504 ASCII bytes and one U+0390 (2 bytes, uppercased to 6): a
        // request that fits IPv4 whose reply fits only IPv6.
        let mut request = vec![b'a'; MAX_PAYLOAD_V4 - 3];
        request.extend_from_slice("\u{390}".as_bytes());
        let reply_len = upcase_proto::uppercased_len(&request);
        assert!(request.len() <= MAX_PAYLOAD_V4);
        assert!((MAX_PAYLOAD_V4 + 1..=MAX_PAYLOAD_V6).contains(&reply_len));

        let mut c = Counters::default();
        assert_eq!(
            run(&request, v6_peer(), &mut c).map(|r| r.len()),
            Some(reply_len)
        );
        assert_eq!(run(&request, mapped_peer(), &mut c), None);
        assert_eq!(run(&request, v4_peer(), &mut c), None);
        assert_eq!(c.received, 3);
        assert_eq!(c.dropped_too_large, 2);
    }

    #[test]
    fn a_dropped_invalid_datagram_still_counts_as_invalid() {
        let mut request = b"\xff".to_vec();
        request.extend_from_slice("\u{390}".repeat(20_000).as_bytes());
        let mut c = Counters::default();
        assert_eq!(run(&request, v6_peer(), &mut c), None);
        assert_eq!(c.invalid_utf8, 1);
        assert_eq!(c.dropped_too_large, 1);
    }

    #[test]
    fn peers_are_shown_without_the_mapping() {
        assert_eq!(shown(mapped_peer()).to_string(), "127.0.0.1:5000");
        assert_eq!(shown(v6_peer()).to_string(), "[::1]:5000");
    }

    #[test]
    fn only_an_unusable_socket_stops_the_loop() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify_recv_error(&os(libc::EAGAIN)), RecvError::Idle);
        assert_eq!(classify_recv_error(&os(libc::EINTR)), RecvError::Idle);
        assert_eq!(
            classify_recv_error(&os(libc::ECONNREFUSED)),
            RecvError::Transient
        );
        assert_eq!(
            classify_recv_error(&os(libc::ENOBUFS)),
            RecvError::Transient
        );
        assert_eq!(classify_recv_error(&os(libc::EBADF)), RecvError::Fatal);
        assert_eq!(classify_recv_error(&os(libc::ENOTSOCK)), RecvError::Fatal);
    }
}
