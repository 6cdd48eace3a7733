//! `upcase-client`'s command line as users meet it: options before `bench`,
//! what the bench reports, `--help` and `--version`.

use std::process::{Command, Output};

use upcase_e2e::{ServerProcess, binary, client, run_with_input};

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

/// The number after `"key":` in a one-line JSON object.
fn number(json: &str, key: &str) -> f64 {
    let pattern = format!("\"{key}\":");
    let at = json
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pattern.len();
    let text: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    text.parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn a_bench_of_count_requests_reports_the_rate_over_the_time_it_took() {
    let server = udp_server();
    let port = server.addr().port().to_string();
    let out = client(
        &[
            "bench",
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--mode",
            "ping",
            "--count",
            "50",
            "--duration",
            "10m",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    let (correct, seconds) = (number(&json, "correct"), number(&json, "duration_s"));
    assert_eq!(correct, 50.0, "{json}");
    // The run ended when the 50th reply came, long before the 10 minutes.
    assert!(seconds > 0.0 && seconds < 600.0, "{json}");
    let rate = number(&json, "replies_per_s");
    assert!((rate * seconds - correct).abs() <= 0.01 * correct, "{json}");
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
