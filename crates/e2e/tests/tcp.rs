//! End-to-end tests of the TCP half: the real `upcase-server` and
//! `upcase-client --tcp` on loopback, plain `std` TCP sockets, and Python
//! peers of the textbook's TCPServer.py / TCPClient.py shape.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Output};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use upcase_e2e::tcp::{closed_by_server, connect, exchange, read_exactly, read_to_end};
use upcase_e2e::{
    PATIENCE, Process, ServerProcess, Signal, Stopped, assert_success, binary, client, crate_file,
    free_tcp_port, python3, run_with_input,
};
use upcase_load::connect::connect_tcp;
use upcase_proto::uppercase;

/// Lines that exercise every path: ASCII, a longer uppercase, a caseless
/// script, an emoji beside a ligature, bytes that are not UTF-8, nothing.
const LINES: [&[u8]; 6] = [
    b"hello, world",
    "stra\u{df}e \u{390}".as_bytes(),
    "\u{c548}\u{b155}\u{d558}\u{c138}\u{c694} 12000".as_bytes(),
    "rust \u{1f980} is \u{fb01}ne".as_bytes(),
    b"caf\xe9 \xff ok",
    b"",
];

fn input() -> Vec<u8> {
    LINES.iter().flat_map(|l| [*l, b"\n"].concat()).collect()
}

fn expected_output() -> Vec<u8> {
    uppercase(&input())
}

fn loopback(addr: SocketAddr, v6: bool) -> SocketAddr {
    if !addr.ip().is_unspecified() {
        return addr;
    }
    if v6 {
        (Ipv6Addr::LOCALHOST, addr.port()).into()
    } else {
        (Ipv4Addr::LOCALHOST, addr.port()).into()
    }
}

/// A server on `bind` with a system-chosen port and `extra` options, and its
/// TCP address as a client reaches it.
fn start(bind: &str, extra: &[&str]) -> (ServerProcess, SocketAddr) {
    let mut args = vec!["--bind", bind, "--port", "0"];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(&args);
    let addr = server.tcp_addr();
    (server, addr)
}

/// Sends `bytes`, ends the stream, returns everything that came back.
fn whole_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    exchange(&mut connect(addr), bytes)
}

fn stop(server: ServerProcess) -> Stopped {
    let stopped = server.stop_with(Signal::SIGTERM);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert!(!stopped.stderr.contains("panicked"), "{}", stopped.stderr);
    stopped
}

/// [`stop`], which must take less than a second.
fn stop_within_a_second(server: ServerProcess) -> Stopped {
    let stopped = stop(server);
    assert!(
        stopped.elapsed < Duration::from_secs(1),
        "{:?}",
        stopped.elapsed
    );
    stopped
}

/// The one `error: ...` line of a failed run.
fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn streams_come_back_uppercased_over_ipv4_and_ipv6() {
    for bind in ["127.0.0.1", "::1"] {
        let (server, addr) = start(bind, &["--transport", "tcp"]);
        assert_eq!(
            server.ready.line(),
            format!("The server is ready to receive on tcp {addr}")
        );
        assert_eq!(addr.ip(), bind.parse::<std::net::IpAddr>().expect("ip"));
        assert_eq!(
            whole_exchange(addr, &input()),
            expected_output(),
            "over {bind}"
        );
        let stopped = stop(server);
        assert_eq!(stopped.tcp().accepted, 1);
        assert_eq!(stopped.tcp().bytes_in, input().len() as u64);
        assert_eq!(stopped.tcp().bytes_out, expected_output().len() as u64);
        assert_eq!(stopped.tcp().errors, 0);
        assert_eq!(stopped.udp().received, 0, "no UDP served");
    }
}

#[test]
fn by_default_udp_and_tcp_share_one_port_on_both_families() {
    let server = ServerProcess::start(&["--port", "0"]);
    let (udp, tcp) = (server.ready.udp().expect("udp address"), server.tcp_addr());
    assert_eq!(
        server.ready.line(),
        format!("The server is ready to receive on udp {udp}, tcp {tcp}")
    );
    assert_eq!(udp, tcp, "the same address and port");
    assert_ne!(udp.port(), 0);
    assert_eq!(server.ready.addrs(), [udp, tcp]);
    let datagram = UdpSocket::bind("127.0.0.1:0").expect("udp client");
    datagram.set_read_timeout(Some(PATIENCE)).expect("timeout");
    datagram
        .send_to(b"over udp", loopback(udp, false))
        .expect("send");
    let mut buf = [0u8; 64];
    let (len, _) = datagram.recv_from(&mut buf).expect("udp reply");
    assert_eq!(&buf[..len], b"OVER UDP");
    if udp.is_ipv6() {
        for v6 in [false, true] {
            assert_eq!(whole_exchange(loopback(tcp, v6), b"over tcp"), b"OVER TCP");
        }
    }
    let stopped = stop(server);
    assert_eq!(stopped.udp().received, 1);
    assert_eq!(stopped.tcp().accepted, if udp.is_ipv6() { 2 } else { 0 });
}

