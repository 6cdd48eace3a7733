//! The server under systemd's protocols, against the real binary: socket
//! activation (`systemd-socket-activate`, from Debian's `systemd` package,
//! and the kit's [`HeldSockets`]), readiness and the watchdog (`sd_notify`,
//! with the test playing systemd's side), and a restart under load that
//! loses nothing because the sockets outlive the process.
//!
//! systemd is Linux's: elsewhere these tests are not built.

#![cfg(target_os = "linux")]

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use upcase_e2e::tcp::exchange;
use upcase_e2e::{
    HeldSockets, NotifySocket, PATIENCE, Process, ReadyLine, RetryingLoad, ServerProcess, Signal,
    UdpCounts, binary, free_tcp_port, free_udp_port, tool,
};

/// Asks `server` over UDP until the answer comes, trying every 100 ms: the
/// first datagram may wake the server up (`systemd-socket-activate` starts
/// it at the first one), and waits in the socket's queue meanwhile.
fn ask_until_answered(server: SocketAddr, request: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("client");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + PATIENCE;
    let mut buf = vec![0; 65_536];
    while Instant::now() < deadline {
        socket.send_to(request, server).expect("send");
        if let Ok(n) = socket.recv(&mut buf) {
            buf.truncate(n);
            return buf;
        }
    }
    panic!("no answer from {server} within {PATIENCE:?}");
}

/// `systemd-socket-activate ARGS -- upcase-server`, once it listens.
fn activate(args: &[&str]) -> Process {
    let mut command = tool("systemd-socket-activate", "systemd");
    command.args(args).arg("--").arg(binary("upcase-server"));
    let mut process = Process::spawn(&mut command)
        .label("systemd-socket-activate")
        .start()
        .expect("systemd-socket-activate starts");
    process
        .wait_for_stderr_line(PATIENCE, "Listening on", 1)
        .expect("it listens");
    process
}

fn summary_of(process: Process) -> UdpCounts {
    let stopped = process
        .stop_with(Signal::SIGTERM, PATIENCE)
        .expect("stops on SIGTERM");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    stopped.summary().udp
}

#[test]
fn systemd_socket_activate_passes_a_datagram_socket() {
    let port = free_udp_port().expect("a free port");
    let listen = format!("127.0.0.1:{port}");
    let mut activator = activate(&["--datagram", "-l", &listen]);
    let addr: SocketAddr = listen.parse().expect("addr");
    assert_eq!(ask_until_answered(addr, b"activated"), b"ACTIVATED");
    let ready = activator.wait_ready(PATIENCE).expect("ready line");
    assert_eq!(ready.line(), format!("{}{listen}", ReadyLine::PREFIX));
    activator
        .wait_for_stderr_line(
            PATIENCE,
            &format!("serving the sockets passed by the supervisor: udp {listen}"),
            1,
        )
        .expect("says it serves the inherited socket");
    let udp = summary_of(activator);
    assert!(udp.received >= 1 && udp.replied == udp.received, "{udp:?}");
}

#[test]
fn systemd_socket_activate_passes_a_stream_socket() {
    let port = free_tcp_port().expect("a free port");
    let listen = format!("127.0.0.1:{port}");
    let mut activator = activate(&["-l", &listen]);
    // The first connection starts the server, and waits in the backlog.
    let mut stream = TcpStream::connect(&listen).expect("connect");
    assert_eq!(exchange(&mut stream, b"streamed"), b"STREAMED");
    let ready = activator.wait_ready(PATIENCE).expect("ready line");
    assert_eq!(ready.line(), format!("{}tcp {listen}", ReadyLine::PREFIX));
    let stopped = activator
        .stop_with(Signal::SIGTERM, PATIENCE)
        .expect("stops");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.tcp().accepted, 1);
}

#[test]
fn both_transports_are_served_from_inherited_sockets() {
    let held = HeldSockets::both("127.0.0.1");
    let (udp, tcp) = (held.udp_addr().expect("udp"), held.tcp_addr().expect("tcp"));
    let server = held.start_server(&["--threads", "1"]);
    assert_eq!(
        server.ready.line(),
        format!("{}udp {udp}, tcp {tcp}", ReadyLine::PREFIX)
    );
    assert_eq!(ask_until_answered(udp, b"inherited"), b"INHERITED");
    let mut stream = TcpStream::connect(tcp).expect("connect");
    assert_eq!(exchange(&mut stream, b"also"), b"ALSO");
    let stopped = server.stop_with(Signal::SIGTERM);
    assert!(
        stopped
            .stderr
            .contains("serving the sockets passed by the supervisor: udp "),
        "{}",
        stopped.stderr
    );
    assert_eq!((stopped.udp().replied, stopped.tcp().accepted), (1, 1));
}

