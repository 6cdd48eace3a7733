//! `--find-rate`: steps of `--duration` at the rates [`Ramp`] picks, each a
//! paced run judged on its loss, its p99 (timed from the intended send
//! times) and whether the sender kept the rate; the highest rate that
//! passed, and the curve of every step, as a table or one JSON object
//! (read back with `str::parse`), in the style of DNS-OARC's resperf.
//!
//! Each step is a run of its own on fresh sockets, so a reply left over
//! from one step can never count in the next.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::args::{LatencyFrom, Mode, Plan, SearchPlan, Transport};
use crate::ramp::Ramp;
use crate::report::{Summary, short_seconds, us_or_dash};

/// One step of the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Step {
    /// The rate asked for (`--rate` of this step).
    pub offered_per_s: u64,
    /// Requests sent per second, and correct replies per second.
    pub sent_per_s: f64,
    pub replies_per_s: f64,
    pub sent: u64,
    pub correct: u64,
    pub wrong: u64,
    pub lost: u64,
    /// `lost` over `sent` (0 when nothing was sent).
    pub loss: f64,
    /// Round trips, from each request's intended send time (`null` without
    /// a correct reply).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    /// How far behind its schedule the sender fell.
    #[serde(default)]
    pub lateness_p99_us: Option<f64>,
    /// The sender sent under 99 % of the requests due.
    pub behind_schedule: bool,
    pub passed: bool,
    /// Why it did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_on: Option<String>,
}

/// A whole search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RateSearch {
    pub version: String,
    /// When the search started: RFC 3339, UTC, to the second.
    pub timestamp: String,
    pub server: String,
    pub transport: Transport,
    pub mode: Mode,
    pub size: usize,
    pub window: usize,
    pub sockets: usize,
    /// Length of each step's measurement (`--duration`).
    pub step_s: f64,
    /// Where round trips are timed from (`intended` unless
    /// `--latency-from sent`).
    pub latency_from: LatencyFrom,
    /// The bounds a step must keep to pass.
    pub max_loss: f64,
    pub max_p99_us: f64,
    pub max_steps: u32,
    /// The highest offered rate that passed, `null` if none did.
    pub found_per_s: Option<u64>,
    /// That step's replies per second and round trips.
    pub replies_per_s: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Step {
    /// The step a run at `offered` made, judged against `bounds`.
    fn judge(summary: &Summary, offered: u64, bounds: &SearchPlan) -> Step {
        let c = &summary.counts;
        let loss = if c.sent > 0 {
            c.lost as f64 / c.sent as f64
        } else {
            0.0
        };
        let behind = summary.behind_schedule == Some(true);
        let max_p99_us = bounds.max_p99.as_secs_f64() * 1e6;
        let failed_on = if c.wrong > 0 {
            Some(format!("{} wrong replies", c.wrong))
        } else if c.correct == 0 {
            Some("no correct reply".to_string())
        } else if loss > bounds.max_loss {
            Some(format!(
                "loss {} over {}",
                percent(loss),
                percent(bounds.max_loss)
            ))
        } else if let Some(p99) = summary.p99_us.filter(|&p99| p99 > max_p99_us) {
            Some(format!("p99 {p99:.1} µs over {max_p99_us:.1} µs"))
        } else if behind {
            Some("the sender fell behind its schedule".to_string())
        } else {
            None
        };
        Step {
            offered_per_s: offered,
            sent_per_s: summary.sent_per_s,
            replies_per_s: summary.replies_per_s,
            sent: c.sent,
            correct: c.correct,
            wrong: c.wrong,
            lost: c.lost,
            loss,
            p50_us: summary.p50_us,
            p99_us: summary.p99_us,
            max_us: summary.max_us,
            lateness_p99_us: summary.lateness_p99_us,
            behind_schedule: behind,
            passed: failed_on.is_none(),
            failed_on,
        }
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.3} %", fraction * 100.0)
}

