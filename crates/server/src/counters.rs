//! What a worker thread counts, and the summary line they add up to: the
//! outcome of each datagram, and [`Counters::record`], the one place where
//! an outcome becomes counts.
//!
//! The invariant: every datagram received lands in exactly one of
//! `replied`, `dropped_too_large`, `dropped_rate_limited`, `dropped_ratio`,
//! `send_errors`, `proxy_header_only` and `proxy_malformed`, so those seven
//! add up to `received`. A buffer that holds no datagram one can answer (no
//! sender, cut short) is a receive error, counted in `recv_errors` and not
//! received. With `--proxy-protocol-from`, every datagram from a listed
//! proxy is also exactly one of `proxy_attributed`, `proxy_unattributed`
//! and `proxy_malformed`.

use std::fmt;
use std::ops::AddAssign;

use upcase_proto::{Path, ReplyTooLarge};

use crate::batch_sizes::BatchSizes;

/// What became of datagrams a worker received: one datagram's, or a GRO
/// train's answered as one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// How many datagrams: 1, or the segments of a train sent whole.
    pub(crate) datagrams: u64,
    /// Their payload bytes.
    pub(crate) bytes_in: u64,
    /// The transform's path, when they got that far.
    pub(crate) path: Option<Path>,
    pub(crate) fate: Fate,
}

/// Whom a datagram counted as: for the rate limit, the logs and the
/// metrics. Counted apart from its outcome ([`Counters::record_origin`]),
/// as it arrives, so that without `--proxy-protocol-from` nothing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Its sender, as always (and a listed proxy's malformed header).
    Peer,
    /// The client a listed proxy's PROXY header named, in this datagram or
    /// the first of its session.
    Proxied,
    /// A listed proxy's own: no header and no session, or a header that
    /// names no one.
    ProxyOwn,
}

/// Sent, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The reply went out, `bytes_out` bytes.
    Sent { bytes_out: u64 },
    /// The system refused to send the reply.
    SendFailed,
    /// The source was over `--rate-limit`.
    RateLimited,
    /// The reply, `reply_len` bytes, was over `--max-reply-ratio`.
    RatioExceeded { reply_len: usize },
    /// The reply would not fit in one datagram to the peer.
    TooLarge(ReplyTooLarge),
    /// The buffer came without a sender (UDP always has one).
    NoPeer,
    /// The buffer was cut by the receive slot (which holds any datagram).
    Truncated,
    /// A PROXY header with nothing after it: a session opened, no reply due.
    ProxyHeaderOnly,
    /// A listed proxy's datagram that starts like a PROXY header and is none.
    ProxyMalformed,
}

impl Outcome {
    /// A received buffer that is not a datagram one can answer.
    pub(crate) fn unanswerable(fate: Fate) -> Outcome {
        Outcome {
            datagrams: 1,
            bytes_in: 0,
            path: None,
            fate,
        }
    }
}

/// One thread's counts: plain integers, because each thread owns its own and
/// the main thread adds them up only after the threads have stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Datagrams received.
    pub(crate) received: u64,
    /// Replies sent.
    pub(crate) replied: u64,
    /// Payload bytes received.
    pub(crate) bytes_in: u64,
    /// Payload bytes sent.
    pub(crate) bytes_out: u64,
    /// Datagrams that were not valid UTF-8, whether answered or not.
    pub invalid_utf8: u64,
    /// Replies not sent because they would not fit in one datagram.
    pub(crate) dropped_too_large: u64,
    /// Replies the system refused to send.
    pub(crate) send_errors: u64,
    /// Receive errors the server carried on after (ICMP errors, no buffers).
    pub(crate) recv_errors: u64,
    /// Datagrams not answered because their source was over `--rate-limit`.
    pub(crate) dropped_rate_limited: u64,
    /// Replies not sent because they were over `--max-reply-ratio`.
    pub(crate) dropped_ratio: u64,
    /// Datagrams that were a PROXY header alone (not answered: nothing to).
    pub(crate) proxy_header_only: u64,
    /// Datagrams not answered: a listed proxy's malformed PROXY header.
    pub(crate) proxy_malformed: u64,
    /// Datagrams from listed proxies counted as the client a header named.
    pub(crate) proxy_attributed: u64,
    /// Datagrams from listed proxies counted as the proxy's own.
    pub(crate) proxy_unattributed: u64,
    /// Datagrams per receive batch (for the metrics; not in the summary).
    pub(crate) batches: BatchSizes,
}

