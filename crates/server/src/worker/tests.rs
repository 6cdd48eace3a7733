//! The worker on loopback sockets with ephemeral ports, and the path of one
//! datagram through it, decision by decision.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use upcase_proto::{MAX_PAYLOAD_V4, MAX_PAYLOAD_V6};
use upcase_udp::gso_supported;

use super::*;
use crate::config::{PolicyConfig, RateLimit, ReplyRatio};
use crate::live::LiveStats;

/// Starts a worker on a fresh loopback socket (GRO on), runs `client`
/// against its address, stops it and returns its counts.
fn with_worker(busy_poll: bool, client: impl FnOnce(SocketAddr)) -> Counters {
    with_worker_under(Arc::default(), busy_poll, client)
}

/// [`with_worker`] with the worker applying `policy`.
fn with_worker_under(
    policy: Arc<Policy>,
    busy_poll: bool,
    client: impl FnOnce(SocketAddr),
) -> Counters {
    with_worker_watched(policy, busy_poll, |addr, _| client(addr))
}

/// [`with_worker_under`] with the client also given the worker's live
/// counts; checks that the last counts published are those returned.
fn with_worker_watched(
    policy: Arc<Policy>,
    busy_poll: bool,
    client: impl FnOnce(SocketAddr, &LiveStats),
) -> Counters {
    let (socket, addr) = server_socket();
    upcase_udp::enable_gro(&socket).expect("GRO");
    let (publisher, live) = crate::live::block();
    let worker = Worker::new(socket, policy, busy_poll, Io::default(), publisher).expect("worker");
    let stop = AtomicBool::new(false);
    let counters = std::thread::scope(|s| {
        let serving = s.spawn(|| worker.run(&stop));
        // Set even when the client panics, or the scope would wait forever.
        let _stop = StopOnDrop(&stop);
        client(addr, &live);
        drop(_stop);
        serving.join().expect("no panic")
    })
    .expect("clean stop");
    assert_eq!(
        live.snapshot(),
        counters,
        "everything counted was published"
    );
    counters
}

/// A loopback socket as the binding gives a worker, and its address.
fn server_socket() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(crate::binding::RECV_TIMEOUT))
        .expect("timeout");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn client_socket() -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    client
}

/// Receives `count` replies, GRO trains split; each with its segment size.
fn replies(client: &UdpSocket, count: usize) -> Vec<(Vec<u8>, Option<u16>)> {
    let mut batch = RecvBatch::new(upcase_udp::DEFAULT_BATCH, upcase_proto::RECV_BUFFER_LEN);
    let mut got = Vec::new();
    while got.len() < count {
        batch.recv(client).expect("a reply");
        for d in batch.iter_mut() {
            let size = d.meta.segment_size;
            if d.bytes.is_empty() {
                got.push((Vec::new(), size));
                continue;
            }
            let segment = size.filter(|&s| s > 0).map_or(d.bytes.len(), usize::from);
            got.extend(d.bytes.chunks(segment).map(|s| (s.to_vec(), size)));
        }
    }
    got
}

fn send_train(client: &UdpSocket, to: SocketAddr, train: &[u8], size: u16) {
    let mut batch = SendBatch::new(1);
    let mut queue = batch.queue(client);
    queue.push(Some(to), train, Some(size)).expect("push");
    let report = queue.finish().expect("send");
    assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");
}

/// Sends `requests` to `to` in one batch.
fn send_burst(client: &UdpSocket, to: SocketAddr, requests: &[&[u8]]) {
    let mut batch = SendBatch::default();
    let mut queue = batch.queue(client);
    for request in requests {
        queue.push(Some(to), request, None).expect("push");
    }
    assert_eq!(queue.finish().expect("send").sent, requests.len());
}

#[test]
fn a_burst_of_mixed_datagrams_is_answered_in_order() {
    let requests: [&[u8]; 5] = [b"abc", "straße".as_bytes(), b"\xffx", b"", b"Mixed 123"];
    let counters = with_worker(false, |addr| {
        let client = client_socket();
        send_burst(&client, addr, &requests);
        let got: Vec<Vec<u8>> = replies(&client, requests.len())
            .into_iter()
            .map(|(bytes, _)| bytes)
            .collect();
        let expected: Vec<Vec<u8>> = requests
            .iter()
            .map(|r| upcase_proto::uppercase(r))
            .collect();
        assert_eq!(got, expected);
    });
    assert_eq!(counters.received, 5);
    assert_eq!(counters.replied, 5);
    assert_eq!(counters.invalid_utf8, 1);
    assert_eq!(counters.bytes_out, 3 + 7 + 2 + 9);
}

