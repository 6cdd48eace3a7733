//! The result of a run: what ran, the totals and the intervals (as iperf3's
//! `-J` has start, intervals and end), printed as a table or as one JSON
//! object, and read back through the same type (`str::parse`).
//!
//! The JSON keeps its fields flat at the top level, with the names and
//! meanings scripts already read (`replies_per_s`, `p50_us`, `p99_us`,
//! `lost`, `wrong`, ...): the latency figures are `null` when no reply was
//! timed, as before. New figures sit beside them; settings that do not
//! apply to the run (`batch` and GSO for TCP, `rate`, `count`, `warmup_s`
//! when not given, empty `notes`) are left out. Figures are rounded to what
//! they can tell: 0.1 µs, 0.1 reply/s, 1 µs of run time.
//!
//! `latency_from` says where the round trips are timed from: `intended`
//! under `--rate` (each request's place on the schedule, so the latency
//! figures include whatever held a request back: the coordinated-omission
//! correction), `sent` in a closed loop or with `--latency-from sent`.
//! Under `--rate`, `lateness_p90_us`, `lateness_p99_us` and `lateness_max_us`
//! say how far behind its schedule the sender fell, and `behind_schedule`
//! flags a run whose sender could not keep the rate (see `fell_behind`).

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::args::{LatencyFrom, Mode, Plan, Transport};
use crate::engine::{Run, Sending};
use crate::tally::{Counts, Latency, Slice};

/// A paced run fell behind once a tenth of its requests left later than
/// this share of the time it sent (see `fell_behind`)...
pub const BEHIND_SHARE: f64 = 0.01;
/// ... and never for lateness under this (µs), however short the run: a
/// busy machine delays a sender by a few milliseconds now and then without
/// its losing the rate (a tenth of the requests of 0.2-s runs left up to
/// 3.2 ms late on this project's 2-core machine at a load average of 8).
const BEHIND_FLOOR_US: f64 = 10_000.0;

/// Everything one run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// upcase's version, with the commit when built from git.
    pub version: String,
    /// When the run started: RFC 3339, UTC, to the second.
    pub timestamp: String,
    pub server: String,
    /// "udp", or "tcp" with `--tcp`.
    pub transport: Transport,
    pub mode: Mode,
    /// Bytes per request.
    pub size: usize,
    pub window: usize,
    /// UDP sockets, or TCP connections.
    pub sockets: usize,
    /// Messages per system call (UDP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// How long the measurement lasted: `--duration`, or less when
    /// `--count` requests were all answered (or lost) sooner.
    pub duration_s: f64,
    /// `--warmup`, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<f64>,
    /// `--count`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `--rate`, when paced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// The UDP path, `batched` or `portable` (`--io`; UDP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<String>,
    /// Requests were sent as UDP GSO trains (UDP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gso: Option<bool>,
    /// Replies were received with UDP GRO (UDP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gro: Option<bool>,
    /// The requests and replies of the measurement (replies while the last
    /// ones are collected included), flat: `sent`, `correct`, `wrong`,
    /// `late`, `lost`, `duplicates`.
    #[serde(flatten)]
    pub counts: Counts,
    pub send_errors: u64,
    pub refused: u64,
    /// Correct replies per second of measurement.
    pub replies_per_s: f64,
    /// Reply payload (correct replies) in MB (10^6 bytes) per second.
    pub payload_mb_per_s: f64,
    /// Requests sent per second while the measurement sent (until its end,
    /// or until the last of `--count` went).
    #[serde(default)]
    pub sent_per_s: f64,
    /// Where the round trips are timed from: `intended` (each request's
    /// place on the `--rate` schedule) or `sent` (its actual send).
    #[serde(default)]
    pub latency_from: LatencyFrom,
    /// Round trips timed (the correct replies); the figures after it are
    /// `null` without any.
    pub samples: u64,
    pub min_us: Option<f64>,
    pub mean_us: Option<f64>,
    /// Standard deviation.
    pub stddev_us: Option<f64>,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Under `--rate`: the sender could not keep the rate, so the load
    /// asked for was not offered: a tenth of the requests or more left later
    /// than 1 % of the time it sent (at least 10 ms) after they were due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_schedule: Option<bool>,
    /// Under `--rate`: how long after its place on the schedule a request
    /// went out (a full window, a full socket buffer, a slow sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness_p90_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness_p99_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness_max_us: Option<f64>,
    /// `--interval`: the length of each of `intervals` but the last.
    pub interval_s: f64,
    /// The measurement, interval by interval (replies after its end,
    /// while the last ones are collected, count in the totals only).
    pub intervals: Vec<Interval>,
    /// What ran differently from what was asked (GSO or GRO missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One interval of the measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Interval {
    /// Seconds since the measurement began.
    pub start_s: f64,
    pub end_s: f64,
    #[serde(flatten)]
    pub counts: Counts,
    pub replies_per_s: f64,
    /// Round trips timed; the figures after it are left out without any.
    pub samples: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
}