impl Counters {
    /// Counts one outcome: the only place a worker's datagrams are counted,
    /// each in exactly one of the counters the module comment names.
    pub(crate) fn record(&mut self, outcome: &Outcome) {
        let datagrams = outcome.datagrams;
        let counter = match outcome.fate {
            Fate::NoPeer | Fate::Truncated => {
                self.recv_errors += datagrams;
                return;
            }
            Fate::Sent { bytes_out } => {
                self.bytes_out += bytes_out;
                &mut self.replied
            }
            Fate::SendFailed => &mut self.send_errors,
            Fate::RateLimited => &mut self.dropped_rate_limited,
            Fate::RatioExceeded { .. } => &mut self.dropped_ratio,
            Fate::TooLarge(_) => &mut self.dropped_too_large,
            Fate::ProxyHeaderOnly => &mut self.proxy_header_only,
            Fate::ProxyMalformed => &mut self.proxy_malformed,
        };
        *counter += datagrams;
        self.received += datagrams;
        self.bytes_in += outcome.bytes_in;
        if outcome.path == Some(Path::InvalidUtf8) {
            self.invalid_utf8 += datagrams;
        }
    }

    /// Counts whom a datagram from a listed proxy counted as, once, when it
    /// arrives (a malformed header counts as `proxy_malformed` instead).
    pub(crate) fn record_origin(&mut self, origin: Origin) {
        match origin {
            Origin::Peer => {}
            Origin::Proxied => self.proxy_attributed += 1,
            Origin::ProxyOwn => self.proxy_unattributed += 1,
        }
    }

    /// The fields the server adds to the UDP part of its summary line with
    /// `--proxy-protocol-from`, each after a space: ` proxy_attributed=N
    /// proxy_unattributed=N proxy_header_only=N proxy_malformed=N`.
    pub(crate) fn proxy_fields(&self) -> String {
        format!(
            " proxy_attributed={} proxy_unattributed={} proxy_header_only={} proxy_malformed={}",
            self.proxy_attributed,
            self.proxy_unattributed,
            self.proxy_header_only,
            self.proxy_malformed
        )
    }

    /// The counters every datagram received lands in, added up: equal to
    /// `received`, by the invariant.
    #[cfg(test)]
    pub(crate) fn settled(&self) -> u64 {
        self.replied
            + self.dropped_too_large
            + self.dropped_rate_limited
            + self.dropped_ratio
            + self.send_errors
            + self.proxy_header_only
            + self.proxy_malformed
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, other: Counters) {
        self.received += other.received;
        self.replied += other.replied;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.invalid_utf8 += other.invalid_utf8;
        self.dropped_too_large += other.dropped_too_large;
        self.send_errors += other.send_errors;
        self.recv_errors += other.recv_errors;
        self.dropped_rate_limited += other.dropped_rate_limited;
        self.dropped_ratio += other.dropped_ratio;
        self.proxy_header_only += other.proxy_header_only;
        self.proxy_malformed += other.proxy_malformed;
        self.proxy_attributed += other.proxy_attributed;
        self.proxy_unattributed += other.proxy_unattributed;
        self.batches += other.batches;
    }
}

impl std::iter::Sum for Counters {
    fn sum<I: Iterator<Item = Counters>>(iter: I) -> Counters {
        iter.fold(Counters::default(), |mut total, c| {
            total += c;
            total
        })
    }
}

