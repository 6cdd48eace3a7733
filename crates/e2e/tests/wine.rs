//! The Windows programs (x86_64-pc-windows-gnu) under Wine, against
//! Linux-native peers on loopback: what issue 12 asks of a Windows build
//! without a Windows machine. `cargo xtask wine` builds the programs, sets
//! up Wine and runs this file (feature `wine`); it says where everything is
//! in the environment:
//! - `UPCASE_WINE`: the program that runs a Windows program (`wine64`);
//! - `UPCASE_WINDOWS_SERVER`, `UPCASE_WINDOWS_CLIENT`: the `.exe` files;
//! - `WINEPREFIX` and Wine's other variables, for `wine64` to inherit.
//!
//! Each test fails, rather than skips, when one is missing: the feature is
//! only turned on by what sets them.
//!
//! Under Wine the program's pid is `wine64`'s (it runs the program in its
//! own process), so a SIGINT to the child reaches the program as the
//! console's Ctrl-C (CTRL_C_EVENT), which is how a stop is tested here.
//! Ready lines are read from the pipe as they come; nothing waits for a
//! pipe's end, which a Wine service started on the side could hold open.

use std::ffi::OsString;
use std::net::UdpSocket;
use std::process::{Command, Output};

use upcase_e2e::fake_server::{FakeServer, silent};
use upcase_e2e::{
    PATIENCE, Process, ServerProcess, Signal, Stopped, assert_success, client, crate_file,
    lowercase_text, python3, run_with_input,
};
use upcase_proto::{MAX_PAYLOAD_V4, uppercase};

/// What the textbook's examples send, plus the edges: ASCII, a longer
/// uppercase, bytes that are not UTF-8, nothing, and the largest IPv4
/// datagram (as one line, so the Python client sends it as one datagram).
fn textbook_lines() -> Vec<Vec<u8>> {
    vec![
        b"hello, world".to_vec(),
        "stra\u{df}e".as_bytes().to_vec(),
        b"caf\xe9 \xff ok".to_vec(),
        Vec::new(),
        lowercase_text(0, MAX_PAYLOAD_V4),
    ]
}

/// The lines as stdin, each ended by a newline.
fn input(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [&l[..], b"\n"].concat())
        .collect()
}

/// What a correct peer prints for `lines`: each one's uppercase on a line.
fn expected(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [uppercase(l), b"\n".to_vec()].concat())
        .collect()
}

fn setting(name: &str) -> OsString {
    std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is not set: run these tests with `cargo xtask wine`, which sets it")
    })
}

/// `wine64 <the Windows program>`, arguments to follow.
fn windows(program: &str) -> Command {
    let mut command = Command::new(setting("UPCASE_WINE"));
    command.arg(setting(program));
    command
}

fn windows_server(args: &[&str]) -> ServerProcess {
    ServerProcess::start_command(windows("UPCASE_WINDOWS_SERVER").args(args))
}

