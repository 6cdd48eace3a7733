//! The logs as operators read them, against the real binary: with
//! `--log-format json` every stderr line is one JSON object, the summary
//! and the SIGUSR1 report among them with numeric fields; colour only on a
//! terminal (a pseudo-terminal made by `script`, util-linux) and never with
//! `NO_COLOR` or `--color never`, always with `--color always`.

use std::io::Write;
use std::net::UdpSocket;
use std::process::Command;

use serde_json::Value;
use upcase_e2e::tcp::{connect, exchange};
use upcase_e2e::{PATIENCE, Process, ServerProcess, Signal, binary, tool};

const ESC: &str = "\x1b[";

/// The JSON objects of a log, each line parsed; fails on any line that is
/// not one.
fn objects(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}\nin:\n{log}"));
            assert!(value["level"].is_string(), "no level: {line}");
            assert!(value["fields"]["message"].is_string(), "no message: {line}");
            value
        })
        .collect()
}

/// The one object whose message is `message`.
fn the_one<'a>(objects: &'a [Value], message: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["fields"]["message"] == message)
        .collect();
    assert_eq!(found.len(), 1, "{message}: {found:?}");
    &found[0]["fields"]
}

#[test]
fn json_logs_are_one_object_per_line_with_numeric_counts() {
    let mut server = ServerProcess::start(&[
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--threads",
        "2",
        "--log-format",
        "json",
    ]);
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    for request in [&b"one"[..], b"two", b"three"] {
        client.send_to(request, server.addr()).expect("send");
        let mut buf = [0; 16];
        let n = client.recv(&mut buf).expect("reply");
        assert_eq!(&buf[..n], request.to_ascii_uppercase());
    }
    let mut stream = connect(server.tcp_addr());
    assert_eq!(exchange(&mut stream, b"tcp"), b"TCP");
    server.signal(Signal::SIGUSR1);
    server.wait_for_log("counters so far", 1);
    let stopped = server.stop_with(Signal::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let objects = objects(&stopped.stderr);
    assert!(objects.len() >= 5, "{}", stopped.stderr);
    let summary = the_one(&objects, "summary:");
    for (field, expected) in [
        ("received", 3),
        ("replied", 3),
        ("bytes_in", 11),
        ("bytes_out", 11),
        ("dropped_ratio", 0),
        ("tcp_accepted", 1),
        ("tcp_bytes_in", 3),
        ("tcp_bytes_out", 3),
        ("tcp_closed_at_stop", 0),
    ] {
        assert_eq!(
            summary[field].as_u64(),
            Some(expected),
            "{field} in {summary}"
        );
    }
    let so_far = the_one(&objects, "counters so far:");
    assert_eq!(so_far["received"].as_u64(), Some(3), "{so_far}");
    assert_eq!(so_far["tcp_accepted"].as_u64(), Some(1), "{so_far}");
    assert!(!stopped.stderr.contains(ESC), "no escapes in JSON");
}

#[test]
fn text_summary_without_tcp_has_no_tcp_fields() {
    let server =
        ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"]);
    let stopped = server.stop_with(Signal::SIGTERM);
    let line = upcase_e2e::Summary::line_in(&stopped.stderr)
        .expect("a summary")
        .to_string();
    assert_eq!(
        line,
        "summary: received=0 replied=0 bytes_in=0 bytes_out=0 invalid_utf8=0 dropped_too_large=0 send_errors=0 dropped_rate_limited=0 dropped_ratio=0"
    );
}

/// What a UDP server started with `args` and `env` logged into a pipe.
fn logged_into_a_pipe(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(binary("upcase-server"));
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"])
        .args(args)
        .env_remove("NO_COLOR")
        .envs(env.iter().copied());
    ServerProcess::start_command(&mut command)
        .stop_with(Signal::SIGTERM)
        .stderr
}

/// What a UDP server started with `args` and `env` showed on a terminal,
/// stopped by ^C typed there as a person would.
fn shown_on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut line = format!(
        "'{}' --bind 127.0.0.1 --port 0 --transport udp",
        binary("upcase-server").display()
    );
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let mut script = tool("script", "util-linux");
    script
        .args(["--quiet", "--flush", "--command", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied());
    let mut process = Process::spawn(&mut script)
        .piped_stdin()
        .start()
        .expect("script runs");
    process
        .wait_ready(PATIENCE)
        .expect("the ready line on the terminal");
    let mut keys = process.take_stdin().expect("the terminal's keys");
    keys.write_all(b"\x03").expect("type ^C");
    keys.flush().expect("type");
    process
        .wait_for_stdout(PATIENCE, |screen| {
            String::from_utf8_lossy(screen)
                .contains("summary:")
                .then_some(())
        })
        .expect("the summary after ^C");
    drop(keys);
    let out = process.finish(PATIENCE).expect("script ends");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_goes_only_to_a_terminal_without_no_color() {
    let terminal = shown_on_a_terminal(&[], &[]);
    assert!(
        terminal.contains(ESC),
        "no colour on a terminal:\n{terminal}"
    );
    for (args, env) in [
        (&[][..], &[("NO_COLOR", "1")][..]),
        (&["--color", "never"], &[]),
        (&[], &[("UPCASE_COLOR", "never")]),
    ] {
        let shown = shown_on_a_terminal(args, env);
        assert!(shown.contains("summary:"), "{shown}");
        assert!(
            !shown.contains(ESC),
            "colour with {args:?} {env:?}:\n{shown:?}"
        );
    }
}

#[test]
fn a_pipe_gets_colour_only_when_it_is_asked_for() {
    let plain = logged_into_a_pipe(&[], &[]);
    assert!(
        plain.contains("summary:") && !plain.contains(ESC),
        "{plain:?}"
    );
    let always = logged_into_a_pipe(&["--color", "always"], &[("NO_COLOR", "1")]);
    assert!(
        always.contains(ESC),
        "--color always wins over NO_COLOR: {always:?}"
    );
}