#[test]
fn udp_alone_refuses_tcp_and_keeps_the_foundation_ready_line() {
    let server =
        ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--transport", "udp"]);
    let addr = server.addr();
    assert_eq!(
        server.ready.line(),
        format!("The server is ready to receive on {addr}")
    );
    // Not `TcpStream::connect`: with nothing listening, the kernel may
    // choose the server's port as the source and connect to itself.
    let err = connect_tcp(addr, PATIENCE).expect_err("no TCP listener");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let stopped = stop(server);
    assert!(
        !stopped.stderr.contains("tcp_"),
        "no TCP fields without TCP: {}",
        stopped.stderr
    );
}

#[test]
fn tcp_alone_does_not_answer_udp() {
    let (server, addr) = start("127.0.0.1", &["--transport", "tcp"]);
    let datagram = UdpSocket::bind("127.0.0.1:0").expect("udp client");
    datagram.connect(addr).expect("connect");
    datagram.set_read_timeout(Some(PATIENCE)).expect("timeout");
    datagram.send(b"x").expect("send");
    let err = datagram.recv(&mut [0u8; 8]).expect_err("no UDP socket");
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "ICMP port unreachable"
    );
    stop(server);
}

#[test]
fn a_character_split_across_writes_is_uppercased_whole() {
    let (server, addr) = start("127.0.0.1", &[]);
    let mut stream = connect(addr);
    stream.set_nodelay(true).expect("nodelay");
    // `é` is C3 A9: half of it first.
    stream.write_all(b"caf\xc3").expect("send");
    stream.flush().expect("flush");
    assert_eq!(read_exactly(&mut stream, 3), b"CAF");
    // The half is held back: nothing more comes until the rest is sent.
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let early = stream.read(&mut [0u8; 1]);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the held byte came back on its own: {early:?}"
    );
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    // The rest of `é`, then three quarters of 🦀 (F0 9F A6 80), then its end.
    stream.write_all(b"\xa9 \xf0\x9f\xa6").expect("send");
    assert_eq!(read_exactly(&mut stream, 3), "É ".as_bytes());
    stream.write_all(b"\x80 stra\xc3").expect("send");
    stream.write_all(b"\x9fe").expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut stream), "🦀 STRASSE".as_bytes());
    stop(server);
}

#[test]
fn two_hundred_connections_at_once_each_get_exactly_their_own_stream() {
    const CLIENTS: usize = 200;
    let (server, addr) = start("127.0.0.1", &["--transport", "tcp"]);
    let stream_of = |client: usize| -> Vec<u8> {
        (0..200)
            .flat_map(|line| format!("client {client} line {line}: straße ΐ\n").into_bytes())
            .collect()
    };
    let all_connected = Barrier::new(CLIENTS);
    thread::scope(|scope| {
        for i in 0..CLIENTS {
            let (all_connected, stream_of) = (&all_connected, &stream_of);
            scope.spawn(move || {
                let mut stream = connect(addr);
                // Every connection is open before any sends: all 200 at once.
                all_connected.wait();
                let sent = stream_of(i);
                let got = exchange(&mut stream, &sent);
                assert!(got == uppercase(&sent), "client {i} got another stream");
            });
        }
    });
    let stopped = stop(server);
    let sent: u64 = (0..CLIENTS).map(|i| stream_of(i).len() as u64).sum();
    assert_eq!(stopped.tcp().accepted, CLIENTS as u64);
    assert_eq!(stopped.tcp().refused, 0);
    assert_eq!(stopped.tcp().errors, 0);
    assert_eq!(stopped.tcp().bytes_in, sent);
}

/// The bound on how much a never-reading client may grow the server: the
/// server holds at most one 16 KiB read and its uppercase per connection,
/// so 8 MiB leaves room for allocator noise and none for buffering the
/// stream.
#[cfg(target_os = "linux")]
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;

