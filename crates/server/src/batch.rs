//! The worker loop: many datagrams per system call in (`recvmmsg`) and out
//! (`sendmmsg`), replies sent straight from the receive slots.
//!
//! The replies are decided and counted in `worker.rs`: [`answer`] for one
//! datagram, [`answer_ascii_train`] for a GRO train it can answer whole with
//! the same result; this module only moves bytes. An ASCII datagram's reply
//! is the datagram itself, uppercased in place, and is queued by reference:
//! no copy and no allocation. A reply built in the scratch vector (the
//! Unicode path) is copied into the send batch's arena, which keeps its
//! capacity from batch to batch. A UDP GRO train of ASCII segments is
//! answered with one GSO send (uppercased in one pass unless a rate limit
//! must see each segment); any other train segment by segment.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use tracing::{debug, warn};
use upcase_proto::RECV_BUFFER_LEN;
use upcase_udp::opts::MAX_GSO_SEGMENTS;
use upcase_udp::{DatagramMut, Queue, RecvBatch, SendBatch};

use crate::counters::Counters;
use crate::policy::Policy;
use crate::warn_limit::{WarnLimiter, suppressed_note};
use crate::worker::{RecvError, answer, answer_ascii_train, classify_recv_error, shown};

/// Most batches answered after the stop: 64 x 64 datagrams, a few
/// milliseconds of work.
const DRAIN_BATCHES: usize = 64;

/// One worker thread's socket, batches and state, all allocated before it
/// serves.
pub struct BatchWorker {
    socket: UdpSocket,
    local: SocketAddr,
    recv: RecvBatch,
    send: SendBatch,
    state: State,
    busy_poll: bool,
}

/// What answering needs besides the socket and the batches, apart so that it
/// can be borrowed while the receive slots and the send queue are.
struct State {
    scratch: Vec<u8>,
    /// Per message queued since the last flush: what it carries, to count
    /// replies and to say which failed. Keeps its capacity.
    queued: Vec<Queued>,
    /// Per segment of the GRO train being answered: whether its reply is the
    /// segment itself. Keeps its capacity.
    in_place: Vec<bool>,
    counters: Counters,
    warnings: WarnLimiter,
    policy: Arc<Policy>,
}

/// One queued message: one reply, or a GSO train of `replies` replies.
#[derive(Clone, Copy)]
struct Queued {
    peer: SocketAddr,
    replies: u64,
    bytes: u64,
}

impl Queued {
    fn one(peer: SocketAddr, bytes: &[u8]) -> Queued {
        Queued {
            peer,
            replies: 1,
            bytes: bytes.len() as u64,
        }
    }
}

impl BatchWorker {
    /// A worker for `socket` (bound, with a receive timeout unless
    /// `busy_poll`), applying `policy` like every other worker.
    pub fn new(
        socket: UdpSocket,
        policy: Arc<Policy>,
        busy_poll: bool,
    ) -> anyhow::Result<BatchWorker> {
        let local = socket
            .local_addr()
            .context("cannot read the bound address")?;
        Ok(BatchWorker {
            socket,
            local,
            // Slots of RECV_BUFFER_LEN: any datagram and any GRO train fit whole.
            recv: RecvBatch::new(upcase_udp::DEFAULT_BATCH, RECV_BUFFER_LEN),
            send: SendBatch::default(),
            state: State {
                scratch: Vec::new(),
                queued: Vec::with_capacity(upcase_udp::DEFAULT_BATCH),
                in_place: Vec::with_capacity(MAX_GSO_SEGMENTS),
                counters: Counters::default(),
                warnings: WarnLimiter::default(),
                policy,
            },
            busy_poll,
        })
    }

    /// Answers datagrams until `stop` is set, then answers what is already
    /// queued on the socket and returns what it counted.
    ///
    /// A quiet worker notices `stop` when its receive times out (the
    /// socket's SO_RCVTIMEO); a busy-polling one at every turn of its loop.
    /// Only a receive error that cannot be a passing condition ends it early.
    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<Counters> {
        while !stop.load(Ordering::Relaxed) {
            let received = if self.busy_poll {
                self.recv.try_recv(&self.socket)
            } else {
                self.recv.recv(&self.socket)
            };
            match received {
                Ok(0) => {}
                Ok(_) => self.answer_batch()?,
                Err(err) => self.on_recv_error(err)?,
            }
        }
        self.drain()?;
        let suppressed = self.state.warnings.take_suppressed();
        if suppressed > 0 {
            warn!("{suppressed} more warnings were suppressed before the stop");
        }
        debug!("worker on {} stops: {}", self.local, self.state.counters);
        Ok(self.state.counters)
    }

    /// Answers the datagrams the kernel had already queued when the stop
    /// came (a worker scheduled late may not have read any yet), without
    /// waiting for more; at most [`DRAIN_BATCHES`] batches, so that a flood
    /// cannot hold up the stop.
    fn drain(&mut self) -> anyhow::Result<()> {
        for _ in 0..DRAIN_BATCHES {
            match self.recv.try_recv(&self.socket) {
                Ok(0) => break,
                Ok(_) => self.answer_batch()?,
                Err(err) => self.on_recv_error(err)?,
            }
        }
        Ok(())
    }

