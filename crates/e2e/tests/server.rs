//! End-to-end tests of the `upcase-server` binary: the real process on
//! loopback with a system-chosen port, driven by plain `std` UDP sockets.
//!
//! Every exchange is one request, then its reply, so nothing is lost on
//! loopback and every count in the server's summary is known exactly. That a
//! reply was *not* sent is shown by sending a probe right after it: the
//! server answers in order, so the probe's reply arriving first means the
//! other one never will.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::Duration;

use upcase_e2e::{
    PATIENCE, ServerProcess, Signal, Stopped, UdpCounts, binary, lowercase_text, run_with_input,
};
use upcase_proto::{MAX_PAYLOAD_V4, MAX_PAYLOAD_V6, uppercase, uppercased_len};

/// Asserts that the server's summary counts exactly what the test tallied
/// as it sent and received.
fn assert_summary_is(stopped: &Stopped, tally: &UdpCounts) {
    assert_eq!(
        stopped.udp(),
        *tally,
        "the summary; stderr:\n{}",
        stopped.stderr
    );
}

/// A client socket of the server address's family, connected to it so that
/// it hears only the server.
fn client_of(server: SocketAddr) -> UdpSocket {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
    };
    let socket = UdpSocket::bind(local).expect("bind client");
    socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
    socket.connect(server).expect("connect");
    socket
}

fn v4_client(port: u16) -> UdpSocket {
    client_of((Ipv4Addr::LOCALHOST, port).into())
}

fn v6_client(port: u16) -> UdpSocket {
    client_of((Ipv6Addr::LOCALHOST, port).into())
}

/// Sends `request` and returns the next datagram the server sends back.
fn ask(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
    let sent = socket.send(request).expect("send");
    assert_eq!(sent, request.len());
    let mut buf = vec![0; 65_536];
    let n = socket.recv(&mut buf).expect("a reply before the deadline");
    buf.truncate(n);
    buf
}

/// Asks and checks the reply is the uppercase of the request; counts both.
fn exchange(socket: &UdpSocket, request: &[u8], tally: &mut UdpCounts) {
    let reply = ask(socket, request);
    assert_eq!(
        reply,
        uppercase(request),
        "reply to a {}-byte request",
        request.len()
    );
    tally.received += 1;
    tally.replied += 1;
    tally.bytes_in += request.len() as u64;
    tally.bytes_out += reply.len() as u64;
    if std::str::from_utf8(request).is_err() {
        tally.invalid_utf8 += 1;
    }
}

/// Sends a request whose reply must not come, and proves it did not: the
/// probe sent right after it is answered first.
fn exchange_refused(socket: &UdpSocket, request: &[u8], tally: &mut UdpCounts) {
    socket.send(request).expect("send");
    tally.received += 1;
    tally.bytes_in += request.len() as u64;
    tally.dropped_too_large += 1;
    if std::str::from_utf8(request).is_err() {
        tally.invalid_utf8 += 1;
    }
    exchange(socket, b"probe", tally);
}

fn local_port(socket: &UdpSocket) -> u16 {
    socket.local_addr().expect("local address").port()
}

fn start_on(bind: &str) -> ServerProcess {
    ServerProcess::start(&["--bind", bind, "--port", "0"])
}

/// The textbook's examples and the cases the transform is careful about.
fn sample_requests() -> Vec<Vec<u8>> {
    vec![
        b"hello world".to_vec(),
        "straße".as_bytes().to_vec(),
        "ﬁ".as_bytes().to_vec(),
        "안녕하세요 123".as_bytes().to_vec(),
        b"\xff\xfeabc".to_vec(),
        Vec::new(),
    ]
}

#[test]
fn the_ready_line_names_the_bound_address() {
    let server = start_on("127.0.0.1");
    let addr = server.addr();
    assert_eq!(
        server.ready.line(),
        // UDP and TCP by default, on the same address and port (issue 6).
        format!("The server is ready to receive on udp {addr}, tcp {addr}")
    );
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0, "the chosen port, not 0");
}

