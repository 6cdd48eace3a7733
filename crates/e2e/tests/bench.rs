//! `upcase-client bench` against the real server and against a server that
//! answers wrongly: the JSON result counts what really came back.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::Output;

use upcase_bench::ClientRun;
use upcase_e2e::fake_server::{FakeServer, FakeTcpServer};
use upcase_e2e::{ServerProcess, client, free_tcp_port, free_udp_port};

/// Runs `upcase-client bench` against `addr` with `args` and `--json`.
fn bench(addr: SocketAddr, args: &[&str]) -> Output {
    let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
    let mut argv = vec!["bench", "--server", &ip, "--port", &port, "--json"];
    argv.extend_from_slice(args);
    client(&argv, b"")
}

/// The one JSON object on stdout (checked to be a single line that is an
/// object), read by the bench's own reader.
fn run_of(out: &Output) -> ClientRun {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line expected, got {stdout:?}");
    let line = lines[0].trim();
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    ClientRun::from_stdout(line).unwrap_or_else(|err| panic!("{err:#}"))
}

/// A round-trip time that a run with correct replies has.
fn latency(value: Option<f64>, run: &ClientRun) -> f64 {
    value.unwrap_or_else(|| panic!("no latency in {run:?}"))
}

fn assert_clean_run(out: &Output) -> ClientRun {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    // Not a terminal: no progress bar, no escape sequences.
    assert!(
        !stderr.contains('\x1b'),
        "progress bar drawn into a pipe: {stderr:?}"
    );
    let run = run_of(out);
    assert!(run.correct > 0, "{run:?}");
    assert_eq!(run.wrong, 0, "{run:?}");
    assert!(run.sent >= run.correct, "{run:?}");
    assert!(run.replies_per_s > 0.0, "{run:?}");
    assert!(
        latency(run.p50_us, &run) <= latency(run.p99_us, &run),
        "{run:?}"
    );
    assert!(
        latency(run.p99_us, &run) <= latency(run.max_us, &run),
        "{run:?}"
    );
    run
}

#[test]
fn ping_against_the_real_server() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let out = bench_words(server.loopback_addr(), "--mode ping --duration 300ms");
    let run = assert_clean_run(&out);
    assert_eq!(run.mode, "ping", "{run:?}");
    assert_eq!(run.window, 1, "{run:?}");
}

#[test]
fn flood_against_the_real_server() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let out = bench_words(
        server.loopback_addr(),
        "--mode flood --window 16 --duration 300ms --size 100",
    );
    let run = assert_clean_run(&out);
    assert_eq!(run.window, 16, "{run:?}");
    assert_eq!(run.size, 100, "{run:?}");
}

#[test]
fn paced_flood_over_several_sockets() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let out = bench_words(
        server.loopback_addr(),
        "--window 8 --sockets 3 --rate 2000 --duration 250ms",
    );
    let run = assert_clean_run(&out);
    // Pacing allows the first request at once, then one per 0.5 ms: at most
    // 501 in 0.25 s, however fast the server answers.
    assert!((1..=501).contains(&run.sent), "{run:?}");
}

/// Asserts a run failed with an error naming wrong replies, and returns the
/// result it still printed, with what came back.
fn failed_on_wrong_replies(out: &Output) -> ClientRun {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong server must fail the run");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains("wrong replies")),
        "{stderr}"
    );
    run_of(out)
}

#[test]
fn wrong_replies_are_counted_and_fail_the_run() {
    // Echoes every datagram in lowercase, as a broken server might.
    let server = FakeServer::start(|_, request, _| vec![request.to_ascii_lowercase()]);
    let out = bench(server.addr, &["--window", "4", "--duration", "200ms"]);
    let run = failed_on_wrong_replies(&out);
    assert!(run.wrong > 0, "{run:?}");
    assert_eq!(run.correct, 0, "{run:?}");
    assert_eq!(
        run.p50_us, None,
        "no latency without a correct reply: {run:?}"
    );
}

