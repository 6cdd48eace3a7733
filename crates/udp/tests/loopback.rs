//! Batch I/O over real loopback sockets, on each path this system has:
//! every test that is not about GRO or GSO runs once per path (the
//! `batched` and `portable` modules at the end), and the offload tests say
//! what each path does with a train.
// Those per-path bodies are plain functions, which the workspace's
// `allow-unwrap-in-tests` does not know for tests.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use upcase_e2e::lowercase_text;
use upcase_udp::{DEFAULT_BATCH, Io, RecvBatch, SendBatch, gso_supported, opts};

/// Slots that hold any datagram, and any GRO train, whole.
fn whole_datagrams(io: Io) -> RecvBatch {
    RecvBatch::with_io(DEFAULT_BATCH, 65_536, io)
}

fn bound() -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // Large datagrams in bulk would overflow the default buffer.
    let granted = opts::set_recv_buffer(&socket, 4 << 20).expect("SO_RCVBUF");
    assert!(granted >= 212_992, "granted {granted}");
    socket
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("local address")
}

/// Receives until `count` datagrams (GRO segments counted one by one) came.
fn receive(socket: &UdpSocket, batch: &mut RecvBatch, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} arrived",
            got.len()
        );
        batch.recv(socket).expect("recvmmsg");
        for d in batch.iter() {
            assert!(!d.meta.truncated);
            for segment in d.segments() {
                got.push((segment.to_vec(), d.meta.peer.expect("a sender")));
            }
        }
    }
    got
}