/// `x` to `decimals` places, so that the JSON says no more than it knows.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn us(x: f64) -> f64 {
    round(x, 1)
}

fn seconds(ns: u64) -> f64 {
    round(ns as f64 / 1e9, 6)
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        round(count as f64 / seconds, 1)
    } else {
        0.0
    }
}

impl Interval {
    fn new(slice: &Slice, measure_start: u64) -> Interval {
        let latency = slice.latency;
        let of = |pick: fn(&Latency) -> f64| latency.as_ref().map(|l| us(pick(l)));
        Interval {
            start_s: seconds(slice.start - measure_start),
            end_s: seconds(slice.end - measure_start),
            counts: slice.counts,
            replies_per_s: per_second(
                slice.counts.correct_in_time,
                (slice.end - slice.start) as f64 / 1e9,
            ),
            samples: latency.map_or(0, |l| l.samples),
            min_us: of(|l| l.min_us),
            mean_us: of(|l| l.mean_us),
            p50_us: of(|l| l.p50_us),
            p99_us: of(|l| l.p99_us),
            max_us: of(|l| l.max_us),
        }
    }
}

impl std::str::FromStr for Summary {
    type Err = serde_json::Error;

    /// Reads the JSON object `bench --json` prints.
    fn from_str(json: &str) -> Result<Summary, serde_json::Error> {
        serde_json::from_str(json)
    }
}

impl Summary {
    pub(crate) fn new(plan: &Plan, run: Run, started: SystemTime) -> Summary {
        let t = &run.tally;
        let totals = t.totals;
        let measured = run.measured.as_secs_f64();
        let replies_per_s = per_second(totals.correct_in_time, measured);
        let latency = t.latency();
        let of = |pick: fn(&Latency) -> f64| latency.as_ref().map(|l| us(pick(l)));
        let udp = plan.transport == Transport::Udp;
        let measure_start = t.span().start;
        let lateness = t.lateness();
        let behind_schedule = fell_behind(run.sending, lateness);
        let mut notes = run.notes;
        if let (Some(true), Some(rate)) = (behind_schedule, plan.rate) {
            notes.push(format!(
                "the sender fell behind --rate {rate}/s: a tenth of the requests left {:.1} ms \
                 or more after they were due, and it sent {} of the {} due (a full window, a \
                 full socket buffer or a slow sender held them back); the load asked for was \
                 not offered",
                lateness.map_or(0.0, |l| l.p90_us / 1e3),
                totals.sent,
                run.sending.due.unwrap_or(0)
            ));
        }
        Summary {
            version: upcase_cli::VERSION.to_string(),
            timestamp: upcase_cli::timestamp(started),
            server: plan.server.to_string(),
            transport: plan.transport,
            mode: plan.mode,
            size: plan.size,
            window: plan.window,
            sockets: plan.sockets,
            batch: udp.then_some(plan.batch),
            duration_s: round(measured, 6),
            warmup_s: (!plan.warmup.is_zero()).then(|| round(plan.warmup.as_secs_f64(), 6)),
            count: plan.count,
            rate: plan.rate,
            io: udp.then(|| plan.io.to_string()),
            gso: udp.then_some(run.gso),
            gro: udp.then_some(run.gro),
            counts: totals,
            send_errors: t.send_errors,
            refused: t.refused,
            replies_per_s,
            payload_mb_per_s: round(replies_per_s * plan.size as f64 / 1e6, 3),
            sent_per_s: per_second(totals.sent, run.sending.time.as_secs_f64()),
            latency_from: plan.latency_from,
            samples: latency.map_or(0, |l| l.samples),
            min_us: of(|l| l.min_us),
            mean_us: of(|l| l.mean_us),
            stddev_us: of(|l| l.stddev_us),
            p50_us: of(|l| l.p50_us),
            p90_us: of(|l| l.p90_us),
            p99_us: of(|l| l.p99_us),
            p999_us: of(|l| l.p999_us),
            max_us: of(|l| l.max_us),
            behind_schedule,
            lateness_p90_us: lateness.map(|l| us(l.p90_us)),
            lateness_p99_us: lateness.map(|l| us(l.p99_us)),
            lateness_max_us: lateness.map(|l| us(l.max_us)),
            interval_s: round(plan.interval.as_secs_f64(), 6),
            intervals: t
                .intervals()
                .iter()
                .map(|slice| Interval::new(slice, measure_start))
                .collect(),
            notes,
        }
    }