#[test]
fn workers_share_an_inherited_socket_and_their_counts_add_up() {
    let held = HeldSockets::udp("127.0.0.1");
    let addr = held.udp_addr().expect("udp");
    let mut server = held.start_server(&["--threads", "3"]);
    server.wait_for_log("receiving on", 1);
    assert!(
        server
            .stderr()
            .contains(&format!("receiving on {addr} with 3 worker threads")),
        "{}",
        server.stderr()
    );
    let sockets: Vec<UdpSocket> = (0..6)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("client"))
        .collect();
    for (i, socket) in sockets.iter().enumerate() {
        socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
        for j in 0..20 {
            let request = format!("socket {i} request {j}");
            socket.send_to(request.as_bytes(), addr).expect("send");
            let mut buf = [0; 64];
            let n = socket.recv(&mut buf).expect("reply");
            assert_eq!(&buf[..n], request.to_uppercase().as_bytes());
        }
    }
    let stopped = server.stop_with(Signal::SIGTERM);
    assert_eq!((stopped.udp().received, stopped.udp().replied), (120, 120));
}

#[test]
fn address_options_are_refused_with_inherited_sockets() {
    let held = HeldSockets::both("127.0.0.1");
    for (args, named) in [
        (&["--port", "5"][..], "--port"),
        (
            &["--bind", "127.0.0.1", "--transport", "udp"],
            "--bind, --transport",
        ),
    ] {
        let mut command = held.command(&binary("upcase-server"), args);
        let out = Process::spawn(&mut command)
            .start()
            .and_then(|p| p.finish(PATIENCE))
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr
                .lines()
                .last()
                .unwrap_or_default()
                .starts_with(&format!(
                    "error: {named} cannot be used with inherited sockets (LISTEN_FDS)"
                )),
            "{stderr}"
        );
    }
    // The environment's UPCASE_PORT is given too.
    let mut command = held.command(&binary("upcase-server"), &[]);
    command.env("UPCASE_PORT", "5");
    let out = Process::spawn(&mut command)
        .start()
        .and_then(|p| p.finish(PATIENCE))
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn listen_fds_for_another_process_are_passed_over() {
    // A parent's variables, inherited by mistake: the server binds as usual.
    let mut command = Command::new(binary("upcase-server"));
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"])
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1");
    let server = ServerProcess::start_command(&mut command);
    assert_eq!(server.ready.addrs().len(), 1);
    assert_eq!(ask_until_answered(server.loopback_addr(), b"mine"), b"MINE");
    server.stop_with(Signal::SIGTERM);
}

/// A server that notifies `notify`, with `env` added.
fn notifying_server(notify: &NotifySocket, env: &[(&str, &str)]) -> ServerProcess {
    let mut command = Command::new(binary("upcase-server"));
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--threads", "1"])
        .env("NOTIFY_SOCKET", notify.path())
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .envs(env.iter().copied());
    ServerProcess::start_command(&mut command)
}

#[test]
fn ready_once_bound_and_stopping_at_the_stop() {
    let notify = NotifySocket::new("ready");
    let mut server = notifying_server(&notify, &[]);
    // The ready line came first (start_command waited for it).
    let (ready, before) = notify.wait_for("READY=1", PATIENCE);
    assert!(before.is_empty(), "{before:?}");
    assert!(
        ready
            .lines()
            .any(|l| l == format!("STATUS={}", server.ready.line())),
        "{ready:?}"
    );
    assert_eq!(ask_until_answered(server.loopback_addr(), b"up"), b"UP");
    server.signal(Signal::SIGTERM);
    let (stopping, before) = notify.wait_for("STOPPING=1", PATIENCE);
    assert_eq!(stopping, "STOPPING=1");
    assert!(before.is_empty(), "no watchdog was asked for: {before:?}");
    assert!(server.exit().status.success());
}