#[test]
fn text_is_uppercased_and_invalid_utf8_passes_through() {
    let server = start_on("127.0.0.1");
    let client = client_of(server.addr());
    let cases: [(&[u8], &[u8]); 5] = [
        (b"hello world", b"HELLO WORLD"),
        ("straße".as_bytes(), b"STRASSE"),
        ("ﬁ".as_bytes(), b"FI"),
        ("안녕하세요 123".as_bytes(), "안녕하세요 123".as_bytes()),
        (b"\xff\xfeabc", b"\xff\xfeABC"),
    ];
    for (request, expected) in cases {
        assert_eq!(ask(&client, request), expected, "reply to {request:?}");
    }
}

#[test]
fn an_empty_datagram_gets_an_empty_reply() {
    let server = start_on("127.0.0.1");
    let client = client_of(server.addr());
    let mut tally = UdpCounts::default();
    exchange(&client, b"", &mut tally);
    // And the server is still there for the next one.
    exchange(&client, b"after", &mut tally);
    let stopped = server.stop_with(Signal::SIGINT);
    assert_summary_is(&stopped, &tally);
}

#[test]
fn the_largest_ipv4_datagram_is_answered_whole() {
    let server = start_on("127.0.0.1");
    let client = client_of(server.addr());
    let request = vec![b'q'; MAX_PAYLOAD_V4];
    let reply = ask(&client, &request);
    assert_eq!(reply.len(), MAX_PAYLOAD_V4);
    assert!(reply.iter().all(|&b| b == b'Q'));
}

#[test]
fn bound_to_ipv6_loopback_the_largest_ipv6_datagram_is_answered_whole() {
    let server = start_on("::1");
    assert_eq!(server.addr().ip(), Ipv6Addr::LOCALHOST);
    let client = client_of(server.addr());
    let mut tally = UdpCounts::default();
    exchange(&client, "straße".as_bytes(), &mut tally);
    let mut request = vec![b'z'; MAX_PAYLOAD_V6 - 1];
    request.push(b'!');
    exchange(&client, &request, &mut tally);
    let stopped = server.stop_with(Signal::SIGINT);
    assert_summary_is(&stopped, &tally);
    assert_eq!(stopped.udp().bytes_out, 7 + MAX_PAYLOAD_V6 as u64);
}

#[test]
fn a_reply_too_large_is_not_sent_and_is_reported() {
    let server = start_on("127.0.0.1");
    let client = client_of(server.addr());
    // U+0390 is 2 bytes and uppercases to 6: 25,000 bytes in, 75,000 out.
    let request = "\u{390}".repeat(12_500).into_bytes();
    assert_eq!(request.len(), 25_000);
    assert_eq!(uppercased_len(&request), 75_000);
    let mut tally = UdpCounts::default();
    exchange_refused(&client, &request, &mut tally);
    exchange(&client, b"still here", &mut tally);
    let stopped = server.stop_with(Signal::SIGINT);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert_summary_is(&stopped, &tally);
    assert_eq!(stopped.udp().dropped_too_large, 1);
    let source = format!("127.0.0.1:{}", local_port(&client));
    let warnings: Vec<_> = stopped
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("not sent"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stopped.stderr);
    assert!(
        warnings[0].contains(&source)
            && warnings[0].contains("75000")
            && warnings[0].contains("65507"),
        "the warning names the source and the sizes: {}",
        warnings[0]
    );
}