    /// Why the server failed the run, if it did: a wrong reply, or no
    /// correct one at all.
    pub fn failure(&self) -> Option<String> {
        if self.counts.wrong > 0 {
            Some(format!(
                "{} wrong replies from {} (not the uppercase of their request)",
                self.counts.wrong, self.server
            ))
        } else if self.counts.correct == 0 {
            let why = if self.refused > 0 {
                " (connection refused: is a server listening there?)"
            } else {
                ""
            };
            Some(format!("no correct reply from {}{why}", self.server))
        } else {
            None
        }
    }

    /// The human-readable report: what ran, the totals, the round trips,
    /// and a line per interval when there is more than one.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let shape = match (self.mode, self.transport) {
            (Mode::Ping, Transport::Udp) => "ping (1 in flight)".to_string(),
            (Mode::Ping, Transport::Tcp) => "TCP ping (1 in flight, 1 connection)".to_string(),
            (Mode::Flood, Transport::Udp) => format!(
                "flood, window {} over {} socket(s)",
                self.window, self.sockets
            ),
            (Mode::Flood, Transport::Tcp) => format!(
                "TCP flood, window {} over {} connection(s)",
                self.window, self.sockets
            ),
        };
        let rate = match (self.rate, self.latency_from) {
            (Some(r), LatencyFrom::Intended) => format!(
                ", paced at {r}/s (round trips timed from each request's intended send time)"
            ),
            (Some(r), LatencyFrom::Sent) => format!(
                ", paced at {r}/s (round trips timed from each send: uncorrected, a stall hides)"
            ),
            (None, _) => ", closed loop (round trips timed from each send)".to_string(),
        };
        let io = self
            .io
            .as_ref()
            .map_or_else(String::new, |io| format!(", {io} I/O"));
        let gso = match (self.gso == Some(true), self.gro == Some(true)) {
            (true, true) => ", GSO send + GRO receive",
            (true, false) => ", GSO send",
            (false, true) => ", GRO receive",
            (false, false) => "",
        };
        let _ = writeln!(
            out,
            "{shape}, {} B requests, {} s against {}{rate}{io}{gso}",
            self.size,
            short_seconds(self.duration_s),
            self.server
        );
        let c = &self.counts;
        let _ = writeln!(
            out,
            "sent {}  correct {}  wrong {}  late {}  lost {}{}",
            c.sent,
            c.correct,
            c.wrong,
            c.late,
            c.lost,
            if c.duplicates > 0 {
                format!("  duplicates {}", c.duplicates)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "{:.0} replies/s, {:.2} MB/s of payload",
            self.replies_per_s, self.payload_mb_per_s
        );
        match [
            self.min_us,
            self.mean_us,
            self.stddev_us,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        ] {
            [
                Some(min),
                Some(mean),
                Some(sd),
                Some(p50),
                Some(p90),
                Some(p99),
                Some(p999),
                Some(max),
            ] => {
                let _ = writeln!(
                    out,
                    "round trip (µs, {} samples): min {min:.1}  mean {mean:.1}  sd {sd:.1}  \
                     p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}",
                    self.samples
                );
            }
            _ => {
                let _ = writeln!(out, "round trip: no correct reply to time");
            }
        }
        if let Some(rate) = self.rate {
            let _ = writeln!(
                out,
                "sender: {:.0} requests/s of {rate}/s; behind schedule (µs): p90 {}  p99 {}  max {}{}",
                self.sent_per_s,
                us_or_dash(self.lateness_p90_us),
                us_or_dash(self.lateness_p99_us),
                us_or_dash(self.lateness_max_us),
                if self.behind_schedule == Some(true) {
                    "  FELL BEHIND: a tenth of the requests left over 1 % of the run (at least 10 ms) late"
                } else {
                    ""
                }
            );
        }
        if self.intervals.len() > 1 {
            self.render_intervals(&mut out);
        }
        out
    }

    fn render_intervals(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "{:>15}  {:>10}  {:>6}  {:>6}  {:>8}  {:>8}",
            "interval (s)", "replies/s", "wrong", "lost", "p50 µs", "p99 µs"
        );
        for i in &self.intervals {
            let span = format!("{}-{}", short_seconds(i.start_s), short_seconds(i.end_s));
            let _ = writeln!(
                out,
                "{span:>15}  {:>10.0}  {:>6}  {:>6}  {:>8}  {:>8}",
                i.replies_per_s,
                i.counts.wrong,
                i.counts.lost,
                us_or_dash(i.p50_us),
                us_or_dash(i.p99_us)
            );
        }
    }
}

