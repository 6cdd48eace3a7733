//! `upcase-client` against fake servers (`upcase_e2e::fake_server`) that
//! answer right, late, twice, wrongly, from elsewhere, or not at all.

use std::ffi::OsStr;
use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use upcase_e2e::fake_server::{FakeServer, silent, uppercasing};
use upcase_e2e::{PATIENCE, Process, binary, client, free_udp_port, run_with_input};
use upcase_proto::uppercase;

/// Runs the client against `server` on IPv4 loopback, with `extra` options.
fn ask(server: &FakeServer, extra: &[&str], input: &[u8]) -> Output {
    let port = server.port();
    let mut args = vec!["--server", "127.0.0.1", "--port", &port];
    args.extend_from_slice(extra);
    client(&args, input)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failure with exactly one line on stderr, and returns it.
fn one_error_line(out: &Output, status: i32) -> String {
    assert_eq!(out.status.code(), Some(status), "stderr: {}", stderr(out));
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    assert!(!err.contains("panicked"));
    lines[0].to_string()
}

#[test]
fn piped_lines_come_back_as_exactly_their_uppercase() {
    let server = FakeServer::start(uppercasing);
    let out = client(
        &["--server", "127.0.0.1", "--port", &server.port()],
        "a\nb\r\n\nstraße\nlast".as_bytes(),
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "A\nB\n\nSTRASSE\nLAST\n",
        "no prompt when piped"
    );
    assert_eq!(
        server.received(),
        [&b"a"[..], b"b", b"", "straße".as_bytes(), b"last"]
    );
}

#[test]
fn message_words_are_joined_into_one_datagram() {
    let server = FakeServer::start(uppercasing);
    let out = ask(&server, &["hello", "big", "world"], b"not read\n");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "HELLO BIG WORLD\n");
    assert_eq!(server.received(), [b"hello big world"]);
}

