//! `--proxy-protocol-from` against the real server on loopback, each test
//! playing the proxy: nginx's v1 line at the front of a UDP session's first
//! datagram, v2 on every datagram (IPv4 and IPv6 clients, over IPv4 and
//! IPv6), v2 alone in a datagram, TCP with v1 and v2, malformed headers,
//! sources that are not listed, the rate limit charged to the header's
//! client, and a session table that stays at its size.
//!
//! Each proxy socket is a UDP socket of its own on loopback: to the server,
//! one proxy address and port, so one session.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;

use upcase_e2e::tcp::{closed_by_server, connect, exchange};
use upcase_e2e::udp::{ask, client};
use upcase_e2e::{
    HeldSockets, ProxyCounts, Scrape, ServerProcess, Signal, Stopped, binary, wait_until,
};
use upcase_proto::proxy::{Addresses, Transport, V2_SIGNATURE, encode_v2};

/// What Debian's nginx 1.22 puts in front of a UDP session's first
/// datagram with `proxy_protocol on` (captured): `TCP4`, even for UDP.
const NGINX_V1: &[u8] = b"PROXY TCP4 10.0.1.12 10.0.100.100 42631 12000\r\n";
/// The client that line names.
const NGINX_CLIENT: &str = "10.0.1.12:42631";