/// The `key=N ...` body of the summary line, whose form tests and scripts
/// parse: `received=N replied=N bytes_in=N bytes_out=N invalid_utf8=N
/// dropped_too_large=N send_errors=N dropped_rate_limited=N dropped_ratio=N`:
/// every datagram received is replied or counted in one `dropped_*` or in
/// `send_errors`. Receive errors are not part of it;
/// the server reports them on a line of their own when there were any.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} replied={} bytes_in={} bytes_out={} invalid_utf8={} dropped_too_large={} send_errors={} dropped_rate_limited={} dropped_ratio={}",
            self.received,
            self.replied,
            self.bytes_in,
            self.bytes_out,
            self.invalid_utf8,
            self.dropped_too_large,
            self.send_errors,
            self.dropped_rate_limited,
            self.dropped_ratio
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_add_up() {
        let a = Counters {
            received: 3,
            replied: 2,
            bytes_in: 30,
            bytes_out: 20,
            invalid_utf8: 1,
            dropped_too_large: 1,
            send_errors: 0,
            recv_errors: 4,
            dropped_rate_limited: 2,
            dropped_ratio: 1,
            proxy_header_only: 1,
            proxy_malformed: 2,
            proxy_attributed: 3,
            proxy_unattributed: 4,
            ..Counters::default()
        };
        let b = Counters {
            received: 1,
            replied: 1,
            bytes_in: 5,
            bytes_out: 7,
            send_errors: 1,
            ..Counters::default()
        };
        let total: Counters = [a, b].into_iter().sum();
        assert_eq!(
            total,
            Counters {
                received: 4,
                replied: 3,
                bytes_in: 35,
                bytes_out: 27,
                invalid_utf8: 1,
                dropped_too_large: 1,
                send_errors: 1,
                recv_errors: 4,
                dropped_rate_limited: 2,
                dropped_ratio: 1,
                proxy_header_only: 1,
                proxy_malformed: 2,
                proxy_attributed: 3,
                proxy_unattributed: 4,
                ..Counters::default()
            }
        );
    }

    /// Every fate there is, each with its own numbers.
    fn every_fate() -> [Fate; 9] {
        [
            Fate::Sent { bytes_out: 9 },
            Fate::SendFailed,
            Fate::RateLimited,
            Fate::RatioExceeded { reply_len: 6 },
            Fate::TooLarge(ReplyTooLarge {
                reply_len: 70_000,
                limit: 65_507,
                path: Path::Unicode,
            }),
            Fate::NoPeer,
            Fate::Truncated,
            Fate::ProxyHeaderOnly,
            Fate::ProxyMalformed,
        ]
    }

    /// The counters an outcome may land in, by name.
    fn landing_counters(c: &Counters) -> [(&'static str, u64); 8] {
        [
            ("proxy_header_only", c.proxy_header_only),
            ("proxy_malformed", c.proxy_malformed),
            ("replied", c.replied),
            ("send_errors", c.send_errors),
            ("dropped_rate_limited", c.dropped_rate_limited),
            ("dropped_ratio", c.dropped_ratio),
            ("dropped_too_large", c.dropped_too_large),
            ("recv_errors", c.recv_errors),
        ]
    }

    #[test]
    fn every_outcome_lands_in_exactly_one_counter() {
        for fate in every_fate() {
            for datagrams in [1, 3] {
                let mut c = Counters::default();
                c.record(&Outcome {
                    datagrams,
                    bytes_in: 5,
                    path: Some(Path::Ascii),
                    fate,
                });
                let moved: Vec<_> = landing_counters(&c)
                    .into_iter()
                    .filter(|&(_, n)| n != 0)
                    .collect();
                assert_eq!(moved.len(), 1, "{fate:?} moved {moved:?}");
                assert_eq!(moved[0].1, datagrams, "{fate:?}");
                let unanswerable = matches!(fate, Fate::NoPeer | Fate::Truncated);
                assert_eq!(moved[0].0 == "recv_errors", unanswerable, "{fate:?}");
                assert_eq!(c.settled(), c.received, "{fate:?}");
                assert_eq!(c.received, if unanswerable { 0 } else { datagrams });
                assert_eq!(c.bytes_in, if unanswerable { 0 } else { 5 });
                let sent = matches!(fate, Fate::Sent { .. });
                assert_eq!(c.bytes_out, if sent { 9 } else { 0 }, "{fate:?}");
            }
        }
    }

    #[test]
    fn outcomes_add_up_to_what_was_received() {
        let mut c = Counters::default();
        let mut expected_received = 0;
        for (i, fate) in every_fate().into_iter().cycle().take(70).enumerate() {
            let datagrams = 1 + i as u64 % 4;
            let path = [None, Some(Path::Ascii), Some(Path::InvalidUtf8)][i % 3];
            if !matches!(fate, Fate::NoPeer | Fate::Truncated) {
                expected_received += datagrams;
            }
            c.record(&Outcome {
                datagrams,
                bytes_in: 1,
                path,
                fate,
            });
        }
        let landed: u64 = landing_counters(&c)
            .iter()
            .filter(|(name, _)| *name != "recv_errors")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(c.received, expected_received);
        assert_eq!(landed, c.received);
        assert_eq!(c.settled(), c.received);
        assert!(c.invalid_utf8 > 0 && c.invalid_utf8 < c.received);
    }

    #[test]
    fn invalid_utf8_is_counted_whatever_the_fate() {
        let mut c = Counters::default();
        for fate in [
            Fate::Sent { bytes_out: 1 },
            Fate::RatioExceeded { reply_len: 9 },
        ] {
            c.record(&Outcome {
                datagrams: 1,
                bytes_in: 1,
                path: Some(Path::InvalidUtf8),
                fate,
            });
        }
        assert_eq!(c.invalid_utf8, 2);
    }

    #[test]
    fn summary_has_the_documented_form() {
        let c = Counters {
            received: 1,
            replied: 2,
            bytes_in: 3,
            bytes_out: 4,
            invalid_utf8: 5,
            dropped_too_large: 6,
            send_errors: 7,
            recv_errors: 8,
            dropped_rate_limited: 9,
            dropped_ratio: 10,
            ..Counters::default()
        };
        assert_eq!(
            c.to_string(),
            "received=1 replied=2 bytes_in=3 bytes_out=4 invalid_utf8=5 dropped_too_large=6 send_errors=7 dropped_rate_limited=9 dropped_ratio=10"
        );
        let proxied = Counters {
            proxy_attributed: 11,
            proxy_unattributed: 12,
            proxy_header_only: 13,
            proxy_malformed: 14,
            ..c
        };
        assert_eq!(proxied.to_string(), c.to_string(), "the proxy's apart");
        assert_eq!(
            proxied.proxy_fields(),
            " proxy_attributed=11 proxy_unattributed=12 proxy_header_only=13 proxy_malformed=14"
        );
    }

    #[test]
    fn origins_are_counted_apart_from_fates() {
        let mut c = Counters::default();
        for origin in [
            Origin::Proxied,
            Origin::Proxied,
            Origin::ProxyOwn,
            Origin::Peer,
        ] {
            c.record_origin(origin);
        }
        assert_eq!((c.proxy_attributed, c.proxy_unattributed), (2, 1));
        assert_eq!(c.received, 0, "an origin is no datagram of its own");
        c.record(&Outcome::unanswerable(Fate::ProxyMalformed));
        c.record(&Outcome::unanswerable(Fate::ProxyHeaderOnly));
        assert_eq!((c.proxy_header_only, c.proxy_malformed), (1, 1));
        assert_eq!(c.settled(), c.received);
    }
}