#[test]
fn bytes_that_are_not_utf8_pass_through_both_ways() {
    let server = FakeServer::start(uppercasing);
    let out = run_with_input(
        Command::new(binary("upcase-client"))
            .args(["--server", "127.0.0.1", "--port", &server.port()])
            .arg(OsStr::from_bytes(b"caf\xe9 \xff")),
        b"",
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(
        out.stdout, b"CAF\xe9 \xff\n",
        "raw bytes, not replacement characters"
    );
    assert_eq!(server.received(), [b"caf\xe9 \xff"]);

    let server = FakeServer::start(uppercasing);
    let out = client(
        &["--server", "127.0.0.1", "--port", &server.port()],
        b"\xfe\xffabc\n",
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(out.stdout, b"\xfe\xffABC\n");
}

#[test]
fn an_unexpected_reply_is_printed_with_a_warning() {
    let server = FakeServer::start(|_, _, _| vec![b"Not Upper".to_vec()]);
    let out = client(
        &["--server", "127.0.0.1", "--port", &server.port(), "x"],
        b"",
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "Not Upper\n");
    assert!(
        stderr(&out).contains("not the uppercase of the message"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn a_lost_datagram_is_sent_again() {
    let server = FakeServer::start(|n, request, peer| {
        if n == 0 {
            vec![]
        } else {
            uppercasing(n, request, peer)
        }
    });
    let out = ask(&server, &["--timeout", "500ms"], b"lost once\n");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "LOST ONCE\n");
    assert_eq!(server.received(), [b"lost once", b"lost once"]);
}

#[test]
fn no_reply_after_every_try_exits_3() {
    let server = FakeServer::start(silent);
    let start = Instant::now();
    let out = ask(&server, &["--timeout", "100ms"], b"anyone?\nnever sent\n");
    let elapsed = start.elapsed();
    let line = one_error_line(&out, 3);
    assert_eq!(
        line,
        format!(
            "error: no reply from {} after 3 tries (timeout 100ms)",
            server.addr
        )
    );
    assert!(out.stdout.is_empty());
    assert!(
        elapsed >= Duration::from_millis(300),
        "waited each try out: {elapsed:?}"
    );
    assert_eq!(server.received(), [b"anyone?"; 3]);
}

#[test]
fn retries_zero_means_one_try() {
    let server = FakeServer::start(silent);
    let out = ask(&server, &["--timeout", "50ms", "--retries", "0", "x"], b"");
    let line = one_error_line(&out, 3);
    assert_eq!(
        line,
        format!(
            "error: no reply from {} after 1 try (timeout 50ms)",
            server.addr
        )
    );
    assert_eq!(server.received(), [b"x"]);
}

#[test]
fn a_port_without_a_socket_is_refused_at_once() {
    let port = free_udp_port().expect("free port");
    // With a one-minute timeout, only the ICMP error can end this in time
    // (run_with_input gives up after PATIENCE).
    let out = client(
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--timeout",
            "60s",
            "x",
        ],
        b"",
    );
    let line = one_error_line(&out, 1);
    assert_eq!(
        line,
        format!("error: no server at 127.0.0.1:{port} (connection refused)")
    );
}

#[test]
fn a_late_reply_is_never_taken_for_the_next_lines_answer() {
    // The first "one" gets no reply; its retry does. When "two" arrives, the
    // reply to "one" comes again (late, as if delayed in the network) just
    // before the right one.
    let server = FakeServer::start(|n, request, _| match n {
        0 => vec![],
        1 => vec![b"ONE".to_vec()],
        _ => vec![b"ONE".to_vec(), uppercase(request)],
    });
    let out = ask(&server, &["--timeout", "500ms"], b"one\ntwo\n");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "ONE\nTWO\n");
    assert!(
        !stderr(&out).contains("WARN"),
        "a late reply is expected: {}",
        stderr(&out)
    );
    assert_eq!(server.received(), [&b"one"[..], b"one", b"two"]);
}

#[test]
fn a_late_reply_alone_is_no_answer() {
    // A server one step behind: it answers each datagram with the reply to
    // the one before. The client must not print "A" for "b".
    let server = FakeServer::start({
        let mut previous: Option<Vec<u8>> = None;
        move |_, request, _| previous.replace(uppercase(request)).into_iter().collect()
    });
    let out = ask(
        &server,
        &["--timeout", "500ms", "--retries", "1"],
        b"a\nb\n",
    );
    assert_eq!(stdout(&out), "A\nB\n", "stderr: {}", stderr(&out));
    assert!(out.status.success());
    // "a" twice (the first got nothing), "b" twice (the first got "A", late).
    assert_eq!(server.received(), [b"a", b"a", b"b", b"b"]);
}

#[test]
fn replies_queued_before_a_message_are_not_its_answer() {
    // The server answers the first "same" twice and the second not at all.
    // The duplicate is already waiting when the client sends the second
    // "same", so it must be discarded rather than printed as its answer.
    let server = FakeServer::start(|n, request, _| match n {
        0 => vec![uppercase(request), uppercase(request)],
        _ => vec![],
    });
    let mut child = Process::spawn(Command::new(binary("upcase-client")).args([
        "--server",
        "127.0.0.1",
        "--port",
        &server.port(),
        "--timeout",
        "100ms",
        "--retries",
        "0",
    ]))
    .piped_stdin()
    .start()
    .expect("spawn client");
    let mut stdin = child.take_stdin().expect("stdin");
    stdin.write_all(b"same\n").expect("first line");
    for _ in 0..2 {
        assert!(server.wait_sent(PATIENCE), "the server sent both replies");
    }
    stdin.write_all(b"same\n").expect("second line");
    drop(stdin);
    let out = child.finish(PATIENCE).expect("client exits");
    assert_eq!(stdout(&out), "SAME\n");
    let line = one_error_line(&out, 3);
    assert!(line.starts_with("error: no reply from"), "{line}");
}

#[test]
fn datagrams_from_another_address_are_ignored() {
    let rogue = UdpSocket::bind("127.0.0.1:0").expect("bind rogue");
    let server = FakeServer::start(move |_, request, peer| {
        // Not the server's address: the connected socket never sees it.
        rogue.send_to(b"FORGED", peer).expect("rogue send");
        vec![uppercase(request)]
    });
    let out = client(
        &["--server", "127.0.0.1", "--port", &server.port(), "hello"],
        b"",
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "HELLO\n");
    assert!(stderr(&out).is_empty(), "no warning: {}", stderr(&out));
}

#[test]
fn a_message_too_long_for_one_datagram_is_refused_and_the_rest_still_sent() {
    let server = FakeServer::start(uppercasing);
    // A line too long is skipped with a warning, the next one still goes,
    // and the exit says a line was not sent.
    let mut input = vec![b'a'; 65_508];
    input.extend_from_slice(b"\nnext\n");
    let out = client(&["--server", "127.0.0.1", "--port", &server.port()], &input);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "NEXT\n");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "a warning and the error: {err:?}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("line 1 not sent: message is longer"),
        "{err:?}"
    );
    assert_eq!(
        lines[1],
        "error: line 1 was not sent: message is longer than the largest UDP datagram over IPv4 (65507 bytes)"
    );
    let long_word = "a".repeat(65_508);
    let out = ask(&server, &[&long_word], b"");
    assert_eq!(
        one_error_line(&out, 1),
        "error: message is 65508 bytes, more than the largest UDP datagram over IPv4 (65507 bytes)"
    );
    // Short enough, but its uppercase is one byte longer: U+0149 becomes
    // U+02BC U+004E.
    let mut grows = "\u{149}".as_bytes().to_vec();
    grows.resize(65_507, b'a');
    let out = client(&["--server", "127.0.0.1", "--port", &server.port()], &grows);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("error: line 1 was not sent:") && last.contains("would be 65508 bytes"),
        "{last}"
    );
    assert_eq!(
        server.received(),
        vec![b"next".to_vec()],
        "only the short line was sent"
    );
}