/// Runs the search `plan.search` describes, each step through `measure`
/// (one run of the load at the plan it is given). Stops early at a step
/// with wrong replies: a server that answers wrongly has no capacity.
pub(crate) fn find_rate(
    plan: &Plan,
    mut measure: impl FnMut(&Plan) -> anyhow::Result<Summary>,
) -> anyhow::Result<RateSearch> {
    let started = SystemTime::now();
    let bounds = plan
        .search
        .ok_or_else(|| anyhow::anyhow!("find_rate needs a plan with --find-rate"))?;
    let first = plan.rate.unwrap_or(crate::args::FIRST_SEARCH_RATE);
    let mut ramp = Ramp::new(first, bounds.max_steps);
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let mut best: Option<Summary> = None;
    while let Some(rate) = ramp.next() {
        let step_plan = Plan {
            rate: Some(rate),
            ..plan.clone()
        };
        let summary = measure(&step_plan)?;
        let step = Step::judge(&summary, rate, &bounds);
        ramp.record(rate, step.passed);
        for note in &summary.notes {
            if !notes.contains(note) && !note.starts_with("the sender fell behind") {
                notes.push(note.clone());
            }
        }
        let wrong = step.wrong > 0;
        if step.passed && ramp.found() == Some(rate) {
            best = Some(summary);
        }
        steps.push(step);
        if wrong {
            break;
        }
    }
    Ok(RateSearch {
        version: upcase_cli::VERSION.to_string(),
        timestamp: upcase_cli::timestamp(started),
        server: plan.server.to_string(),
        transport: plan.transport,
        mode: plan.mode,
        size: plan.size,
        window: plan.window,
        sockets: plan.sockets,
        step_s: plan.duration.as_secs_f64(),
        latency_from: plan.latency_from,
        max_loss: bounds.max_loss,
        max_p99_us: bounds.max_p99.as_secs_f64() * 1e6,
        max_steps: bounds.max_steps,
        found_per_s: ramp.found(),
        replies_per_s: best.as_ref().map(|s| s.replies_per_s),
        p50_us: best.as_ref().and_then(|s| s.p50_us),
        p99_us: best.as_ref().and_then(|s| s.p99_us),
        steps,
        notes,
    })
}

impl std::str::FromStr for RateSearch {
    type Err = serde_json::Error;

    /// Reads the JSON object `bench --find-rate --json` prints.
    fn from_str(json: &str) -> Result<RateSearch, serde_json::Error> {
        serde_json::from_str(json)
    }
}

impl RateSearch {
    /// Why the search failed, if it did: a wrong reply, no correct reply in
    /// any step, or no step that passed.
    pub fn failure(&self) -> Option<String> {
        let wrong: u64 = self.steps.iter().map(|s| s.wrong).sum();
        if wrong > 0 {
            Some(format!(
                "{wrong} wrong replies from {} (not the uppercase of their request)",
                self.server
            ))
        } else if self.steps.iter().all(|s| s.correct == 0) {
            Some(format!("no correct reply from {}", self.server))
        } else if self.found_per_s.is_none() {
            let lowest = self
                .steps
                .iter()
                .map(|s| s.offered_per_s)
                .min()
                .unwrap_or(0);
            Some(format!(
                "no rate kept loss at most {} and p99 at most {:.1} µs, down to {lowest}/s",
                percent(self.max_loss),
                self.max_p99_us
            ))
        } else {
            None
        }
    }