#[test]
fn an_ascii_train_is_answered_with_one_gso_send() {
    if !gso_supported() {
        println!("note: no UDP GSO on this kernel; test skipped");
        return;
    }
    let train: Vec<u8> = (0..10 * 32 + 7).map(|i| b'a' + (i % 26) as u8).collect();
    let counters = with_worker(false, |addr| {
        let client = client_socket();
        upcase_udp::enable_gro(&client).expect("GRO");
        send_train(&client, addr, &train, 32);
        let got = replies(&client, 11);
        let bytes: Vec<u8> = got.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(bytes, train.to_ascii_uppercase());
        // One GSO send arrives as one buffer at a client with GRO on.
        let sizes: Vec<Option<u16>> = got.iter().map(|(_, size)| *size).collect();
        assert!(sizes.iter().all(|size| *size == Some(32)), "{sizes:?}");
    });
    assert_eq!((counters.received, counters.replied), (11, 11));
    assert_eq!(counters.bytes_out, train.len() as u64);
}

#[test]
fn a_rate_limit_sees_every_segment_of_an_ascii_train() {
    if !gso_supported() {
        println!("note: no UDP GSO on this kernel; test skipped");
        return;
    }
    let policy = Policy::new(PolicyConfig {
        rate_limit: Some(RateLimit {
            per_second: 4,
            table: 16,
        }),
        ..Default::default()
    });
    let train: Vec<u8> = (0..10 * 8).map(|i| b'a' + (i % 26) as u8).collect();
    let counters = with_worker_under(Arc::new(policy), false, |addr| {
        let client = client_socket();
        send_train(&client, addr, &train, 8);
        let got: Vec<Vec<u8>> = replies(&client, 4).into_iter().map(|(b, _)| b).collect();
        let expected: Vec<Vec<u8>> = train
            .chunks(8)
            .take(4)
            .map(|s| s.to_ascii_uppercase())
            .collect();
        assert_eq!(got, expected, "the first four segments, one by one");
    });
    assert_eq!(counters.received, 10);
    assert_eq!(counters.dropped_rate_limited, 6);
    assert_eq!(counters.replied, 4);
}

#[test]
fn a_train_with_unicode_is_answered_segment_by_segment() {
    if !gso_supported() {
        println!("note: no UDP GSO on this kernel; test skipped");
        return;
    }
    // Four 8-byte segments; the third grows from 8 bytes to 9.
    let train = ["abcdefgh", "ijklmnop", "straße!", "qrstuvwx"].concat();
    let counters = with_worker(false, |addr| {
        let client = client_socket();
        send_train(&client, addr, train.as_bytes(), 8);
        let got: Vec<Vec<u8>> = replies(&client, 4).into_iter().map(|(b, _)| b).collect();
        assert_eq!(
            got,
            [&b"ABCDEFGH"[..], b"IJKLMNOP", b"STRASSE!", b"QRSTUVWX"]
        );
    });
    assert_eq!((counters.received, counters.replied), (4, 4));
}

#[test]
fn datagrams_queued_before_the_stop_are_answered() {
    for io in Io::ALL.into_iter().filter(|io| io.is_available()) {
        let (socket, addr) = server_socket();
        let client = client_socket();
        // Queued before the worker exists, as for a thread scheduled late.
        for i in 0..100 {
            client
                .send_to(format!("queued {i}").as_bytes(), addr)
                .expect("send");
        }
        let (publisher, _) = crate::live::block();
        let worker = Worker::new(socket, Arc::default(), false, io, publisher).expect("worker");
        let counters = worker.run(&AtomicBool::new(true)).expect("clean stop");
        assert_eq!((counters.received, counters.replied), (100, 100), "{io}");
        let got: Vec<Vec<u8>> = replies(&client, 100).into_iter().map(|(b, _)| b).collect();
        let expected: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("QUEUED {i}").into_bytes())
            .collect();
        assert_eq!(got, expected, "{io}");
    }
}

