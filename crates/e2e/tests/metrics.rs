//! `--metrics`: the counters in the Prometheus text format, against the
//! real binary: what a scrape says matches the traffic the test sent and
//! the summary at the stop, `promtool check metrics` (Debian's
//! `prometheus` package) accepts it, other paths and bad requests are
//! answered without ever disturbing the UDP and TCP service, and without
//! `--metrics` nothing else listens.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use upcase_e2e::tcp::{connect, exchange};
use upcase_e2e::udp::{ask, client};
use upcase_e2e::{
    PATIENCE, Process, Scrape, ServerProcess, Signal, http_get, http_request, wait_until,
};

fn start(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--bind", "127.0.0.1", "--port", "0", "--threads", "2"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

fn metrics_of(server: &ServerProcess) -> SocketAddr {
    server
        .ready
        .metrics()
        .unwrap_or_else(|| panic!("no metrics in {:?}", server.ready.line()))
}

#[test]
fn the_ready_line_ends_in_the_metrics_url() {
    let server = start(&["--metrics", "127.0.0.1:0"]);
    let line = server.ready.line().to_string();
    let metrics = metrics_of(&server);
    assert_ne!(metrics.port(), 0);
    assert!(
        line.starts_with("The server is ready to receive on udp 127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(", metrics http://{metrics}/metrics")),
        "{line}"
    );
    assert_eq!(server.ready.tcp(), server.ready.udp());
    server.stop_with(Signal::SIGTERM);

    let udp_only = start(&["--transport", "udp", "--metrics", "127.0.0.1:0"]);
    let line = udp_only.ready.line();
    let metrics = metrics_of(&udp_only);
    let udp = udp_only.ready.udp().expect("udp");
    assert_eq!(
        line,
        format!("The server is ready to receive on udp {udp}, metrics http://{metrics}/metrics")
    );
    let text = Scrape::of(metrics).text;
    assert!(
        text.contains("upcase_udp_") && !text.contains("upcase_tcp_"),
        "{text}"
    );
    udp_only.stop_with(Signal::SIGTERM);
}

#[test]
fn scraped_values_match_the_traffic_and_the_summary_and_promtool_accepts_them() {
    let server = start(&["--metrics", "127.0.0.1:0", "--max-reply-ratio", "1"]);
    let metrics = metrics_of(&server);
    let client = client(server.addr());
    let mut bytes_in = 0;
    for request in [&b"one"[..], b"two two", b"\xff\xfe invalid", b""] {
        assert_eq!(ask(&client, request), request.to_ascii_uppercase());
        bytes_in += request.len() as u64;
    }
    // ΐ (2 bytes) uppercases to 6: over a ratio of 1, dropped.
    client.send("ΐ".as_bytes()).expect("send");
    bytes_in += 2;
    let mut stream = connect(server.tcp_addr());
    assert_eq!(exchange(&mut stream, b"tcp text"), b"TCP TEXT");
    drop(stream);

    let mut scrape = Scrape::of(metrics);
    wait_until(
        "the scrape shows every datagram and the closed connection",
        || {
            scrape = Scrape::of(metrics);
            scrape.get("upcase_udp_datagrams_received_total") == 5
                && scrape.get("upcase_tcp_connections_open") == 0
                && scrape.get("upcase_tcp_sent_bytes_total") == 8
        },
    );
    scrape.assert_promtool_accepts();
    let version = scrape
        .text
        .lines()
        .find(|l| l.starts_with("upcase_build_info{version=\""))
        .expect("build info");
    assert!(version.ends_with("\"} 1"), "{version}");
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    for (series, expected) in [
        ("upcase_udp_replies_sent_total", 4),
        ("upcase_udp_received_bytes_total", bytes_in),
        ("upcase_udp_sent_bytes_total", bytes_in - 2),
        ("upcase_udp_invalid_utf8_total", 1),
        ("upcase_udp_dropped_total{reason=\"ratio\"}", 1),
        ("upcase_udp_dropped_total{reason=\"too_large\"}", 0),
        ("upcase_udp_dropped_total{reason=\"rate_limited\"}", 0),
        ("upcase_udp_send_errors_total", 0),
        ("upcase_udp_receive_errors_total", 0),
        ("upcase_udp_batch_datagrams_sum", 5),
        ("upcase_tcp_connections_accepted_total", 1),
        ("upcase_tcp_received_bytes_total", 8),
    ] {
        assert_eq!(scrape.get(series), expected, "{series}");
    }
    let batches = scrape.get("upcase_udp_batch_datagrams_count");
    assert!(
        (1..=5).contains(&batches),
        "{batches} batches for 5 datagrams"
    );
    assert_eq!(
        scrape.get("upcase_udp_batch_datagrams_bucket{le=\"+Inf\"}"),
        batches
    );

    let stopped = server.stop_with(Signal::SIGTERM);
    let (udp, tcp) = (stopped.udp(), stopped.tcp());
    for (series, summary) in [
        ("upcase_udp_datagrams_received_total", udp.received),
        ("upcase_udp_replies_sent_total", udp.replied),
        ("upcase_udp_received_bytes_total", udp.bytes_in),
        ("upcase_udp_sent_bytes_total", udp.bytes_out),
        ("upcase_udp_invalid_utf8_total", udp.invalid_utf8),
        (
            "upcase_udp_dropped_total{reason=\"too_large\"}",
            udp.dropped_too_large,
        ),
        (
            "upcase_udp_dropped_total{reason=\"rate_limited\"}",
            udp.dropped_rate_limited,
        ),
        (
            "upcase_udp_dropped_total{reason=\"ratio\"}",
            udp.dropped_ratio,
        ),
        ("upcase_udp_send_errors_total", udp.send_errors),
        ("upcase_tcp_connections_accepted_total", tcp.accepted),
        ("upcase_tcp_connections_refused_total", tcp.refused),
        ("upcase_tcp_connections_timed_out_total", tcp.timed_out),
        ("upcase_tcp_received_bytes_total", tcp.bytes_in),
        ("upcase_tcp_sent_bytes_total", tcp.bytes_out),
        ("upcase_tcp_errors_total", tcp.errors),
        (
            "upcase_tcp_connections_closed_at_stop_total",
            tcp.closed_at_stop,
        ),
    ] {
        assert_eq!(scrape.get(series), summary, "{series} against the summary");
    }
}

#[test]
fn other_paths_methods_and_garbage_get_an_error_status() {
    let server = start(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_of(&server);
    let ok = http_get(metrics, "/metrics");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for path in ["/", "/metric", "/metrics/x", "/favicon.ico"] {
        assert_eq!(http_get(metrics, path).status, 404, "{path}");
    }
    let post = http_request(
        metrics,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    let garbage = http_request(metrics, b"\x16\x03\x01 not http at all\r\n\r\n");
    assert_eq!(garbage.status, 400);
    let huge = http_request(metrics, &vec![b'a'; 9_000]);
    assert_eq!(huge.status, 431);
    assert_eq!(http_get(metrics, "/metrics").status, 200, "still serving");
    server.stop_with(Signal::SIGTERM);
}

#[test]
fn silent_and_garbage_connections_never_disturb_udp_or_tcp() {
    let server = start(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_of(&server);
    // More silent connections than scrapes served at once, and garbage.
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(metrics).expect("connect to the metrics"))
        .collect();
    let mut garbage = TcpStream::connect(metrics).expect("connect");
    garbage.write_all(&[0xff; 4096]).expect("garbage");
    let client = client(server.addr());
    for i in 0..50 {
        let request = format!("still answered {i}");
        assert_eq!(
            ask(&client, request.as_bytes()),
            request.to_uppercase().as_bytes()
        );
    }
    let mut stream = connect(server.tcp_addr());
    assert_eq!(exchange(&mut stream, b"and over tcp"), b"AND OVER TCP");
    drop((silent, garbage));
    let stopped = server.stop_with(Signal::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.udp().replied, 50);
}

/// The TCP sockets of process `pid` that listen, by local port, read from
/// its descriptors and the kernel's socket tables (Linux's /proc).
#[cfg(target_os = "linux")]
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is fields[1] (ADDR:PORT in hex), st fields[3]
            // (0A: listening), inode fields[9].
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().expect("port");
                ports.push(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports.sort_unstable();
    ports
}

// Reads the server's sockets from /proc: Linux only.
#[cfg(target_os = "linux")]
#[test]
fn without_metrics_nothing_but_the_service_listens() {
    let plain = start(&[]);
    assert_eq!(listening_ports(plain.pid()), [plain.tcp_addr().port()]);
    let udp_only = start(&["--transport", "udp"]);
    assert_eq!(listening_ports(udp_only.pid()), Vec::<u16>::new());
    let with = start(&["--metrics", "127.0.0.1:0"]);
    let mut expected = vec![with.tcp_addr().port(), metrics_of(&with).port()];
    expected.sort_unstable();
    assert_eq!(listening_ports(with.pid()), expected);
    for server in [plain, udp_only, with] {
        server.stop_with(Signal::SIGTERM);
    }
}

#[test]
fn a_metrics_address_in_use_is_one_error_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut command = std::process::Command::new(upcase_e2e::binary("upcase-server"));
    command.args(["--bind", "127.0.0.1", "--port", "0", "--metrics", &addr]);
    let out = Process::spawn(&mut command)
        .start()
        .and_then(|p| p.finish(PATIENCE))
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: cannot listen for metrics on {addr}: ")),
        "{stderr}"
    );
}
