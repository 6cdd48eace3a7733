//! What `upcase-client bench --json` prints, read into a type: one flat
//! object on one line ([`ClientRun`]; with `--find-rate`,
//! [`ClientRateSearch`]). The fields are the ones this project reads (the
//! bench's rows and the end-to-end tests of `upcase-client bench`); the
//! others are passed over, so the load tool may print more.

use anyhow::Context;
use serde::Deserialize;

/// One run of `upcase-client bench --json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ClientRun {
    /// The address it loaded.
    pub server: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// `ping` or `flood`.
    pub mode: String,
    /// Bytes per request.
    pub size: u64,
    pub window: u64,
    /// UDP sockets or TCP connections.
    pub sockets: u64,
    /// Requests sent during the measurement.
    pub sent: u64,
    /// Replies that were exactly the uppercase of their request.
    pub correct: u64,
    /// Replies that were not.
    pub wrong: u64,
    /// Requests without a reply within the loss timeout.
    pub lost: u64,
    /// Correct replies per second.
    pub replies_per_s: f64,
    /// Round-trip times, `None` (null) without a correct reply.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
}

/// One run of `upcase-client bench --find-rate --json`: the search.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ClientRateSearch {
    pub server: String,
    /// The highest offered rate that passed; `None` (null) if none did.
    pub found_per_s: Option<u64>,
    /// Every step, in the order run.
    pub steps: Vec<ClientStep>,
}

/// One step of a search.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ClientStep {
    pub offered_per_s: u64,
    pub sent_per_s: f64,
    pub replies_per_s: f64,
    pub wrong: u64,
    pub lost: u64,
    /// `lost` over sent.
    pub loss: f64,
    /// Round trips from the intended send times.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub passed: bool,
    /// Why it failed (`None` when it passed).
    #[serde(default)]
    pub failed_on: Option<String>,
}

/// The object on the client's stdout: its last line that starts with `{`.
fn last_object<T: serde::de::DeserializeOwned>(stdout: &str) -> anyhow::Result<T> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with('{'))
        .context("upcase-client printed no JSON object")?;
    serde_json::from_str(line).with_context(|| format!("upcase-client's JSON {line:?}"))
}

impl ClientRun {
    /// Reads the object from the client's stdout: its last line that starts
    /// with `{`.
    pub fn from_stdout(stdout: &str) -> anyhow::Result<ClientRun> {
        last_object(stdout)
    }
}

impl ClientRateSearch {
    /// Reads the object from the client's stdout, as [`ClientRun`] does.
    pub fn from_stdout(stdout: &str) -> anyhow::Result<ClientRateSearch> {
        last_object(stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"{"server":"127.0.0.1:4000","transport":"udp","mode":"flood","size":32,"window":64,"sockets":1,"batch":64,"sent":900,"correct":895,"wrong":2,"late":0,"lost":3,"replies_per_s":250000.5,"p50_us":40.0,"p99_us":null,"max_us":90.5,"notes":[]}"#;

    #[test]
    fn the_last_object_is_read_and_extra_fields_are_passed_over() {
        let run = ClientRun::from_stdout(&format!("note\n{{\"lost\": 1}}\n{RUN}\n")).unwrap();
        assert_eq!(run.replies_per_s, 250000.5);
        assert_eq!(
            (run.sent, run.correct, run.wrong, run.lost),
            (900, 895, 2, 3)
        );
        assert_eq!(
            (run.p50_us, run.p99_us, run.max_us),
            (Some(40.0), None, Some(90.5))
        );
        assert_eq!(
            (run.mode.as_str(), run.transport.as_str()),
            ("flood", "udp")
        );
        assert_eq!((run.size, run.window, run.sockets), (32, 64, 1));
    }

    #[test]
    fn a_missing_field_or_no_object_is_an_error() {
        assert!(ClientRun::from_stdout("{\"lost\": 0}").is_err());
        assert!(ClientRun::from_stdout(&RUN.replace("\"lost\":3,", "")).is_err());
        assert!(ClientRun::from_stdout(&RUN.replace("250000.5", "null")).is_err());
        assert!(ClientRun::from_stdout("no json").is_err());
    }

    #[test]
    fn a_search_is_read_with_its_steps() {
        let out = r#"{"server":"127.0.0.1:4000","found_per_s":null,"max_loss":0.001,"steps":[{"offered_per_s":1000,"sent_per_s":999.0,"replies_per_s":990.0,"sent":1000,"correct":990,"wrong":0,"lost":10,"loss":0.01,"p50_us":40.0,"p99_us":null,"passed":false,"failed_on":"loss"}]}"#;
        let search = ClientRateSearch::from_stdout(out).unwrap();
        assert_eq!(search.found_per_s, None);
        assert_eq!(search.steps.len(), 1);
        let step = &search.steps[0];
        assert_eq!(
            (step.offered_per_s, step.lost, step.passed),
            (1000, 10, false)
        );
        assert_eq!((step.p50_us, step.p99_us), (Some(40.0), None));
        assert_eq!(step.failed_on.as_deref(), Some("loss"));
        assert!(ClientRateSearch::from_stdout(&out.replace("\"steps\"", "\"s\"")).is_err());
    }
}
