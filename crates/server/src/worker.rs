//! One worker thread: its socket, its buffers, its counts, and what it does
//! with each datagram.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use tracing::{debug, warn};
use upcase_proto::{Family, Path, RECV_BUFFER_LEN, uppercase_datagram};

use crate::counters::Counters;
use crate::warn_limit::{WarnLimiter, suppressed_note};

/// Everything one thread needs, allocated once before it serves: the
/// datagram buffer holds any datagram whole and the scratch vector keeps its
/// capacity between Unicode replies, so answering allocates nothing in the
/// steady state.
pub struct Worker {
    socket: UdpSocket,
    local: SocketAddr,
    buf: Box<[u8]>,
    scratch: Vec<u8>,
    counters: Counters,
    warnings: WarnLimiter,
}

impl Worker {
    pub fn new(socket: UdpSocket) -> anyhow::Result<Worker> {
        let local = socket
            .local_addr()
            .context("cannot read the bound address")?;
        Ok(Worker {
            socket,
            local,
            buf: vec![0; RECV_BUFFER_LEN].into_boxed_slice(),
            scratch: Vec::new(),
            counters: Counters::default(),
            warnings: WarnLimiter::default(),
        })
    }

    /// Answers datagrams until `stop` is set, then returns what it counted.
    ///
    /// The socket's receive timeout bounds how long a quiet worker takes to
    /// notice `stop`; a busy one sees it between two datagrams. Only a
    /// receive error that cannot be a passing condition ends it early.
    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<Counters> {
        // A relaxed load of a flag written once is a plain read of a cache
        // line no one writes: it costs nothing per datagram.
        while !stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, peer)) => {
                    let reply = answer(
                        &mut self.buf[..len],
                        peer,
                        &mut self.scratch,
                        &mut self.counters,
                        &mut self.warnings,
                    );
                    if let Some(reply) = reply {
                        send(
                            &self.socket,
                            reply,
                            peer,
                            &mut self.counters,
                            &mut self.warnings,
                        );
                    }
                }
                Err(err) => match classify_recv_error(&err) {
                    RecvError::Idle => {}
                    RecvError::Transient => {
                        self.counters.recv_errors += 1;
                        if let Some(suppressed) = self.warnings.allow(Instant::now()) {
                            warn!(
                                "receive error on {}, carrying on: {err}{}",
                                self.local,
                                suppressed_note(suppressed)
                            );
                        }
                    }
                    RecvError::Fatal => {
                        return Err(anyhow::Error::new(err)
                            .context(format!("cannot receive on {}", self.local)));
                    }
                },
            }
        }
        let suppressed = self.warnings.take_suppressed();
        if suppressed > 0 {
            warn!("{suppressed} more warnings were suppressed before the stop");
        }
        debug!("worker on {} stops: {}", self.local, self.counters);
        Ok(self.counters)
    }
}

/// The reply to one received datagram, or `None` when it must not be sent.
///
/// Counts the datagram and, for a reply too large for the peer's address
/// family, warns (within `warnings`' limit) and counts the drop. Sending and
/// counting what was sent is the caller's, so that a loop receiving and
/// sending in batches can use this unchanged.
pub fn answer<'a>(
    datagram: &'a mut [u8],
    peer: SocketAddr,
    scratch: &'a mut Vec<u8>,
    counters: &mut Counters,
    warnings: &mut WarnLimiter,
) -> Option<&'a [u8]> {
    let len = datagram.len();
    counters.received += 1;
    counters.bytes_in += len as u64;
    let family = family_of(peer);
    match uppercase_datagram(datagram, scratch, family.max_payload()) {
        Ok(reply) => {
            if reply.path == Path::InvalidUtf8 {
                counters.invalid_utf8 += 1;
            }
            debug!(
                "{}: {len} bytes in, {} out ({:?})",
                shown(peer),
                reply.bytes.len(),
                reply.path
            );
            Some(reply.bytes)
        }
        Err(too_large) => {
            if too_large.path == Path::InvalidUtf8 {
                counters.invalid_utf8 += 1;
            }
            counters.dropped_too_large += 1;
            if let Some(suppressed) = warnings.allow(Instant::now()) {
                warn!(
                    "reply to {} not sent: {} bytes (request {len} bytes) is over the {} limit of {} bytes{}",
                    shown(peer),
                    too_large.reply_len,
                    family.name(),
                    too_large.limit,
                    suppressed_note(suppressed)
                );
            }
            None
        }
    }
}