#[test]
fn on_the_dual_stack_socket_an_ipv4_peer_gets_the_ipv4_limit() {
    let server = ServerProcess::start(&["--port", "0"]);
    let port = server.addr().port();
    // 65,504 ASCII bytes and one U+0390: a request that fits IPv4 whose
    // reply fits IPv6 only.
    let mut request = vec![b'm'; MAX_PAYLOAD_V4 - 3];
    request.extend_from_slice("\u{390}".as_bytes());
    let reply_len = uppercased_len(&request);
    assert!(request.len() <= MAX_PAYLOAD_V4);
    assert!(reply_len > MAX_PAYLOAD_V4 && reply_len <= MAX_PAYLOAD_V6);

    let mut tally = UdpCounts::default();
    let over_v6 = v6_client(port);
    exchange(&over_v6, &request, &mut tally);
    let over_v4 = v4_client(port);
    exchange_refused(&over_v4, &request, &mut tally);

    let stopped = server.stop_with(Signal::SIGTERM);
    assert_summary_is(&stopped, &tally);
    let source = format!("127.0.0.1:{}", local_port(&over_v4));
    assert!(
        stopped
            .stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&source) && l.contains("IPv4")),
        "no warning naming {source} as an IPv4 peer:\n{}",
        stopped.stderr
    );
}

#[test]
fn the_default_bind_answers_ipv4_and_ipv6_clients() {
    let server = ServerProcess::start(&["--port", "0"]);
    let addr = server.addr();
    assert_eq!(
        addr.ip(),
        Ipv6Addr::UNSPECIFIED,
        "one dual-stack socket on [::]: {}",
        server.ready.line()
    );
    let mut tally = UdpCounts::default();
    for request in sample_requests() {
        exchange(&v4_client(addr.port()), &request, &mut tally);
        exchange(&v6_client(addr.port()), &request, &mut tally);
    }
    let stopped = server.stop_with(Signal::SIGINT);
    assert_summary_is(&stopped, &tally);
}

/// The receive slots of one worker: 64 of 64 KiB.
#[cfg(target_os = "linux")]
const SLOTS_KIB_PER_THREAD: u64 = 64 * 64;

// Memory is read from /proc: Linux only.
#[cfg(target_os = "linux")]
#[test]
fn memory_is_claimed_before_the_ready_line() {
    // Eight workers' slots, 32 MiB, are far more than the rest of the
    // process: a server that claimed them only once serving would show
    // a few MiB here.
    let threads = 8;
    let server = ServerProcess::start(&[
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--transport",
        "udp",
        "--threads",
        &threads.to_string(),
    ]);
    let at_ready = server.memory().vm_rss_kib;
    assert!(
        at_ready >= threads * SLOTS_KIB_PER_THREAD,
        "resident at the ready line: {at_ready} KiB, below {threads} threads' slots"
    );
    let client = client_of(server.addr());
    let largest = vec![b'a'; MAX_PAYLOAD_V4];
    assert_eq!(ask(&client, &largest), uppercase(&largest));
    assert!(server.stop_with(Signal::SIGTERM).status.success());
}

#[test]
fn many_datagrams_from_several_sockets_are_all_answered() {
    let server = start_on("127.0.0.1");
    let addr = server.addr();
    let total = from_clients_at_once(4, |c| {
        let client = client_of(addr);
        let mut tally = UdpCounts::default();
        for i in 0..250 {
            let request = format!("client {c} straße {i} {}", "x".repeat(i));
            exchange(&client, request.as_bytes(), &mut tally);
        }
        tally
    });
    assert_eq!(total.received, 1000);
    let stopped = server.stop_with(Signal::SIGINT);
    assert_summary_is(&stopped, &total);
}

/// Sends the sample requests, stops the server with `signal`, and checks
/// the exit and the summary.
fn stops_cleanly_on(signal: Signal) {
    let server = start_on("127.0.0.1");
    let client = client_of(server.addr());
    let mut tally = UdpCounts::default();
    for request in sample_requests() {
        exchange(&client, &request, &mut tally);
    }
    assert_eq!(tally.invalid_utf8, 1);
    let stopped = server.stop_with(signal);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert!(
        stopped.elapsed < Duration::from_secs(1),
        "stopping took {:?}",
        stopped.elapsed
    );
    assert_summary_is(&stopped, &tally);
    let summaries = stopped
        .stderr
        .lines()
        .filter(|l| l.contains("summary:"))
        .count();
    assert_eq!(summaries, 1, "{}", stopped.stderr);
    assert!(!stopped.stderr.contains("panicked"), "{}", stopped.stderr);
}