// Memory is read from /proc: Linux only.
#[cfg(target_os = "linux")]
#[test]
fn a_client_that_never_reads_cannot_grow_server_memory() {
    use upcase_e2e::tcp::{Written, write_until_stalled};

    const CAP: usize = 64 << 20;
    let (server, addr) = start("127.0.0.1", &["--transport", "tcp"]);
    // One exchange first, so the server's lazily set up parts are counted
    // in the baseline.
    assert_eq!(whole_exchange(addr, b"warm up"), b"WARM UP");
    let before = server.memory().vm_rss_kib;
    let mut stream = connect(addr);
    let Written {
        bytes: written,
        stalled,
    } = write_until_stalled(&mut stream, Duration::from_millis(500), CAP);
    let after = server.memory().vm_rss_kib;
    eprintln!("{written} bytes unread; server RSS {before} KiB before, {after} KiB after");
    assert!(
        after <= before + RSS_GROWTH_BOUND_KIB,
        "server RSS grew from {before} KiB to {after} KiB after {written} bytes unread"
    );
    assert!(
        stalled,
        "the server took {written} bytes from a client that reads nothing"
    );
    // Stuck in a write at the stop: closed after the grace period, and the
    // server still exits within a second.
    let stopped = stop_within_a_second(server);
    assert_eq!(stopped.tcp().closed_at_stop, 1);
    let held = stopped.tcp().bytes_in - stopped.tcp().bytes_out;
    assert!(held <= 16 * 1024, "the server held {held} bytes");
}

#[test]
fn an_idle_client_is_closed_after_the_idle_timeout() {
    let (server, addr) = start("127.0.0.1", &["--idle-timeout", "300ms"]);
    let mut stream = connect(addr);
    stream.write_all(b"one").expect("send");
    assert_eq!(read_exactly(&mut stream, 3), b"ONE");
    let silent_since = Instant::now();
    assert!(closed_by_server(&mut stream), "the server closed it");
    assert!(silent_since.elapsed() >= Duration::from_millis(250));
    // A client that keeps talking is not idle.
    let mut busy = connect(addr);
    for _ in 0..4 {
        busy.write_all(b"x").expect("send");
        assert_eq!(read_exactly(&mut busy, 1), b"X");
        thread::sleep(Duration::from_millis(150));
    }
    busy.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut busy), b"");
    let stopped = stop(server);
    assert_eq!(stopped.tcp().timed_out, 1);
    assert_eq!(stopped.tcp().accepted, 2);
}

#[test]
fn connections_over_the_limit_are_refused_and_counted() {
    let (server, addr) = start("127.0.0.1", &["--max-connections", "2"]);
    let mut served: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for stream in &mut served {
        stream.write_all(b"in").expect("send");
        assert_eq!(read_exactly(stream, 2), b"IN", "served under the limit");
    }
    let mut third = connect(addr);
    assert!(closed_by_server(&mut third), "the third is closed at once");
    // The two served ones carry on.
    for stream in &mut served {
        stream.write_all(b"still").expect("send");
        stream.shutdown(Shutdown::Write).expect("shutdown");
        assert_eq!(read_to_end(stream), b"STILL");
    }
    let stopped = stop(server);
    assert_eq!(stopped.tcp().refused, 1);
    assert_eq!(stopped.tcp().accepted, 2);
}

#[test]
fn a_signal_closes_the_listener_and_lingering_connections_within_a_second() {
    let (server, addr) = start("127.0.0.1", &[]);
    let mut lingering = connect(addr);
    lingering.write_all(b"a").expect("send");
    assert_eq!(read_exactly(&mut lingering, 1), b"A");
    let stopped = stop_within_a_second(server);
    assert_eq!(stopped.tcp().closed_at_stop, 1);
    assert!(closed_by_server(&mut lingering));
    assert!(TcpStream::connect(addr).is_err(), "the listener is gone");
}

fn python_tcp_server(bind: &str) -> ServerProcess {
    ServerProcess::start_command(
        python3()
            .arg(crate_file("python/tcp_server.py"))
            .args(["--bind", bind, "0"]),
    )
}

#[test]
fn the_python_client_talks_to_our_server() {
    for bind in ["127.0.0.1", "::1"] {
        let (server, addr) = start(bind, &[]);
        let out = run_with_input(
            python3()
                .arg(crate_file("python/tcp_client.py"))
                .arg(addr.ip().to_string())
                .arg(addr.port().to_string()),
            &input(),
        );
        assert_success(&out, "tcp_client.py");
        assert_eq!(out.stdout, expected_output(), "over {bind}");
        let stopped = stop(server);
        assert_eq!(stopped.tcp().accepted, LINES.len() as u64);
    }
}

