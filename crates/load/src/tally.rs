//! What each reply was, the counts, the latency histogram, and how late
//! paced requests left.

use hdrhistogram::Histogram;

use crate::inflight::{Answer, Inflight};
use crate::payload::{Check, Payload};

/// What one received datagram turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
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
pub(crate) fn classify(
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
pub(crate) fn classify_in_order(
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

/// When a run counts, on the run's clock (nanoseconds): from `start` (after
/// the warm-up) to `end` (the end of `--duration`), cut into intervals of
/// `every` for the per-interval results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u64,
    pub end: u64,
    pub every: u64,
}

/// What happened to requests and replies over some time: the run, or one
/// interval of it. Fields of the bench's JSON, flat, as scripts read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Counts {
    /// Requests sent.
    pub sent: u64,
    /// Replies that were exactly the uppercase of a request waited for.
    pub correct: u64,
    /// Replies that were not the uppercase of the request they name, or
    /// named none.
    pub wrong: u64,
    /// Correct replies to requests already counted lost.
    pub late: u64,
    /// Requests declared lost: no reply within the loss timeout.
    pub lost: u64,
    /// Second correct replies to one request.
    pub duplicates: u64,
    /// Correct replies that arrived before the end of the measurement: the
    /// throughput figure (replies while draining are checked, not timed).
    #[serde(skip)]
    pub correct_in_time: u64,
}

impl Counts {
    fn record(&mut self, outcome: Outcome, in_time: bool) {
        match outcome {
            Outcome::Correct { .. } => {
                self.correct += 1;
                self.correct_in_time += u64::from(in_time);
            }
            Outcome::Wrong => self.wrong += 1,
            Outcome::Late => self.late += 1,
            Outcome::Duplicate => self.duplicates += 1,
        }
    }
}

/// One interval of the measurement, closed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Slice {
    /// Clock times it covers.
    pub start: u64,
    pub end: u64,
    pub counts: Counts,
    pub latency: Option<Latency>,
}

/// Counts of one run, totals and per interval; only events inside the
/// measurement are counted, and only those up to its end go in intervals.
#[derive(Debug)]
pub(crate) struct Tally {
    pub totals: Counts,
    /// Requests the kernel refused to send.
    pub send_errors: u64,
    /// Sends and receives that met ECONNREFUSED: no server on that port.
    pub refused: u64,
    span: Span,
    rtt: Histogram<u64>,
    /// Under `--rate`: how long after its place on the schedule each
    /// request of the measurement went out.
    lateness: Histogram<u64>,
    /// When the last request of the measurement went out.
    last_send: u64,
    /// The interval being counted: it started at `open_since`.
    open: Counts,
    open_since: u64,
    open_rtt: Histogram<u64>,
    closed: Vec<Slice>,
    finished: bool,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 3 significant digits: 0.1 % resolution from 1 ns to an hour.
    Histogram::new_with_bounds(1, MAX_RTT_NS, 3)
        .map_err(|e| anyhow::anyhow!("cannot make the latency histogram: {e:?}"))
}

impl Tally {
    pub(crate) fn new(span: Span) -> anyhow::Result<Tally> {
        Ok(Tally {
            totals: Counts::default(),
            send_errors: 0,
            refused: 0,
            span,
            rtt: histogram()?,
            lateness: histogram()?,
            last_send: span.start,
            open: Counts::default(),
            open_since: span.start,
            open_rtt: histogram()?,
            closed: Vec::new(),
            finished: false,
        })
    }

    /// When the run counts.
    pub(crate) fn span(&self) -> Span {
        self.span
    }

    /// Whether what happens at `now` is counted: after the warm-up.
    pub(crate) fn counting(&self, now: u64) -> bool {
        now >= self.span.start
    }

    /// The interval `now` falls in, closing those that ended before it;
    /// `None` before the measurement, after it, or once finished.
    fn interval_at(&mut self, now: u64) -> Option<(&mut Counts, &mut Histogram<u64>)> {
        if self.finished || now < self.span.start || now > self.span.end {
            return None;
        }
        // The last interval is closed by `finish`, so it holds `end` itself.
        while now >= self.open_since.saturating_add(self.span.every)
            && self.open_since.saturating_add(self.span.every) < self.span.end
        {
            let end = self.open_since + self.span.every;
            self.close(end);
        }
        Some((&mut self.open, &mut self.open_rtt))
    }

    fn close(&mut self, end: u64) {
        let latency = Latency::of(&self.open_rtt);
        self.closed.push(Slice {
            start: self.open_since,
            end,
            counts: std::mem::take(&mut self.open),
            latency,
        });
        self.open_rtt.reset();
        self.open_since = end;
    }

    /// Counts what `add` adds, at `now`, in the totals and in the interval.
    fn count(&mut self, now: u64, add: impl Fn(&mut Counts)) {
        if !self.counting(now) {
            return;
        }
        add(&mut self.totals);
        if let Some((open, _)) = self.interval_at(now) {
            add(open);
        }
    }

