//! What each reply was, the counts, and the latency histogram.

use hdrhistogram::Histogram;

use crate::inflight::{Answer, Inflight};
use crate::payload::{Check, Payload};

/// What one received datagram turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The uppercase of a request still waited for, after this many ns.
    Correct { rtt_ns: u64 },
    /// Not the uppercase of the request it names, or naming none.
    Wrong,
    /// The right text for a request already declared lost (or too old to
    /// remember).
    Late,
    /// The right text again for a request already answered.
    Duplicate,
}

/// Classifies `reply` (the kernel cut it if `cut`), received at `now`, and
/// takes the request it answers off `inflight`.
pub fn classify(
    payload: &Payload,
    inflight: &mut Inflight,
    reply: &[u8],
    cut: bool,
    now: u64,
) -> Outcome {
    let (seq, right) = match payload.check(reply, cut) {
        Check::Garbled => return Outcome::Wrong,
        Check::Match(seq) => (seq, true),
        Check::Mismatch(seq) => (seq, false),
    };
    // Even a wrong reply answers its request: it must not be counted lost too.
    match (inflight.answer(seq), right) {
        (_, false) => Outcome::Wrong,
        (Answer::OnTime(at), true) => Outcome::Correct {
            rtt_ns: now.saturating_sub(at),
        },
        (Answer::Late | Answer::Unknown, true) => Outcome::Late,
        (Answer::Duplicate, true) => Outcome::Duplicate,
    }
}

/// Classifies `reply`, received at `now` on a byte stream: replies come in
/// the order of their requests, so it answers the oldest request still
/// waited for, whatever it says. A garbled reply thus frees its place in the
/// window as a right one does; one with no request left to answer is wrong.
pub fn classify_in_order(
    payload: &Payload,
    inflight: &mut Inflight,
    reply: &[u8],
    now: u64,
) -> Outcome {
    let Some(seq) = inflight.oldest_waiting() else {
        return Outcome::Wrong;
    };
    match (inflight.answer(seq), payload.check(reply, false)) {
        (Answer::OnTime(at), Check::Match(named)) if named == seq => Outcome::Correct {
            rtt_ns: now.saturating_sub(at),
        },
        _ => Outcome::Wrong,
    }
}

/// Slowest round trip the histogram tells apart (longer ones count as this).
const MAX_RTT_NS: u64 = 3_600 * 1_000_000_000;

/// Counts of one run; only events inside the measurement are counted.
#[derive(Debug)]
pub struct Tally {
    pub sent: u64,
    pub correct: u64,
    pub wrong: u64,
    pub late: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Requests the kernel refused to send.
    pub send_errors: u64,
    /// Sends and receives that met ECONNREFUSED: no server on that port.
    pub refused: u64,
    /// Correct replies that arrived before the end of the measurement: the
    /// throughput figure (replies while draining are checked, not timed).
    pub correct_in_time: u64,
    rtt: Histogram<u64>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Tally> {
        // 3 significant digits: 0.1 % resolution from 1 ns to an hour.
        let rtt = Histogram::new_with_bounds(1, MAX_RTT_NS, 3)
            .map_err(|e| anyhow::anyhow!("cannot make the latency histogram: {e:?}"))?;
        Ok(Tally {
            sent: 0,
            correct: 0,
            wrong: 0,
            late: 0,
            lost: 0,
            duplicates: 0,
            send_errors: 0,
            refused: 0,
            correct_in_time: 0,
            rtt,
        })
    }

    /// Counts `outcome`; `in_time` says it came before the measurement ended.
    pub fn record(&mut self, outcome: Outcome, in_time: bool) {
        match outcome {
            Outcome::Correct { rtt_ns } => {
                self.correct += 1;
                self.correct_in_time += u64::from(in_time);
                self.rtt.saturating_record(rtt_ns.clamp(1, MAX_RTT_NS));
            }
            Outcome::Wrong => self.wrong += 1,
            Outcome::Late => self.late += 1,
            Outcome::Duplicate => self.duplicates += 1,
        }
    }

    /// Round-trip percentiles of the correct replies; `None` without any.
    pub fn latency(&self) -> Option<Latency> {
        if self.rtt.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        let at = |q: f64| us(self.rtt.value_at_quantile(q));
        Some(Latency {
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: us(self.rtt.max()),
            mean_us: self.rtt.mean() / 1_000.0,
        })
    }
}