#[test]
fn no_server_is_an_error_not_a_hang() {
    // A port nobody listens on: every request is refused or lost.
    let port = free_udp_port().expect("free port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let out = bench(addr, &["--duration", "200ms", "--loss-timeout", "50ms"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("error: no correct reply"), "{stderr}");
    assert_eq!(run_of(&out).correct, 0);
}

#[test]
fn bad_options_are_one_line_errors() {
    let out = client(&["bench", "--window", "0"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// [`bench`] with its options as one string of words.
fn bench_words(addr: SocketAddr, options: &str) -> Output {
    bench(addr, &options.split_whitespace().collect::<Vec<_>>())
}

/// A clean TCP run: besides [`assert_clean_run`], every request sent was
/// answered correctly (a stream loses nothing).
fn assert_clean_tcp_run(out: &Output) -> ClientRun {
    let run = assert_clean_run(out);
    assert_eq!(run.transport, "tcp", "{run:?}");
    assert_eq!(run.correct, run.sent, "{run:?}");
    assert_eq!(run.lost, 0, "{run:?}");
    run
}

#[test]
fn tcp_ping_against_the_real_server() {
    let server =
        ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--transport", "tcp"]);
    let out = bench_words(server.tcp_addr(), "--tcp --mode ping --duration 300ms");
    let run = assert_clean_tcp_run(&out);
    assert_eq!(run.mode, "ping", "{run:?}");
    assert_eq!(run.window, 1, "{run:?}");
    assert_eq!(run.sockets, 1, "{run:?}");
}

#[test]
fn tcp_flood_over_several_connections_on_the_udp_port() {
    // Both transports, one port: --tcp reaches the TCP side of it.
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    assert_eq!(server.tcp_addr(), server.addr(), "{}", server.ready.line());
    let out = bench_words(
        server.tcp_addr(),
        "--tcp --window 32 --sockets 4 --size 100 --duration 300ms",
    );
    let run = assert_clean_tcp_run(&out);
    assert_eq!(run.sockets, 4, "{run:?}");
    assert_eq!(run.size, 100, "{run:?}");
}

#[test]
fn tcp_flood_over_ipv6_with_large_paced_requests() {
    let server = ServerProcess::start(&["--bind", "::1", "--port", "0", "--transport", "tcp"]);
    let addr = server.tcp_addr();
    assert!(addr.is_ipv6(), "{addr}");
    let out = bench_words(
        addr,
        "--tcp --window 8 --sockets 2 --size 20000 --rate 2000 --duration 300ms",
    );
    let run = assert_clean_tcp_run(&out);
    assert!(run.server.starts_with("[::1]:"), "{run:?}");
    assert!((1..=601).contains(&run.sent), "paced: {run:?}");
}

#[test]
fn tcp_wrong_replies_are_counted_and_fail_the_run() {
    let server = FakeTcpServer::start(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            buf[..n].make_ascii_lowercase();
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let out = bench_words(server.addr, "--tcp --window 4 --duration 200ms");
    let run = failed_on_wrong_replies(&out);
    assert!(run.wrong > 4, "wrong replies free the window: {run:?}");
    assert_eq!(run.correct, 0, "{run:?}");
    assert_eq!(run.wrong, run.sent, "{run:?}");
}

/// Asserts a failed run that printed nothing but one `error:` line
/// containing each of `words`.
fn assert_one_error_line(out: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for word in words {
        assert!(stderr.contains(word), "no {word:?} in {stderr}");
    }
}

#[test]
fn tcp_to_a_closed_port_is_one_error_line() {
    let port = free_tcp_port().expect("free port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let out = bench_words(addr, "--tcp --duration 300ms");
    assert_one_error_line(
        &out,
        &[&format!("cannot connect to {addr}"), "Connection refused"],
    );
}

#[test]
fn tcp_connection_closed_by_the_server_is_an_error() {
    let server = FakeTcpServer::start(|mut stream| {
        // Takes the first request whole, answers nothing, and closes.
        let mut first = [0u8; 32];
        let _ = stream.read_exact(&mut first);
        let _ = stream.shutdown(Shutdown::Both);
    });
    let addr = server.addr.to_string();
    let out = bench_words(server.addr, "--tcp --mode ping --duration 300ms");
    assert_one_error_line(&out, &[&addr, "closed the TCP connection"]);
}

#[test]
fn tcp_options_that_do_not_fit_are_one_line_errors() {
    for (args, words) in [
        (&["bench", "--tcp", "--gso"][..], &["--gso", "--tcp"][..]),
        (
            &["bench", "--tcp", "--size", "8", "--server", "127.0.0.1"],
            &["--size", "9 bytes"],
        ),
    ] {
        let out = client(args, b"");
        assert_one_error_line(&out, words);
    }
}
