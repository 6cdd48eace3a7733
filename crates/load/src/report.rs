//! The result of a run: one flat object, printed as a table or as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::args::{Mode, Plan, Transport};
use crate::engine::Run;

/// Everything one run measured. Serialized flat, so a script reads
/// `replies_per_s` or `p99_us` without knowing the layout.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub server: String,
    /// "udp", or "tcp" with `--tcp`.
    pub transport: Transport,
    pub mode: Mode,
    /// Bytes per request.
    pub size: usize,
    pub window: usize,
    /// UDP sockets, or TCP connections.
    pub sockets: usize,
    pub batch: usize,
    /// How long the measurement lasted: `--duration`, or less when
    /// `--count` requests were all answered (or lost) sooner.
    pub duration_s: f64,
    pub rate: Option<u64>,
    /// Requests were sent as UDP GSO trains.
    pub gso: bool,
    /// Replies were received with UDP GRO.
    pub gro: bool,
    /// Requests sent during the measurement.
    pub sent: u64,
    /// Replies that were exactly the uppercase of a request waited for.
    pub correct: u64,
    /// Replies that were not the uppercase of the request they name, or
    /// named none.
    pub wrong: u64,
    /// Correct replies to requests already counted lost.
    pub late: u64,
    /// Requests without a reply within the loss timeout.
    pub lost: u64,
    /// Second correct replies to one request.
    pub duplicates: u64,
    pub send_errors: u64,
    pub refused: u64,
    /// Correct replies per second of measurement.
    pub replies_per_s: f64,
    /// Reply payload (correct replies) in MB (10^6 bytes) per second.
    pub payload_mb_per_s: f64,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub mean_us: Option<f64>,
    /// What ran differently from what was asked (GSO or GRO missing).
    pub notes: Vec<String>,
}

impl Summary {
    pub(crate) fn new(plan: &Plan, run: Run) -> Summary {
        let t = &run.tally;
        // With --count the run may end before --duration: the rate is over
        // the time it took.
        let seconds = run.measured.as_secs_f64();
        let replies_per_s = if seconds > 0.0 {
            t.correct_in_time as f64 / seconds
        } else {
            0.0
        };
        let latency = t.latency();
        Summary {
            server: plan.server.to_string(),
            transport: plan.transport,
            mode: plan.mode,
            size: plan.size,
            window: plan.window,
            sockets: plan.sockets,
            batch: plan.batch,
            duration_s: seconds,
            rate: plan.rate,
            gso: run.gso,
            gro: run.gro,
            sent: t.sent,
            correct: t.correct,
            wrong: t.wrong,
            late: t.late,
            lost: t.lost,
            duplicates: t.duplicates,
            send_errors: t.send_errors,
            refused: t.refused,
            replies_per_s,
            payload_mb_per_s: replies_per_s * plan.size as f64 / 1e6,
            p50_us: latency.map(|l| l.p50_us),
            p90_us: latency.map(|l| l.p90_us),
            p99_us: latency.map(|l| l.p99_us),
            p999_us: latency.map(|l| l.p999_us),
            max_us: latency.map(|l| l.max_us),
            mean_us: latency.map(|l| l.mean_us),
            notes: run.notes,
        }
    }

    /// Why the server failed the run, if it did: a wrong reply, or no
    /// correct one at all.
    pub fn failure(&self) -> Option<String> {
        if self.wrong > 0 {
            Some(format!(
                "{} wrong replies from {} (not the uppercase of their request)",
                self.wrong, self.server
            ))
        } else if self.correct == 0 {
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

    /// The human-readable report.
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
        let rate = self
            .rate
            .map_or(String::new(), |r| format!(", paced at {r}/s"));
        let gso = match (self.gso, self.gro) {
            (true, true) => ", GSO send + GRO receive",
            (true, false) => ", GSO send",
            (false, true) => ", GRO receive",
            (false, false) => "",
        };
        let _ = writeln!(
            out,
            "{shape}, {} B requests, {} s against {}{rate}{gso}",
            self.size, self.duration_s, self.server
        );
        let _ = writeln!(
            out,
            "sent {}  correct {}  wrong {}  late {}  lost {}{}",
            self.sent,
            self.correct,
            self.wrong,
            self.late,
            self.lost,
            if self.duplicates > 0 {
                format!("  duplicates {}", self.duplicates)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "{:.0} replies/s, {:.2} MB/s of payload",
            self.replies_per_s, self.payload_mb_per_s
        );
        match (
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        ) {
            (Some(p50), Some(p90), Some(p99), Some(p999), Some(max)) => {
                let _ = writeln!(
                    out,
                    "round trip (µs): p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}"
                );
            }
            _ => {
                let _ = writeln!(out, "round trip: no correct reply to time");
            }
        }
        out
    }
}