/// Sends one reply and counts the outcome; a refused send is counted and
/// warned about, never an error of the server.
pub fn send(
    socket: &UdpSocket,
    reply: &[u8],
    peer: SocketAddr,
    counters: &mut Counters,
    warnings: &mut WarnLimiter,
) {
    // A signal arriving during the send interrupts it; the reply is still due.
    let mut result = socket.send_to(reply, peer);
    for _ in 0..3 {
        match &result {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                result = socket.send_to(reply, peer);
            }
            _ => break,
        }
    }
    match result {
        Ok(sent) => {
            counters.replied += 1;
            counters.bytes_out += sent as u64;
        }
        Err(err) => {
            counters.send_errors += 1;
            if let Some(suppressed) = warnings.allow(Instant::now()) {
                warn!(
                    "cannot send {} bytes to {}: {err}{}",
                    reply.len(),
                    shown(peer),
                    suppressed_note(suppressed)
                );
            }
        }
    }
}

/// The family a peer's datagrams travel over: an IPv4-mapped peer on the
/// dual-stack socket is IPv4 on the wire, with IPv4's smaller limit.
pub fn family_of(peer: SocketAddr) -> Family {
    match peer {
        SocketAddr::V4(_) => Family::V4,
        SocketAddr::V6(v6) => Family::of_ipv6_octets(v6.ip().octets()),
    }
}

/// A peer as people write it: `127.0.0.1:5000`, not `[::ffff:127.0.0.1]:5000`.
fn shown(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// What a receive error means for the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The timeout, or a signal: nothing went wrong, look at the stop flag.
    Idle,
    /// Something passing or caused by one peer (an ICMP error reported on
    /// the socket, a moment without buffers): count it and carry on.
    Transient,
    /// The socket itself is unusable: retrying would spin.
    Fatal,
}