    /// Counts `sent` requests sent at `now`.
    pub(crate) fn sent(&mut self, sent: u64, now: u64) {
        if sent > 0 && self.counting(now) {
            self.last_send = now;
        }
        self.count(now, |c| c.sent += sent);
    }

    /// Records how late (`Some`, under `--rate`) a request sent at `now`
    /// went out.
    pub(crate) fn behind(&mut self, lateness_ns: Option<u64>, now: u64) {
        if let Some(ns) = lateness_ns
            && self.counting(now)
        {
            // Zero is on time; the histogram starts at 1 ns.
            self.lateness.saturating_record(ns.clamp(1, MAX_RTT_NS));
        }
    }

    /// When the last request of the measurement went out (its start if
    /// none did).
    pub(crate) fn last_send(&self) -> u64 {
        self.last_send
    }

    /// How late paced requests went out; `None` unpaced or without any.
    pub(crate) fn lateness(&self) -> Option<Latency> {
        Latency::of(&self.lateness)
    }

    /// Counts `lost` requests declared lost at `now`.
    pub(crate) fn lost(&mut self, lost: u64, now: u64) {
        self.count(now, |c| c.lost += lost);
    }

    /// Counts `outcome`, a reply received at `now`. A correct reply to a
    /// request sent during the warm-up is not: its request was not counted
    /// as sent, and `correct` must never exceed `sent`.
    pub(crate) fn record(&mut self, outcome: Outcome, now: u64) {
        if let Outcome::Correct { rtt_ns } = outcome
            && now.saturating_sub(rtt_ns) < self.span.start
        {
            return;
        }
        let in_time = now <= self.span.end;
        self.count(now, |c| c.record(outcome, in_time));
        if let Outcome::Correct { rtt_ns } = outcome
            && self.counting(now)
        {
            let rtt_ns = rtt_ns.clamp(1, MAX_RTT_NS);
            self.rtt.saturating_record(rtt_ns);
            if let Some((_, open_rtt)) = self.interval_at(now) {
                open_rtt.saturating_record(rtt_ns);
            }
        }
    }

    /// Ends the intervals: the run stopped at `now` (at the end of the
    /// measurement if later). What is counted after this is in the totals
    /// only.
    pub(crate) fn finish(&mut self, now: u64) {
        if self.finished {
            return;
        }
        let end = now.min(self.span.end);
        // Closes the intervals before `end`, then the one it ends.
        self.interval_at(end);
        if end > self.open_since {
            self.close(end);
        }
        self.finished = true;
    }

    /// The closed intervals, in order.
    pub(crate) fn intervals(&self) -> &[Slice] {
        &self.closed
    }

    /// Round-trip figures of the correct replies; `None` without any.
    pub(crate) fn latency(&self) -> Option<Latency> {
        Latency::of(&self.rtt)
    }
}