#[test]
fn the_watchdog_beats_at_half_the_interval_asked_for() {
    let notify = NotifySocket::new("watchdog");
    // 200 ms asked: a beat every 100 ms.
    let server = notifying_server(&notify, &[("WATCHDOG_USEC", "200000")]);
    notify.wait_for("READY=1", PATIENCE);
    let (_, _) = notify.wait_for("WATCHDOG=1", PATIENCE);
    let first = Instant::now();
    for _ in 0..3 {
        let (beat, before) = notify.wait_for("WATCHDOG=1", PATIENCE);
        assert_eq!(beat, "WATCHDOG=1");
        assert!(before.is_empty(), "{before:?}");
    }
    // Three intervals of 100 ms at least: beats are paced, not sprayed. (A
    // busy machine may only make them later.)
    assert!(
        first.elapsed() >= Duration::from_millis(250),
        "{:?}",
        first.elapsed()
    );
    server.stop_with(Signal::SIGTERM);

    // WATCHDOG_PID names another process: no beat.
    let quiet = NotifySocket::new("watchdog-other");
    let server = notifying_server(&quiet, &[("WATCHDOG_USEC", "20000"), ("WATCHDOG_PID", "1")]);
    quiet.wait_for("READY=1", PATIENCE);
    // At a beat every 10 ms, half a second without one says none comes.
    assert_eq!(quiet.next_within(Duration::from_millis(500)), None);
    server.stop_with(Signal::SIGTERM);
}

#[test]
fn what_arrives_between_two_servers_waits_for_the_next() {
    let held = HeldSockets::both("127.0.0.1");
    let (udp, tcp) = (held.udp_addr().expect("udp"), held.tcp_addr().expect("tcp"));
    let first = held.start_server(&["--threads", "1"]);
    assert_eq!(ask_until_answered(udp, b"before"), b"BEFORE");
    assert!(first.stop_with(Signal::SIGTERM).status.success());
    // No server runs: the datagram and the connection wait in the sockets.
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    client.send_to(b"in between", udp).expect("send");
    let mut stream = TcpStream::connect(tcp).expect("the held listener accepts");
    stream.write_all(b"queued").expect("send");
    let second = held.start_server(&["--threads", "1"]);
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).expect("answered by the next server");
    assert_eq!(&buf[..n], b"IN BETWEEN");
    assert_eq!(exchange(&mut stream, b" too"), b"QUEUED TOO");
    let stopped = second.stop_with(Signal::SIGTERM);
    assert_eq!((stopped.udp().replied, stopped.tcp().accepted), (1, 1));
}

#[test]
fn restarts_under_a_paced_retrying_load_lose_nothing() {
    const RESTARTS: u64 = 3;
    let held = HeldSockets::both("127.0.0.1");
    let udp = held.udp_addr().expect("udp");
    let args = ["--threads", "2"];
    let mut server = held.start_server(&args);
    let load = RetryingLoad {
        clients: 4,
        requests: 200,
        pace: Duration::from_millis(2),
        timeout: Duration::from_millis(200),
        tries: 50,
    };
    let total = (load.clients * load.requests) as u64;
    let running = load.start(udp);
    let mut served = UdpCounts::default();
    for restart in 1..=RESTARTS {
        // Spread over the load: at a quarter, a half, three quarters.
        upcase_e2e::wait_until("the load reaches the next restart", || {
            running.settled() >= restart * total / (RESTARTS + 1)
        });
        let stopped = server.stop_with(Signal::SIGTERM);
        assert!(stopped.status.success(), "{}", stopped.stderr);
        served += stopped.udp();
        server = held.start_server(&args);
    }
    let outcome = running.finish();
    let stopped = server.stop_with(Signal::SIGTERM);
    served += stopped.udp();
    println!(
        "{RESTARTS} restarts: {} requests, {} answered at once, {} after a retry, {} unanswered; {} datagrams sent, {} received by the servers",
        outcome.requests,
        outcome.answered_first_try,
        outcome.answered_after_retry,
        outcome.unanswered,
        outcome.datagrams_sent,
        served.received
    );
    assert_eq!(outcome.requests, total);
    assert_eq!(outcome.unanswered, 0, "{outcome:?}");
    // Not one datagram lost: every one sent, retries included, was
    // received by one of the servers, and answered.
    assert_eq!(
        served.received, outcome.datagrams_sent,
        "{served:?} {outcome:?}"
    );
    assert_eq!(served.replied, served.received, "{served:?}");
}