#[test]
fn our_client_talks_to_the_python_server_one_sentence_per_connection() {
    for bind in ["127.0.0.1", "::1"] {
        let server = python_tcp_server(bind);
        let addr = server.loopback_addr();
        let (host, port) = (addr.ip().to_string(), addr.port().to_string());
        let connection = ["--tcp", "--server", host.as_str(), "--port", port.as_str()];
        let words: Vec<&str> = connection
            .iter()
            .copied()
            .chain(["hello", "straße"])
            .collect();
        let out = client(&words, b"");
        assert_success(&out, "upcase-client --tcp MESSAGE");
        assert_eq!(out.stdout, "HELLO STRASSE\n".as_bytes(), "over {bind}");
        let out = client(&connection, b"caf\xe9 \xff ok\n");
        assert_success(&out, "upcase-client --tcp < one line");
        assert_eq!(out.stdout, b"CAF\xe9 \xff OK\n", "over {bind}");
    }
}

#[test]
fn our_client_streams_lines_over_tcp() {
    for bind in ["127.0.0.1", "::1"] {
        let (server, addr) = start(bind, &[]);
        let (host, port) = (addr.ip().to_string(), addr.port().to_string());
        let out = client(&["--tcp", "--server", &host, "--port", &port], &input());
        assert_success(&out, "upcase-client --tcp");
        assert_eq!(out.stdout, expected_output(), "over {bind}");
        let out = client(
            &[
                "--tcp", "--server", &host, "--port", &port, "one", "message",
            ],
            b"ignored",
        );
        assert_success(&out, "upcase-client --tcp MESSAGE");
        assert_eq!(out.stdout, b"ONE MESSAGE\n");
        let stopped = stop(server);
        assert_eq!(stopped.tcp().accepted, 2);
        assert_eq!(stopped.udp().received, 0, "nothing over UDP");
    }
}

#[test]
fn our_client_prints_each_reply_as_its_line_is_sent() {
    let (server, addr) = start("127.0.0.1", &[]);
    let mut client = Process::spawn(
        Command::new(binary("upcase-client"))
            .args(["--tcp", "--server", "127.0.0.1", "--port"])
            .arg(addr.port().to_string()),
    )
    .piped_stdin()
    .start()
    .expect("spawn client");
    let mut stdin = client.take_stdin().expect("stdin");
    // A person typing: each reply must come before the next line is typed.
    let mut replies = String::new();
    for (line, reply) in [("first line", "FIRST LINE\n"), ("straße", "STRASSE\n")] {
        writeln!(stdin, "{line}").expect("type");
        stdin.flush().expect("flush");
        replies.push_str(reply);
        let lines = replies.lines().count();
        let got = client
            .wait_for_stdout(PATIENCE, |out| {
                (out.iter().filter(|&&b| b == b'\n').count() >= lines).then(|| out.to_vec())
            })
            .expect("reply line");
        assert_eq!(String::from_utf8_lossy(&got), replies);
    }
    drop(stdin);
    let status = client.wait_within(PATIENCE).expect("exit");
    assert!(status.success(), "{status}");
    stop(server);
}

#[test]
fn our_client_reports_a_closed_port_in_one_line() {
    let port = free_tcp_port().expect("free port");
    let out = client(
        &[
            "--tcp",
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "x",
        ],
        b"",
    );
    assert_eq!(
        one_error_line(&out),
        format!("error: cannot connect over TCP to 127.0.0.1:{port} (connection refused)")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn our_client_reports_a_server_over_its_limit() {
    let (server, addr) = start("127.0.0.1", &["--max-connections", "1"]);
    let mut holder = connect(addr);
    holder.write_all(b"x").expect("send");
    assert_eq!(read_exactly(&mut holder, 1), b"X");
    let out = client(
        &[
            "--tcp",
            "--server",
            "127.0.0.1",
            "--port",
            &addr.port().to_string(),
            "y",
        ],
        b"",
    );
    let line = one_error_line(&out);
    assert!(
        line.contains("reset") || line.contains("closed the connection"),
        "{line}"
    );
    let stopped = stop(server);
    assert_eq!(stopped.tcp().refused, 1);
}