/// Whether the sender of a paced run could not keep its rate (`None`
/// unpaced): a tenth of its requests or more left later than
/// [`BEHIND_SHARE`] of the time it sent (at least 10 ms) after they were
/// due, or nothing left though requests were due.
///
/// A request that leaves that late means the sender owed that share of its
/// schedule at that moment, and a tenth of the run spent so far behind is
/// a load not offered. The rule reads the whole run, not its last moment:
/// a sender held back by a stall it recovers from (a server stopped for a
/// moment), or delayed in the last milliseconds of the run, kept the rate;
/// one that falls further behind as the run goes on (a window too small
/// for the rate, a sender too slow) owes more with every request and is
/// flagged whatever the figures.
fn fell_behind(sending: Sending, lateness: Option<Latency>) -> Option<bool> {
    let due = sending.due?;
    let bound_us = (sending.time.as_secs_f64() * 1e6 * BEHIND_SHARE).max(BEHIND_FLOOR_US);
    Some(match lateness {
        Some(late) => late.p90_us > bound_us,
        None => due > 0,
    })
}

/// A figure in µs for the tables, or `-` where there is none.
pub(crate) fn us_or_dash(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.1}"))
}

/// Seconds to the millisecond, without trailing zeros (`5`, `0.3`, `1.25`).
pub(crate) fn short_seconds(s: f64) -> String {
    let text = format!("{s:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_says_no_more_than_the_figures_know() {
        assert_eq!(round(123.456_789, 1), 123.5);
        assert_eq!(us(9.949_99), 9.9);
        assert_eq!(seconds(1_234_567_891), 1.234_568);
        assert_eq!(per_second(3, 0.0), 0.0, "no time, no rate");
        assert_eq!(per_second(1, 3.0), 0.3);
        assert_eq!(short_seconds(5.0), "5");
        assert_eq!(short_seconds(0.3), "0.3");
        assert_eq!(short_seconds(0.004_9), "0.005");
    }

    #[test]
    fn a_sender_fell_behind_when_a_tenth_of_its_requests_left_late() {
        let sending = |ms, due| Sending {
            time: std::time::Duration::from_millis(ms),
            due,
        };
        let late = |p90_us| Latency {
            samples: 10,
            min_us: 0.0,
            mean_us: 0.0,
            stddev_us: 0.0,
            p50_us: 0.0,
            p90_us,
            p99_us: 150_000.0,
            p999_us: 150_000.0,
            max_us: 150_000.0,
        };
        let five_seconds = sending(5_000, Some(5_000));
        assert_eq!(
            fell_behind(sending(1_000, None), Some(late(1e6))),
            None,
            "unpaced"
        );
        // 1 % of 5 s is 50 ms; a stall that makes a tenth of the requests
        // late or fewer (whatever its p99) is not behind.
        assert_eq!(fell_behind(five_seconds, Some(late(50_000.0))), Some(false));
        assert_eq!(fell_behind(five_seconds, Some(late(50_001.0))), Some(true));
        // A short run's bound is 10 ms, not 1 % of it.
        let one_second = sending(1_000, Some(1_000));
        assert_eq!(fell_behind(one_second, Some(late(9_900.0))), Some(false));
        assert_eq!(fell_behind(one_second, Some(late(10_100.0))), Some(true));
        assert_eq!(fell_behind(one_second, None), Some(true), "nothing went");
        assert_eq!(fell_behind(sending(0, Some(0)), None), Some(false));
    }
}