fn batches_of_any_size_round_trip_with_their_peers(io: Io) {
    let server = bound();
    let clients = [bound(), bound()];
    let sizes = [0, 1, 100, 1_500, 9_000, 65_507];
    let mut batch = SendBatch::with_io(DEFAULT_BATCH, io);
    for (c, client) in clients.iter().enumerate() {
        let messages: Vec<Vec<u8>> = sizes.iter().map(|&n| lowercase_text(c, n)).collect();
        let mut queue = batch.queue(client);
        for m in &messages {
            queue.push(Some(addr(&server)), m, None).unwrap();
        }
        let report = queue.finish().unwrap();
        assert_eq!((report.sent, report.failed), (sizes.len(), 0));
    }

    let mut recv = whole_datagrams(io);
    let mut replies = SendBatch::with_io(DEFAULT_BATCH, io);
    let mut seen = 0;
    while seen < 2 * sizes.len() {
        recv.recv(&server).unwrap();
        // Answer from the receive slots themselves: uppercase in place, then
        // send the same bytes back.
        let mut queue = replies.queue(&server);
        for d in recv.iter_mut() {
            let peer = d.meta.peer.unwrap();
            let c = clients
                .iter()
                .position(|c| addr(c) == peer)
                .expect("a known peer");
            assert_eq!(d.bytes, lowercase_text(c, d.bytes.len()), "from client {c}");
            d.bytes.make_ascii_uppercase();
            let reply: &[u8] = d.bytes;
            queue.push(Some(peer), reply, None).unwrap();
            seen += 1;
        }
        assert_eq!(queue.finish().unwrap().failed, 0);
    }
    assert_eq!(seen, 2 * sizes.len());

    for (c, client) in clients.iter().enumerate() {
        let mut got = receive(client, &mut recv, sizes.len());
        got.sort_by_key(|(bytes, _)| bytes.len());
        for ((bytes, peer), &size) in got.iter().zip(&sizes) {
            assert_eq!(*peer, addr(&server));
            assert_eq!(*bytes, lowercase_text(c, size).to_ascii_uppercase());
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn gso_trains_arrive_coalesced_with_gro_and_split_without() {
    if !gso_supported() {
        println!("note: this kernel refuses UDP_SEGMENT; GSO/GRO test skipped");
        return;
    }
    let server = bound();
    opts::enable_gro(&server).unwrap();
    let client = bound();
    let segments: Vec<Vec<u8>> = (0..10).map(|i| lowercase_text(i, 100)).collect();
    let mut train = segments.concat();
    train.extend_from_slice(&lowercase_text(10, 40)); // a shorter last segment
    let mut batch = SendBatch::with_io(DEFAULT_BATCH, Io::Batched);
    let mut queue = batch.queue(&client);
    queue.push(Some(addr(&server)), &train, Some(100)).unwrap();
    assert_eq!(queue.finish().unwrap().sent, 1);

    let mut recv = whole_datagrams(Io::Batched);
    let mut coalesced = 0;
    let mut got = Vec::new();
    while got.len() < 11 {
        recv.recv(&server).unwrap();
        for d in recv.iter() {
            if d.bytes.len() > 100 {
                assert_eq!(d.meta.segment_size, Some(100));
                coalesced += 1;
            }
            got.extend(d.segments().map(<[u8]>::to_vec));
        }
    }
    assert!(
        coalesced >= 1,
        "no coalesced buffer among {} datagrams",
        got.len()
    );
    assert_eq!(got.concat(), train);

    // Replying with the same segment size splits the train again for a
    // client without GRO.
    let mut queue = batch.queue(&server);
    queue.push(Some(addr(&client)), &train, Some(100)).unwrap();
    assert_eq!(queue.finish().unwrap().sent, 1);
    let mut plain = RecvBatch::with_io(16, 2048, Io::Batched);
    let got = receive(&client, &mut plain, 11);
    let lens: Vec<usize> = got.iter().map(|(b, _)| b.len()).collect();
    assert_eq!(lens, [100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 40]);
    assert_eq!(
        got.iter()
            .map(|(b, _)| b.clone())
            .collect::<Vec<_>>()
            .concat(),
        train
    );
}

fn batches_larger_than_one_system_call_are_sent_whole(io: Io) {
    let server = bound();
    let client = bound();
    let count = 1_500; // more than the 1024 messages one sendmmsg takes
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("m{i:05}").into_bytes())
        .collect();
    let mut batch = SendBatch::with_io(count, io);
    let mut queue = batch.queue(&client);
    for m in &messages {
        queue.push(Some(addr(&server)), m, None).unwrap();
    }
    let report = queue.finish().unwrap();
    assert_eq!((report.sent, report.failed), (count, 0));
    let got = receive(&server, &mut RecvBatch::with_io(256, 64, io), count);
    let got: Vec<Vec<u8>> = got.into_iter().map(|(b, _)| b).collect();
    assert_eq!(got, messages);

    // A small batch flushes by itself when full.
    let mut small = SendBatch::with_io(4, io);
    let mut queue = small.queue(&client);
    for m in &messages[..10] {
        queue.push(Some(addr(&server)), m, None).unwrap();
    }
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.finish().unwrap().sent, 10);
    let got = receive(&server, &mut RecvBatch::with_io(4, 64, io), 10);
    assert_eq!(got.len(), 10);
}

fn a_failing_message_is_skipped_and_the_rest_still_sent(io: Io) {
    let server = bound();
    let client = bound();
    let closed = addr(&bound()); // the socket is dropped: nobody listens there
    let too_big = vec![b'x'; 65_508];
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let mut batch = SendBatch::with_io(DEFAULT_BATCH, io);
    let mut queue = batch.queue(&client);
    queue.push(Some(addr(&server)), b"first", None).unwrap();
    queue.push(Some(addr(&server)), &too_big, None).unwrap(); // EMSGSIZE
    queue.push(Some(addr(&server)), b"second", None).unwrap();
    queue.push(Some(closed), b"to nobody", None).unwrap();
    queue.push(Some(v6), b"wrong family", None).unwrap(); // EAFNOSUPPORT
    queue.push(Some(addr(&server)), b"third", None).unwrap();
    assert_eq!(queue.failed(), &[] as &[usize]);
    queue.flush().unwrap();
    assert_eq!(queue.failed(), &[1, 4]);
    let report = queue.finish().unwrap();
    assert_eq!((report.sent, report.failed), (4, 2));
    assert!(report.first_error.is_some());

    let got = receive(&server, &mut whole_datagrams(io), 3);
    let got: Vec<Vec<u8>> = got.into_iter().map(|(b, _)| b).collect();
    assert_eq!(got, [&b"first"[..], b"second", b"third"]);
}

fn refused_datagrams_on_a_connected_socket_are_not_fatal(io: Io) {
    let client = bound();
    client.connect(addr(&bound())).unwrap(); // that socket is gone at once
    let mut batch = SendBatch::with_io(DEFAULT_BATCH, io);
    let mut refused = 0;
    for round in 0..3 {
        let mut queue = batch.queue(&client);
        for _ in 0..5 {
            queue.push(None, b"anyone?", None).unwrap();
        }
        let report = queue.finish().unwrap();
        assert_eq!(report.sent + report.failed, 5, "round {round}");
        if let Some(e) = report.first_error {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        refused += report.failed;
    }
    // Loopback answers each datagram with an ICMP port unreachable at once,
    // so the kernel reports refusals within these batches.
    assert!(refused > 0);
}

fn copies_outlive_their_source(io: Io) {
    let server = bound();
    let client = bound();
    let mut batch = SendBatch::with_io(2, io);
    let mut queue = batch.queue(&client);
    for i in 0..5 {
        let text = format!("copy {i}"); // dropped before the flush
        queue
            .push_copy(Some(addr(&server)), text.as_bytes(), None)
            .unwrap();
    }
    assert_eq!(queue.finish().unwrap().sent, 5);
    let got = receive(&server, &mut whole_datagrams(io), 5);
    let got: Vec<String> = got
        .into_iter()
        .map(|(b, _)| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(got, ["copy 0", "copy 1", "copy 2", "copy 3", "copy 4"]);
}

fn long_datagrams_are_flagged_as_cut_and_empty_sockets_do_not_block(io: Io) {
    let server = bound();
    let client = bound();
    let mut recv = RecvBatch::with_io(4, 16, io);
    assert_eq!(recv.try_recv(&server).unwrap(), 0);
    server
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let err = recv.recv(&server).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);

    client
        .send_to(&lowercase_text(0, 100), addr(&server))
        .unwrap();
    client.send_to(b"short", addr(&server)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < 2 && Instant::now() < deadline {
        recv.try_recv(&server).unwrap();
        got.extend(recv.iter().map(|d| (d.bytes.to_vec(), d.meta.truncated)));
    }
    assert_eq!(
        got,
        [(lowercase_text(0, 16), true), (b"short".to_vec(), false)]
    );
    assert_eq!(recv.slot_len(), 16);
    assert_eq!(recv.capacity(), 4);
}

/// The kernel rewrites a header's address length, flags and control length
/// on each receive; a header reused without a reset would cut the next
/// sender's address to the last one's length (an IPv6 sender after an IPv4
/// one) or carry the last datagram's flags.
fn a_reused_header_holds_the_next_datagram_whole(io: Io) {
    use std::net::Ipv6Addr;
    let Ok(server6) = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)) else {
        eprintln!("note: no IPv6 loopback here; the IPv6 half of this test is skipped");
        return;
    };
    let client6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).expect("bind ::1");
    let (server4, client4) = (bound(), bound());
    server6
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut recv = RecvBatch::with_io(4, 16, io);

    // Rounds of three, one and three datagrams, each over IPv4 then IPv6:
    // every header an IPv6 datagram lands in was last filled over IPv4, with
    // a shorter address, and the first of each IPv4 round is cut.
    for round in [3u8, 1, 3] {
        for (server, client) in [(&server4, &client4), (&server6, &client6)] {
            for i in 0..round {
                let len = if i == 0 && addr(server).is_ipv4() {
                    40
                } else {
                    8
                };
                client
                    .send_to(&lowercase_text(usize::from(i), len), addr(server))
                    .unwrap();
            }
            let mut got = Vec::new();
            while got.len() < usize::from(round) {
                recv.recv(server).unwrap();
                got.extend(
                    recv.iter()
                        .map(|d| (d.bytes.len(), d.meta.truncated, d.meta.peer)),
                );
            }
            let expected: Vec<_> = (0..round)
                .map(|i| {
                    let cut = i == 0 && addr(server).is_ipv4();
                    (if cut { 16 } else { 8 }, cut, Some(addr(client)))
                })
                .collect();
            assert_eq!(got, expected, "round of {round} to {}", addr(server));
        }
    }
}