    /// The table: the bounds, one line per step, the result.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "find-rate: {:?} over {}, window {} over {} socket(s), {} B requests against {}; \
             steps of {} s; a step passes with loss <= {}, p99 <= {:.1} µs (from the {} time) \
             and the sender on schedule",
            self.mode,
            match self.transport {
                Transport::Udp => "UDP",
                Transport::Tcp => "TCP",
            },
            self.window,
            self.sockets,
            self.size,
            self.server,
            short_seconds(self.step_s),
            percent(self.max_loss),
            self.max_p99_us,
            match self.latency_from {
                LatencyFrom::Intended => "intended send",
                LatencyFrom::Sent => "actual send",
            }
        );
        let _ = writeln!(
            out,
            "{:>12}  {:>12}  {:>12}  {:>8}  {:>10}  {:>10}  result",
            "offered/s", "sent/s", "replies/s", "loss %", "p50 µs", "p99 µs"
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:>12}  {:>12.0}  {:>12.0}  {:>8.3}  {:>10}  {:>10}  {}",
                s.offered_per_s,
                s.sent_per_s,
                s.replies_per_s,
                s.loss * 100.0,
                us_or_dash(s.p50_us),
                us_or_dash(s.p99_us),
                s.failed_on.as_deref().unwrap_or("pass")
            );
        }
        match self.found_per_s {
            Some(rate) => {
                let _ = writeln!(
                    out,
                    "highest rate that passed: {rate}/s ({:.0} replies/s, p50 {} µs, p99 {} µs), \
                     in {} steps",
                    self.replies_per_s.unwrap_or(0.0),
                    us_or_dash(self.p50_us),
                    us_or_dash(self.p99_us),
                    self.steps.len()
                );
            }
            None => {
                let _ = writeln!(out, "no rate passed, in {} steps", self.steps.len());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BenchArgs;

    /// A summary of a run at `rate` against a server that carries up to
    /// `capacity` requests per second and loses the rest.
    fn fake_run(plan: &Plan, capacity: u64) -> Summary {
        let rate = plan.rate.unwrap();
        let sent = rate;
        let correct = rate.min(capacity);
        let over = rate > capacity;
        let json = format!(
            r#"{{"version":"t","timestamp":"t","server":"127.0.0.1:1","transport":"udp",
            "mode":"flood","size":32,"window":64,"sockets":1,"duration_s":1.0,"sent":{sent},
            "correct":{correct},"wrong":0,"late":0,"lost":{},"duplicates":0,"send_errors":0,
            "refused":0,"replies_per_s":{correct},"payload_mb_per_s":0.0,"sent_per_s":{sent},
            "latency_from":"intended","samples":{correct},"min_us":1.0,"mean_us":1.0,
            "stddev_us":0.0,"p50_us":50.0,"p90_us":60.0,"p99_us":{},"p999_us":1.0,
            "max_us":1.0,"behind_schedule":false,"interval_s":1.0,"intervals":[]}}"#,
            sent - correct,
            if over { 90_000.0 } else { 80.0 }
        );
        json.parse().unwrap()
    }

    fn plan(args: &[&str]) -> Plan {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let argv = ["bench", "--server", "127.0.0.1:1", "--find-rate"];
        let cli = Cli::try_parse_from(argv.iter().chain(args)).unwrap();
        Plan::new(&cli.bench).unwrap()
    }

    #[test]
    fn the_search_finds_the_capacity_and_keeps_the_curve() {
        let search = find_rate(&plan(&[]), |p| Ok(fake_run(p, 50_000))).unwrap();
        let found = search.found_per_s.unwrap();
        assert!((47_620..=50_000).contains(&found), "{search:?}");
        assert_eq!(search.steps[0].offered_per_s, 1_000);
        assert!(search.steps.iter().any(|s| !s.passed));
        let failed = search.steps.iter().find(|s| !s.passed).unwrap();
        assert!(
            failed.failed_on.as_deref().unwrap().starts_with("loss "),
            "{failed:?}"
        );
        assert_eq!(search.failure(), None);
        assert_eq!(search.replies_per_s, Some(found as f64));
        // The JSON reads back whole.
        let json = serde_json::to_string(&search).unwrap();
        assert_eq!(json.parse::<RateSearch>().unwrap(), search);
        let table = search.render();
        assert!(
            table.contains(&format!("highest rate that passed: {found}/s")),
            "{table}"
        );
        assert_eq!(
            table.lines().filter(|l| l.ends_with("pass")).count(),
            search.steps.iter().filter(|s| s.passed).count(),
            "{table}"
        );
    }

    #[test]
    fn a_p99_over_the_bound_fails_a_step_without_loss() {
        let search = find_rate(&plan(&["--max-loss", "99%"]), |p| Ok(fake_run(p, 3_000))).unwrap();
        let failed = search.steps.iter().find(|s| !s.passed).unwrap();
        assert_eq!(
            failed.failed_on.as_deref(),
            Some("p99 90000.0 µs over 10000.0 µs")
        );
    }

    #[test]
    fn a_server_too_slow_for_every_step_fails_the_search() {
        let search = find_rate(&plan(&["--max-steps", "3"]), |p| Ok(fake_run(p, 10))).unwrap();
        assert_eq!(search.steps.len(), 3);
        assert_eq!(search.found_per_s, None);
        let why = search.failure().unwrap();
        assert!(
            why.starts_with("no rate kept loss at most 0.100 %"),
            "{why}"
        );
        assert!(why.ends_with("down to 250/s"), "{why}");
    }
}
