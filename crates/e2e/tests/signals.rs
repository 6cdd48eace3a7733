//! The server's signals, against the real binary: a stop signal sent twice
//! (as `timeout(1)` does: to the child, then to its process group) keeps
//! the summary and the exit status 0; a third exits at once with status 1
//! and says so; SIGHUP stops like SIGTERM; SIGUSR1 logs the counters so far
//! and the server goes on serving.
//!
//! A stop is held open, where a test needs it to last, by a TCP connection
//! left open under a long `--stop-grace`; each signal is sent only once the
//! server has said it took the one before, so that no two can be merged
//! into one (the kernel, and signal-hook after it, keep at most one of each
//! signal pending). The runs under `timeout(1)` get their two signals as
//! timeout sends them, which may or may not be merged.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Instant;

use upcase_e2e::tcp::{connect, read_exactly};
use upcase_e2e::udp::{ask, client};
use upcase_e2e::{PATIENCE, ServerProcess, Signal, Stopped, Summary, binary, run_with_input};

/// Serves UDP and TCP on loopback with two threads, `extra` added to the
/// command line.
fn start(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--bind", "127.0.0.1", "--port", "0", "--threads", "2"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

/// The lines of a stopped server's log that contain `needle`.
fn lines_with<'a>(stopped: &'a Stopped, needle: &str) -> Vec<&'a str> {
    stopped
        .stderr
        .lines()
        .filter(|l| l.contains(needle))
        .collect()
}

/// The one summary of a stopped server; fails unless there is exactly one.
fn only_summary(stopped: &Stopped) -> Summary {
    let summaries = lines_with(stopped, "summary:");
    assert_eq!(summaries.len(), 1, "{}", stopped.stderr);
    stopped.summary()
}

/// A TCP connection the server has accepted and answered once, left open:
/// a stop waits for it, up to `--stop-grace`.
fn hold_a_connection(server: &ServerProcess) -> TcpStream {
    let mut held = connect(server.addr());
    held.write_all(b"held").expect("send");
    assert_eq!(read_exactly(&mut held, 4), b"HELD");
    held
}

/// The keys of a `key=N ...` line, in order.
fn keys(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('=').map(|(key, _)| key))
        .collect()
}