/// Round-trip times in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_correct_wrong_late_or_duplicate_and_unanswered_ones_lost() {
        let payload = Payload::new(32);
        let mut inflight = Inflight::new(16);
        inflight.sent(4, 1_000); // requests 0..4
        let mut classify_at =
            |reply: &[u8], now| classify(&payload, &mut inflight, reply, false, now);
        assert_eq!(
            classify_at(&payload.expected(1), 5_000),
            Outcome::Correct { rtt_ns: 4_000 }
        );
        assert_eq!(classify_at(&payload.expected(1), 5_000), Outcome::Duplicate);
        // Lowercase (echoed) text, a reply cut short and a changed byte are wrong.
        let mut echoed = payload.expected(2);
        echoed.make_ascii_lowercase();
        assert_eq!(classify_at(&echoed, 5_000), Outcome::Wrong);
        let mut changed = payload.expected(2);
        changed[20] = b'!';
        assert_eq!(classify_at(&changed, 5_000), Outcome::Wrong);
        assert_eq!(classify_at(b"", 5_000), Outcome::Wrong);
        // The wrong reply answered request 2: only 0 and 3 can time out.
        assert_eq!(inflight.expire(10_000, 2_000), (2, None));
        let mut classify_at =
            |reply: &[u8], now| classify(&payload, &mut inflight, reply, false, now);
        assert_eq!(classify_at(&payload.expected(3), 11_000), Outcome::Late);
        assert_eq!(
            classify_at(&payload.expected(9), 11_000),
            Outcome::Late,
            "never sent"
        );
        let cut = classify(&payload, &mut inflight, &payload.expected(0), true, 11_000);
        assert_eq!(cut, Outcome::Wrong);
    }

    #[test]
    fn stream_replies_answer_their_requests_in_order() {
        let payload = Payload::line(16);
        let mut inflight = Inflight::new(16);
        inflight.sent(3, 1_000); // requests 0..3
        let mut next = |reply: &[u8]| classify_in_order(&payload, &mut inflight, reply, 4_000);
        assert_eq!(
            next(&payload.expected(0)),
            Outcome::Correct { rtt_ns: 3_000 }
        );
        // Request 1's place holds request 2's reply: out of order is wrong.
        assert_eq!(next(&payload.expected(2)), Outcome::Wrong);
        let mut echoed = payload.expected(2);
        echoed.make_ascii_lowercase();
        assert_eq!(next(&echoed), Outcome::Wrong, "garbled, yet it answers 2");
        assert_eq!(next(&payload.expected(3)), Outcome::Wrong, "nothing asked");
        assert_eq!(inflight.outstanding(), 0, "every place was answered");
    }

    #[test]
    fn counts_and_percentiles() {
        let mut tally = Tally::new().unwrap();
        assert_eq!(tally.latency(), None, "no reply, no latency");
        for us in 1..=1_000u64 {
            tally.record(Outcome::Correct { rtt_ns: us * 1_000 }, us <= 900);
        }
        tally.record(Outcome::Wrong, true);
        tally.record(Outcome::Late, true);
        tally.record(Outcome::Duplicate, false);
        assert_eq!((tally.correct, tally.correct_in_time), (1_000, 900));
        assert_eq!((tally.wrong, tally.late, tally.duplicates), (1, 1, 1));
        let latency = tally.latency().unwrap();
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(close(latency.p50_us, 500.0), "{latency:?}");
        assert!(close(latency.p90_us, 900.0), "{latency:?}");
        assert!(close(latency.p99_us, 990.0), "{latency:?}");
        assert!(close(latency.p999_us, 999.0), "{latency:?}");
        assert!(close(latency.max_us, 1_000.0), "{latency:?}");
        assert!(close(latency.mean_us, 500.5), "{latency:?}");
    }

    #[test]
    fn absurd_round_trips_are_clamped_not_lost() {
        let mut tally = Tally::new().unwrap();
        tally.record(Outcome::Correct { rtt_ns: 0 }, true);
        tally.record(Outcome::Correct { rtt_ns: u64::MAX }, true);
        assert_eq!(tally.correct, 2);
        assert!(tally.latency().unwrap().max_us >= 3.5e9);
    }
}