fn windows_client(args: &[&str], stdin: &[u8]) -> Output {
    run_with_input(windows("UPCASE_WINDOWS_CLIENT").args(args), stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Ctrl-C, as the console delivers it, and the clean stop after it: exit
/// 0, one summary line, nothing that looks like a crash.
fn ctrl_c(server: ServerProcess) -> Stopped {
    let stopped = server.stop_with(Signal::SIGINT);
    assert!(
        stopped.status.success(),
        "the Windows server after Ctrl-C: {}\n{}",
        stopped.status,
        stopped.stderr
    );
    // The console handler's word for it, not a SIGINT the C runtime took.
    assert!(
        stopped.stderr.contains("Ctrl-C: stopping"),
        "{}",
        stopped.stderr
    );
    let summaries = stopped.stderr.lines().filter(|l| l.contains("summary:"));
    assert_eq!(summaries.count(), 1, "{}", stopped.stderr);
    for crash in ["panicked", "page fault", "Unhandled exception"] {
        assert!(!stopped.stderr.contains(crash), "{}", stopped.stderr);
    }
    stopped
}

#[test]
fn the_windows_server_answers_linux_and_python_clients_and_stops_on_ctrl_c() {
    // The default bind: `[::]` with IPV6_V6ONLY off, which Windows (and
    // Wine) would leave on: both loopbacks must be answered.
    let server = windows_server(&["--port", "0"]);
    let port = server.addr().port().to_string();
    let lines = textbook_lines();
    for host in ["127.0.0.1", "::1"] {
        let out = client(&["--server", host, "--port", &port], &input(&lines));
        assert_success(&out, "upcase-client (Linux)");
        assert_eq!(text(&out.stdout), text(&expected(&lines)), "over {host}");
        assert_eq!(out.stdout, expected(&lines), "over {host}, byte for byte");
    }
    let python = run_with_input(
        python3()
            .arg(crate_file("python/udp_client.py"))
            .args(["127.0.0.1", &port]),
        &input(&lines),
    );
    assert_success(&python, "udp_client.py");
    assert_eq!(python.stdout, expected(&lines), "the textbook client");

    let stopped = ctrl_c(server);
    assert!(
        stopped.stderr.contains("portable I/O"),
        "Windows has the portable path only: {}",
        stopped.stderr
    );
    let udp = stopped.udp();
    let sent = 3 * lines.len() as u64;
    assert_eq!((udp.received, udp.replied), (sent, sent), "{udp:?}");
    assert_eq!(udp.invalid_utf8, 3, "{udp:?}");
}

#[test]
fn the_windows_client_talks_to_the_linux_server() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let port = server.addr().port().to_string();
    let udp = ["--server", "127.0.0.1", "--port", &port];

    // Pipe mode: Windows line endings, Unix ones, and a last line without.
    let out = windows_client(&udp, "hello\r\nstra\u{df}e\nlast line".as_bytes());
    assert_success(&out, "upcase-client.exe, pipe mode");
    assert_eq!(text(&out.stdout), "HELLO\nSTRASSE\nLAST LINE\n");

    let out = windows_client(&[&udp[..], &["one", "shot", "words"]].concat(), b"");
    assert_success(&out, "upcase-client.exe, one-shot");
    assert_eq!(text(&out.stdout), "ONE SHOT WORDS\n");

    let out = windows_client(&[&["--tcp"], &udp[..]].concat(), b"over tcp\nend\n");
    assert_success(&out, "upcase-client.exe --tcp");
    assert_eq!(text(&out.stdout), "OVER TCP\nEND\n");

    let stopped = server.stop_with(Signal::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.udp().replied, 4, "{}", stopped.stderr);
    assert_eq!(stopped.tcp().accepted, 1, "{}", stopped.stderr);
}

#[test]
fn the_windows_client_retries_a_silent_server_then_exits_3() {
    let server = FakeServer::start(silent);
    let port = server.port();
    let out = windows_client(
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--timeout",
            "200ms",
            "--retries",
            "2",
            "anyone?",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "error: no reply from {} after 3 tries (timeout 200ms)",
            server.addr
        )
    );
    assert!(out.stdout.is_empty());
    assert_eq!(server.received(), [b"anyone?"; 3]);
}

#[test]
fn the_windows_server_refuses_a_busy_port_in_one_line() {
    // Held by a Linux socket without SO_REUSEADDR, which Wine honours as
    // Linux does (real Windows would need SO_EXCLUSIVEADDRUSE, which the
    // server sets, to refuse a sharer; Wine cannot show that).
    let holder = UdpSocket::bind("127.0.0.1:0").expect("hold a port");
    let port = holder.local_addr().expect("held port").port().to_string();
    let mut command = windows("UPCASE_WINDOWS_SERVER");
    command.args(["--bind", "127.0.0.1", "--port", &port]);
    let out = Process::spawn(&mut command)
        .label("upcase-server.exe")
        .start()
        .and_then(|process| process.finish(PATIENCE))
        .unwrap_or_else(|err| panic!("{err:#}"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].contains(&format!("127.0.0.1:{port}")) && lines[0].contains("in use"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no ready line: {}",
        text(&out.stdout)
    );
}