/// A server on 127.0.0.1 with one worker, for which 127.0.0.1 is a proxy.
fn start(extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--threads",
        "1",
        "--proxy-protocol-from",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

/// A v2 header for `source` over `transport`, to the proxy's port 12000.
fn v2(transport: Transport, source: &str) -> Vec<u8> {
    let source = addr(source);
    let destination = match source {
        SocketAddr::V4(_) => addr("10.0.100.100:12000"),
        SocketAddr::V6(_) => addr("[2001:db8::100]:12000"),
    };
    encode_v2(
        transport,
        Some(Addresses {
            source,
            destination,
        }),
        &[],
    )
    .expect("fits")
}

/// The PROXY counters of a summary; panics if it has none.
fn proxy_counts(stopped: &Stopped) -> ProxyCounts {
    stopped
        .summary()
        .proxy
        .unwrap_or_else(|| panic!("no proxy counters in the summary:\n{}", stopped.stderr))
}

/// Every datagram received is replied, dropped, or a header alone.
fn assert_counters_add_up(stopped: &Stopped) {
    let (udp, proxy) = (stopped.udp(), proxy_counts(stopped));
    assert_eq!(
        udp.received,
        udp.accounted_for() + proxy.header_only + proxy.malformed,
        "counters do not add up:\n{}",
        stopped.stderr
    );
}

/// The server's metrics once `series` reads `value`: a worker publishes
/// its counts just after it sends a batch's replies.
fn scrape_when(server: &ServerProcess, series: &str, value: u64) -> Scrape {
    let metrics = server.ready.metrics().expect("metrics");
    let mut scrape = Scrape::of(metrics);
    wait_until(&format!("{series} to read {value}"), || {
        scrape = Scrape::of(metrics);
        scrape.value(series) == Some(value)
    });
    scrape
}

fn stop(server: ServerProcess) -> Stopped {
    let stopped = server.stop_with(Signal::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    stopped
}

#[test]
fn nginx_s_v1_line_names_the_client_of_the_whole_session() {
    let mut server = start(&["-v"]);
    let nginx = client(server.addr());
    let first = [NGINX_V1, b"hello"].concat();
    assert_eq!(ask(&nginx, &first), b"HELLO", "the payload only, to nginx");
    assert_eq!(
        ask(&nginx, b"world"),
        b"WORLD",
        "later datagrams carry none"
    );
    assert_eq!(ask(&nginx, b"PROXY"), b"PROXY", "no space: payload");
    // The log names the client and the proxy it came through.
    let via = format!("{NGINX_CLIENT} via {}", nginx.local_addr().expect("local"));
    let line = server.wait_for_log(&via, 3);
    assert!(line.contains("5 bytes in, 5 out"), "{line}");
    let stopped = stop(server);
    let udp = stopped.udp();
    assert_eq!((udp.received, udp.replied), (3, 3));
    assert_eq!(udp.bytes_in, 15, "the header is not payload");
    let proxy = proxy_counts(&stopped);
    assert_eq!((proxy.attributed, proxy.unattributed), (3, 0));
    assert_eq!(proxy.sessions, 1);
    assert_counters_add_up(&stopped);
}

#[test]
fn v2_on_every_datagram_names_ipv4_and_ipv6_clients() {
    let server = start(&["-v"]);
    let proxy = client(server.addr());
    for (source, payload) in [
        ("192.0.2.7:5353", &b"over ipv4"[..]),
        ("[2001:db8::7]:5353", b"from ipv6"),
        ("192.0.2.8:1", b"another"),
    ] {
        let datagram = [v2(Transport::Datagram, source), payload.to_vec()].concat();
        assert_eq!(ask(&proxy, &datagram), payload.to_ascii_uppercase());
    }
    // The last header's client is the session's.
    assert_eq!(ask(&proxy, b"bare"), b"BARE");
    let stopped = stop(server);
    for client in [
        "192.0.2.7:5353 via",
        "[2001:db8::7]:5353 via",
        "192.0.2.8:1 via",
    ] {
        assert!(
            stopped.stderr.contains(client),
            "{client}:\n{}",
            stopped.stderr
        );
    }
    let bare = stopped
        .stderr
        .lines()
        .find(|line| line.contains("4 bytes in"))
        .expect("the bare datagram's line");
    assert!(bare.contains("192.0.2.8:1 via"), "{bare}");
    assert_eq!(proxy_counts(&stopped).attributed, 4);
    assert_counters_add_up(&stopped);
}

#[test]
fn a_proxy_on_ipv6_is_read_too() {
    let server = ServerProcess::start(&[
        "--bind",
        "::1",
        "--port",
        "0",
        "--proxy-protocol-from",
        "::1",
    ]);
    let proxy = client(server.addr());
    assert!(proxy.local_addr().expect("local").is_ipv6());
    let datagram = [v2(Transport::Datagram, "[2001:db8::9]:53"), b"six".to_vec()].concat();
    assert_eq!(ask(&proxy, &datagram), b"SIX");
    let v1 = [NGINX_V1, b"four"].concat();
    assert_eq!(ask(&proxy, &v1), b"FOUR");
    let stopped = stop(server);
    assert_eq!(proxy_counts(&stopped).attributed, 2);
}

#[test]
fn a_header_alone_opens_a_session_and_gets_no_reply() {
    let server = start(&[]);
    let proxy = client(server.addr());
    proxy
        .send(&v2(Transport::Datagram, "[2001:db8::5]:443"))
        .expect("send the header");
    // Had the header been answered, its (empty) reply would come first.
    assert_eq!(ask(&proxy, b"query"), b"QUERY");
    assert_eq!(ask(&proxy, b"again"), b"AGAIN");
    let stopped = stop(server);
    let udp = stopped.udp();
    assert_eq!((udp.received, udp.replied), (3, 2));
    let counts = proxy_counts(&stopped);
    assert_eq!(counts.header_only, 1);
    assert_eq!(counts.attributed, 3, "the header and both queries");
    assert_eq!(counts.unattributed, 0, "the queries belong to the session");
    assert_counters_add_up(&stopped);
}

#[test]
fn tcp_from_a_listed_proxy_starts_with_a_v1_or_v2_header() {
    let mut server = start(&["-v"]);
    let tcp = server.tcp_addr();
    let mut nginx = connect(tcp);
    let v1 = [
        b"PROXY TCP4 10.0.1.13 10.0.100.100 42632 12000\r\n".as_slice(),
        b"abc",
    ]
    .concat();
    assert_eq!(exchange(&mut nginx, &v1), b"ABC");
    server.wait_for_log("client=10.0.1.13:42632", 1);
    let mut haproxy = connect(tcp);
    let v2 = [v2(Transport::Stream, "[2001:db8::13]:80"), b"def".to_vec()].concat();
    assert_eq!(exchange(&mut haproxy, &v2), b"DEF");
    server.wait_for_log("client=[2001:db8::13]:80", 1);
    // The header may come in pieces, as any stream's bytes.
    let mut slow = connect(tcp);
    let (head, tail) = v1.split_at(10);
    slow.write_all(head).expect("send");
    slow.flush().expect("flush");
    assert_eq!(exchange(&mut slow, tail), b"ABC");
    // Without a header, nothing is uppercased and the connection is closed.
    let mut bare = connect(tcp);
    bare.write_all(b"no header here").expect("send");
    assert!(
        closed_by_server(&mut bare),
        "a header-less connection is closed"
    );
    let stopped = stop(server);
    let counts = proxy_counts(&stopped);
    assert_eq!(counts.tcp, Some((3, 0, 1)), "{}", stopped.stderr);
    assert_eq!(stopped.tcp().bytes_out, 9);
    assert!(
        stopped
            .stderr
            .contains("is closed unanswered: it does not start with a PROXY header"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_malformed_header_is_dropped_counted_and_leaves_the_session_alone() {
    let server = start(&["--metrics", "127.0.0.1:0"]);
    let proxy = client(server.addr());
    assert_eq!(ask(&proxy, &[NGINX_V1, b"open"].concat()), b"OPEN");
    let too_long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
    for malformed in [
        &b"PROXY TCP4 10.0.1.12\r\nshort"[..],
        b"PROXY UDP4 10.0.1.12 10.0.100.100 1 2\r\nudp",
        &V2_SIGNATURE[..],
        &too_long,
    ] {
        proxy.send(malformed).expect("send");
    }
    // Replies come in order: had any malformed one been answered, its
    // reply would come before this one.
    assert_eq!(ask(&proxy, b"after"), b"AFTER");
    let scrape = scrape_when(
        &server,
        "upcase_udp_proxy_datagrams_total{origin=\"attributed\"}",
        2,
    );
    assert_eq!(
        scrape.get("upcase_udp_dropped_total{reason=\"proxy_malformed\"}"),
        4
    );
    assert_eq!(
        scrape.get("upcase_udp_proxy_datagrams_total{origin=\"malformed\"}"),
        4
    );
    let stopped = stop(server);
    let counts = proxy_counts(&stopped);
    assert_eq!((counts.malformed, counts.attributed), (4, 2));
    assert!(
        stopped
            .stderr
            .contains("is not answered: it starts with a PROXY v1 line"),
        "{}",
        stopped.stderr
    );
    assert_counters_add_up(&stopped);
}

#[test]
fn other_sources_send_payload_even_when_it_looks_like_a_header() {
    // Listed: a block loopback is not in, given through the environment.
    let mut command = Command::new(binary("upcase-server"));
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--threads", "1"])
        .env("UPCASE_PROXY_PROTOCOL_FROM", "192.0.2.0/24, 2001:db8::/32");
    let server = ServerProcess::start_command(&mut command);
    let peer = client(server.addr());
    let v1 = [NGINX_V1, b"hello"].concat();
    assert_eq!(ask(&peer, &v1), v1.to_ascii_uppercase(), "echoed whole");
    let v2 = [v2(Transport::Datagram, "192.0.2.7:1"), b"x".to_vec()].concat();
    assert_eq!(ask(&peer, &v2), v2.to_ascii_uppercase());
    let stopped = stop(server);
    assert!(
        stopped
            .stderr
            .contains("accepted from 192.0.2.0/24, 2001:db8::/32"),
        "{}",
        stopped.stderr
    );
    let counts = proxy_counts(&stopped);
    assert_eq!(
        (counts.attributed, counts.unattributed, counts.malformed),
        (0, 0, 0)
    );
    assert_eq!(stopped.udp().replied, 2);
}

#[test]
fn a_listed_proxy_s_own_datagrams_are_answered_and_counted_apart() {
    let server = start(&["--metrics", "127.0.0.1:0"]);
    let health = client(server.addr());
    assert_eq!(ask(&health, b"probe"), b"PROBE");
    let unknown = [b"PROXY UNKNOWN\r\n".as_slice(), b"local"].concat();
    assert_eq!(ask(&health, &unknown), b"LOCAL");
    scrape_when(
        &server,
        "upcase_udp_proxy_datagrams_total{origin=\"unattributed\"}",
        2,
    );
    let stopped = stop(server);
    assert_eq!(proxy_counts(&stopped).unattributed, 2);
    assert_counters_add_up(&stopped);
}

#[test]
fn the_rate_limit_is_charged_to_the_header_s_client() {
    let rate: u32 = 3;
    let server = start(&["--rate-limit", "3"]);
    // One nginx, two of its sessions: a flooding client and a polite one,
    // both from 127.0.0.1 as the server sees them.
    let flooding = client(server.addr());
    let polite = client(server.addr());
    let began = std::time::Instant::now();
    let flood: u64 = 60;
    flooding.send(&[NGINX_V1, b"flood"].concat()).expect("send");
    for _ in 1..flood {
        flooding.send(b"flood").expect("send");
    }
    let flood_time = began.elapsed();
    // A burst of `rate` at once: all within the polite client's bucket,
    // none within the proxy's, which the flood has emptied.
    let header = b"PROXY TCP4 10.0.1.99 10.0.100.100 5000 12000\r\n";
    polite
        .send(&[header.as_slice(), b"polite 0"].concat())
        .expect("send");
    for i in 1..rate {
        polite.send(format!("polite {i}").as_bytes()).expect("send");
    }
    let mut buf = [0; 64];
    for i in 0..rate {
        let len = polite
            .recv(&mut buf)
            .expect("the polite client is answered");
        assert_eq!(&buf[..len], format!("POLITE {i}").as_bytes());
    }
    let stopped = stop(server);
    let udp = stopped.udp();
    let allowed = u64::from(rate) * (flood_time.as_secs() + 2);
    assert!(
        udp.dropped_rate_limited >= flood.saturating_sub(allowed),
        "{} of {flood} limited in {flood_time:?}:\n{}",
        udp.dropped_rate_limited,
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains(&format!("reply to {NGINX_CLIENT} via 127.0.0.1:")),
        "the warning names the client:\n{}",
        stopped.stderr
    );
    assert_eq!(proxy_counts(&stopped).attributed, flood + u64::from(rate));
    assert_counters_add_up(&stopped);
}

#[test]
fn the_session_table_stays_at_its_size_whatever_is_sent() {
    let server = start(&["--proxy-session-table", "8", "--metrics", "127.0.0.1:0"]);
    let first = client(server.addr());
    assert_eq!(ask(&first, &[NGINX_V1, b"first"].concat()), b"FIRST");
    let opened = 100u64;
    for n in 1..opened {
        let proxy: UdpSocket = client(server.addr());
        let header = format!("PROXY TCP4 10.1.0.{} 10.0.100.100 {n} 12000\r\nhi", n % 250);
        assert_eq!(ask(&proxy, header.as_bytes()), b"HI");
    }
    let scrape = scrape_when(
        &server,
        "upcase_udp_proxy_datagrams_total{origin=\"attributed\"}",
        opened,
    );
    scrape.assert_promtool_accepts();
    assert_eq!(scrape.get("upcase_udp_proxy_session_slots"), 8);
    assert_eq!(scrape.get("upcase_udp_proxy_sessions"), 8);
    assert_eq!(
        scrape.get("upcase_udp_proxy_sessions_evicted_total"),
        opened - 8
    );
    // The first session, the least recently seen, made room long ago: its
    // proxy's header-less datagram is the proxy's own again.
    assert_eq!(ask(&first, b"later"), b"LATER");
    let stopped = stop(server);
    let counts = proxy_counts(&stopped);
    assert_eq!((counts.sessions, counts.sessions_evicted), (8, opened - 8));
    assert_eq!((counts.attributed, counts.unattributed), (opened, 1));
    assert_counters_add_up(&stopped);
}

#[test]
fn a_bad_block_is_one_error_line() {
    for (bad, why) in [
        ("10.0.0.1/8", "the block is 10.0.0.0/8"),
        ("nginx", "\"nginx\" is not an address block"),
        ("10.0.0.0/33", "longer than an IPv4 address"),
    ] {
        let out = Command::new(binary("upcase-server"))
            .args(["--port", "0", "--proxy-protocol-from", bad])
            .output()
            .expect("run the server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{bad}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(why),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn workers_sharing_an_inherited_socket_share_its_sessions() {
    // Four workers block on one socket (systemd's), and any of them may
    // receive a session's next datagram.
    let held = HeldSockets::udp("127.0.0.1");
    let server = held.start_server(&[
        "--threads",
        "4",
        "--proxy-protocol-from",
        "127.0.0.1",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let nginx = client(held.udp_addr().expect("udp"));
    assert_eq!(ask(&nginx, &[NGINX_V1, b"first"].concat()), b"FIRST");
    let later = 40;
    for i in 0..later {
        let request = format!("later {i}");
        assert_eq!(
            ask(&nginx, request.as_bytes()),
            request.to_uppercase().as_bytes()
        );
    }
    let scrape = scrape_when(
        &server,
        "upcase_udp_proxy_datagrams_total{origin=\"attributed\"}",
        later + 1,
    );
    assert_eq!(
        scrape.get("upcase_udp_proxy_session_slots"),
        16_384,
        "one table for the one socket, not one per worker"
    );
    let stopped = stop(server);
    let counts = proxy_counts(&stopped);
    assert_eq!((counts.attributed, counts.unattributed), (later + 1, 0));
    assert_eq!(counts.sessions, 1);
}