#[test]
fn sigint_stops_it_with_a_summary() {
    stops_cleanly_on(Signal::SIGINT);
}

#[test]
fn sigterm_stops_it_with_a_summary() {
    stops_cleanly_on(Signal::SIGTERM);
}

#[test]
fn an_idle_server_stops_promptly_too() {
    let server = start_on("127.0.0.1");
    let stopped = server.stop_with(Signal::SIGTERM);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert!(
        stopped.elapsed < Duration::from_secs(1),
        "{:?}",
        stopped.elapsed
    );
    assert_summary_is(&stopped, &UdpCounts::default());
}

#[test]
fn two_threads_share_the_port_and_their_counts_add_up() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--threads", "2"]);
    let addr = server.addr();
    assert_ne!(addr.port(), 0);
    let mut tally = UdpCounts::default();
    // Many source ports, so the kernel's hash spreads them over both sockets.
    for c in 0..16 {
        let client = client_of(addr);
        for i in 0..10 {
            exchange(&client, format!("c{c} ß{i}").as_bytes(), &mut tally);
        }
    }
    let stopped = server.stop_with(Signal::SIGINT);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert!(
        stopped.elapsed < Duration::from_secs(1),
        "{:?}",
        stopped.elapsed
    );
    assert_summary_is(&stopped, &tally);
}

/// Runs the server expecting it to refuse to start; returns its stderr.
fn refused_start(args: &[&str], status: i32) -> String {
    let out = run_with_input(Command::new(binary("upcase-server")).args(args), b"");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{args:?}: nothing on stdout, not even the ready line: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line on stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(noise), "{args:?}: {stderr}");
    }
    stderr
}