#[test]
fn the_counts_are_published_while_the_worker_serves() {
    with_worker_watched(Arc::default(), false, |addr, live| {
        let client = client_socket();
        for i in 1..=3u64 {
            client.send_to(b"live", addr).expect("send");
            assert_eq!(replies(&client, 1)[0].0, b"LIVE");
            // Published after the batch's replies went out: soon, not at once.
            let deadline = Instant::now() + Duration::from_secs(20);
            while live.snapshot().replied < i {
                assert!(
                    Instant::now() < deadline,
                    "never published: {:?}",
                    live.snapshot()
                );
                std::thread::yield_now();
            }
            let seen = live.snapshot();
            assert_eq!((seen.received, seen.replied, seen.bytes_out), (i, i, 4 * i));
        }
    });
}

#[test]
fn a_busy_polling_worker_answers_and_stops() {
    let counters = with_worker(true, |addr| {
        let client = client_socket();
        for i in 0..20 {
            let request = format!("busy {i}");
            client.send_to(request.as_bytes(), addr).expect("send");
            let got = replies(&client, 1);
            assert_eq!(got[0].0, request.to_uppercase().as_bytes());
        }
    });
    assert_eq!(counters.replied, 20);
}

#[test]
fn every_datagram_of_a_mixed_burst_lands_in_one_counter() {
    // A ratio of 1 refuses U+0390 (2 bytes, 6 uppercased); a burst of 6
    // then refuses the rest; 40,000 bytes of U+0390 are too large.
    let policy = Policy::new(PolicyConfig {
        rate_limit: Some(RateLimit {
            per_second: 6,
            table: 16,
        }),
        max_reply_ratio: ReplyRatio::new(1.0),
    });
    let too_large = "\u{390}".repeat(20_000);
    let requests: [&[u8]; 10] = [
        b"abc",
        "ß".as_bytes(),
        "\u{390}".as_bytes(),
        too_large.as_bytes(),
        b"\xff",
        b"",
        b"late 1",
        b"late 2",
        b"late 3",
        b"late 4",
    ];
    let counters = with_worker_under(Arc::new(policy), false, |addr| {
        let client = client_socket();
        send_burst(&client, addr, &requests);
        let got: Vec<Vec<u8>> = replies(&client, 4).into_iter().map(|(b, _)| b).collect();
        assert_eq!(got, [&b"ABC"[..], b"SS", b"\xff", b""]);
    });
    assert_eq!(counters.received, 10);
    assert_eq!(counters.replied, 4);
    assert_eq!(counters.dropped_ratio, 1);
    assert_eq!(counters.dropped_too_large, 1);
    assert_eq!(counters.dropped_rate_limited, 4);
    assert_eq!(counters.invalid_utf8, 1);
    assert_eq!(counters.settled(), counters.received, "{counters:?}");
}

fn v4_peer() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5000)
}
fn v6_peer() -> SocketAddr {
    SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 5000)
}
fn mapped_peer() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), 5000)
}

fn state(policy: Policy) -> State {
    State {
        scratch: Vec::new(),
        queued: Vec::new(),
        segments: Vec::new(),
        counters: Counters::default(),
        live: crate::live::block().0,
        warnings: WarnLimiter::default(),
        policy: Arc::new(policy),
        proxies: None,
    }
}

/// One datagram through steps 3 to 7, its reply taken as sent: the reply's
/// bytes, or `None` when it gets none.
fn run(input: &[u8], peer: SocketAddr, state: &mut State) -> Option<Vec<u8>> {
    let mut buf = input.to_vec();
    let reply = state.reply_to(&mut buf, peer, Client::peer(peer))?;
    let bytes = match reply {
        Reply::InPlace { len } => buf[..len].to_vec(),
        Reply::InScratch { .. } => state.scratch.clone(),
    };
    state.queued.push(state.to_queued(reply, input.len(), peer));
    state.settle_sent(&[], None);
    state.queued.clear();
    Some(bytes)
}