#[test]
fn the_largest_datagram_goes_through() {
    let server = FakeServer::start(uppercasing);
    let input = vec![b'z'; 65_507];
    let out = client(&["--server", "127.0.0.1", "--port", &server.port()], &input);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let mut expected = vec![b'Z'; 65_507];
    expected.push(b'\n');
    assert_eq!(out.stdout, expected);
}

#[test]
fn ipv6_loopback_works_with_or_without_brackets() {
    let Ok(server) = FakeServer::try_start("[::1]:0", Box::new(uppercasing)) else {
        eprintln!("note: no IPv6 loopback here; skipping");
        return;
    };
    for host in ["::1", "[::1]"] {
        let out = client(&["--server", host, "--port", &server.port(), "v6"], b"");
        assert!(out.status.success(), "{host}: stderr: {}", stderr(&out));
        assert_eq!(stdout(&out), "V6\n");
    }
    assert_eq!(server.received(), [b"v6", b"v6"]);
}

#[test]
fn the_server_option_may_carry_the_port() {
    let server = FakeServer::start(uppercasing);
    let with_port = format!("127.0.0.1:{}", server.port());
    let out = client(&["--server", &with_port, "named port"], b"");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "NAMED PORT\n");
    // Two different ports is a command line to fix: nothing is sent.
    let out = client(&["--server", &with_port, "--port", "1", "never sent"], b"");
    assert_eq!(
        one_error_line(&out, 2),
        format!(
            "error: --server names port {} and --port says 1: give one",
            server.port()
        )
    );
    assert_eq!(server.received(), [b"named port"]);
    if let Ok(v6) = FakeServer::try_start("[::1]:0", Box::new(uppercasing)) {
        let bracketed = format!("[::1]:{}", v6.port());
        let out = client(&["--server", &bracketed, "v6"], b"");
        assert!(out.status.success(), "stderr: {}", stderr(&out));
        assert_eq!(stdout(&out), "V6\n");
    }
}

#[test]
fn localhost_is_resolved_through_the_system() {
    // If localhost also names ::1, nothing listens there on this port: the
    // refusal moves the client on to 127.0.0.1.
    let server = FakeServer::start(uppercasing);
    let out = client(
        &[
            "--server",
            "localhost",
            "--port",
            &server.port(),
            "--timeout",
            "60s",
        ],
        b"by name\n",
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "BY NAME\n");
}

#[test]
fn the_default_port_is_12000() {
    let out = client(&["--help"], b"");
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("[default: the port in --server, else 12000]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_command_lines_exit_2_with_one_line() {
    for args in [
        &["--nope"][..],
        &["--timeout", "0"],
        &["--timeout", "soon"],
        &["--port", "70000"],
        &["--retries", "many"],
    ] {
        let out = client(args, b"");
        one_error_line(&out, 2);
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let server = FakeServer::start(uppercasing);
    // The reader goes away before the first reply is written, as `| head -0`.
    let mut child = Process::spawn(Command::new(binary("upcase-client")).args([
        "--server",
        "127.0.0.1",
        "--port",
        &server.port(),
    ]))
    .piped_stdin()
    .closed_stdout()
    .start()
    .expect("spawn client");
    let mut stdin = child.take_stdin().expect("stdin");
    let writer = thread::spawn(move || {
        for _ in 0..100 {
            if stdin.write_all(b"line\n").is_err() {
                break;
            }
        }
    });
    let status = child.wait_within(PATIENCE).expect("client exits");
    let _ = writer.join();
    let stderr = child.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.lines().count() <= 1, "{stderr}");
    assert!(status.success(), "{status:?}: {stderr}");
}

#[test]
fn an_unresolvable_name_is_one_error_line() {
    // In fresh user, mount and network namespaces, with only a loopback that
    // is down and a resolver configuration naming 127.0.0.1, no query can
    // leave the machine.
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--net", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("note: unshare is missing or not permitted here; skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("upcase-e2e-resolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let resolv = dir.join("resolv.conf");
    let nsswitch = dir.join("nsswitch.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .expect("write");
    std::fs::write(&nsswitch, "hosts: files dns\n").expect("write");
    let script = r#"mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf || exit 99; shift 2; exec "$@""#;
    let out = run_with_input(
        Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--net",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&resolv)
            .arg(&nsswitch)
            .arg(binary("upcase-client"))
            .args(["--server", "upcase-e2e.invalid", "x"]),
        b"",
    );
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.code() == Some(99) {
        eprintln!("note: cannot bind-mount in a private namespace here; skipping");
        return;
    }
    let line = one_error_line(&out, 1);
    assert!(
        line.starts_with("error: cannot resolve upcase-e2e.invalid: "),
        "{line}"
    );
}