/// `timeout -s SIGNAL 1 upcase-server ...`, several at once: each must exit
/// 0 with one summary. `--preserve-status` makes timeout exit with the
/// server's status, rather than 124 whatever the server did.
fn under_timeout(signal: &str, runs: usize) {
    let outputs: Vec<_> = thread::scope(|s| {
        let runs: Vec<_> = (0..runs)
            .map(|_| {
                s.spawn(|| {
                    run_with_input(
                        Command::new("timeout")
                            .args(["--preserve-status", "-s", signal, "1"])
                            .arg(binary("upcase-server"))
                            .args(["--bind", "127.0.0.1", "--port", "0"]),
                        b"",
                    )
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("no panic"))
            .collect()
    });
    for out in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.starts_with("The server is ready to receive on "),
            "not ready before the signal? stdout {stdout:?}, stderr:\n{stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", out.status);
        let summaries = stderr.lines().filter(|l| l.contains("summary:")).count();
        assert_eq!(summaries, 1, "{stderr}");
        assert!(stderr.contains(&format!("{signal}: stopping")), "{stderr}");
    }
}

#[test]
fn under_timeout_sigint_always_ends_in_a_summary_and_status_0() {
    under_timeout("SIGINT", 6);
}

#[test]
fn under_timeout_sigterm_always_ends_in_a_summary_and_status_0() {
    under_timeout("SIGTERM", 6);
}

/// Two stop signals, the second while the first's stop is under way.
fn stopped_twice_by(signal: Signal, name: &str) {
    let mut server = start(&["--stop-grace", "60s"]);
    let client = client(server.addr());
    assert_eq!(ask(&client, b"before the stop"), b"BEFORE THE STOP");
    let held = hold_a_connection(&server);
    server.signal(signal);
    server.wait_for_log(&format!("{name}: stopping"), 1);
    server.signal(signal);
    let under_way = server.wait_for_log("the stop is already under way", 1);
    assert!(under_way.contains(name), "{under_way}");
    // The stop ends when the last connection does.
    held.shutdown(Shutdown::Both).expect("close");
    let stopped = server.exit();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    let summary = only_summary(&stopped);
    assert_eq!((summary.udp.received, summary.udp.replied), (1, 1));
    let tcp = summary.tcp.expect("TCP counters");
    assert_eq!((tcp.accepted, tcp.closed_at_stop), (1, 0), "{summary:?}");
    assert!(
        lines_with(&stopped, "error:").is_empty(),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_second_sigterm_during_the_stop_keeps_the_summary_and_status_0() {
    stopped_twice_by(Signal::SIGTERM, "SIGTERM");
}

#[test]
fn a_second_sigint_during_the_stop_keeps_the_summary_and_status_0() {
    stopped_twice_by(Signal::SIGINT, "SIGINT");
}

#[test]
fn a_third_stop_signal_exits_at_once_and_says_so() {
    let mut server = start(&["--stop-grace", "60s"]);
    let _held = hold_a_connection(&server);
    // Any stop signal counts towards the three.
    server.signal(Signal::SIGTERM);
    server.wait_for_log("SIGTERM: stopping", 1);
    server.signal(Signal::SIGINT);
    server.wait_for_log("the stop is already under way", 1);
    server.signal(Signal::SIGHUP);
    let stopped = server.exit();
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.stderr);
    assert_eq!(
        lines_with(&stopped, "error:"),
        ["error: third stop signal: exiting without waiting"],
        "{}",
        stopped.stderr
    );
    assert!(
        lines_with(&stopped, "summary:").is_empty(),
        "no summary: it did not wait"
    );
}

#[test]
fn sighup_stops_cleanly_like_sigterm() {
    let server = start(&[]);
    let client = client(server.addr());
    for request in [&b"hang"[..], b"up", "straße".as_bytes()] {
        assert_eq!(ask(&client, request), upcase_proto::uppercase(request));
    }
    let stopped = server.stop_with(Signal::SIGHUP);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert_eq!(lines_with(&stopped, "SIGHUP: stopping").len(), 1);
    let summary = only_summary(&stopped);
    assert_eq!((summary.udp.received, summary.udp.replied), (3, 3));
}

#[test]
fn sigusr1_logs_the_counters_so_far_and_serving_goes_on() {
    let mut server = start(&[]);
    let client = client(server.addr());
    let requests: [&[u8]; 3] = [b"abc", "straße".as_bytes(), b"\xffz"];
    for request in requests {
        assert_eq!(ask(&client, request), upcase_proto::uppercase(request));
    }
    let mut stream = connect(server.addr());
    assert_eq!(upcase_e2e::tcp::exchange(&mut stream, b"tcp"), b"TCP");
    // A worker publishes its counts once per batch, just after the batch's
    // replies went out, and TCP counts a write once it is done: ask until
    // the line has caught up with what the clients saw answered.
    let deadline = Instant::now() + PATIENCE;
    let mut reports = 0;
    let (line, so_far) = loop {
        server.signal(Signal::SIGUSR1);
        reports += 1;
        let line = server.wait_for_log("counters so far:", reports);
        let so_far = Summary::parse(&line).expect("counters in the summary's format");
        let tcp = so_far.tcp.expect("TCP counters");
        if so_far.udp.replied == 3 && tcp.bytes_out == 3 {
            break (line, so_far);
        }
        assert!(
            Instant::now() < deadline,
            "the counters never caught up: {line}"
        );
    };
    let udp = so_far.udp;
    assert_eq!(
        (udp.received, udp.replied, udp.bytes_in, udp.bytes_out),
        (3, 3, 3 + 7 + 2, 3 + 7 + 2),
        "{line}"
    );
    assert_eq!((udp.invalid_utf8, udp.dropped_too_large), (1, 0), "{line}");
    let tcp = so_far.tcp.expect("TCP counters");
    assert_eq!(
        (tcp.accepted, tcp.bytes_in, tcp.bytes_out),
        (1, 3, 3),
        "{line}"
    );
    // Still serving, on both transports.
    assert_eq!(ask(&client, b"after the report"), b"AFTER THE REPORT");
    let mut stream = connect(server.addr());
    assert_eq!(upcase_e2e::tcp::exchange(&mut stream, b"again"), b"AGAIN");
    let stopped = server.stop_with(Signal::SIGTERM);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    let summary = only_summary(&stopped);
    assert_eq!(summary.udp.received, 4, "{summary:?}");
    assert_eq!(summary.tcp.map(|t| t.accepted), Some(2), "{summary:?}");
    let summary_line = Summary::line_in(&stopped.stderr).expect("a summary line");
    assert_eq!(
        keys(&line),
        keys(summary_line),
        "the report is in the summary's format"
    );
}