    fn answer_batch(&mut self) -> anyhow::Result<()> {
        let state = &mut self.state;
        state.queued.clear();
        let mut queue = self.send.queue(&self.socket);
        for datagram in self.recv.iter_mut() {
            state
                .answer_buffer(datagram, &mut queue)
                .with_context(|| format!("cannot send on {}", self.local))?;
        }
        queue
            .flush()
            .with_context(|| format!("cannot send on {}", self.local))?;
        state.count_sent(queue.failed(), queue.report().first_error.as_ref());
        Ok(())
    }

    fn on_recv_error(&mut self, err: io::Error) -> anyhow::Result<()> {
        match classify_recv_error(&err) {
            RecvError::Idle => Ok(()),
            RecvError::Transient => {
                self.state.counters.recv_errors += 1;
                if let Some(suppressed) = self.state.warnings.allow(Instant::now()) {
                    warn!(
                        "receive error on {}, carrying on: {err}{}",
                        self.local,
                        suppressed_note(suppressed)
                    );
                }
                Ok(())
            }
            RecvError::Fatal => {
                Err(anyhow::Error::new(err).context(format!("cannot receive on {}", self.local)))
            }
        }
    }
}

impl State {
    /// Queues the replies to one received buffer: a datagram or a GRO train.
    fn answer_buffer<'d>(
        &mut self,
        datagram: DatagramMut<'d>,
        queue: &mut Queue<'_, 'd, UdpSocket>,
    ) -> io::Result<()> {
        let Some(peer) = datagram.meta.peer else {
            // UDP always has a sender; nothing to answer without one.
            self.counters.recv_errors += 1;
            return Ok(());
        };
        if datagram.meta.truncated {
            // Slots hold any datagram and any train, so this is a kernel
            // surprise: a cut datagram's uppercase would be a wrong reply.
            self.counters.recv_errors += 1;
            if let Some(suppressed) = self.warnings.allow(Instant::now()) {
                warn!(
                    "a datagram from {peer} was cut by the receive buffer and is not answered{}",
                    suppressed_note(suppressed)
                );
            }
            return Ok(());
        }
        match datagram.meta.segment_size {
            Some(size) if datagram.bytes.len() > usize::from(size) => {
                self.answer_train(datagram.bytes, size, peer, queue)
            }
            _ => self.answer_one(datagram.bytes, peer, queue),
        }
    }

    /// Queues the reply to one datagram: the datagram itself when it was
    /// answered in place, else a copy of the scratch reply.
    fn answer_one<'d>(
        &mut self,
        datagram: &'d mut [u8],
        peer: SocketAddr,
        queue: &mut Queue<'_, 'd, UdpSocket>,
    ) -> io::Result<()> {
        let start = datagram.as_ptr();
        let reply = answer(
            &mut *datagram,
            peer,
            &mut self.scratch,
            &mut self.counters,
            &mut self.warnings,
            &self.policy,
        );
        let in_place_len = match reply {
            None => return Ok(()),
            Some(reply) if std::ptr::eq(reply.as_ptr(), start) => reply.len(),
            Some(reply) => {
                queue.push_copy(Some(peer), reply, None)?;
                self.queued.push(Queued::one(peer, reply));
                return Ok(());
            }
        };
        let datagram: &'d [u8] = datagram;
        if let Some(reply) = datagram.get(..in_place_len) {
            queue.push(Some(peer), reply, None)?;
            self.queued.push(Queued::one(peer, reply));
        }
        Ok(())
    }

    /// Queues the replies to a GRO train of `size`-byte segments: one GSO
    /// send of the train uppercased in place when every segment is answered
    /// in place, else one reply per segment.
    fn answer_train<'d>(
        &mut self,
        train: &'d mut [u8],
        size: u16,
        peer: SocketAddr,
        queue: &mut Queue<'_, 'd, UdpSocket>,
    ) -> io::Result<()> {
        let segment = usize::from(size);
        let segments = train.len().div_ceil(segment);
        // ASCII keeps every reply the length of its request, so the replies
        // form a train of the same shape; the other limits are the kernel's
        // for one GSO send.
        let fits_one_send = train.len() <= upcase_proto::Family::of(peer).max_payload()
            && segments <= MAX_GSO_SEGMENTS;
        if fits_one_send
            && answer_ascii_train(
                train,
                segments as u64,
                peer,
                &mut self.counters,
                &self.policy,
            )
        {
            let train: &'d [u8] = train;
            queue.push(Some(peer), train, Some(size))?;
            self.queued.push(Queued {
                peer,
                replies: segments as u64,
                bytes: train.len() as u64,
            });
            return Ok(());
        }
        // A rate limit sees every segment, and may refuse some of them.
        let one_send = fits_one_send && train.is_ascii();
        if !one_send {
            for datagram in train.chunks_mut(segment) {
                self.answer_one(datagram, peer, queue)?;
            }
            return Ok(());
        }
        self.in_place.clear();
        for datagram in train.chunks_mut(segment) {
            let (start, len) = (datagram.as_ptr(), datagram.len());
            let reply = answer(
                datagram,
                peer,
                &mut self.scratch,
                &mut self.counters,
                &mut self.warnings,
                &self.policy,
            );
            let in_place = match reply {
                Some(reply) if std::ptr::eq(reply.as_ptr(), start) && reply.len() == len => true,
                Some(reply) => {
                    queue.push_copy(Some(peer), reply, None)?;
                    self.queued.push(Queued::one(peer, reply));
                    false
                }
                None => false,
            };
            self.in_place.push(in_place);
        }
        let train: &'d [u8] = train;
        if self.in_place.iter().all(|&answered| answered) {
            queue.push(Some(peer), train, Some(size))?;
            self.queued.push(Queued {
                peer,
                replies: self.in_place.len() as u64,
                bytes: train.len() as u64,
            });
        } else {
            // Some segments get no reply (a policy said no): the others go
            // one by one, still from the slot.
            for (reply, &answered) in train.chunks(segment).zip(&self.in_place) {
                if answered {
                    queue.push(Some(peer), reply, None)?;
                    self.queued.push(Queued::one(peer, reply));
                }
            }
        }
        Ok(())
    }

    /// Counts what the flushed queue sent; `failed` are the positions of the
    /// messages the system refused, in the order they were queued.
    fn count_sent(&mut self, failed: &[usize], error: Option<&io::Error>) {
        let mut replies = 0;
        let mut bytes = 0;
        for queued in &self.queued {
            replies += queued.replies;
            bytes += queued.bytes;
        }
        let mut refused = 0;
        for queued in failed.iter().filter_map(|&i| self.queued.get(i)) {
            refused += queued.replies;
            bytes -= queued.bytes;
        }
        self.counters.replied += replies - refused;
        self.counters.bytes_out += bytes;
        self.counters.send_errors += refused;
        let Some(first) = failed.first().and_then(|&i| self.queued.get(i)) else {
            return;
        };
        if let Some(suppressed) = self.warnings.allow(Instant::now()) {
            let why = error.map_or_else(|| "refused".to_string(), ToString::to_string);
            warn!(
                "cannot send {refused} repl{}, the first to {}: {why}{}",
                if refused == 1 { "y" } else { "ies" },
                shown(first.peer),
                suppressed_note(suppressed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use upcase_udp::gso_supported;

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
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(crate::socket::RECV_TIMEOUT))
            .expect("timeout");
        upcase_udp::enable_gro(&socket).expect("GRO");
        let addr = socket.local_addr().expect("addr");
        let worker = BatchWorker::new(socket, policy, busy_poll).expect("worker");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let serving = s.spawn(|| worker.run(&stop));
            // Set even when the client panics, or the scope would wait forever.
            let _stop = StopOnDrop(&stop);
            client(addr);
            drop(_stop);
            serving.join().expect("no panic")
        })
        .expect("clean stop")
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
        let mut batch = RecvBatch::new(upcase_udp::DEFAULT_BATCH, RECV_BUFFER_LEN);
        let mut got = Vec::new();
        while got.len() < count {
            batch.recv(client).expect("a reply");
            for d in batch.iter() {
                got.extend(d.segments().map(|s| (s.to_vec(), d.meta.segment_size)));
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

    #[test]
    fn a_burst_of_mixed_datagrams_is_answered_in_order() {
        let requests: [&[u8]; 5] = [b"abc", "straße".as_bytes(), b"\xffx", b"", b"Mixed 123"];
        let counters = with_worker(false, |addr| {
            let client = client_socket();
            let mut batch = SendBatch::default();
            let mut queue = batch.queue(&client);
            for request in requests {
                queue.push(Some(addr), request, None).expect("push");
            }
            assert_eq!(queue.finish().expect("send").sent, requests.len());
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
        let policy = Policy::new(crate::policy::PolicyConfig {
            rate_limit: Some(crate::policy::RateLimit {
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
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(crate::socket::RECV_TIMEOUT))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let client = client_socket();
        // Queued before the worker exists, as for a thread scheduled late.
        for i in 0..100 {
            client
                .send_to(format!("queued {i}").as_bytes(), addr)
                .expect("send");
        }
        let worker = BatchWorker::new(socket, Arc::default(), false).expect("worker");
        let counters = worker.run(&AtomicBool::new(true)).expect("clean stop");
        assert_eq!((counters.received, counters.replied), (100, 100));
        let got: Vec<Vec<u8>> = replies(&client, 100).into_iter().map(|(b, _)| b).collect();
        let expected: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("QUEUED {i}").into_bytes())
            .collect();
        assert_eq!(got, expected);
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
}
