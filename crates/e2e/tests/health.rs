//! `upcase-client health`, the probe a balancer's controller runs, against
//! the real server, a silent port, servers that answer wrongly and closed
//! ports, over UDP and TCP: its exit status, and its one `error:` line.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Output;

use upcase_e2e::fake_server::{FakeServer, FakeTcpServer, silent};
use upcase_e2e::{ServerProcess, client, free_tcp_port, free_udp_port};
use upcase_proto::uppercase;

/// The exit status of a failed probe (`upcase_client::EXIT_UNHEALTHY`).
const UNHEALTHY: i32 = 1;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `upcase-client --server ADDR --timeout T --retries R [--tcp] [-v] health`.
fn probe(addr: SocketAddr, timeout: &str, retries: u32, extra: &[&str]) -> Output {
    let server = addr.to_string();
    let retries = retries.to_string();
    let mut args = vec![
        "--server",
        &server,
        "--timeout",
        timeout,
        "--retries",
        &retries,
    ];
    args.extend_from_slice(extra);
    args.push("health");
    client(&args, b"")
}

/// The probe failed with exactly one line on stderr, `error: unhealthy: `
/// then `why`, and nothing on stdout.
fn assert_unhealthy(out: &Output, why: &str) {
    assert_eq!(out.status.code(), Some(UNHEALTHY), "{}", stderr(out));
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(stderr(out), format!("error: unhealthy: {why}\n"));
}

#[test]
fn a_healthy_server_passes_silently_over_udp_and_tcp() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let (udp, tcp) = (server.addr(), server.tcp_addr());
    for (addr, extra) in [(udp, &[][..]), (tcp, &["--tcp"][..])] {
        let out = probe(addr, "2s", 0, extra);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    }
    let stopped = server.stop_with(upcase_e2e::Signal::SIGTERM);
    assert_eq!(stopped.udp().replied, 1);
    assert_eq!(stopped.tcp().accepted, 1);
}

#[test]
fn verbose_says_who_answered() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0"]);
    let out = probe(server.addr(), "2s", 0, &["-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).expect("text");
    assert!(
        stdout.starts_with(&format!(
            "healthy: {} answered the probe over UDP in ",
            server.addr()
        )),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn the_probe_is_unique_and_its_exact_uppercase_is_the_only_pass() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let server = FakeServer::start(move |_, request, _| {
        log.lock().expect("lock").push(request.to_vec());
        vec![uppercase(request)]
    });
    for _ in 0..2 {
        let out = probe(server.addr, "2s", 0, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let probes = seen.lock().expect("lock").clone();
    assert_eq!(probes.len(), 2);
    assert_ne!(probes[0], probes[1], "each run probes with its own message");
    let text = String::from_utf8(probes[0].clone()).expect("UTF-8");
    assert!(text.starts_with("upcase Health-Probe "), "{text}");
    assert!(!text.is_ascii(), "{text}");
}

#[test]
fn a_silent_port_is_unhealthy_after_every_try() {
    let server = FakeServer::start(silent);
    let out = probe(server.addr, "100ms", 1, &[]);
    assert_unhealthy(
        &out,
        &format!(
            "no reply from {} after 2 tries (timeout 100ms)",
            server.addr
        ),
    );
    assert_eq!(server.received().len(), 2, "one try and one retry");
}

#[test]
fn a_retry_may_pass() {
    let server = FakeServer::start(|n, request, _| {
        if n == 0 {
            Vec::new()
        } else {
            vec![uppercase(request)]
        }
    });
    let out = probe(server.addr, "100ms", 1, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_server_that_answers_wrongly_is_unhealthy() {
    // An echo, an ASCII-only uppercase (the probe has letters beyond it),
    // and nothing at all (what nginx sends when its upstream refused).
    type Answer = fn(&[u8]) -> Vec<u8>;
    let wrong: [Answer; 3] = [<[u8]>::to_vec, <[u8]>::to_ascii_uppercase, |_| Vec::new()];
    for answer in wrong {
        let server = FakeServer::start(move |_, request, _| vec![answer(request)]);
        let out = probe(server.addr, "100ms", 0, &[]);
        let stderr = stderr(&out);
        assert_eq!(out.status.code(), Some(UNHEALTHY), "{stderr}");
        let prefix = format!("error: unhealthy: {} answered the probe with ", server.addr);
        assert!(stderr.starts_with(&prefix), "{stderr}");
        assert!(
            stderr.contains("bytes that are not its uppercase: \""),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_closed_port_is_unhealthy() {
    let udp = SocketAddr::from(([127, 0, 0, 1], free_udp_port().expect("port")));
    assert_unhealthy(
        &probe(udp, "2s", 0, &[]),
        &format!("no server at {udp} (connection refused)"),
    );
    let tcp = SocketAddr::from(([127, 0, 0, 1], free_tcp_port().expect("port")));
    assert_unhealthy(
        &probe(tcp, "2s", 0, &["--tcp"]),
        &format!("cannot connect over TCP to {tcp} (connection refused)"),
    );
}

#[test]
fn over_tcp_the_whole_reply_must_be_the_uppercase() {
    let echo = FakeTcpServer::start(|mut stream| {
        let mut buf = [0u8; 1024];
        let read = stream.read(&mut buf).expect("read");
        stream.write_all(&buf[..read]).expect("write");
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], echo.port()));
    let out = probe(addr, "2s", 0, &["--tcp"]);
    echo.finish();
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(UNHEALTHY), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: unhealthy: {addr} answered the probe with "
        )),
        "{stderr}"
    );
    // A proxy that closes before answering (nginx without proxy_half_close).
    let closer = FakeTcpServer::start(|mut stream| {
        let mut buf = [0u8; 1024];
        while stream.read(&mut buf).is_ok_and(|read| read > 0) {}
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], closer.port()));
    assert_unhealthy(
        &probe(addr, "2s", 0, &["--tcp"]),
        &format!("{addr} ended the connection without a reply"),
    );
    closer.finish();
}

#[test]
fn a_probe_that_cannot_run_is_a_usage_error() {
    for args in [
        &["health", "extra"][..],
        &["--timeout", "soon", "health"],
        &["--server", "h:5", "--port", "6", "health"],
    ] {
        let out = client(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
}