#[test]
fn a_port_in_use_is_one_error_line() {
    let holder = UdpSocket::bind("127.0.0.1:0").expect("hold a port");
    let port = local_port(&holder).to_string();
    let stderr = refused_start(&["--bind", "127.0.0.1", "--port", &port], 1);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn a_port_in_use_is_refused_with_several_threads_too() {
    let holder = UdpSocket::bind("127.0.0.1:0").expect("hold a port");
    let port = local_port(&holder).to_string();
    refused_start(
        &["--bind", "127.0.0.1", "--port", &port, "--threads", "2"],
        1,
    );
}

#[test]
fn an_address_that_is_not_local_is_one_error_line() {
    // 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
    let stderr = refused_start(&["--bind", "192.0.2.1", "--port", "0"], 1);
    assert!(stderr.contains("192.0.2.1"), "{stderr}");
}

#[test]
fn a_bad_command_line_is_one_error_line_and_status_2() {
    for args in [
        &["--port", "70000"][..],
        &["--nope"],
        &["--threads", "0"],
        &["--recv-buffer", "0"],
        &["--recv-buffer", "lots"],
        &["--busy-poll", "yes"],
        &["--bind", "nowhere"],
        &["--port"],
        &["extra"],
    ] {
        refused_start(args, 2);
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes, or random pieces of valid and broken UTF-8 (which reach the
/// transform's harder paths far more often than uniform bytes do).
fn garbage(rng: &mut XorShift) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"a",
        b"Z9 ",
        "ß".as_bytes(),
        "\u{390}".as_bytes(),
        "ﬁ".as_bytes(),
        "한".as_bytes(),
        "\u{10ffff}".as_bytes(),
        b"\xff",
        b"\x80",
        b"\xc3",
        b"\xe2\x82",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xc0\xaf",
        b"\0",
    ];
    let len = match rng.below(10) {
        0..=6 => rng.below(64),
        7 | 8 => rng.below(4096),
        _ => rng.below(MAX_PAYLOAD_V4 + 1),
    };
    let mut out = Vec::with_capacity(len + 4);
    if rng.below(2) == 0 {
        while out.len() < len {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        out.truncate(len);
    } else {
        while out.len() < len {
            out.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        out.truncate(len.min(MAX_PAYLOAD_V4));
    }
    out
}

#[test]
fn a_flood_of_garbage_never_stops_it() {
    let mut server = start_on("127.0.0.1");
    let clients: Vec<_> = (0..3).map(|_| client_of(server.addr())).collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut tally = UdpCounts::default();
    for i in 0..400 {
        let request = garbage(&mut rng);
        let client = &clients[i % clients.len()];
        if uppercased_len(&request) <= MAX_PAYLOAD_V4 {
            exchange(client, &request, &mut tally);
        } else {
            exchange_refused(client, &request, &mut tally);
        }
    }
    assert!(server.is_running());
    assert!(tally.invalid_utf8 > 0, "the flood held invalid UTF-8");
    let stopped = server.stop_with(Signal::SIGINT);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert_summary_is(&stopped, &tally);
}

/// A client socket whose receive buffer holds a whole burst of replies.
fn burst_client(server: SocketAddr) -> UdpSocket {
    let socket = client_of(server);
    upcase_udp::opts::set_recv_buffer(&socket, 4 << 20).expect("SO_RCVBUF");
    socket
}

/// Sends every request at once, then gathers as many replies; checks that
/// they are the requests' uppercase (in any order) and counts both.
fn burst(socket: &UdpSocket, requests: &[Vec<u8>], tally: &mut UdpCounts) {
    for request in requests {
        assert_eq!(socket.send(request).expect("send"), request.len());
    }
    let mut buf = vec![0; 65_536];
    let mut replies: Vec<Vec<u8>> = (0..requests.len())
        .map(|i| {
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("reply {i} of {}: {e}", requests.len()));
            buf[..n].to_vec()
        })
        .collect();
    let mut expected: Vec<Vec<u8>> = requests.iter().map(|r| uppercase(r)).collect();
    replies.sort();
    expected.sort();
    assert!(
        replies == expected,
        "the replies are not the requests' uppercase"
    );
    for (request, reply) in requests.iter().zip(&expected) {
        tally.received += 1;
        tally.replied += 1;
        tally.bytes_in += request.len() as u64;
        tally.bytes_out += reply.len() as u64;
    }
}

/// Bursts of `per_client` requests from `clients` sockets at once.
fn bursts_from_several_sockets(addr: SocketAddr, clients: usize, per_client: usize) -> UdpCounts {
    from_clients_at_once(clients, |c| {
        let requests: Vec<Vec<u8>> = (0..per_client)
            .map(|i| match i % 4 {
                0 => format!("client {c} burst {i} straße").into_bytes(),
                1 => lowercase_text(c + i, 1 + i % 1400),
                2 => format!("c{c} #{i} ﬁ 안녕").into_bytes(),
                _ => format!("client {c} burst {i}").into_bytes(),
            })
            .collect();
        let mut tally = UdpCounts::default();
        burst(&burst_client(addr), &requests, &mut tally);
        tally
    })
}

/// Runs `client(c)` for `c` in `0..clients` on threads at once and adds up
/// their tallies.
fn from_clients_at_once(clients: usize, client: impl Fn(usize) -> UdpCounts + Sync) -> UdpCounts {
    let tallies: Vec<UdpCounts> = thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let client = &client;
                s.spawn(move || client(c))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut total = UdpCounts::default();
    for tally in tallies {
        total += tally;
    }
    total
}

#[test]
fn bursts_from_several_sockets_are_all_answered_by_two_threads() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--port", "0", "--threads", "2"]);
    let tally = bursts_from_several_sockets(server.addr(), 8, 200);
    assert_eq!(tally.received, 1600);
    let stopped = server.stop_with(Signal::SIGTERM);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert_summary_is(&stopped, &tally);
}

#[test]
fn a_burst_of_every_size_is_answered_whole_over_both_families() {
    let server = ServerProcess::start(&["--port", "0", "--threads", "2"]);
    let port = server.addr().port();
    let mut tally = UdpCounts::default();
    for (client, largest) in [
        (
            burst_client((Ipv4Addr::LOCALHOST, port).into()),
            MAX_PAYLOAD_V4,
        ),
        (
            burst_client((Ipv6Addr::LOCALHOST, port).into()),
            MAX_PAYLOAD_V6,
        ),
    ] {
        let requests: Vec<Vec<u8>> = [0, 1, 32, 1400, 1472, 9000, 32_768, largest]
            .iter()
            .enumerate()
            .map(|(tag, &len)| lowercase_text(tag, len))
            .collect();
        burst(&client, &requests, &mut tally);
    }
    let stopped = server.stop_with(Signal::SIGINT);
    assert_summary_is(&stopped, &tally);
}

/// Sends `train` as one UDP GSO send of `segment`-byte datagrams.
fn send_train(socket: &UdpSocket, train: &[u8], segment: u16) {
    let mut batch = upcase_udp::SendBatch::new(1);
    let mut queue = batch.queue(socket);
    queue.push(None, train, Some(segment)).expect("queue");
    let report = queue.finish().expect("send");
    assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");
}

/// Receives `count` datagrams, a GRO buffer split into its segments, each
/// with the segment size it arrived with.
fn receive_segments(socket: &UdpSocket, count: usize) -> Vec<(Vec<u8>, Option<u16>)> {
    let mut batch =
        upcase_udp::RecvBatch::new(upcase_udp::DEFAULT_BATCH, upcase_proto::RECV_BUFFER_LEN);
    let mut got = Vec::new();
    while got.len() < count {
        batch.recv(socket).expect("a reply before the deadline");
        for d in batch.iter() {
            got.extend(d.segments().map(|s| (s.to_vec(), d.meta.segment_size)));
        }
    }
    got
}

#[test]
fn gso_trains_get_every_reply_with_gro() {
    gso_trains_get_every_reply(&["--gro"]);
}

#[test]
fn gso_trains_get_every_reply_without_gro() {
    gso_trains_get_every_reply(&[]);
}

/// Sends GSO trains to a server started with `options`: every segment gets
/// its reply either way; with `--gro` an ASCII train's replies leave as one
/// GSO send, which a client with GRO receives as one train.
fn gso_trains_get_every_reply(options: &[&str]) {
    if !upcase_udp::gso_supported() {
        eprintln!("note: this kernel has no UDP GSO; test skipped");
        return;
    }
    let gro = options.contains(&"--gro");
    let mut args = vec!["--bind", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(options);
    let server = ServerProcess::start(&args);
    let mut tally = UdpCounts::default();
    let segments: Vec<Vec<u8>> = (0..20)
        .map(|tag| lowercase_text(tag, 100))
        .chain([lowercase_text(20, 37)])
        .collect();
    let train = segments.concat();
    let expected: Vec<Vec<u8>> = segments.iter().map(|s| uppercase(s)).collect();
    let count = |tally: &mut UdpCounts, segments: &[Vec<u8>]| {
        for s in segments {
            tally.received += 1;
            tally.replied += 1;
            tally.bytes_in += s.len() as u64;
            tally.bytes_out += uppercased_len(s) as u64;
        }
    };

    // A client without GRO gets the replies as single datagrams.
    let plain = burst_client(server.addr());
    send_train(&plain, &train, 100);
    let got: Vec<Vec<u8>> = receive_segments(&plain, 21)
        .into_iter()
        .map(|(bytes, _)| bytes)
        .collect();
    assert!(got == expected, "the train's replies differ");
    count(&mut tally, &segments);

    // One with GRO gets them as one train if the server replied with one
    // GSO send, as it does with GRO on; else as single datagrams.
    let coalescing = burst_client(server.addr());
    upcase_udp::enable_gro(&coalescing).expect("UDP_GRO");
    send_train(&coalescing, &train, 100);
    let got = receive_segments(&coalescing, 21);
    assert!(
        got.iter().map(|(bytes, _)| bytes).eq(expected.iter()),
        "the train's replies differ"
    );
    let sizes: Vec<Option<u16>> = got.iter().map(|(_, size)| *size).collect();
    // The portable path (the suite run with UPCASE_IO=portable, which the
    // server reads) never turns GRO on: it cannot see a train's segment
    // size, so it receives a train as single datagrams and answers each.
    let portable = std::env::var("UPCASE_IO").as_deref() == Ok("portable");
    let one_send = if gro && !portable { Some(100) } else { None };
    assert!(sizes.iter().all(|&s| s == one_send), "{sizes:?}");
    count(&mut tally, &segments);

    // Segments that are not ASCII (ß keeps its length, ﬁ shrinks, U+0390
    // grows) turn the train into replies segment by segment, still right.
    let mixed: Vec<Vec<u8>> = ["abcdefgh", "ijkßmno", "ﬁfifif", "ab\u{390}cdef", "qrstuvwx"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    assert!(mixed.iter().all(|s| s.len() == 8));
    send_train(&plain, &mixed.concat(), 8);
    let got: Vec<Vec<u8>> = receive_segments(&plain, mixed.len())
        .into_iter()
        .map(|(bytes, _)| bytes)
        .collect();
    let mixed_expected: Vec<Vec<u8>> = mixed.iter().map(|s| uppercase(s)).collect();
    assert_eq!(got, mixed_expected);
    count(&mut tally, &mixed);

    let stopped = server.stop_with(Signal::SIGTERM);
    assert_summary_is(&stopped, &tally);
}

#[test]
fn one_three_or_one_per_core_threads_all_serve() {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    for (threads, expected) in [(Some("1"), 1), (Some("3"), 3), (None, cores)] {
        let mut args = vec!["--bind", "127.0.0.1", "--port", "0"];
        args.extend(threads.iter().flat_map(|n| ["--threads", n]));
        let server = ServerProcess::start(&args);
        let tally = bursts_from_several_sockets(server.addr(), 6, 50);
        let stopped = server.stop_with(Signal::SIGINT);
        assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
        assert_summary_is(&stopped, &tally);
        let plural = if expected == 1 { "" } else { "s" };
        assert!(
            stopped
                .stderr
                .contains(&format!("with {expected} worker thread{plural}")),
            "{threads:?}: {}",
            stopped.stderr
        );
    }
}

#[test]
fn the_granted_receive_buffer_is_logged() {
    let server = ServerProcess::start(&[
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--recv-buffer",
        "1048576",
    ]);
    let mut tally = UdpCounts::default();
    exchange(&client_of(server.addr()), b"buffered", &mut tally);
    let stopped = server.stop_with(Signal::SIGINT);
    assert_summary_is(&stopped, &tally);
    let line = stopped
        .stderr
        .lines()
        .find(|l| l.contains("receive buffer of "))
        .unwrap_or_else(|| panic!("no receive buffer line:\n{}", stopped.stderr));
    // In full, or less with a warning that says what to raise.
    assert!(
        (line.contains("INFO") && line.contains("1048576 bytes per socket granted"))
            || (line.contains("WARN") && line.contains("net.core.rmem_max")),
        "{line}"
    );
}

#[test]
fn busy_polling_answers_and_stops_promptly_on_sigterm() {
    let server = ServerProcess::start(&[
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--threads",
        "1",
        "--busy-poll",
    ]);
    let client = client_of(server.addr());
    let mut tally = UdpCounts::default();
    for request in sample_requests() {
        exchange(&client, &request, &mut tally);
    }
    burst(&burst_client(server.addr()), &sample_requests(), &mut tally);
    let stopped = server.stop_with(Signal::SIGTERM);
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert!(
        stopped.elapsed < Duration::from_secs(1),
        "stopping took {:?}",
        stopped.elapsed
    );
    tally.invalid_utf8 = 2;
    assert_summary_is(&stopped, &tally);
}