#[test]
fn the_poller_wakes_for_the_readable_socket_only() {
    let sockets = [bound(), bound()];
    let b = &sockets[1];
    let mut poller = upcase_udp::Poller::new(&sockets);
    assert_eq!(poller.wait(Duration::from_millis(1)).unwrap(), 0);
    b.send_to(b"wake", addr(b)).unwrap();
    assert_eq!(poller.wait(Duration::from_secs(5)).unwrap(), 1);
    assert!(!poller.is_readable(0));
    assert!(poller.is_readable(1));
}

/// A train leaves as its datagrams (the kernel splits it on the batched
/// path, the portable path sends each) and counts as one message.
fn a_gso_train_reaches_its_peer_as_datagrams(io: Io) {
    if io == Io::Batched && !gso_supported() {
        println!("note: this kernel refuses UDP_SEGMENT; the batched half is skipped");
        return;
    }
    let server = bound();
    let client = bound();
    let mut train: Vec<u8> = (0..10).flat_map(|i| lowercase_text(i, 100)).collect();
    train.extend_from_slice(&lowercase_text(10, 40));
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let mut batch = SendBatch::with_io(DEFAULT_BATCH, io);
    let mut queue = batch.queue(&client);
    queue.push(Some(addr(&server)), &train, Some(100)).unwrap();
    queue.push(Some(v6), &train, Some(100)).unwrap(); // EAFNOSUPPORT
    queue
        .push(Some(addr(&server)), b"after", Some(100))
        .unwrap();
    let report = queue.finish().unwrap();
    assert_eq!((report.sent, report.failed), (2, 1));

    let mut plain = RecvBatch::with_io(16, 2048, io);
    let got = receive(&server, &mut plain, 12);
    let lens: Vec<usize> = got.iter().map(|(b, _)| b.len()).collect();
    assert_eq!(
        lens,
        [100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 40, 5]
    );
    let bytes: Vec<u8> = got.into_iter().flat_map(|(b, _)| b).collect();
    assert_eq!(bytes, [&train[..], b"after"].concat());
}

