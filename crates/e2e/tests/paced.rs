//! `upcase-client bench --rate` and `--find-rate` against the real server:
//! the JSON says where round trips are timed from, flags a sender that
//! cannot keep its rate, and a search finds a rate and keeps its curve.
//! (The stall that the correction exists for is in `stall.rs`.)

use std::process::Output;

use upcase_bench::ClientRateSearch;
use upcase_e2e::{ServerProcess, client};
use upcase_load::{LatencyFrom, RateSearch, Summary};

fn udp_server() -> ServerProcess {
    ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"])
}

/// `upcase-client bench --json` against `server` with `options`.
fn bench(server: &ServerProcess, options: &str) -> Output {
    let port = server.loopback_addr().port().to_string();
    let mut argv = vec!["bench", "--server", "127.0.0.1", "--port", &port, "--json"];
    argv.extend(options.split_whitespace());
    client(&argv, b"")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_closed_loop_is_timed_from_the_send_and_has_no_schedule() {
    let server = udp_server();
    let out = bench(&server, "--window 4 --count 200");
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Summary = stdout(&out).parse().expect("JSON");
    assert_eq!(s.latency_from, LatencyFrom::Sent, "{}", stdout(&out));
    assert_eq!(
        (s.behind_schedule, s.lateness_p99_us, s.lateness_max_us),
        (None, None, None),
        "{}",
        stdout(&out)
    );
    assert!(s.sent_per_s > 0.0, "{}", stdout(&out));
    assert!(stdout(&out).contains(r#""latency_from":"sent""#));
}

#[test]
fn a_sender_that_cannot_keep_the_rate_is_flagged() {
    // One request in flight cannot make a million round trips a second on
    // any machine: the schedule runs away from the sender.
    let server = udp_server();
    let out = bench(&server, "--mode ping --rate 1000000 --duration 300ms");
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Summary = stdout(&out).parse().expect("JSON");
    assert_eq!(s.latency_from, LatencyFrom::Intended, "{}", stdout(&out));
    assert_eq!(s.behind_schedule, Some(true), "{}", stdout(&out));
    assert!(s.sent_per_s < 990_000.0, "{}", stdout(&out));
    // By the end, requests went out far later than due, and their round
    // trips include that wait.
    let late = s.lateness_max_us.expect("lateness");
    assert!(late > 100_000.0, "{}", stdout(&out));
    assert!(s.p99_us.expect("p99") > 100_000.0, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("note: the sender fell behind --rate 1000000/s"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_sender_on_schedule_is_not_flagged() {
    let server = udp_server();
    // Behind would take a tenth of the requests leaving 20 ms late (1 % of
    // 2 s): the machine would have to hold this client back for a tenth of
    // the run, where a stall it recovers from makes only those late.
    let out = bench(&server, "--rate 2000 --duration 2s --loss-timeout 1s");
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Summary = stdout(&out).parse().expect("JSON");
    assert_eq!(s.behind_schedule, Some(false), "{}", stdout(&out));
    assert!(s.lateness_p90_us.is_some(), "{}", stdout(&out));
    // 4,000 requests due in 2 s, the first at once: a moment's delay at the
    // very end may leave a few unsent.
    assert!((3_900..=4_001).contains(&s.counts.sent), "{}", stdout(&out));
}

#[test]
fn find_rate_finds_a_rate_and_keeps_every_step() {
    let server = udp_server();
    // Loose bounds, so that the first steps pass on a busy machine too:
    // this checks the search, not the server. (A step the machine itself
    // delays may still fail on the sender's schedule; the search goes on.)
    let out = bench(
        &server,
        "--find-rate --rate 500 --max-steps 3 --duration 500ms --max-p99 1s --max-loss 50%",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    let search: RateSearch = json.parse().expect("JSON");
    assert_eq!(search.steps.len(), 3, "{json}");
    assert_eq!(search.steps[0].offered_per_s, 500, "{json}");
    assert_eq!(search.latency_from, LatencyFrom::Intended, "{json}");
    let passed = search.steps.iter().filter(|s| s.passed);
    assert_eq!(
        search.found_per_s,
        passed.map(|s| s.offered_per_s).max(),
        "{json}"
    );
    for (step, next) in search.steps.iter().zip(&search.steps[1..]) {
        // Higher after a pass (double, until a step has failed), lower
        // after a failure.
        if step.passed {
            assert!(next.offered_per_s > step.offered_per_s, "{json}");
        } else {
            assert!(next.offered_per_s < step.offered_per_s, "{json}");
        }
    }
    for step in &search.steps {
        assert!(step.sent > 0 && step.p99_us.is_some(), "{json}");
        assert_eq!(step.failed_on.is_none(), step.passed, "{json}");
    }
    // The bench reads the same line.
    let read = ClientRateSearch::from_stdout(&json).expect("the bench's reader");
    assert_eq!(read.found_per_s, search.found_per_s);
    assert_eq!(read.steps.len(), 3);
}

#[test]
fn find_rate_against_no_server_fails_with_one_error() {
    let port = upcase_e2e::free_udp_port().expect("free port").to_string();
    let out = client(
        &[
            "bench",
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--find-rate",
            "--max-steps",
            "2",
            "--duration",
            "100ms",
            "--loss-timeout",
            "50ms",
            "--json",
        ],
        b"",
    );
    assert!(!out.status.success());
    let errors: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", stderr(&out));
    assert!(errors[0].contains("no correct reply"), "{}", stderr(&out));
    let search: RateSearch = stdout(&out).parse().expect("JSON even so");
    assert_eq!((search.found_per_s, search.steps.len()), (None, 2));
}