pub fn classify_recv_error(err: &io::Error) -> RecvError {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            return RecvError::Idle;
        }
        _ => {}
    }
    match err.raw_os_error() {
        Some(
            libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::EHOSTUNREACH
            | libc::EHOSTDOWN
            | libc::ENETUNREACH
            | libc::ENETDOWN
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::EMSGSIZE
            | libc::EPROTO,
        ) => RecvError::Transient,
        _ => RecvError::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use upcase_proto::{MAX_PAYLOAD_V4, MAX_PAYLOAD_V6};

    fn v4_peer() -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5000)
    }
    fn v6_peer() -> SocketAddr {
        SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 5000)
    }
    fn mapped_peer() -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), 5000)
    }

    fn run(input: &[u8], peer: SocketAddr, counters: &mut Counters) -> Option<Vec<u8>> {
        let mut buf = input.to_vec();
        let mut scratch = Vec::new();
        let mut warnings = WarnLimiter::default();
        answer(&mut buf, peer, &mut scratch, counters, &mut warnings).map(<[u8]>::to_vec)
    }

    #[test]
    fn replies_are_the_uppercase_and_are_counted() {
        let mut c = Counters::default();
        assert_eq!(run(b"abc", v4_peer(), &mut c).as_deref(), Some(&b"ABC"[..]));
        assert_eq!(
            run("straße".as_bytes(), v6_peer(), &mut c).as_deref(),
            Some(&b"STRASSE"[..])
        );
        assert_eq!(
            run(b"\xff\xfeabc", v4_peer(), &mut c).as_deref(),
            Some(&b"\xff\xfeABC"[..])
        );
        assert_eq!(run(b"", v4_peer(), &mut c).as_deref(), Some(&b""[..]));
        assert_eq!(
            c,
            Counters {
                received: 4,
                bytes_in: 3 + 7 + 5,
                invalid_utf8: 1,
                ..Counters::default()
            },
            "sending is counted by the caller"
        );
    }

    #[test]
    fn the_limit_follows_the_family_on_the_wire() {
        assert_eq!(family_of(v4_peer()), Family::V4);
        assert_eq!(family_of(mapped_peer()), Family::V4);
        assert_eq!(family_of(v6_peer()), Family::V6);

        // 65,504 ASCII bytes and one U+0390 (2 bytes, uppercased to 6): a
        // request that fits IPv4 whose reply fits only IPv6.
        let mut request = vec![b'a'; MAX_PAYLOAD_V4 - 3];
        request.extend_from_slice("\u{390}".as_bytes());
        let reply_len = upcase_proto::uppercased_len(&request);
        assert!(request.len() <= MAX_PAYLOAD_V4);
        assert!((MAX_PAYLOAD_V4 + 1..=MAX_PAYLOAD_V6).contains(&reply_len));

        let mut c = Counters::default();
        assert_eq!(
            run(&request, v6_peer(), &mut c).map(|r| r.len()),
            Some(reply_len)
        );
        assert_eq!(run(&request, mapped_peer(), &mut c), None);
        assert_eq!(run(&request, v4_peer(), &mut c), None);
        assert_eq!(c.received, 3);
        assert_eq!(c.dropped_too_large, 2);
    }

    #[test]
    fn a_dropped_invalid_datagram_still_counts_as_invalid() {
        let mut request = b"\xff".to_vec();
        request.extend_from_slice("\u{390}".repeat(20_000).as_bytes());
        let mut c = Counters::default();
        assert_eq!(run(&request, v6_peer(), &mut c), None);
        assert_eq!(c.invalid_utf8, 1);
        assert_eq!(c.dropped_too_large, 1);
    }

    #[test]
    fn peers_are_shown_without_the_mapping() {
        assert_eq!(shown(mapped_peer()).to_string(), "127.0.0.1:5000");
        assert_eq!(shown(v6_peer()).to_string(), "[::1]:5000");
    }

    #[test]
    fn only_an_unusable_socket_stops_the_loop() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify_recv_error(&os(libc::EAGAIN)), RecvError::Idle);
        assert_eq!(classify_recv_error(&os(libc::EINTR)), RecvError::Idle);
        assert_eq!(
            classify_recv_error(&os(libc::ECONNREFUSED)),
            RecvError::Transient
        );
        assert_eq!(
            classify_recv_error(&os(libc::ENOBUFS)),
            RecvError::Transient
        );
        assert_eq!(classify_recv_error(&os(libc::EBADF)), RecvError::Fatal);
        assert_eq!(classify_recv_error(&os(libc::ENOTSOCK)), RecvError::Fatal);
    }

    #[test]
    fn a_worker_answers_and_stops_on_the_flag() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(crate::socket::RECV_TIMEOUT))
            .expect("timeout");
        let addr = server.local_addr().expect("addr");
        let worker = Worker::new(server).expect("worker");
        let stop = AtomicBool::new(false);
        let counters = std::thread::scope(|s| {
            let handle = s.spawn(|| worker.run(&stop));
            let client = UdpSocket::bind("127.0.0.1:0").expect("client");
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .expect("timeout");
            client.send_to(b"hi there", addr).expect("send");
            let mut buf = [0; 64];
            let n = client.recv(&mut buf).expect("reply");
            assert_eq!(&buf[..n], b"HI THERE");
            stop.store(true, Ordering::Relaxed);
            handle.join().expect("no panic")
        })
        .expect("clean stop");
        assert_eq!(counters.received, 1);
        assert_eq!(counters.replied, 1);
        assert_eq!(counters.bytes_out, 8);
    }
}