/// Round-trip times in microseconds, and how many were measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Latency {
    pub samples: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub stddev_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    fn of(rtt: &Histogram<u64>) -> Option<Latency> {
        if rtt.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        let at = |q: f64| us(rtt.value_at_quantile(q));
        Some(Latency {
            samples: rtt.len(),
            min_us: us(rtt.min()),
            mean_us: rtt.mean() / 1_000.0,
            stddev_us: rtt.stdev() / 1_000.0,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: us(rtt.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_correct_wrong_late_or_duplicate_and_unanswered_ones_lost() {
        let payload = Payload::new(32);
        let mut inflight = Inflight::new(16);
        inflight.sent(4, 1_000, |_| 1_000); // requests 0..4
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
        inflight.sent(3, 1_000, |_| 1_000); // requests 0..3
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

    const SPAN: Span = Span {
        start: 1_000,
        end: 1_000 + 3_000_000,
        every: 1_000_000,
    };

    #[test]
    fn counts_and_percentiles() {
        let mut tally = Tally::new(SPAN).unwrap();
        assert_eq!(tally.latency(), None, "no reply, no latency");
        for us in 1..=1_000u64 {
            // 900 within the measurement (sent 1 ms in at the earliest),
            // 100 while draining.
            let now = if us <= 900 {
                SPAN.start + 1_000_000 + us
            } else {
                SPAN.end + us
            };
            tally.record(Outcome::Correct { rtt_ns: us * 1_000 }, now);
        }
        tally.record(Outcome::Wrong, SPAN.start);
        tally.record(Outcome::Late, SPAN.start);
        tally.record(Outcome::Duplicate, SPAN.end + 1);
        tally.record(Outcome::Wrong, SPAN.start - 1);
        // Received after the warm-up, but sent during it.
        tally.record(Outcome::Correct { rtt_ns: 10 }, SPAN.start + 5);
        let t = tally.totals;
        assert_eq!((t.correct, t.correct_in_time), (1_000, 900));
        assert_eq!(
            (t.wrong, t.late, t.duplicates),
            (1, 1, 1),
            "the warm-up is not counted"
        );
        let latency = tally.latency().unwrap();
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert_eq!(latency.samples, 1_000);
        assert!(close(latency.min_us, 1.0), "{latency:?}");
        assert!(close(latency.p50_us, 500.0), "{latency:?}");
        assert!(close(latency.p90_us, 900.0), "{latency:?}");
        assert!(close(latency.p99_us, 990.0), "{latency:?}");
        assert!(close(latency.p999_us, 999.0), "{latency:?}");
        assert!(close(latency.max_us, 1_000.0), "{latency:?}");
        assert!(close(latency.mean_us, 500.5), "{latency:?}");
        // The standard deviation of 1..=1000 is 288.7.
        assert!((latency.stddev_us - 288.7).abs() < 1.0, "{latency:?}");
    }

    #[test]
    fn intervals_cut_the_measurement_and_leave_out_the_rest() {
        let mut tally = Tally::new(SPAN).unwrap();
        let at = |ms: u64| SPAN.start + ms * 1_000_000 / 10;
        tally.sent(5, SPAN.start - 1); // warm-up
        tally.sent(3, at(1));
        tally.record(Outcome::Correct { rtt_ns: 2_000 }, at(2));
        tally.record(Outcome::Correct { rtt_ns: 4_000 }, at(3));
        // Nothing in the second interval; then a loss and a reply in the third.
        tally.lost(1, at(25));
        tally.record(Outcome::Correct { rtt_ns: 8_000 }, SPAN.end);
        tally.record(Outcome::Correct { rtt_ns: 9_000 }, SPAN.end + 1); // drain
        tally.finish(SPAN.end + 5);
        tally.lost(1, SPAN.end + 6);
        let slices = tally.intervals();
        let bounds: Vec<(u64, u64)> = slices.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(
            bounds,
            [(at(0), at(10)), (at(10), at(20)), (at(20), at(30))]
        );
        assert_eq!(slices[0].counts.sent, 3);
        assert_eq!(slices[0].counts.correct_in_time, 2);
        assert_eq!(
            slices[0].latency.map(|l| (l.samples, l.min_us)),
            Some((2, 2.0))
        );
        assert_eq!(slices[1].counts, Counts::default());
        assert_eq!(slices[1].latency, None);
        assert_eq!((slices[2].counts.lost, slices[2].counts.correct), (1, 1));
        assert_eq!(tally.totals.sent, 3);
        assert_eq!((tally.totals.correct, tally.totals.correct_in_time), (4, 3));
        assert_eq!(tally.totals.lost, 2, "a loss after the end still counts");
    }

    #[test]
    fn a_run_that_ends_early_closes_its_last_interval_there() {
        let mut tally = Tally::new(SPAN).unwrap();
        tally.sent(1, SPAN.start + 10);
        tally.finish(SPAN.start + 1_500_000);
        let bounds: Vec<(u64, u64)> = tally.intervals().iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(
            bounds,
            [
                (SPAN.start, SPAN.start + 1_000_000),
                (SPAN.start + 1_000_000, SPAN.start + 1_500_000)
            ]
        );
        let mut on_a_boundary = Tally::new(SPAN).unwrap();
        on_a_boundary.finish(SPAN.start + 2_000_000);
        assert_eq!(
            on_a_boundary.intervals().len(),
            2,
            "no empty third interval"
        );
        let mut warm_only = Tally::new(SPAN).unwrap();
        warm_only.finish(SPAN.start - 1);
        assert!(
            warm_only.intervals().is_empty(),
            "it ended before measuring"
        );
    }

    #[test]
    fn lateness_and_the_last_send_count_in_the_measurement_only() {
        let mut tally = Tally::new(SPAN).unwrap();
        assert_eq!((tally.lateness(), tally.last_send()), (None, SPAN.start));
        tally.sent(1, SPAN.start - 1);
        tally.behind(Some(5_000_000), SPAN.start - 1); // warm-up
        tally.behind(None, SPAN.start + 1); // unpaced
        assert_eq!(tally.lateness(), None);
        for (i, late_us) in [0u64, 0, 0, 1_000].into_iter().enumerate() {
            tally.sent(1, SPAN.start + 10 + i as u64);
            tally.behind(Some(late_us * 1_000), SPAN.start + 10 + i as u64);
        }
        tally.sent(0, SPAN.start + 500);
        assert_eq!(tally.last_send(), SPAN.start + 13, "nothing sent at 500");
        let late = tally.lateness().unwrap();
        assert_eq!(late.samples, 4);
        assert!((late.max_us - 1_000.0).abs() < 1.0, "{late:?}");
        assert!(late.p50_us < 0.01, "on time is 0: {late:?}");
    }

    #[test]
    fn absurd_round_trips_are_clamped_not_lost() {
        let mut tally = Tally::new(SPAN).unwrap();
        tally.record(Outcome::Correct { rtt_ns: 0 }, SPAN.start);
        let absurd = 2 * MAX_RTT_NS;
        tally.record(Outcome::Correct { rtt_ns: absurd }, SPAN.end + absurd);
        assert_eq!(tally.totals.correct, 2);
        assert!(tally.latency().unwrap().max_us >= 3.5e9);
    }
}