#[test]
fn only_the_batched_path_offers_gro_and_gso() {
    let socket = bound();
    let err = Io::Portable.enable_gro(&socket).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    assert!(
        !opts::gro_enabled(&socket).unwrap(),
        "nothing was turned on"
    );
    assert!(!Io::Portable.gso_supported());
    assert_eq!(Io::Batched.gso_supported(), gso_supported());
    if Io::Batched.is_available() {
        Io::Batched.enable_gro(&socket).unwrap();
        assert!(opts::gro_enabled(&socket).unwrap());
    }
}

/// A connected socket whose peer is gone hears of it at its next receive
/// (the ICMP port unreachable), on either path, as a transient error.
fn a_refusal_is_reported_by_the_next_receive(io: Io) {
    let client = bound();
    client.connect(addr(&bound())).unwrap(); // that socket is gone at once
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut recv = RecvBatch::with_io(4, 64, io);
    // Each datagram brings an ICMP error back over loopback; a few rounds
    // leave room for one the kernel's ICMP rate limit drops.
    let refused = (0..10).find_map(|_| {
        client.send(b"anyone?").ok()?;
        match recv.recv(&client) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(e),
            _ => None,
        }
    });
    let refused = refused.expect("a refusal within 10 rounds");
    assert_eq!(
        upcase_udp::classify_recv_error(&refused),
        upcase_udp::RecvErrorClass::Transient
    );
    assert!(recv.is_empty());
}

/// Each test above that takes an `Io`, once per path this system has.
macro_rules! on_each_path {
    ($($test:ident),* $(,)?) => {
        #[cfg(target_os = "linux")]
        mod batched {
            $(#[test]
            fn $test() {
                super::$test(upcase_udp::Io::Batched)
            })*
        }
        mod portable {
            $(#[test]
            fn $test() {
                super::$test(upcase_udp::Io::Portable)
            })*
        }
    };
}

on_each_path!(
    batches_of_any_size_round_trip_with_their_peers,
    batches_larger_than_one_system_call_are_sent_whole,
    a_failing_message_is_skipped_and_the_rest_still_sent,
    refused_datagrams_on_a_connected_socket_are_not_fatal,
    copies_outlive_their_source,
    long_datagrams_are_flagged_as_cut_and_empty_sockets_do_not_block,
    a_reused_header_holds_the_next_datagram_whole,
    a_gso_train_reaches_its_peer_as_datagrams,
    a_refusal_is_reported_by_the_next_receive,
);