#[test]
fn the_policy_drops_and_counts_before_anything_is_sent() {
    let mut state = state(Policy::new(PolicyConfig {
        rate_limit: Some(RateLimit {
            per_second: 2,
            table: 4,
        }),
        max_reply_ratio: ReplyRatio::new(1.0),
    }));
    // U+0390 is 2 bytes and its uppercase 6: over a ratio of 1.
    assert_eq!(run("\u{390}".as_bytes(), v4_peer(), &mut state), None);
    assert_eq!(
        run("ß".as_bytes(), v4_peer(), &mut state).as_deref(),
        Some(&b"SS"[..])
    );
    assert_eq!(
        run(b"abc", v4_peer(), &mut state),
        None,
        "the burst of 2 is spent"
    );
    assert_eq!(
        state.counters,
        Counters {
            received: 3,
            replied: 1,
            bytes_in: 2 + 2 + 3,
            bytes_out: 2,
            dropped_ratio: 1,
            dropped_rate_limited: 1,
            ..Counters::default()
        }
    );
}

#[test]
fn replies_are_the_uppercase_and_are_counted() {
    let mut state = state(Policy::unlimited());
    let s = &mut state;
    assert_eq!(run(b"abc", v4_peer(), s).as_deref(), Some(&b"ABC"[..]));
    assert_eq!(
        run("straße".as_bytes(), v6_peer(), s).as_deref(),
        Some(&b"STRASSE"[..])
    );
    assert_eq!(
        run(b"\xff\xfeabc", v4_peer(), s).as_deref(),
        Some(&b"\xff\xfeABC"[..])
    );
    assert_eq!(run(b"", v4_peer(), s).as_deref(), Some(&b""[..]));
    assert_eq!(
        state.counters,
        Counters {
            received: 4,
            replied: 4,
            bytes_in: 3 + 7 + 5,
            bytes_out: 3 + 7 + 5,
            invalid_utf8: 1,
            ..Counters::default()
        }
    );
}

#[test]
fn the_limit_follows_the_family_on_the_wire() {
    assert_eq!(Family::of(v4_peer()), Family::V4);
    assert_eq!(Family::of(mapped_peer()), Family::V4);
    assert_eq!(Family::of(v6_peer()), Family::V6);

    // 65,504 ASCII bytes and one U+0390 (2 bytes, uppercased to 6): a
    // request that fits IPv4 whose reply fits only IPv6.
    let mut request = vec![b'a'; MAX_PAYLOAD_V4 - 3];
    request.extend_from_slice("\u{390}".as_bytes());
    let reply_len = upcase_proto::uppercased_len(&request);
    assert!(request.len() <= MAX_PAYLOAD_V4);
    assert!((MAX_PAYLOAD_V4 + 1..=MAX_PAYLOAD_V6).contains(&reply_len));

    let mut state = state(Policy::unlimited());
    assert_eq!(
        run(&request, v6_peer(), &mut state).map(|r| r.len()),
        Some(reply_len)
    );
    assert_eq!(run(&request, mapped_peer(), &mut state), None);
    assert_eq!(run(&request, v4_peer(), &mut state), None);
    assert_eq!(state.counters.received, 3);
    assert_eq!(state.counters.dropped_too_large, 2);
}

#[test]
fn a_dropped_invalid_datagram_still_counts_as_invalid() {
    let mut request = b"\xff".to_vec();
    request.extend_from_slice("\u{390}".repeat(20_000).as_bytes());
    let mut state = state(Policy::unlimited());
    assert_eq!(run(&request, v6_peer(), &mut state), None);
    assert_eq!(state.counters.invalid_utf8, 1);
    assert_eq!(state.counters.dropped_too_large, 1);
}

#[test]
fn replies_the_system_refuses_are_counted_as_send_errors() {
    let mut state = state(Policy::unlimited());
    for (request, peer) in [
        (&b"one"[..], v4_peer()),
        (b"two", v6_peer()),
        (b"3", v4_peer()),
    ] {
        let mut buf = request.to_vec();
        let client = Client::peer(peer);
        let reply = state.reply_to(&mut buf, peer, client).expect("a reply");
        state
            .queued
            .push(state.to_queued(reply, request.len(), peer));
    }
    state.settle_sent(&[1], None);
    assert_eq!(
        state.counters,
        Counters {
            received: 3,
            replied: 2,
            bytes_in: 7,
            bytes_out: 4,
            send_errors: 1,
            ..Counters::default()
        }
    );
}

#[test]
fn peers_are_shown_without_the_mapping() {
    assert_eq!(shown(mapped_peer()).to_string(), "127.0.0.1:5000");
    assert_eq!(shown(v6_peer()).to_string(), "[::1]:5000");
}
