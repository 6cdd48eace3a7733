//! `upcase-client`'s command line as users meet it: options before `bench`,
//! what the bench reports, `--help` and `--version`.

use std::process::{Command, Output};

use upcase_e2e::{ServerProcess, binary, client, run_with_input};
use upcase_load::Summary;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn udp_server() -> ServerProcess {
    ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"])
}

#[test]
fn options_before_bench_run_the_bench_with_them() {
    let server = udp_server();
    let port = server.addr().port().to_string();
    let out = client(
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "bench",
            "--count",
            "20",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    assert!(json.contains("\"correct\":20,"), "{json}");
}

#[test]
fn bench_as_a_message_is_sent_after_a_double_dash() {
    let server = udp_server();
    let port = server.addr().port().to_string();
    let out = client(
        &["--server", "127.0.0.1", "--port", &port, "--", "bench"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "BENCH\n");
}

#[test]
fn options_that_do_not_apply_to_bench_are_refused_before_it() {
    let out = client(&["--timeout", "2s", "bench"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: --timeout does not apply to bench (a request unanswered for --loss-timeout is lost)"
    );
}

/// `upcase-client bench ARGS --json` against `server`'s UDP port; the
/// summary, read through the bench's own type, and the JSON as printed.
fn bench_json(server: &ServerProcess, args: &[&str]) -> (Summary, String) {
    let addr = server.addr().to_string();
    let mut argv = vec!["bench", "--server", &addr, "--json"];
    argv.extend_from_slice(args);
    let out = client(&argv, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    assert_eq!(json.lines().count(), 1, "one line: {json}");
    let summary = json
        .parse()
        .unwrap_or_else(|e| panic!("not a bench summary ({e}): {json}"));
    (summary, json)
}

#[test]
fn a_bench_of_count_requests_reports_the_rate_over_the_time_it_took() {
    let server = udp_server();
    let (summary, json) = bench_json(
        &server,
        &["--mode", "ping", "--count", "50", "--duration", "10m"],
    );
    assert_eq!(
        (summary.counts.correct, summary.count),
        (50, Some(50)),
        "{json}"
    );
    // The run ended when the 50th reply came, long before the 10 minutes.
    let seconds = summary.duration_s;
    assert!(seconds > 0.0 && seconds < 600.0, "{json}");
    let replies = summary.replies_per_s * seconds;
    assert!((replies - 50.0).abs() <= 0.5, "{json}");
}

#[test]
fn a_warm_up_does_not_use_up_the_count() {
    let server = udp_server();
    // 100 ms of warm-up at 1,000 requests a second would be the whole count.
    let args = ["--count", "30", "--rate", "1000", "--warmup", "100ms"];
    let (summary, json) = bench_json(&server, &args);
    let counts = summary.counts;
    assert_eq!(counts.sent, 30, "{json}");
    // Replies to warm-up requests are not counted: never more than sent.
    assert!(
        counts.correct > 0 && counts.correct <= counts.sent,
        "{json}"
    );
    assert_eq!(summary.warmup_s, Some(0.1), "{json}");
}

#[test]
fn the_json_has_version_timestamp_statistics_and_intervals() {
    let server = udp_server();
    let (s, json) = bench_json(
        &server,
        &[
            "--window",
            "4",
            "--duration",
            "600ms",
            "--interval",
            "200ms",
        ],
    );
    let version = stdout(&client(&["--version"], b""));
    assert_eq!(
        Some(s.version.as_str()),
        version.trim().strip_prefix("upcase-client "),
        "{json}"
    );
    // RFC 3339 in UTC, to the second: 2026-11-02T10:11:12Z.
    let ts = s.timestamp.as_bytes();
    assert!(
        ts.len() == 20 && ts[4] == b'-' && ts[10] == b'T' && ts[19] == b'Z',
        "{json}"
    );
    // The names scripts read are still there, at the top.
    for key in [
        "replies_per_s",
        "p50_us",
        "p99_us",
        "lost",
        "wrong",
        "correct",
        "sent",
    ] {
        assert!(json.contains(&format!("\"{key}\":")), "no {key}: {json}");
    }
    assert!(s.samples > 0 && s.samples <= s.counts.correct, "{json}");
    let (min, mean, p50, max) = (s.min_us, s.mean_us, s.p50_us, s.max_us);
    assert!(
        min <= p50 && p50 <= max && min <= mean && mean <= max,
        "{json}"
    );
    assert!(s.stddev_us.is_some_and(|sd| sd >= 0.0), "{json}");
    // Rounded: 0.1 µs.
    let p99 = s.p99_us.expect("timed");
    assert_eq!((p99 * 10.0).round() / 10.0, p99, "{json}");
    // Three intervals of 200 ms that add up to what the measurement sent.
    let bounds: Vec<(f64, f64)> = s.intervals.iter().map(|i| (i.start_s, i.end_s)).collect();
    assert_eq!(bounds, [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6)], "{json}");
    let sent: u64 = s.intervals.iter().map(|i| i.counts.sent).sum();
    assert_eq!(sent, s.counts.sent, "{json}");
    assert!(
        s.intervals
            .iter()
            .all(|i| i.samples > 0 && i.p50_us.is_some()),
        "{json}"
    );
    // Settings that were not given are left out.
    for absent in ["\"rate\"", "\"count\"", "\"warmup_s\"", "\"notes\""] {
        assert!(!json.contains(absent), "{absent} in {json}");
    }
}

#[test]
fn the_json_of_a_tcp_run_leaves_out_what_is_udp_only() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let (s, json) = bench_json(&server, &["--tcp", "--count", "20", "--rate", "5000"]);
    assert_eq!((s.counts.correct, s.rate), (20, Some(5000)), "{json}");
    assert_eq!((s.batch, s.gso, s.gro), (None, None, None), "{json}");
    for absent in ["\"batch\"", "\"gso\"", "\"gro\"", "\"io\""] {
        assert!(!json.contains(absent), "{absent} in {json}");
    }
}

#[test]
fn the_table_shows_min_mean_deviation_and_samples_beside_the_percentiles() {
    let server = udp_server();
    let addr = server.addr().to_string();
    let out = client(
        &[
            "bench", "--server", &addr, "--mode", "ping", "--count", "30",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let line = table
        .lines()
        .find(|l| l.starts_with("round trip"))
        .unwrap_or_else(|| panic!("no round-trip line: {table}"));
    assert!(
        line.starts_with("round trip (µs, 30 samples): min "),
        "{line}"
    );
    for word in ["  mean ", "  sd ", "  p50 ", "  p99 ", "  max "] {
        assert!(line.contains(word), "no {word:?} in {line}");
    }
}

#[test]
fn help_wraps_to_the_terminals_width() {
    for (args, width) in [(&["--help"][..], 50), (&["bench", "--help"], 64)] {
        let out = run_with_input(
            Command::new(binary("upcase-client"))
                .args(args)
                .env("COLUMNS", width.to_string()),
            b"",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let help = stdout(&out);
        assert!(help.lines().count() > 20, "{help}");
        // clap never breaks the usage line.
        for line in help.lines().filter(|l| !l.starts_with("Usage:")) {
            assert!(
                line.chars().count() <= width,
                "{args:?}: {line:?} is wider than {width}"
            );
        }
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(head.len(), 12, "the tests run in a git checkout");
    let out = client(&["--version"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let version = stdout(&out);
    let expected = format!("upcase-client {} ({head} ", env!("CARGO_PKG_VERSION"));
    assert!(
        version.starts_with(&expected),
        "{version:?} is not {expected:?}..."
    );
    assert!(version.ends_with(")\n"), "{version:?}");
}
